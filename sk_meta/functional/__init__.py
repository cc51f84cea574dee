"""The functional core: parameters as dicts, one ``adapt`` for everything.

Meta-training, ``fit`` and evaluation all adapt through :func:`adapt`. A batch
of tasks is one call: every parameter carries a leading task dimension, and
the forward pass is either the module's own ``forward_batched`` (the default
MLP has one), ``torch.func.vmap`` over ``functional_call``, or a loop over the
tasks for modules that ``vmap`` cannot batch (RNNs). Nothing here imports
scikit-learn or the estimators.
"""

from sk_meta.functional._adapt import adapt, step_rates
from sk_meta.functional._forward import (
    batched_forward,
    choose_strategy,
    expand_params,
    has_batch_norm,
    outputs_beside_support,
    prepare_module,
)
from sk_meta.functional._heads import (
    OutputLayer,
    find_output_layer,
    linear_head,
    prototype_head,
    zero_head,
)
from sk_meta.functional._losses import cross_entropy_loss, mse_loss
from sk_meta.functional._meta import (
    TaskBatch,
    adapt_and_predict,
    maml_meta_gradient,
    maml_meta_loss,
    reptile_meta_gradient,
)

__all__ = [
    "OutputLayer",
    "TaskBatch",
    "adapt",
    "adapt_and_predict",
    "batched_forward",
    "choose_strategy",
    "cross_entropy_loss",
    "expand_params",
    "find_output_layer",
    "has_batch_norm",
    "linear_head",
    "maml_meta_gradient",
    "maml_meta_loss",
    "mse_loss",
    "outputs_beside_support",
    "prepare_module",
    "prototype_head",
    "reptile_meta_gradient",
    "step_rates",
    "zero_head",
]
