"""Attention that autograd can differentiate twice, for second-order MAML.

``torch.nn.functional.scaled_dot_product_attention`` (behind
``nn.MultiheadAttention`` and the ``nn.Transformer*`` layers) dispatches to
fused kernels whose backward pass has no derivative of its own: second-order
MAML, which differentiates the inner gradients, fails with "derivative for
aten::_scaled_dot_product_flash_attention_for_cpu_backward is not
implemented". The math kernel is written with ordinary differentiable
operations, so it has a double backward; ``vmap`` also batches it, where the
CPU's fused kernel runs task by task through vmap's slow fallback.
"""

import functools

from torch.nn.attention import SDPBackend, sdpa_kernel


def math_attention():
    """Context manager under which attention runs its math kernel.

    ``torch.nn.attention.sdpa_kernel`` sets process-wide flags: another
    thread that computes attention meanwhile also runs the math kernel.

    Returns
    -------
    context : context manager
    """
    return sdpa_kernel(SDPBackend.MATH)


def with_math_attention(forward):
    """``forward`` with attention computed by the math kernel inside each call.

    Parameters
    ----------
    forward : callable

    Returns
    -------
    wrapped : callable
        Takes and returns what ``forward`` does.
    """

    @functools.wraps(forward)
    def wrapped(*args, **kwargs):
        with math_attention():
            return forward(*args, **kwargs)

    return wrapped
