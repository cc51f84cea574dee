"""torch's global random number generator, forked one thread at a time."""

import contextlib
import contextvars
import threading

import torch

# torch's generator is one per process: a thread's seeded section (fork,
# seed, draw, restore) must not interleave with another thread's, or a module
# that draws (dropout) gets the other thread's numbers and a fixed
# random_state stops fixing the result
_GLOBAL_RNG_LOCK = threading.RLock()


# what the innermost forked section says of its forward passes: that they
# draw nothing (sk_meta's MLP); a line search then neither reads nor holds
# the generator
_DRAWS_NOTHING = contextvars.ContextVar("sk_meta_draws_nothing", default=False)


@contextlib.contextmanager
def forked_rng(device, *, draws=True):
    """Fork torch's global RNG (CPU and ``device``) and restore it after, with
    no other thread's forked section running meanwhile. ``draws=False``, for
    a section known to draw nothing (sk_meta's MLP): nothing at all, so that
    its threads stay parallel and never reseed another thread's generator
    (and :func:`draws_nothing` says so inside)."""
    token = _DRAWS_NOTHING.set(not draws)
    try:
        if not draws:
            yield
            return
        devices = [device] if device.type == "cuda" else []
        with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=devices):
            yield
    finally:
        _DRAWS_NOTHING.reset(token)


def draws_nothing():
    """Whether the innermost forked section was declared to draw nothing."""
    return _DRAWS_NOTHING.get()
