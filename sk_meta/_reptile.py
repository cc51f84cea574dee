"""Reptile (Nichol, Achiam & Schulman, 2018)."""

from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils._param_validation import StrOptions

from sk_meta._base import BaseMetaEstimator, MetaClassifierMixin, MetaRegressorMixin
from sk_meta._docs import estimator_doc


class _Reptile(BaseMetaEstimator):
    """The Reptile update, shared by the two Reptile estimators."""

    _algorithm = "reptile"
    _parameter_constraints = {
        **BaseMetaEstimator._parameter_constraints,
        "inner_optimizer": [StrOptions({"sgd", "adam"})],
    }


class ReptileClassifier(MetaClassifierMixin, ClassifierMixin, _Reptile):
    _parameter_constraints = {
        **_Reptile._parameter_constraints,
        "class_weight": [StrOptions({"balanced"}), None],
        "head_solver": [StrOptions({"auto", "steps", "choose"})],
    }

    def __init__(self, module=None, *, module_params=None, hidden_layer_sizes="auto",
                 activation="relu", concat_input=False, inner_lr=0.1, inner_steps=20,
                 meta_inner_steps=10, inner_lr_mode="fixed", adapt_layers="auto",
                 head_init="prototype", prototype_scale="auto",
                 multi_step_loss=False, backtracking=True,
                 task_interpolation=0.0, inner_optimizer="sgd",
                 meta_lr=0.1, meta_batch_size=16, n_meta_iter=1000, max_time=None,
                 meta_optimizer="sgd", meta_lr_schedule="constant",
                 meta_grad_max_norm=1.0,
                 tasks_per_chunk="auto", compile=False, transductive=True,
                 class_weight="balanced", head_solver="auto",
                 validation_interval=100, early_stopping=False, n_iter_no_change=10,
                 tol=1e-4, warm_start=False, checkpoint_path=None,
                 checkpoint_every=1000, distributed="auto", n_threads=1, device="cpu",
                 random_state=None, verbose=0):
        super().__init__(
            module, module_params=module_params,
            hidden_layer_sizes=hidden_layer_sizes, activation=activation,
            concat_input=concat_input,
            inner_lr=inner_lr, inner_steps=inner_steps,
            meta_inner_steps=meta_inner_steps, inner_lr_mode=inner_lr_mode,
            adapt_layers=adapt_layers, head_init=head_init,
            prototype_scale=prototype_scale,
            multi_step_loss=multi_step_loss, backtracking=backtracking,
            task_interpolation=task_interpolation, meta_lr=meta_lr,
            meta_batch_size=meta_batch_size, n_meta_iter=n_meta_iter,
            max_time=max_time, meta_optimizer=meta_optimizer,
            meta_lr_schedule=meta_lr_schedule,
            meta_grad_max_norm=meta_grad_max_norm, tasks_per_chunk=tasks_per_chunk,
            compile=compile, transductive=transductive,
            validation_interval=validation_interval, early_stopping=early_stopping,
            n_iter_no_change=n_iter_no_change, tol=tol, warm_start=warm_start,
            checkpoint_path=checkpoint_path, checkpoint_every=checkpoint_every,
            distributed=distributed, n_threads=n_threads, device=device,
            random_state=random_state, verbose=verbose,
        )
        self.class_weight = class_weight
        self.head_solver = head_solver
        self.inner_optimizer = inner_optimizer


class ReptileRegressor(MetaRegressorMixin, RegressorMixin, _Reptile):
    def __init__(self, module=None, *, module_params=None, hidden_layer_sizes=(64, 64),
                 activation="relu", concat_input=False, inner_lr=0.01, inner_steps=5,
                 meta_inner_steps=None, inner_lr_mode="fixed", adapt_layers="all",
                 head_init="meta", prototype_scale=1.0,
                 multi_step_loss=False, backtracking=False,
                 task_interpolation=0.0, inner_optimizer="sgd",
                 meta_lr=0.1, meta_batch_size=16, n_meta_iter=1000, max_time=None,
                 meta_optimizer="sgd", meta_lr_schedule="constant",
                 meta_grad_max_norm=None,
                 tasks_per_chunk="auto", compile=False, transductive=True,
                 validation_interval=100, early_stopping=False, n_iter_no_change=10,
                 tol=1e-4, warm_start=False, checkpoint_path=None,
                 checkpoint_every=1000, distributed="auto", n_threads=1, device="cpu",
                 random_state=None, verbose=0):
        super().__init__(
            module, module_params=module_params,
            hidden_layer_sizes=hidden_layer_sizes, activation=activation,
            concat_input=concat_input,
            inner_lr=inner_lr, inner_steps=inner_steps,
            meta_inner_steps=meta_inner_steps, inner_lr_mode=inner_lr_mode,
            adapt_layers=adapt_layers, head_init=head_init,
            prototype_scale=prototype_scale,
            multi_step_loss=multi_step_loss, backtracking=backtracking,
            task_interpolation=task_interpolation, meta_lr=meta_lr,
            meta_batch_size=meta_batch_size, n_meta_iter=n_meta_iter,
            max_time=max_time, meta_optimizer=meta_optimizer,
            meta_lr_schedule=meta_lr_schedule,
            meta_grad_max_norm=meta_grad_max_norm, tasks_per_chunk=tasks_per_chunk,
            compile=compile, transductive=transductive,
            validation_interval=validation_interval, early_stopping=early_stopping,
            n_iter_no_change=n_iter_no_change, tol=tol, warm_start=warm_start,
            checkpoint_path=checkpoint_path, checkpoint_every=checkpoint_every,
            distributed=distributed, n_threads=n_threads, device=device,
            random_state=random_state, verbose=verbose,
        )
        self.inner_optimizer = inner_optimizer


ReptileClassifier.__doc__ = estimator_doc(
    ReptileClassifier,
    summary="""Few-shot classifier meta-trained with Reptile.

    ``meta_fit`` learns an initialization from many small tasks such that a
    few gradient steps on a new task's support set (``fit``) give a good
    classifier for that task.""",
    see_also=[
        "MAMLClassifier : MAML, which differentiates through the inner steps.",
        "FOMAMLClassifier : First-order MAML.",
    ],
)
ReptileRegressor.__doc__ = estimator_doc(
    ReptileRegressor,
    summary="""Few-shot regressor meta-trained with Reptile.

    ``meta_fit`` learns an initialization from many small tasks such that a
    few gradient steps on a new task's support set (``fit``) give a good
    regressor for that task.""",
    see_also=[
        "MAMLRegressor : MAML, which differentiates through the inner steps.",
        "FOMAMLRegressor : First-order MAML.",
    ],
)
