"""One meta-batch of MAML, first-order MAML or Reptile, as pure functions."""

from typing import NamedTuple

import torch

from sk_meta.functional._adapt import adapt
from sk_meta.functional._forward import expand_params


class TaskBatch(NamedTuple):
    """Tasks of equal shapes stacked along a leading task dimension ``B``.

    ``y_*`` hold class codes (int64) for classification and targets (float)
    for regression. ``n_classes`` is the number of classes of every task in
    the batch (``None`` for regression).
    """

    X_support: torch.Tensor
    y_support: torch.Tensor
    X_query: torch.Tensor
    y_query: torch.Tensor
    n_classes: int | None = None

    @property
    def n_tasks(self):
        return self.X_support.shape[0]


def maml_meta_loss(forward, params, batch, *, loss_fn, lr, n_steps, first_order=False,
                   functional=False):
    """Sum over the batch's tasks of the query loss after adaptation (MAML).

    For each task ``i``, ``θ'ᵢ`` is ``θ`` after ``n_steps`` SGD steps of size
    ``lr`` on the task's support loss; the result is ``Σᵢ L_query,i(θ'ᵢ)``.
    Its gradient with respect to ``params`` is the MAML meta-gradient,
    second-order terms included unless ``first_order``, in which case the
    inner gradients are constants (FOMAML).

    Parameters
    ----------
    forward : callable
        ``forward(params, X)`` over a batch of tasks.
    params : dict of str to Tensor
        The shared initialization ``θ`` (no task dimension).
    batch : TaskBatch
    loss_fn : callable
        ``loss_fn(outputs, y)``, summed over tasks.
    lr : float
    n_steps : int
    first_order : bool, default=False
    functional : bool, default=False
        Inner gradients by ``torch.func`` (traceable by ``torch.compile``).

    Returns
    -------
    loss : Tensor
        Scalar, the sum (not the mean) over tasks.
    """
    task_params = expand_params(params, batch.n_tasks)
    adapted, _ = adapt(
        forward, task_params, batch.X_support, batch.y_support,
        loss_fn=loss_fn, lr=lr, n_steps=n_steps, create_graph=not first_order,
        functional=functional,
    )
    return loss_fn(forward(adapted, batch.X_query), batch.y_query)


def maml_meta_gradient(forward, params, batch, *, loss_fn, lr, n_steps,
                       first_order=False, meta_loss=maml_meta_loss):
    """Gradient of :func:`maml_meta_loss` with respect to ``params``.

    ``meta_loss`` computes the loss itself (a compiled :func:`maml_meta_loss`,
    say); the gradient is taken outside it with ``torch.autograd.grad``.

    Returns
    -------
    grads : dict of str to Tensor
        ``∇θ Σᵢ L_query,i(θ'ᵢ)``, summed over the batch's tasks.
    loss : Tensor
        The detached meta-loss, summed over tasks.
    """
    params = {
        name: p if p.requires_grad else p.detach().requires_grad_()
        for name, p in params.items()
    }
    with torch.enable_grad():
        loss = meta_loss(
            forward, params, batch, loss_fn=loss_fn, lr=lr, n_steps=n_steps,
            first_order=first_order,
        )
        grads = torch.autograd.grad(
            loss, list(params.values()), allow_unused=True, materialize_grads=True
        )
    return dict(zip(params, grads)), loss.detach()


def reptile_meta_gradient(forward, params, batch, *, loss_fn, lr, n_steps,
                          optimizer="sgd", functional=False):
    """Sum over the batch's tasks of ``θ - φᵢ`` (Reptile).

    ``φᵢ`` is ``θ`` after ``n_steps`` steps of the inner optimizer on all of
    task ``i``'s data, support and query together. Divided by the number of
    tasks, it is the direction an outer SGD step of size ``ε`` follows:
    ``θ ← θ - ε (θ - mean φᵢ) = θ + ε (mean φᵢ - θ)``.

    Returns
    -------
    grads : dict of str to Tensor
        ``Σᵢ (θ - φᵢ)`` for each parameter.
    loss : Tensor
        Sum over tasks of the inner loss at the last step.
    """
    X = torch.cat([batch.X_support, batch.X_query], dim=1)
    y = torch.cat([batch.y_support, batch.y_query], dim=1)
    adapted, loss = adapt(
        forward, expand_params(params, batch.n_tasks), X, y,
        loss_fn=loss_fn, lr=lr, n_steps=n_steps, detach=True, optimizer=optimizer,
        functional=functional,
    )
    grads = {
        name: batch.n_tasks * p.detach() - adapted[name].sum(0)
        for name, p in params.items()
    }
    return grads, loss
