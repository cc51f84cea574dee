"""torch's global random number generator, forked one thread at a time."""

import contextlib
import threading

import torch

# torch's generator is one per process: a thread's seeded section (fork,
# seed, draw, restore) must not interleave with another thread's, or a module
# that draws (dropout) gets the other thread's numbers and a fixed
# random_state stops fixing the result
_GLOBAL_RNG_LOCK = threading.RLock()


@contextlib.contextmanager
def forked_rng(device, *, exclusive=True):
    """Fork torch's global RNG (CPU and ``device``) and restore it after; with
    ``exclusive``, no other thread's forked section runs meanwhile (pass False
    where nothing inside draws from it, to keep threads parallel)."""
    devices = [device] if device.type == "cuda" else []
    with (_GLOBAL_RNG_LOCK if exclusive else contextlib.nullcontext()), \
            torch.random.fork_rng(devices=devices):
        yield
