"""One meta-batch of MAML, first-order MAML or Reptile, as pure functions."""

from typing import NamedTuple

import torch

from sk_meta._checks import check_positive_int
from sk_meta.functional._adapt import adapt, input_dtype_error
from sk_meta.functional._forward import expand_params


class TaskBatch(NamedTuple):
    """Tasks of equal shapes stacked along a leading task dimension ``B``.

    ``y_*`` hold class codes (int64) for classification and targets (float)
    for regression. ``n_classes`` is the number of classes of every task in
    the batch (``None`` for regression).

    Parameters
    ----------
    X_support, y_support : Tensor
        Support inputs and labels, of shapes ``(B, n_support, ...)`` and
        ``(B, n_support[, ...])``.
    X_query, y_query : Tensor
        Query inputs and labels, likewise.
    n_classes : int, default=None
        Classes per task; None for regression.
    """

    X_support: torch.Tensor
    y_support: torch.Tensor
    X_query: torch.Tensor
    y_query: torch.Tensor
    n_classes: int | None = None

    @property
    def n_tasks(self):
        return self.X_support.shape[0]


def _check_batch(batch):
    """A TaskBatch whose four tensors agree on the number of tasks, and X
    with y on the number of samples: vmap's own error names neither."""
    if not isinstance(batch, TaskBatch):
        raise TypeError(f"batch must be a TaskBatch, got {type(batch).__name__}")
    shapes = {name: tuple(getattr(batch, name).shape) for name in
              ("X_support", "y_support", "X_query", "y_query")}
    if any(len(shape) < 2 for shape in shapes.values()) or len(
            {shape[0] for shape in shapes.values()}) != 1 or (
            shapes["X_support"][1] != shapes["y_support"][1]) or (
            shapes["X_query"][1] != shapes["y_query"][1]):
        raise ValueError(
            "batch needs X_support, y_support, X_query and y_query of one number "
            "of tasks B and X of as many samples as y, as (B, n_samples, ...) "
            "and (B, n_samples[, ...]); got shapes "
            + ", ".join(f"{name} {shape}" for name, shape in shapes.items()))


def maml_meta_loss(forward, params, batch, *, loss_fn, lr, n_steps, first_order=False,
                   functional=False, task_params=None, trainable=None,
                   step_weights=None, query_loss_fn=None):
    """Sum over the batch's tasks of the query loss after adaptation (MAML).

    For each task ``i``, ``θ'ᵢ`` is ``θ`` after ``n_steps`` SGD steps on the
    task's support loss; the result is ``Σᵢ L_query,i(θ'ᵢ)``. Its gradient
    with respect to ``params`` (and to tensor learning rates) is the MAML
    meta-gradient, second-order terms included unless ``first_order``, in
    which case the inner gradients are constants (FOMAML).

    Parameters
    ----------
    forward : callable
        ``forward(params, X)`` over a batch of tasks.
    params : dict of str to Tensor
        The shared initialization ``θ`` (no task dimension).
    batch : TaskBatch
    loss_fn : callable
        ``loss_fn(outputs, y)``, summed over tasks.
    lr : float, dict or callable
        Inner learning rate(s), as in :func:`adapt`.
    n_steps : int
    first_order : bool, default=False
    functional : bool, default=False
        Inner gradients by ``torch.func`` (traceable by ``torch.compile``).
    task_params : dict of str to Tensor, default=None
        Each task's starting point, with the task dimension, computed from
        ``params`` (a head initialized per task, say); by default ``params``
        expanded over the tasks.
    trainable : collection of str, default=None
        The parameters that adapt (see :func:`adapt`); ``None``: all.
    step_weights : Tensor of shape (n_steps,), default=None
        MAML++'s multi-step loss: ``Σₛ wₛ Σᵢ L_query,i(θᵢ⁽ˢ⁾)`` over the
        parameters after each step ``s``, instead of the last step's alone.
    query_loss_fn : callable, default=None
        The loss on the query sets, if not ``loss_fn`` (the support loss of
        the inner steps may weigh classes that the query loss does not).

    Returns
    -------
    loss : Tensor
        Scalar, the sum (not the mean) over tasks.
    """
    # without a step the init is trained as one network, not meta-learned
    check_positive_int(n_steps, "n_steps")
    _check_batch(batch)
    if batch.X_query.shape[1] == 0:
        # the mean over no samples: a NaN loss, and gradients of zero
        raise ValueError(
            f"the query sets hold no samples (X_query of shape "
            f"{tuple(batch.X_query.shape)}): the query loss of an empty task is "
            "not a number")
    if task_params is None:
        task_params = expand_params(params, batch.n_tasks)
    result = adapt(
        forward, task_params, batch.X_support, batch.y_support,
        loss_fn=loss_fn, lr=lr, n_steps=n_steps, create_graph=not first_order,
        functional=functional, trainable=trainable,
        trajectory=step_weights is not None,
    )
    query_loss_fn = loss_fn if query_loss_fn is None else query_loss_fn
    if step_weights is not None:
        step_weights = torch.as_tensor(step_weights)
        if tuple(step_weights.shape) != (n_steps,):
            raise ValueError(f"step_weights needs one weight per step ({n_steps}), "
                             f"got shape {tuple(step_weights.shape)}")
    try:
        if step_weights is None:
            return query_loss_fn(forward(result[0], batch.X_query), batch.y_query)
        losses = torch.stack([query_loss_fn(forward(step, batch.X_query),
                                            batch.y_query) for step in result[2]])
    except RuntimeError as exc:
        renamed = input_dtype_error(exc, forward, task_params, batch.X_query,
                                    "batch.X_query")
        if renamed is None:
            raise
        raise renamed from exc
    return (step_weights.to(losses.dtype) * losses).sum()


