"""torch.compile for the meta-training step, with a fallback to eager."""

import contextlib

import torch

from sk_meta._errors import warn_user
from sk_meta.exceptions import CompileWarning


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


def _skip_isa_probe():
    """Let inductor trust the CPU's flags for its vector instruction set.

    Otherwise every new process builds and loads a test library per
    instruction set before compiling for the CPU: 8 to 9 s of the 11 s a
    warm-cache compilation of sinusoid MAML took on the 2-vCPU machine. A
    compiler that cannot build for the CPU's instruction set makes
    compilation fail, and meta-training goes on eagerly. A value the user
    set is kept.
    """
    from torch._inductor import config

    if config.cpp.vec_isa_ok is not None:
        return contextlib.nullcontext()
    return config.patch({"cpp.vec_isa_ok": True})


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
            with _skip_isa_probe():
                return self.compiled(*args, **kwargs)
        except Exception as exc:  # any compiler error: warn and go on eagerly
            self.failed = True
            warn_user(
                f"torch.compile failed for this module ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); meta-training "
                "continues without compilation",
                CompileWarning,
            )
            return self.eager(*args, **kwargs)
