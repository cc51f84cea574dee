# SPDX-License-Identifier: BSD-3-Clause
"""What the ``bench_*.py`` scripts share.

* ``make_parser``: ``--quick``, ``--device`` and (optionally) ``--omniglot-path``.
* ``machine_info`` / ``print_header``: CPU, cores, load, torch, device, threads.
* ``save_results``: ``benchmarks/results/<name>.json`` (git-ignored).
* ``sk_meta_module_like``: sk_meta's own network (``MLP`` with its batched
  forward pass, or ``Conv4``) holding the baselines' seeded initial weights, so
  sk_meta and the baselines start from the same point.
* ``make_sk_estimator`` / ``time_sk_meta``: an estimator for a workload, and
  meta-training through the public API (``meta_partial_fit`` on numpy tasks)
  timed by wall clock, one-off setup excluded.
* ``ShortWarmup``: a runner for ``interleaved_timing`` whose untimed warm-up
  calls run fewer iterations (for slow workloads).
"""

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
for _path in (str(REPO_DIR), str(BENCH_DIR)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import numpy as np
import torch
from _baselines import DEFAULT_OMNIGLOT_PATH, Workload, synchronize
from _stats import cpu_model
from torch import nn

NOISE_NOTE = (
    "Absolute numbers are noisy (a small shared machine: other processes run "
    "beside the benchmark). Methods are interleaved (A B A B) in one process, so "
    "the ratios are the numbers to trust."
)


# --------------------------------------------------------------------------- #
# Command line, machine, results
# --------------------------------------------------------------------------- #
def make_parser(description: str, *, omniglot: bool = False) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true",
                        help="about a minute (default: the full run, a few minutes)")
    parser.add_argument("--device", default="cpu",
                        help="torch device: cpu (default), cuda, cuda:N")
    if omniglot:
        parser.add_argument("--omniglot-path", default=str(DEFAULT_OMNIGLOT_PATH),
                            help="omniglot28.npz (default: %(default)s)")
    return parser


def parse_device(parser: argparse.ArgumentParser, name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        parser.error(f"--device {name!r}: {exc}")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {name!r}: CUDA is not available "
                     f"(torch {torch.__version__})")
    return device


def _version(name: str) -> str | None:
    try:
        module = __import__(name)
    except Exception:  # not installed, or broken: the header must still print
        return None
    return getattr(module, "__version__", "?")


