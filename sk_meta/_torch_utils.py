"""Devices, threads, random state and CPU copies: the estimators' torch plumbing."""

import collections
import contextlib
import copy
import math
import numbers
import re
import threading

import numpy as np
import torch
from sklearn.utils._param_validation import StrOptions

from sk_meta.functional._rng import forked_rng

_DEVICE_PATTERN = re.compile(r"^(cpu(:\d+)?|cuda(:\d+)?|mps|auto)$")


class DeviceOptions(StrOptions):
    """Device strings: ``'cpu'`` (or ``'cpu:N'``, which torch takes for the
    one CPU device, as ``torch.device("cpu", N)`` is taken), ``'cuda'``,
    ``'cuda:N'``, ``'mps'``, ``'auto'``.

    A ``StrOptions`` so that scikit-learn's parameter validation accepts it,
    with a pattern for the ``'cuda:N'`` family.
    """

    def __init__(self):
        super().__init__({"cpu", "cpu:N", "cuda", "cuda:N", "mps", "auto"})

    def is_satisfied_by(self, val):
        return isinstance(val, str) and bool(_DEVICE_PATTERN.match(val))


def resolve_device(device):
    """Turn the ``device`` parameter into an available ``torch.device``.

    Raises a ValueError naming the problem when the device does not exist on
    this machine, instead of failing later inside torch.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:  # "garbage", 3.5: torch's own words
        raise ValueError(f"device={device!r} is not a device: {exc}") from None
    if device.type == "cpu":
        return torch.device("cpu")  # "cpu:N" is the one CPU device
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(
            f"device={str(device)!r} is not supported: use 'cpu', 'cuda', 'cuda:N', "
            "'mps' or 'auto'"
        )
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={str(device)!r} was requested, but CUDA is not available "
                f"(torch {torch.__version__}); use device='cpu' or device='auto'"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={str(device)!r} was requested, but only "
                f"{torch.cuda.device_count()} CUDA device(s) are visible"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device='mps' was requested, but MPS is not available")
    return device


_threads_lock = threading.Lock()
_threads_users = 0
_threads_before = None


@contextlib.contextmanager
def torch_threads(n_threads):
    """Run the block with ``n_threads`` torch threads, then restore the setting.

    The setting is process-wide, so estimators computing in several threads
    at once share it: the first to enter records the setting to restore,
    the last to leave restores it, whatever the order in which they finish.
    """
    global _threads_users, _threads_before
    if n_threads is None:
        yield
        return
    if isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral) or (
            n_threads < 1):
        # predict after an invalid set_params: fit would have refused it
        raise ValueError(f"n_threads must be a positive int or None, got {n_threads!r}")
    with _threads_lock:
        if _threads_users == 0:
            _threads_before = torch.get_num_threads()
        _threads_users += 1
        if torch.get_num_threads() != n_threads:
            torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        with _threads_lock:
            _threads_users -= 1
            if _threads_users == 0 and torch.get_num_threads() != _threads_before:
                torch.set_num_threads(_threads_before)


def class_logits(outputs, n_classes, class_codes=None):
    """The logits of ``n_classes`` classes from a network's ``outputs``: the
    first ``n_classes`` (a task may have fewer classes than the network
    outputs), or, with ``class_codes`` (a fit in which classes had
    ``sample_weight`` 0), output ``j`` as class ``class_codes[j]`` and -inf
    (probability 0) for the others."""
    if class_codes is None:
        return outputs[..., :n_classes]
    kept = outputs[..., : len(class_codes)]
    logits = kept.new_full((*kept.shape[:-1], n_classes), -math.inf)
    logits[..., list(class_codes)] = kept
    return logits


def mean_of_probabilities(log_probas):
    """The logarithm of the mean of the probabilities whose logarithms are
    ``log_probas`` (tensors of one shape), computed in log space so that
    probabilities too small for float64 keep a finite logarithm."""
    return torch.logsumexp(torch.stack(list(log_probas)), 0) - math.log(len(log_probas))


def torch_tensor_to_numpy(value):
    """A torch tensor as a numpy array (detached, on the CPU); anything else as is."""
    if isinstance(value, torch.Tensor):
        if value.is_meta:  # else torch's "Cannot copy out of meta tensor"
            raise TypeError(_META_TENSOR)
        return value.detach().cpu().numpy()
    return value


_META_TENSOR = ("a tensor on the 'meta' device holds a shape but no values; pass "
                "one with data (on the CPU or a GPU)")


def seed_torch(seed, device):
    """Seed the generators of the CPU and of ``device``.

    Unlike ``torch.manual_seed``, this does not queue a seed for every CUDA
    device, which costs a stack trace per call before CUDA is initialized.
    """
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(seed)


@contextlib.contextmanager
def seeded_torch(seed, device, *, draws=True):
    """Fork torch's global RNG (CPU and ``device``), seed it, restore it after,
    one thread at a time; ``draws=False`` (nothing inside draws): nothing
    (see :func:`~sk_meta.functional._rng.forked_rng`)."""
    with forked_rng(device, draws=draws):
        if draws:
            seed_torch(seed, device)
        yield


@contextlib.contextmanager
def single_sample_batch_norm_error(what):
    """Turn torch's error for BatchNorm on one sample into one naming ``what``."""
    try:
        yield
    except ValueError as exc:
        if not is_single_sample_batch_norm_error(exc):
            raise
        raise ValueError(single_sample_message(what)) from None


def is_single_sample_batch_norm_error(exc):
    """Whether ``exc`` is torch's refusal of BatchNorm on one value per channel."""
    return (isinstance(exc, ValueError)
            and "Expected more than 1 value per channel" in str(exc))


def single_sample_message(what):
    return (f"{what} has a single sample, which the network's BatchNorm layers "
            "cannot normalize (they need more than one value per channel); give "
            "it at least 2 samples")


def loss_if_finite(loss, tensors):
    """``loss`` if it and every tensor in ``tensors`` are finite, else NaN.

    One scalar to read back instead of one check per tensor (NaN and
    infinities in the norms turn ``0 * norm`` into NaN).
    """
    norms = torch.stack(torch._foreach_norm(list(tensors))).sum()
    return norms.mul_(0).add_(loss)


def draw_seeds(random_state, n):
    """``n`` integer seeds from a ``check_random_state`` object."""
    return [int(s) for s in random_state.randint(np.iinfo(np.int32).max, size=n)]


def to_cpu(obj):
    """A copy of ``obj`` with every tensor and module on the CPU.

    Handles tensors, modules and (nested) dicts, lists and tuples; other
    objects are returned as they are.
    """
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, torch.nn.Module):
        if all(t.device.type == "cpu" for t in _module_tensors(obj)):
            return obj
        return copy.deepcopy(obj).cpu()
    if isinstance(obj, dict):
        items = [(k, to_cpu(v)) for k, v in obj.items()]
        if type(obj) in (dict, collections.OrderedDict):
            return type(obj)(items)
        moved = copy.copy(obj)  # a subclass's constructor may differ (defaultdict)
        moved.update(items)
        return moved
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def _module_tensors(module):
    yield from module.parameters()
    yield from module.buffers()


def is_on_device(module, device):
    """Whether every parameter and buffer of ``module`` is on ``device``."""
    return all(t.device.type == device.type and (
                   device.index is None or t.device.index == device.index)
               for t in _module_tensors(module))


def on_device(module, device):
    """``module.to(device)`` (in place, as ``to`` is), skipped when it is there
    already (``to`` walks every submodule even then: a tenth of a small
    network's ``predict``)."""
    return module if is_on_device(module, device) else module.to(device)
