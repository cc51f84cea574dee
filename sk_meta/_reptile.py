"""Reptile (Nichol, Achiam & Schulman, 2018)."""

from functools import partial

from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils._param_validation import StrOptions

from sk_meta._base import BaseMetaEstimator, MetaClassifierMixin, MetaRegressorMixin
from sk_meta._compile import CompiledFunction
from sk_meta._docs import (
    ATTRIBUTES_DOC,
    NOTES_DOC,
    REPTILE_REFERENCES_DOC,
    parameters_doc,
)
from sk_meta.functional import reptile_meta_gradient


class _Reptile(BaseMetaEstimator):
    """The Reptile update, shared by the two Reptile estimators."""

    def _meta_step(self, compile_mode):
        step = partial(
            reptile_meta_gradient, lr=self.inner_lr,
            n_steps=self.meta_inner_steps or self.inner_steps,
            optimizer=self.inner_optimizer,
        )
        if compile_mode is None:
            return step
        return CompiledFunction(partial(step, functional=True), step, compile_mode)

    def _adapt_options(self):
        return {"optimizer": self.inner_optimizer}


class ReptileClassifier(MetaClassifierMixin, ClassifierMixin, _Reptile):
    __doc__ = (
        """Few-shot classifier meta-trained with Reptile.

    ``meta_fit`` learns an initialization from many small tasks such that a
    few gradient steps on a new task's support set (``fit``) give a good
    classifier for that task.
    """
        + parameters_doc("reptile", inner_lr="0.1")
        + ATTRIBUTES_DOC
        + """    classes_ : ndarray of shape (n_classes,)
        Labels of the support set; ``classes_[i]`` maps to output ``i``.
    """
        + """
    See Also
    --------
    FOReptileClassifier : The same with ``first_order=True``.
    ReptileClassifier : Reptile, another first-order method.
    """
        + NOTES_DOC
        + REPTILE_REFERENCES_DOC
        + """
    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sk_meta import ReptileClassifier
    >>> from sk_meta.tasks import EpisodeSampler
    >>> X, y = load_digits(return_X_y=True)
    >>> tasks = EpisodeSampler(X / 16, y, n_way=3, k_shot=5, n_query=5,
    ...                        classes=range(7), random_state=0)
    >>> clf = ReptileClassifier(n_meta_iter=5, random_state=0).meta_fit(tasks)
    >>> new_task = EpisodeSampler(X / 16, y, n_way=3, k_shot=5, n_query=5,
    ...                           classes=[7, 8, 9], random_state=1).sample()
    >>> clf.fit(new_task.X_support, new_task.y_support).classes_
    array([7, 8, 9])
    >>> clf.predict(new_task.X_query).shape
    (15,)
    """
    )

    _parameter_constraints = {
        **BaseMetaEstimator._parameter_constraints,
        "inner_optimizer": [StrOptions({"sgd", "adam"})],
    }

    def __init__(self, module=None, *, module_params=None, hidden_layer_sizes=(64, 64),
                 activation="relu", inner_lr=0.1, inner_steps=5,
                 meta_inner_steps=None, meta_lr=0.1, meta_batch_size=16,
                 n_meta_iter=1000, meta_optimizer="sgd", inner_optimizer="sgd",
                 tasks_per_chunk="auto", compile=False, validation_interval=100,
                 early_stopping=False,
                 n_iter_no_change=10, tol=1e-4, warm_start=False,
                 checkpoint_path=None,
                 checkpoint_every=1000, n_threads=1, device="cpu",
                 random_state=None, verbose=0):
        super().__init__(
            module, module_params=module_params,
            hidden_layer_sizes=hidden_layer_sizes, activation=activation,
            inner_lr=inner_lr, inner_steps=inner_steps,
            meta_inner_steps=meta_inner_steps, meta_lr=meta_lr,
            meta_batch_size=meta_batch_size, n_meta_iter=n_meta_iter,
            meta_optimizer=meta_optimizer, tasks_per_chunk=tasks_per_chunk,
            compile=compile, validation_interval=validation_interval,
            early_stopping=early_stopping,
            n_iter_no_change=n_iter_no_change, tol=tol, warm_start=warm_start,
            checkpoint_path=checkpoint_path, checkpoint_every=checkpoint_every,
            n_threads=n_threads, device=device,
            random_state=random_state, verbose=verbose,
        )
        self.inner_optimizer = inner_optimizer


class ReptileRegressor(MetaRegressorMixin, RegressorMixin, _Reptile):
    __doc__ = (
        """Few-shot regressor meta-trained with Reptile.

    ``meta_fit`` learns an initialization from many small tasks such that a
    few gradient steps on a new task's support set (``fit``) give a good
    regressor for that task.
    """
        + parameters_doc("reptile", inner_lr="0.01")
        + ATTRIBUTES_DOC
        + """
    See Also
    --------
    FOReptileRegressor : The same with ``first_order=True``.
    ReptileRegressor : Reptile, another first-order method.
    """
        + NOTES_DOC
        + REPTILE_REFERENCES_DOC
        + """
    Examples
    --------
    >>> from sk_meta import ReptileRegressor
    >>> from sk_meta.tasks import SinusoidTasks
    >>> reg = ReptileRegressor(hidden_layer_sizes=(40, 40), n_meta_iter=5,
    ...                 random_state=0)
    >>> reg = reg.meta_fit(SinusoidTasks(k_shot=10, random_state=0))
    >>> task = SinusoidTasks(k_shot=10, random_state=1).sample()
    >>> reg.fit(task.X_support, task.y_support).predict(task.X_query).shape
    (10,)
    """
    )

    _parameter_constraints = {
        **BaseMetaEstimator._parameter_constraints,
        "inner_optimizer": [StrOptions({"sgd", "adam"})],
    }

    def __init__(self, module=None, *, module_params=None, hidden_layer_sizes=(64, 64),
                 activation="relu", inner_lr=0.01, inner_steps=5,
                 meta_inner_steps=None, meta_lr=0.1, meta_batch_size=16,
                 n_meta_iter=1000, meta_optimizer="sgd", inner_optimizer="sgd",
                 tasks_per_chunk="auto", compile=False, validation_interval=100,
                 early_stopping=False,
                 n_iter_no_change=10, tol=1e-4, warm_start=False,
                 checkpoint_path=None,
                 checkpoint_every=1000, n_threads=1, device="cpu",
                 random_state=None, verbose=0):
        super().__init__(
            module, module_params=module_params,
            hidden_layer_sizes=hidden_layer_sizes, activation=activation,
            inner_lr=inner_lr, inner_steps=inner_steps,
            meta_inner_steps=meta_inner_steps, meta_lr=meta_lr,
            meta_batch_size=meta_batch_size, n_meta_iter=n_meta_iter,
            meta_optimizer=meta_optimizer, tasks_per_chunk=tasks_per_chunk,
            compile=compile, validation_interval=validation_interval,
            early_stopping=early_stopping,
            n_iter_no_change=n_iter_no_change, tol=tol, warm_start=warm_start,
            checkpoint_path=checkpoint_path, checkpoint_every=checkpoint_every,
            n_threads=n_threads, device=device,
            random_state=random_state, verbose=verbose,
        )
        self.inner_optimizer = inner_optimizer
