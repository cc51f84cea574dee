"""torch.compile for the meta-training step, with a fallback to eager."""

import warnings

import torch


def resolve_compile_mode(compile, device):
    """The ``torch.compile`` mode for the ``compile`` parameter, or None (eager).

    ``True`` means CUDA graphs (``"reduce-overhead"``) on a GPU, where kernel
    launches dominate small networks, and inductor's default elsewhere.
    """
    if compile is False:
        return None
    if compile is True:
        return "reduce-overhead" if device.type == "cuda" else "default"
    return compile


class CompiledFunction:
    """``torch.compile(function)`` that falls back to ``eager`` if compiling fails.

    Compilation can fail for modules or operations the compiler does not
    support; meta-training then goes on eagerly after one warning rather than
    stopping. The functions compiled here are pure, so running the eager one
    after a failed compiled call is safe.
    """

    def __init__(self, function, eager, mode):
        self.compiled = torch.compile(function, mode=mode)
        self.eager = eager
        self.mode = mode
        self.failed = False

    def __call__(self, *args, **kwargs):
        if self.failed:
            return self.eager(*args, **kwargs)
        if self.mode == "reduce-overhead":
            # each call starts a new generation of CUDA graph outputs
            torch.compiler.cudagraph_mark_step_begin()
        try:
            return self.compiled(*args, **kwargs)
        except Exception as exc:  # any compiler error: warn and go on eagerly
            self.failed = True
            warnings.warn(
                f"torch.compile failed for this module ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); meta-training "
                "continues without compilation",
                UserWarning,
            )
            return self.eager(*args, **kwargs)
