"""MAML and first-order MAML (Finn, Abbeel & Levine, 2017)."""

from functools import partial

from sklearn.base import ClassifierMixin, RegressorMixin

from sk_meta._base import BaseMetaEstimator, MetaClassifierMixin, MetaRegressorMixin
from sk_meta._compile import CompiledFunction
from sk_meta._docs import (
    ATTRIBUTES_DOC,
    MAML_REFERENCES_DOC,
    NOTES_DOC,
    parameters_doc,
)
from sk_meta.functional import maml_meta_gradient, maml_meta_loss


class _MAML(BaseMetaEstimator):
    """The MAML meta-gradient, shared by the four MAML estimators."""

    def _meta_step(self, compile_mode):
        meta_loss = maml_meta_loss
        if compile_mode is not None:
            # the loss (inner steps included) is compiled; its gradient is
            # taken outside, as autograd cannot differentiate twice through
            # a compiled graph
            meta_loss = CompiledFunction(
                partial(maml_meta_loss, functional=True), maml_meta_loss,
                compile_mode,
            )
        return partial(
            maml_meta_gradient, lr=self.inner_lr,
            n_steps=self.meta_inner_steps or self.inner_steps,
            first_order=self.first_order, meta_loss=meta_loss,
        )


class MAMLClassifier(MetaClassifierMixin, ClassifierMixin, _MAML):
    __doc__ = (
        """Few-shot classifier meta-trained with MAML.

    ``meta_fit`` learns an initialization from many small tasks such that a
    few gradient steps on a new task's support set (``fit``) give a good
    classifier for that task.
    """
        + parameters_doc("maml", inner_lr="0.1", first_order="False")
        + ATTRIBUTES_DOC
        + """    classes_ : ndarray of shape (n_classes,)
        Labels of the support set; ``classes_[i]`` maps to output ``i``.
    """
        + """
    See Also
    --------
    FOMAMLClassifier : The same with ``first_order=True``.
    ReptileClassifier : Reptile, another first-order method.
    """
        + NOTES_DOC
        + MAML_REFERENCES_DOC
        + """
    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sk_meta import MAMLClassifier
    >>> from sk_meta.tasks import EpisodeSampler
    >>> X, y = load_digits(return_X_y=True)
    >>> tasks = EpisodeSampler(X / 16, y, n_way=3, k_shot=5, n_query=5,
    ...                        classes=range(7), random_state=0)
    >>> clf = MAMLClassifier(n_meta_iter=5, random_state=0).meta_fit(tasks)
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
        "first_order": ["boolean"],
    }

    def __init__(self, module=None, *, module_params=None, hidden_layer_sizes=(64, 64),
                 activation="relu", inner_lr=0.1, inner_steps=5,
                 meta_inner_steps=None, meta_lr=1e-3, meta_batch_size=16,
                 n_meta_iter=1000, meta_optimizer="adam", first_order=False,
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
        self.first_order = first_order


class FOMAMLClassifier(MAMLClassifier):
    __doc__ = (
        """Few-shot classifier meta-trained with first-order MAML.

    :class:`MAMLClassifier` with ``first_order=True``: the meta-gradient
    ignores the second-order term, which makes meta-training cheaper.
    """
        + parameters_doc("maml", inner_lr="0.1", first_order="True")
        + ATTRIBUTES_DOC
        + """    classes_ : ndarray of shape (n_classes,)
        Labels of the support set; ``classes_[i]`` maps to output ``i``.
    """
        + """
    See Also
    --------
    MAMLClassifier : Second-order MAML.
    ReptileClassifier : Reptile, another first-order method.
    """
        + NOTES_DOC
        + MAML_REFERENCES_DOC
        + """
    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sk_meta import FOMAMLClassifier
    >>> from sk_meta.tasks import EpisodeSampler
    >>> X, y = load_digits(return_X_y=True)
    >>> tasks = EpisodeSampler(X / 16, y, n_way=3, k_shot=5, n_query=5,
    ...                        classes=range(7), random_state=0)
    >>> clf = FOMAMLClassifier(n_meta_iter=5, random_state=0).meta_fit(tasks)
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
        "first_order": ["boolean"],
    }

    def __init__(self, module=None, *, module_params=None, hidden_layer_sizes=(64, 64),
                 activation="relu", inner_lr=0.1, inner_steps=5,
                 meta_inner_steps=None, meta_lr=1e-3, meta_batch_size=16,
                 n_meta_iter=1000, meta_optimizer="adam", first_order=True,
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
        self.first_order = first_order


class MAMLRegressor(MetaRegressorMixin, RegressorMixin, _MAML):
    __doc__ = (
        """Few-shot regressor meta-trained with MAML.

    ``meta_fit`` learns an initialization from many small tasks such that a
    few gradient steps on a new task's support set (``fit``) give a good
    regressor for that task.
    """
        + parameters_doc("maml", inner_lr="0.01", first_order="False")
        + ATTRIBUTES_DOC
        + """
    See Also
    --------
    FOMAMLRegressor : The same with ``first_order=True``.
    ReptileRegressor : Reptile, another first-order method.
    """
        + NOTES_DOC
        + MAML_REFERENCES_DOC
        + """
    Examples
    --------
    >>> from sk_meta import MAMLRegressor
    >>> from sk_meta.tasks import SinusoidTasks
    >>> reg = MAMLRegressor(hidden_layer_sizes=(40, 40), n_meta_iter=5,
    ...                 random_state=0)
    >>> reg = reg.meta_fit(SinusoidTasks(k_shot=10, random_state=0))
    >>> task = SinusoidTasks(k_shot=10, random_state=1).sample()
    >>> reg.fit(task.X_support, task.y_support).predict(task.X_query).shape
    (10,)
    """
    )

    _parameter_constraints = {
        **BaseMetaEstimator._parameter_constraints,
        "first_order": ["boolean"],
    }

    def __init__(self, module=None, *, module_params=None, hidden_layer_sizes=(64, 64),
                 activation="relu", inner_lr=0.01, inner_steps=5,
                 meta_inner_steps=None, meta_lr=1e-3, meta_batch_size=16,
                 n_meta_iter=1000, meta_optimizer="adam", first_order=False,
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
        self.first_order = first_order


class FOMAMLRegressor(MAMLRegressor):
    __doc__ = (
        """Few-shot regressor meta-trained with first-order MAML.

    :class:`MAMLRegressor` with ``first_order=True``: the meta-gradient
    ignores the second-order term, which makes meta-training cheaper.
    """
        + parameters_doc("maml", inner_lr="0.01", first_order="True")
        + ATTRIBUTES_DOC
        + """
    See Also
    --------
    MAMLRegressor : Second-order MAML.
    ReptileRegressor : Reptile, another first-order method.
    """
        + NOTES_DOC
        + MAML_REFERENCES_DOC
        + """
    Examples
    --------
    >>> from sk_meta import FOMAMLRegressor
    >>> from sk_meta.tasks import SinusoidTasks
    >>> reg = FOMAMLRegressor(hidden_layer_sizes=(40, 40), n_meta_iter=5,
    ...                 random_state=0)
    >>> reg = reg.meta_fit(SinusoidTasks(k_shot=10, random_state=0))
    >>> task = SinusoidTasks(k_shot=10, random_state=1).sample()
    >>> reg.fit(task.X_support, task.y_support).predict(task.X_query).shape
    (10,)
    """
    )

    _parameter_constraints = {
        **BaseMetaEstimator._parameter_constraints,
        "first_order": ["boolean"],
    }

    def __init__(self, module=None, *, module_params=None, hidden_layer_sizes=(64, 64),
                 activation="relu", inner_lr=0.01, inner_steps=5,
                 meta_inner_steps=None, meta_lr=1e-3, meta_batch_size=16,
                 n_meta_iter=1000, meta_optimizer="adam", first_order=True,
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
        self.first_order = first_order
