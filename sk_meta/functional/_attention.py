"""Attention that autograd can differentiate twice and ``vmap`` can batch.

``torch.nn.functional.scaled_dot_product_attention`` (behind
``nn.MultiheadAttention`` and the ``nn.Transformer*`` layers) dispatches to
fused kernels whose backward pass has no derivative of its own: second-order
MAML, which differentiates the inner gradients, fails with "derivative for
aten::_scaled_dot_product_flash_attention_for_cpu_backward is not
implemented". The math kernel is made of ordinary differentiable operations,
so it has a double backward, and ``vmap`` batches it; the CPU's fused kernel
has no batching rule and runs task by task through vmap's slow fallback.

Selecting the kernel costs about 10 us per forward pass, a few percent of a
small MLP's meta-iteration, and makes ``torch.compile`` recompile: forward
passes that compute no attention run without it.
"""

import contextlib
import functools
import weakref

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.overrides import TorchFunctionMode

# What computes attention: the kernel dispatcher, nn.MultiheadAttention's
# Python path and the fused inference fast paths of the nn layers.
_ATTENTION_FUNCTIONS = frozenset(
    function for function in (
        F.scaled_dot_product_attention,
        F.multi_head_attention_forward,
        getattr(torch, "_native_multi_head_attention", None),
        getattr(torch, "_transformer_encoder_layer_fwd", None),
    ) if function is not None
)

# module -> whether its forward pass computes attention, once a call has shown it
_USES_ATTENTION = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def math_attention():
    """Compute attention with the math kernel inside the block.

    Also turns off the fused inference fast path of ``nn.MultiheadAttention``
    and ``nn.TransformerEncoderLayer`` (taken in eval mode without
    gradients), which ``vmap`` cannot batch either: predictions then go
    through the same operations as the adaptation.

    Both settings are process-wide (``torch.nn.attention.sdpa_kernel`` and
    ``torch.backends.mha``): attention computed meanwhile in another thread
    takes the same path. They are restored on exit.
    """
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


class _AttentionCalls(TorchFunctionMode):
    """Notes whether attention is computed inside the block."""

    def __init__(self):
        super().__init__()
        self.seen = False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _ATTENTION_FUNCTIONS:
            self.seen = True
        return func(*args, **(kwargs or {}))


def with_math_attention(forward, module):
    """``forward``, computing any attention inside it with the math kernel.

    The first call finds out whether ``module`` computes attention at all
    (``nn.MultiheadAttention``, the ``nn.Transformer*`` layers or a direct
    ``F.scaled_dot_product_attention``), once per module; calls select the
    kernel only if it does. Under ``torch.compile`` the kernel is left to the
    compiler.

    Parameters
    ----------
    forward : callable
        A forward pass of ``module``.
    module : torch.nn.Module

    Returns
    -------
    wrapped : callable
        Takes and returns what ``forward`` does.
    """

    @functools.wraps(forward)
    def wrapped(*args, **kwargs):
        if torch.compiler.is_compiling():
            return forward(*args, **kwargs)
        uses_attention = _USES_ATTENTION.get(module)
        if uses_attention is False:
            return forward(*args, **kwargs)
        if uses_attention is None:
            calls = _AttentionCalls()
            with math_attention(), calls:
                outputs = forward(*args, **kwargs)
            _USES_ATTENTION[module] = calls.seen
            return outputs
        with math_attention():
            return forward(*args, **kwargs)

    return wrapped