def machine_info(device: torch.device) -> dict:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    info = {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "sk_meta": _version("sk_meta"),
        "learn2learn": _version("learn2learn"),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def print_header(title: str, info: dict) -> None:
    print(f"# {title}\n")
    print(f"- machine: {info['cpu']}, {info['logical_cores']} logical cores "
          f"({info['usable_cores']} usable), load average "
          f"{' / '.join(map(str, info['load_average_1_5_15']))}")
    print(f"- python {info['python']}, torch {info['torch']}, sk_meta "
          f"{info['sk_meta']}, learn2learn {info['learn2learn']}")
    device = info["device"]
    if "gpu" in info:
        device += f" ({info['gpu']}, CUDA {info['cuda']})"
    print(f"- device: {device}; torch threads: {info['torch_threads']} "
          f"(OMP_NUM_THREADS={info['OMP_NUM_THREADS']})")
    print(f"- {NOISE_NOTE}\n", flush=True)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    return str(obj)


def save_results(name: str, payload: dict) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    with open(path, "w") as f:
        json.dump(_jsonable(payload), f, indent=2)
    print(f"\nresults written to {path}")
    return path


def verdict(value: float, target: float) -> str:
    return "PASS" if value >= target else "FAIL"


def round_ratios(samples_a: Sequence[float], samples_b: Sequence[float]) -> list:
    """Rate ratio A/B of each interleaved round (A and B ran back to back)."""
    return [a / b for a, b in zip(samples_a, samples_b)]


# --------------------------------------------------------------------------- #
# sk_meta on the baselines' workloads
# --------------------------------------------------------------------------- #
def _copy_parameters(source: nn.Module, target: nn.Module) -> None:
    source_params = list(source.parameters())
    target_params = list(target.parameters())
    shapes = [tuple(p.shape) for p in source_params]
    if shapes != [tuple(p.shape) for p in target_params]:
        raise ValueError(f"parameter shapes differ: {shapes} vs "
                         f"{[tuple(p.shape) for p in target_params]}")
    with torch.no_grad():
        for s, t in zip(source_params, target_params):
            t.copy_(s)


def sk_meta_module_like(workload: Workload, seed: int = 0) -> nn.Module:
    """sk_meta's network for ``workload``, holding the baseline's initial weights.

    MLP workloads get ``sk_meta.models.MLP`` (the default network of the
    estimators, with its hand-batched ``forward_batched``); conv workloads get
    ``sk_meta.models.Conv4``. Parameters are copied in order from
    ``workload.make_module(seed)``, so every method starts from the same init.
    """
    from sk_meta.models import MLP, Conv4

    reference = workload.make_module(seed)
    layers = list(reference.children())
    if workload.is_mlp:
        linears = [m for m in layers if isinstance(m, nn.Linear)]
        module = MLP(linears[0].in_features,
                     tuple(m.out_features for m in linears[:-1]),
                     linears[-1].out_features)
    else:
        convs = [m for m in layers if isinstance(m, nn.Conv2d)]
        linear = [m for m in layers if isinstance(m, nn.Linear)][-1]
        module = Conv4(in_channels=convs[0].in_channels,
                       n_outputs=linear.out_features,
                       n_filters=convs[0].out_channels)
    _copy_parameters(reference, module)
    return module


ALGORITHMS = ("maml", "fomaml", "reptile")


def make_sk_estimator(workload: Workload, algorithm: str = "maml", *,
                      module: nn.Module | None = None,
                      device: torch.device | str = "cpu", n_threads: int = 1,
                      seed: int = 0, **params):
    """An sk_meta estimator with the workload's hyperparameters.

    ``module`` defaults to ``sk_meta_module_like(workload, seed)``. Reptile uses
    the workload's outer optimizer (Adam, as the ``reptile_loop`` baseline).
    Extra ``params`` (e.g. ``tasks_per_chunk``) go to the estimator.
    """
    import sk_meta

    hp = workload.hyperparams
    classification = hp["loss"] == "cross_entropy"
    kind = "Classifier" if classification else "Regressor"
    prefix = {"maml": "MAML", "fomaml": "FOMAML", "reptile": "Reptile"}[algorithm]
    estimator_class = getattr(sk_meta, prefix + kind)
    if module is None:
        module = sk_meta_module_like(workload, seed)
    kwargs = {
        "module": module,
        "inner_lr": hp["inner_lr"],
        "inner_steps": hp["inner_steps"],
        "meta_batch_size": hp["meta_batch_size"],
        "meta_lr": hp["meta_lr"],
        "meta_optimizer": hp["meta_optimizer"],
        "n_threads": n_threads,
        "device": str(device),
        "random_state": seed,
    }
    kwargs.update(params)
    return estimator_class(**kwargs)


def time_sk_meta(make_estimator: Callable[[], object], tasks: Sequence,
                 n_iter: int, batch_size: int,
                 device: torch.device | str = "cpu") -> dict:
    """Meta-train through the public API and time it by wall clock.

    The first meta-batch goes through an untimed ``meta_partial_fit`` (it builds
    the network, the optimizer and the batched forward pass: one-off setup, as
    the baselines build their module outside their timer). Meta-batches
    ``1 .. n_iter - 1`` then go through one timed ``meta_partial_fit``: one
    pass, in order, exactly the tasks the baselines see. Numpy validation,
    stacking and the host-to-device copies are inside the timer.

    Returns ``it_per_s`` and ``final_loss`` (mean query loss of the last
    meta-batch, as the baselines report it) plus ``loss_curve``.
    """
    if n_iter < 2:
        raise ValueError("time_sk_meta needs n_iter >= 2 (one untimed warm-up)")
    if len(tasks) < n_iter * batch_size:
        raise ValueError(f"{n_iter} iterations need {n_iter * batch_size} tasks, "
                         f"got {len(tasks)}")
    estimator = make_estimator()
    estimator.meta_partial_fit(tasks[:batch_size])
    synchronize(device)
    start = time.perf_counter()
    estimator.meta_partial_fit(tasks[batch_size:n_iter * batch_size])
    synchronize(device)
    elapsed = time.perf_counter() - start
    curve = list(estimator.meta_loss_curve_)
    if len(curve) != n_iter:
        raise RuntimeError(f"expected {n_iter} meta-iterations, sk_meta ran "
                           f"{len(curve)}")
    return {"it_per_s": (n_iter - 1) / elapsed, "final_loss": curve[-1],
            "loss_curve": curve}


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
