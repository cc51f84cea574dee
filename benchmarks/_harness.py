# SPDX-License-Identifier: BSD-3-Clause
"""How the benchmark scripts run and time things.

* ``set_threads``: pin torch, the BLAS pools and later subprocesses to a
  thread count; ``torch_threads``: the same for torch only, for one block,
  then restore.
* ``synchronize``: wait for a device's queued kernels before reading a clock.
* ``interleaved_timing``: run methods A B C A B C ... and report median it/s and
  ratios against a baseline, so slow drifts of a shared machine hit all alike;
  ``ShortWarmup`` and ``round_ratios`` go with it.
* ``peak_rss_in_subprocess``: peak memory growth of one call, measured in a
  fresh interpreter so the allocations of different methods never mix.
"""

import contextlib
import gc
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

REPO_DIR = Path(__file__).resolve().parent.parent
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


# --------------------------------------------------------------------------- #
# Threads and devices
# --------------------------------------------------------------------------- #
def set_threads(n_threads: int = 1) -> None:
    """Use ``n_threads`` threads for the rest of the run.

    torch intra-op (and, when still possible, inter-op) threads, the BLAS and
    OpenMP pools that numpy and scikit-learn use (tiny scikit-learn fits are
    many times slower with more threads on a shared machine), and the
    environment of subprocesses started later.
    """
    from threadpoolctl import threadpool_limits

    for var in THREAD_ENV_VARS:
        os.environ[var] = str(n_threads)
    torch.set_num_threads(n_threads)
    try:
        torch.set_num_interop_threads(n_threads)
    except RuntimeError:
        pass  # only settable before the first parallel work; harmless to skip
    threadpool_limits(n_threads)


@contextlib.contextmanager
def torch_threads(n_threads: int):
    """Run the block with ``n_threads`` torch threads, then restore the setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def synchronize(device: torch.device | str) -> None:
    """Wait for the device's queued kernels, so wall-clock timings are complete."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------- #
# Interleaved timing
# --------------------------------------------------------------------------- #
@dataclass
class InterleavedTiming:
    """What ``interleaved_timing`` measured; dicts are keyed by method name."""

    baseline: str
    median_it_per_s: dict[str, float]
    ratio_to_baseline: dict[str, float]  # median it/s over the baseline's
    samples: dict[str, list[float]]  # it/s of every timed repeat
    results: dict[str, list] = field(default_factory=dict)  # runners' returns

    def rows(self) -> list[dict]:
        """One row per method, ready for ``_report.format_table``."""
        return [
            {
                "method": name,
                "it/s (median)": self.median_it_per_s[name],
                "min": min(self.samples[name]),
                "max": max(self.samples[name]),
                f"x {self.baseline}": self.ratio_to_baseline[name],
            }
            for name in self.median_it_per_s
        ]


def _as_it_per_s(result) -> float:
    if isinstance(result, Mapping):
        return float(result["it_per_s"])
    return float(result)


def interleaved_timing(runners: Mapping[str, Callable[[], object]], repeats: int = 5,
                       warmup: int = 1, baseline: str | None = None,
                       ) -> InterleavedTiming:
    """Time several methods alternately: A B C, A B C, ...

    Each runner does one measurement and returns its rate, either as a number of
    iterations per second or as a mapping with an ``"it_per_s"`` key (the
    ``run_*`` functions of ``benchmarks.baselines`` return such dicts). Runners time
    themselves so that their setup (model creation, data) stays out of the rate.

    Parameters
    ----------
    runners : mapping of str to callable
        Method name -> zero-argument callable; insertion order is run order.
    repeats : int, default=5
        Timed rounds; the median over rounds is reported.
    warmup : int, default=1
        Untimed rounds first, also interleaved (first-call allocations, caches).
    baseline : str, default=None
        Name the ratios are taken against; the first runner when None.
    """
    if not runners:
        raise ValueError("no runners given")
    baseline = next(iter(runners)) if baseline is None else baseline
    if baseline not in runners:
        raise ValueError(f"baseline {baseline!r} is not one of {list(runners)}")
    samples = {name: [] for name in runners}
    results = {name: [] for name in runners}
    for round_index in range(warmup + repeats):
        for name, runner in runners.items():
            gc.collect()  # leftover garbage of the previous method is not ours
            result = runner()
            if round_index >= warmup:
                samples[name].append(_as_it_per_s(result))
                results[name].append(result)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    ratios = {name: rate / medians[baseline] for name, rate in medians.items()}
    return InterleavedTiming(baseline, medians, ratios, samples, results)


def round_ratios(samples_a: Sequence[float], samples_b: Sequence[float]) -> list:
    """Rate ratio A/B of each interleaved round (A and B ran back to back)."""
    return [a / b for a, b in zip(samples_a, samples_b)]


class ShortWarmup:
    """A zero-argument runner for ``interleaved_timing``.

    Calls ``run(n_iter)``; the first ``n_warmup`` calls (the harness's untimed
    warm-up rounds) use ``warmup_n_iter`` instead, so a slow workload does not
    spend a full round warming up.
    """

    def __init__(self, run: Callable[[int], dict], n_iter: int,
                 warmup_n_iter: int | None = None, n_warmup: int = 1):
        self.run = run
        self.n_iter = n_iter
        self.warmup_n_iter = n_iter if warmup_n_iter is None else warmup_n_iter
        self.n_warmup = n_warmup
        self.calls = 0

    def __call__(self) -> dict:
        n_iter = self.warmup_n_iter if self.calls < self.n_warmup else self.n_iter
        self.calls += 1
        return self.run(n_iter)