def maml_meta_gradient(forward, params, batch, *, loss_fn, lr, n_steps,
                       first_order=False, meta_loss=maml_meta_loss, **options):
    """Gradient of :func:`maml_meta_loss` with respect to ``params``.

    ``meta_loss`` computes the loss itself (a compiled :func:`maml_meta_loss`,
    say); the gradient is taken outside it with ``torch.autograd.grad``.
    Gradients of learned (tensor) rates are not returned: differentiate
    :func:`maml_meta_loss` with respect to them yourself.

    Parameters
    ----------
    forward, params, batch, loss_fn, lr, n_steps, first_order
        As in :func:`maml_meta_loss`.
    meta_loss : callable, default=maml_meta_loss
        Called with the same arguments; returns the scalar meta-loss.
    **options
        Passed on to ``meta_loss``: :func:`maml_meta_loss`'s
        ``functional``, ``task_params`` (computed from ``params`` that
        require grad, so that the gradient reaches them), ``trainable``
        (ANIL: ``trainable={"head.weight", "head.bias"}``) and
        ``step_weights``.

    Returns
    -------
    grads : dict of str to Tensor
        ``∇θ Σᵢ L_query,i(θ'ᵢ)``, summed over the batch's tasks.
    loss : Tensor
        The detached meta-loss, summed over tasks.
    """
    if options.get("task_params") is not None and not all(
            p.requires_grad for p in params.values()):
        raise ValueError(
            "task_params is given, but some params do not require grad: the "
            "gradient cannot reach params through task_params computed from them "
            "(it would be all zeros). Pass params with requires_grad=True and "
            "compute task_params from those"
        )
    params = {
        name: p if p.requires_grad else p.detach().requires_grad_()
        for name, p in params.items()
    }
    with torch.enable_grad():
        loss = meta_loss(
            forward, params, batch, loss_fn=loss_fn, lr=lr, n_steps=n_steps,
            first_order=first_order, **options,
        )
        grads = torch.autograd.grad(
            loss, list(params.values()), allow_unused=True, materialize_grads=True
        )
    return dict(zip(params, grads)), loss.detach()


