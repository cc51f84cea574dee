"""The inner loop: a few gradient steps from given parameters, for a batch of tasks."""

import torch


def adapt(forward, params, X, y, *, loss_fn, lr, n_steps, create_graph=False,
          detach=False, optimizer="sgd", betas=(0.0, 0.999), eps=1e-8,
          functional=False):
    """Take ``n_steps`` gradient steps on ``(X, y)`` from ``params``, per task.

    Parameters
    ----------
    forward : callable
        ``forward(params, X) -> outputs`` over a batch of ``B`` tasks (see
        :func:`batched_forward`).
    params : dict of str to Tensor
        Parameters with a leading task dimension ``B``.
    X : Tensor of shape (B, n_samples, ...)
    y : Tensor of shape (B, n_samples, ...)
    loss_fn : callable
        ``loss_fn(outputs, y)``: the sum over tasks of each task's mean loss, so
        that the gradient with respect to a task's parameters is its own.
    lr : float
        Inner learning rate.
    n_steps : int
        Number of gradient steps.
    create_graph : bool, default=False
        Differentiate through the inner gradients (second-order MAML). Without
        it the inner gradients are constants (first-order MAML).
    detach : bool, default=False
        Cut the result from the graph of ``params`` (``fit``, Reptile,
        evaluation): nothing will be differentiated through the adaptation.
    optimizer : {"sgd", "adam"}, default="sgd"
        Inner update rule. ``"adam"`` (the Reptile paper's, with
        ``betas=(0, 0.999)``) starts from a fresh state and needs ``detach``.
    betas, eps : tuple of float, float
        Adam's coefficients.
    functional : bool, default=False
        Take the inner gradients with ``torch.func.grad_and_value`` instead of
        ``torch.autograd.grad``: the same numbers, in a form ``torch.compile``
        can trace as one graph.

    Returns
    -------
    adapted : dict of str to Tensor
        The parameters after ``n_steps`` steps.
    loss : Tensor
        The (detached) loss at the last step, before its update.
    """
    if optimizer == "adam" and not detach:
        raise ValueError("the Adam inner optimizer is only available with detach=True")
    names = list(params)
    if functional:
        params = {name: p.detach() if detach else p for name, p in params.items()}

        def loss_of(task_params):
            return loss_fn(forward(task_params, X), y)

        grad_and_loss = torch.func.grad_and_value(loss_of)
    else:
        params = {
            # parameters outside any graph still need gradients for the inner steps
            name: p.detach().requires_grad_() if detach or not p.requires_grad else p
            for name, p in params.items()
        }
    adam_state = None
    for step in range(1, n_steps + 1):
        # adaptation needs gradients even when called under torch.no_grad()
        with torch.enable_grad():
            if functional:
                grads, loss = grad_and_loss(params)
                grads = [grads[name] for name in names]
                if not create_graph:
                    grads = [g.detach() for g in grads]
            else:
                loss = loss_fn(forward(params, X), y)
                grads = torch.autograd.grad(
                    loss, [params[name] for name in names],
                    create_graph=create_graph, allow_unused=True,
                    materialize_grads=True,
                )
        if optimizer == "adam":
            grads, adam_state = _adam_directions(grads, adam_state, step, betas, eps)
        if detach:
            with torch.no_grad():
                updated = torch._foreach_add(
                    [params[name] for name in names], list(grads), alpha=-lr
                )
            if not functional:
                updated = [p.requires_grad_() for p in updated]
            params = dict(zip(names, updated))
        else:
            params = {name: params[name] - lr * g for name, g in zip(names, grads)}
    if detach:
        params = {name: p.detach() for name, p in params.items()}
    return params, loss.detach()


def _adam_directions(grads, state, step, betas, eps):
    """Adam's update direction for each gradient (times the learning rate, the step)."""
    beta1, beta2 = betas
    if state is None:
        state = ([torch.zeros_like(g) for g in grads],
                 [torch.zeros_like(g) for g in grads])
    first, second = state
    directions = []
    for g, m, v in zip(grads, first, second):
        m.mul_(beta1).add_(g, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        m_hat = m / (1 - beta1**step)
        v_hat = v / (1 - beta2**step)
        directions.append(m_hat / (v_hat.sqrt() + eps))
    return directions, (first, second)