# --------------------------------------------------------------------------- #
# Peak memory in a fresh interpreter
# --------------------------------------------------------------------------- #
def _function_path(function: str | Callable) -> tuple[str, str]:
    """(importable module name, qualified name) of a module-level function.

    A function of the running script (``__main__``) is named by the module the
    script was started as (``python -m benchmarks.bench_memory``), so the
    child imports it like any other module, without running its ``main``.
    """
    if isinstance(function, str):
        module_name, _, qualname = function.partition(":")
        if not qualname:
            raise ValueError(f"expected 'module:function', got {function!r}")
        return module_name, qualname
    module_name, qualname = function.__module__, function.__qualname__
    if "<locals>" in qualname or "<lambda>" in qualname:
        raise ValueError("only module-level functions can run in a subprocess")
    if module_name == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        if spec is None:
            raise ValueError(
                "functions of a script run by path cannot be imported in a "
                "subprocess; run it as a module: python -m benchmarks.<script>")
        module_name = spec.name
    return module_name, qualname


_CHILD_CODE = r"""
import importlib, os, pickle, resource, sys
payload_path = sys.argv[1]
with open(payload_path, "rb") as f:
    payload = pickle.load(f)

def load(module_name, qualname):
    target = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target

import torch
torch.set_num_threads(payload["n_threads"])
function = load(*payload["function"])
inputs = ()
if payload["setup"] is not None:
    inputs = load(*payload["setup"])(*payload["setup_args"])
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)

def rss_bytes(field):  # VmRSS (now) or VmHWM (peak) from /proc, Linux only
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(field)

def reset_peak():  # Linux >= 4.0: writing 5 to clear_refs resets VmHWM
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False

if payload["warmup_args"] is not None:
    # Untimed first call: lazily loaded kernels and code pages count as RSS but
    # are not the method's memory. malloc_trim hands the freed heap back, so the
    # measured call cannot hide in memory the warm-up left in malloc's free lists.
    function(*inputs, *payload["warmup_args"], **payload["kwargs"])
    import gc, ctypes
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass

# ru_maxrss is kB on Linux, bytes on macOS.
ru_unit = 1 if sys.platform == "darwin" else 1024
try:
    before = rss_bytes("VmRSS")
    exact = reset_peak()
except OSError:
    before, exact = None, False
if not exact:  # fall back to the process-lifetime peak: growth may under-read
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * ru_unit
result = function(*inputs, *payload["args"], **payload["kwargs"])
if exact:
    peak = rss_bytes("VmHWM")
else:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * ru_unit
with open(payload_path, "wb") as f:
    pickle.dump({"before_bytes": before, "peak_bytes": peak, "exact": exact,
                 "result": result}, f)
"""


def peak_rss_in_subprocess(function: str | Callable, args: Sequence = (),
                           kwargs: Mapping | None = None, *,
                           setup: str | Callable | None = None,
                           setup_args: Sequence = (),
                           warmup_args: Sequence | None = None, n_threads: int = 1,
                           timeout: float | None = None) -> dict:
    """Peak resident-memory growth of ``function(*setup(...), *args, **kwargs)``.

    Runs in a fresh Python so that the memory one method held (or the allocator
    kept) is never charged to the next. ``setup(*setup_args)`` runs first, and its
    result (a tuple is unpacked) becomes the leading positional arguments: build
    the data there so it is not counted. With ``warmup_args``,
    ``function(*setup(...), *warmup_args, **kwargs)`` runs once, unmeasured,
    before (e.g. one iteration): the first use of torch ops pages in tens of MB
    of library code that every method pays alike. Functions are ``"module:function"``
    strings or module-level callables; ``args``, ``kwargs`` and the results must
    pickle. The child runs in the repository root, so ``benchmarks.*`` modules
    import there as they do in a script started with ``python -m``.

    On Linux the peak is reset after setup (``/proc/self/clear_refs``), so the
    growth is exact: peak RSS during the call minus RSS just before it. Elsewhere
    it is the change of ``ru_maxrss``, which under-reads when setup peaked higher.

    Returns
    -------
    dict
        ``peak_rss_growth_mb``, ``peak_rss_mb``, ``rss_before_mb``,
        ``exact`` (bool) and ``result`` (what ``function`` returned).
    """
    payload = {
        "n_threads": n_threads,
        "function": _function_path(function),
        "setup": None if setup is None else _function_path(setup),
        "setup_args": tuple(setup_args),
        "args": tuple(args),
        "warmup_args": None if warmup_args is None else tuple(warmup_args),
        "kwargs": dict(kwargs or {}),
    }
    env = dict(os.environ, **dict.fromkeys(THREAD_ENV_VARS, str(n_threads)))
    with tempfile.TemporaryDirectory() as tmp:
        payload_path = os.path.join(tmp, "payload.pkl")
        with open(payload_path, "wb") as f:
            pickle.dump(payload, f)
        completed = subprocess.run(
            [sys.executable, "-c", _CHILD_CODE, payload_path],
            env=env, cwd=REPO_DIR, capture_output=True, text=True, timeout=timeout,
        )
        if completed.returncode != 0:
            raise RuntimeError(
                f"memory subprocess failed ({completed.returncode}):\n"
                f"{completed.stderr[-4000:]}"
            )
        with open(payload_path, "rb") as f:
            measured = pickle.load(f)
    mb = 1024 * 1024
    return {
        "peak_rss_growth_mb": max(measured["peak_bytes"] - measured["before_bytes"],
                                  0) / mb,
        "peak_rss_mb": measured["peak_bytes"] / mb,
        "rss_before_mb": measured["before_bytes"] / mb,
        "exact": measured["exact"],
        "result": measured["result"],
    }