def reptile_meta_gradient(forward, params, batch, *, loss_fn, lr, n_steps,
                          optimizer="sgd", functional=False, task_params=None,
                          trainable=None, reinitialized=()):
    """Sum over the batch's tasks of ``θ - φᵢ`` (Reptile).

    ``φᵢ`` is ``θ`` after ``n_steps`` steps of the inner optimizer on all of
    task ``i``'s data, support and query together. Divided by the number of
    tasks, it is the direction an outer SGD step of size ``ε`` follows:
    ``θ ← θ - ε (θ - mean φᵢ) = θ + ε (mean φᵢ - θ)``.

    Parameters
    ----------
    forward, params, batch, loss_fn, lr, n_steps
        As in :func:`maml_meta_loss`.
    optimizer : {"sgd", "adam"}, default="sgd"
        The inner optimizer (see :func:`adapt`).
    functional : bool, default=False
        Inner gradients by ``torch.func`` (see :func:`adapt`).
    task_params : dict of str to Tensor, default=None
        Each task's starting point, as in :func:`maml_meta_loss`.
    trainable : collection of str, default=None
        The parameters that adapt; the others get a zero direction.
    reinitialized : collection of str, default=()
        Parameters whose start in ``task_params`` is not ``θ`` (a head
        initialized per task): ``θ`` plays no part in the task, so their
        direction is zero.

    Returns
    -------
    grads : dict of str to Tensor
        ``Σᵢ (θ - φᵢ)`` for each parameter.
    loss : Tensor
        Sum over tasks of the inner loss at the last step.
    """
    check_positive_int(n_steps, "n_steps")  # no step: no direction
    if isinstance(reinitialized, str):
        raise TypeError("reinitialized must be a collection of parameter names, "
                        f"not one string ({reinitialized!r})")
    still = set(reinitialized)
    unknown = sorted(still - set(params), key=str)
    if unknown:  # as trainable's: a misspelt head would get a direction
        raise ValueError(f"reinitialized names parameters that params lacks: {unknown}")
    if trainable is not None and not isinstance(trainable, str):
        trainable = frozenset(trainable)  # read once: adapt reads it too
        still |= set(params) - trainable
    _check_batch(batch)
    X = torch.cat([batch.X_support, batch.X_query], dim=1)
    y = torch.cat([batch.y_support, batch.y_query], dim=1)
    if task_params is None:
        task_params = expand_params(params, batch.n_tasks)
    adapted, loss = adapt(
        forward, task_params, X, y,
        loss_fn=loss_fn, lr=lr, n_steps=n_steps, detach=True, optimizer=optimizer,
        functional=functional, trainable=trainable,
    )
    return {
        name: (torch.zeros_like(p) if name in still
               else batch.n_tasks * p.detach() - adapted[name].sum(0))
        for name, p in params.items()
    }, loss


def adapt_and_predict(forward, task_params, X_support, y_support, X_query, *,
                      loss_fn, lr, n_steps, predict=None, **adapt_options):
    """Adapt each task's parameters on its support set, then predict its query set.

    Validation during meta-training and ``fit`` followed by ``predict`` both
    go through this function, so they cannot disagree.

    Parameters
    ----------
    forward : callable
        ``forward(params, X)`` over a batch of tasks.
    task_params : dict of str to Tensor
        Each task's starting point (with the task dimension).
    X_support, y_support, X_query : Tensor
        With a leading task dimension.
    loss_fn, lr, n_steps : callable, float and int
        As in :func:`adapt`.
    predict : callable, default=None
        ``predict(adapted, X_query) -> outputs``; by default ``forward``
        under ``torch.no_grad()``.
    **adapt_options
        Further options of :func:`adapt` (``optimizer``, ``trainable``...).

    Returns
    -------
    adapted : dict of str to Tensor
        The adapted parameters (detached).
    outputs : Tensor of shape (B, n_query, ...)
        Their outputs on the query sets.
    """
    adapted, _ = adapt(forward, task_params, X_support, y_support, loss_fn=loss_fn,
                       lr=lr, n_steps=n_steps, detach=True, **adapt_options)
    try:
        with torch.no_grad():
            if predict is None:
                outputs = forward(adapted, X_query)
            else:
                outputs = predict(adapted, X_query)
    except RuntimeError as exc:
        renamed = input_dtype_error(exc, forward, adapted, X_query, "X_query")
        if renamed is None:
            raise
        raise renamed from exc
    return adapted, outputs
