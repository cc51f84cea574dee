# SPDX-License-Identifier: BSD-3-Clause
"""What a benchmark run reports: its environment, tables and results file.

* ``environment(device)``: one record of where a run happened (CPU model,
  cores, load, versions, device, threads), stored in every results file.
* ``print_header(title, env)``: that record as the first lines of a report.
* ``write_results(name, payload)``: ``benchmarks/results/<name>.json``
  (git-ignored), written atomically, with the command line and a timestamp.
* ``format_table(rows)``: rows of dicts (or of cells, with ``columns``) as a
  Markdown or reStructuredText table.
* ``Timer``: wall-clock seconds since start and ``log(message)`` with a
  timestamp, flushed at once (for unattended runs).
"""

import datetime
import importlib
import importlib.metadata
import json
import math
import os
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"

NOISE_NOTE = (
    "Absolute numbers are noisy (a small shared machine: other processes run "
    "beside the benchmark). Methods are interleaved (A B A B) in one process, so "
    "the ratios are the numbers to trust."
)


# --------------------------------------------------------------------------- #
# Environment
# --------------------------------------------------------------------------- #
def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or platform.processor())."""
    try:
        with open("/proc/cpuinfo") as f:
            for row in f:
                if row.startswith("model name"):
                    return row.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _version(name: str) -> str | None:
    """Version of a package, None when it is missing or broken.

    Installed metadata first, so that asking does not import a baseline; an
    import when there is none (a package copied onto ``PYTHONPATH``).
    """
    module = sys.modules.get(name)
    if module is None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
        try:
            module = importlib.import_module(name)
        except Exception:  # not installed, or broken: the record must still build
            return None
    return getattr(module, "__version__", "?")


def environment(device="cpu") -> dict:
    """Hardware, load, library versions, device and threads of this run."""
    import torch

    device = torch.device(device)
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    env = {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit-learn": _version("sklearn"),
        "sk_meta": _version("sk_meta"),
        "learn2learn": _version("learn2learn"),
        "higher": _version("higher"),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    if device.type == "cuda" and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    return env


def print_header(title: str, env: Mapping) -> None:
    """The title, the environment and how to read the numbers."""
    print(f"# {title}\n")
    print(f"- machine: {env['cpu']}, {env['logical_cores']} logical cores "
          f"({env['usable_cores']} usable), load average "
          f"{' / '.join(map(str, env['load_average_1_5_15']))}")
    print(f"- python {env['python']}, torch {env['torch']}, sk_meta "
          f"{env['sk_meta']}, learn2learn {env['learn2learn']}")
    device = env["device"]
    if "gpu" in env:
        device += f" ({env['gpu']}, CUDA {env['cuda']})"
    print(f"- device: {device}; torch threads: {env['torch_threads']} "
          f"(OMP_NUM_THREADS={env['OMP_NUM_THREADS']})")
    print(f"- {NOISE_NOTE}\n", flush=True)


# --------------------------------------------------------------------------- #
# Results files
# --------------------------------------------------------------------------- #
def _jsonable(obj):
    """``obj`` with only JSON types: numpy scalars and arrays, paths, tuples
    and non-string keys converted; NaN and infinities become null (strict
    JSON has neither); anything else becomes its ``str``."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    return str(obj)


def _command_line() -> str:
    """How this run was started: ``python -m benchmarks.<script> args...``."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None:
        script = ["-m", spec.name.removesuffix(".__main__")]
    else:
        script = sys.argv[:1]
    return " ".join([Path(sys.executable).name, *script, *sys.argv[1:]])


def write_results(name: str, payload: Mapping, directory=None, *,
                  announce: bool = False) -> Path:
    """Write ``payload`` (after the command line and a timestamp) as JSON.

    The file is ``<directory>/<name>.json``, ``benchmarks/results/`` by
    default. The write goes through a temporary file, so a run stopped while
    writing never leaves half a file; scripts that rewrite their results as
    they go keep what they finished. Returns the path written; ``announce``
    also prints it.
    """
    directory = Path(directory) if directory is not None else RESULTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    payload = {
        "command": _command_line(),
        "written_at": datetime.datetime.now().isoformat(timespec="seconds"),
        **payload,
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_jsonable(payload), indent=2))
    tmp.replace(path)
    if announce:
        print(f"\nresults written to {path}")
    return path


# --------------------------------------------------------------------------- #
# Tables and progress
# --------------------------------------------------------------------------- #
def _cell(value, floatfmt: str) -> str:
    if isinstance(value, float):
        return format(value, floatfmt)
    return str(value)


def format_table(rows: Sequence, columns: Sequence[str] | None = None,
                 fmt: str = "markdown", floatfmt: str = ".3g") -> str:
    """Rows as a Markdown pipe table or an RST simple table.

    Rows are dicts (``columns`` defaults to the keys of the first row; missing
    cells are blank) or sequences of cells in the order of ``columns``. The
    first column is left-aligned, the others right-aligned.
    """
    if not rows:
        return ""
    if columns is None:
        columns = list(rows[0])
    columns = [str(c) for c in columns]
    if not isinstance(rows[0], Mapping):
        rows = [dict(zip(columns, row)) for row in rows]
    cells = [[_cell(row.get(col, ""), floatfmt) for col in columns] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in cells))
              for i, col in enumerate(columns)]

    def line(values):
        return [v.rjust(w) if i else v.ljust(w)
                for i, (v, w) in enumerate(zip(values, widths))]

    if fmt == "markdown":
        rule = ["-" * w for w in widths]
        body = [line(columns), rule, *map(line, cells)]
        return "\n".join("| " + " | ".join(r) + " |" for r in body)
    if fmt == "rst":
        rule = " ".join("=" * w for w in widths)
        body = [" ".join(line(r)) for r in cells]
        return "\n".join([rule, " ".join(line(columns)), rule, *body, rule])
    raise ValueError(f"fmt must be 'markdown' or 'rst', got {fmt!r}")


class Timer:
    """Seconds since creation, and timestamped progress lines."""

    def __init__(self):
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def log(self, message: str) -> None:
        now = datetime.datetime.now().strftime("%H:%M:%S")
        print(f"[{now} +{self.elapsed():7.1f}s] {message}", flush=True)
