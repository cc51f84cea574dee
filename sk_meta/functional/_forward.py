"""Forward passes over a batch of tasks, each task with its own parameters."""

import copy

import torch
from torch.func import functional_call, replace_all_batch_norm_modules_, vmap


def prepare_module(module):
    """Copy ``module`` into the form the functional core runs.

    The copy's BatchNorm layers keep no running statistics, so they always
    normalize with the statistics of the batch at hand, in the inner steps, on
    the query set and at prediction time alike: the MAML paper's choice, and
    the only one under which a meta-batch can be batched with ``vmap``. The
    user's module is never modified.
    """
    module = copy.deepcopy(module)
    replace_all_batch_norm_modules_(module)
    return module


def expand_params(params, n_tasks):
    """View each parameter with a leading task dimension of size ``n_tasks``."""
    return {name: p.expand(n_tasks, *p.shape) for name, p in params.items()}


def _loop_forward(module, buffers, params, X):
    outputs = [
        functional_call(
            module, ({name: p[i] for name, p in params.items()}, buffers), (X[i],)
        )
        for i in range(X.shape[0])
    ]
    return torch.stack(outputs)


def batched_forward(module, buffers=None, strategy="auto"):
    """Return ``forward(params, X)`` that runs ``module`` on a batch of tasks.

    Parameters
    ----------
    module : torch.nn.Module
        The network (as returned by :func:`prepare_module`).
    buffers : dict of str to Tensor, optional
        Buffers shared by all tasks.
    strategy : {"auto", "native", "vmap", "loop"}, default="auto"
        ``"native"`` uses the module's own ``forward_batched(params, X)``;
        ``"vmap"`` maps ``functional_call`` over the tasks; ``"loop"`` calls
        it once per task (for modules ``vmap`` cannot batch, such as RNNs).
        ``"auto"`` picks ``"native"`` when the module has ``forward_batched``
        and ``"vmap"`` otherwise.

    Returns
    -------
    forward : callable
        ``forward(params, X)`` with ``params`` a dict of tensors of shape
        ``(B, *parameter_shape)`` and ``X`` of shape ``(B, n_samples, ...)``;
        returns the outputs of shape ``(B, n_samples, ...)``.
    """
    buffers = {} if buffers is None else buffers
    if strategy == "auto":
        strategy = "native" if hasattr(module, "forward_batched") else "vmap"
    if strategy == "native":
        return module.forward_batched
    if strategy == "loop":
        return lambda params, X: _loop_forward(module, buffers, params, X)
    if strategy == "vmap":
        def forward_one(params, X):
            return functional_call(module, (params, buffers), (X,))

        vmapped = vmap(forward_one, randomness="different")

        def forward(params, X):
            # vmap over a single task only adds overhead (about 30% on CPU convs)
            if X.shape[0] == 1:
                return _loop_forward(module, buffers, params, X)
            return vmapped(params, X)

        return forward
    raise ValueError(f"unknown strategy {strategy!r}")
