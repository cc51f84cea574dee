"""torch's global random number generator, forked one thread at a time."""

import contextlib
import copy
import threading
import weakref

import torch

# torch's generator is one per process: a thread's seeded section (fork,
# seed, draw, restore) must not interleave with another thread's, or a module
# that draws (dropout) gets the other thread's numbers and a fixed
# random_state stops fixing the result
_GLOBAL_RNG_LOCK = threading.RLock()


@contextlib.contextmanager
def forked_rng(device, *, draws=True):
    """Fork torch's global RNG (CPU and ``device``) and restore it after, with
    no other thread's forked section running meanwhile. ``draws=False``
    (nothing inside draws from it): nothing at all, so that threads stay
    parallel and no other thread's generator is touched."""
    if not draws:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=devices):
        yield


_DRAWS = weakref.WeakKeyDictionary()


def draws_random_numbers(module, probe):
    """Whether a forward pass of ``module`` in train mode on ``probe`` draws
    from torch's generators (dropout, input noise), found by running a copy
    of it once (the answer is kept for the module). Assumed when it cannot
    be run (a copy refused, a forward that fails)."""
    known = _DRAWS.get(module)
    if known is not None:
        return known
    try:
        trial = copy.deepcopy(module).train()
    except Exception:
        return True
    # run where the module is (an init kept on the CPU, probed for a GPU fit)
    where = next((p.device for p in module.parameters()), probe.device)
    probe = probe.to(where)
    generators = [torch.default_generator]
    if probe.device.type == "cuda":
        generators.append(torch.cuda.default_generators[
            probe.device.index if probe.device.index is not None
            else torch.cuda.current_device()])
    with forked_rng(probe.device):
        before = [generator.get_state() for generator in generators]
        try:
            with torch.no_grad():
                trial(probe)
        except Exception:
            return True
        draws = any(not torch.equal(generator.get_state(), state)
                    for generator, state in zip(generators, before))
    _DRAWS[module] = draws
    return draws
