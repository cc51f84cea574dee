# SPDX-License-Identifier: BSD-3-Clause
"""Means with 95% intervals, Markdown tables and result files for the fidelity runs.

* ``mean_ci(values)``: mean and half-width of the normal 95% interval,
  ``1.96 * std / sqrt(n)`` with the sample standard deviation (``ddof=1``).
* ``format_ci(mean, half)``: ``"0.672 ± 0.031"``.
* ``markdown_table(header, rows)``: a GitHub Markdown table.
* ``environment()``: CPU model (``/proc/cpuinfo``), torch, scikit-learn, numpy
  and Python versions, the GPU name when one is used.
* ``write_results(name, payload)``: ``benchmarks/results/<name>.json``.
* ``Timer``: wall-clock seconds since start and ``log(message)`` with a
  timestamp, flushed at once (for unattended runs).
* ``ShuffledLabels(sampler, seed)``: the tasks of a sampler with their labels
  replaced by a random permutation of 0..N-1 in every task (the papers'
  episode protocol; sk_meta maps labels to output units in sorted order).
"""

import datetime
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"
Z_95 = 1.96


def mean_ci(values):
    """Mean and half-width of the 95% interval of the mean.

    Parameters
    ----------
    values : array-like of float
        One value per test task.

    Returns
    -------
    mean : float
    half_width : float
        ``1.96 * std / sqrt(n)`` (sample std, ``ddof=1``); 0 for a single value.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        return math.nan, math.nan
    if values.size == 1:
        return float(values[0]), 0.0
    half = Z_95 * values.std(ddof=1) / math.sqrt(values.size)
    return float(values.mean()), float(half)


def summary(values):
    """``{"mean", "ci95", "n"}`` of ``values``, ready for JSON."""
    mean, half = mean_ci(values)
    return {"mean": mean, "ci95": half, "n": int(np.asarray(values).size)}


def format_ci(mean, half=None, *, digits=3, percent=False):
    """``"0.672 ± 0.031"``; ``percent`` multiplies both by 100.

    ``mean`` may also be a ``summary`` dict.
    """
    if isinstance(mean, dict):
        mean, half = mean["mean"], mean["ci95"]
    scale = 100.0 if percent else 1.0
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    text = f"{mean * scale:.{digits}f}"
    if half is not None:
        text += f" ± {half * scale:.{digits}f}"
    return text


def markdown_table(header, rows):
    """A GitHub Markdown table from a header and rows of cells."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"

    separator = "| " + " | ".join("-" * w for w in widths) + " |"
    return "\n".join([line(cells[0]), separator, *map(line, cells[1:])])


def cpu_model():
    """The CPU model name from /proc/cpuinfo (or platform.processor())."""
    try:
        with open("/proc/cpuinfo") as f:
            for row in f:
                if row.startswith("model name"):
                    return row.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def use_one_thread():
    """One torch thread and one BLAS thread for the rest of the run.

    One BLAS thread too: tiny scikit-learn fits are many times slower with
    more on a shared machine.
    """
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)


def environment(device="cpu"):
    """Hardware and library versions, for the results file."""
    import sklearn
    import torch

    env = {
        "cpu": cpu_model(),
        "n_cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
    }
    if str(device).startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def write_results(name, payload, directory=None):
    """Write ``payload`` (plus the command line and a timestamp) as JSON.

    Returns the path written. The write goes through a temporary file, so a
    run stopped while writing never leaves half a file.
    """
    directory = Path(directory) if directory is not None else RESULTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    payload = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "written_at": datetime.datetime.now().isoformat(timespec="seconds"),
        **payload,
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_jsonable))
    tmp.replace(path)
    return path


def _jsonable(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return repr(obj)


class Timer:
    """Seconds since creation, and timestamped progress lines."""

    def __init__(self):
        self.start = time.perf_counter()

    def elapsed(self):
        return time.perf_counter() - self.start

    def log(self, message):
        now = datetime.datetime.now().strftime("%H:%M:%S")
        print(f"[{now} +{self.elapsed():7.1f}s] {message}", flush=True)


class ShuffledLabels:
    """Re-iterable tasks whose labels are a fresh permutation of 0..N-1 each.

    ``n_way`` is passed on, so that the estimators size their output layer
    from it as they do for the sampler itself.
    """

    def __init__(self, sampler, seed):
        self.sampler = sampler
        self.n_way = sampler.n_way
        self.seed = seed

    def __iter__(self):
        from sk_meta.tasks import Task

        rng = np.random.default_rng(self.seed)
        for task in self.sampler:
            classes = np.unique(task.y_support)
            code = rng.permutation(len(classes))
            yield Task(task.X_support, code[np.searchsorted(classes, task.y_support)],
                       task.X_query, code[np.searchsorted(classes, task.y_query)])
