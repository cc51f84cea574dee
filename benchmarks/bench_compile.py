# SPDX-License-Identifier: BSD-3-Clause
"""Eager against compiled (``compile=True``) meta-training, and learn2learn.

Steady state: each configuration runs ``meta_fit`` for ``n_short`` and for
``n_long`` meta-iterations (each run compiles once); the difference of the
two wall times over ``n_long - n_short`` iterations is the time per
iteration without compilation. End to end: one ``meta_fit`` of
``n_end_to_end`` iterations, compilation included, in a fresh process with an
empty inductor cache (``cold``) and again with the cache it left (``warm``).
learn2learn's time for the same iterations is its measured it/s.

Usage::

    python -m benchmarks.bench_compile --quick
    python -m benchmarks.bench_compile              # sinusoid, 2,000 iterations
    python -m benchmarks.bench_compile --device cuda --workloads omniglot
    python -m benchmarks.bench_compile --no-end-to-end   # steady state only
"""

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

from benchmarks._cli import make_parser, parse_device, require_baselines
from benchmarks._estimators import make_sk_estimator
from benchmarks._harness import REPO_DIR, set_threads, synchronize
from benchmarks._report import environment, format_table, print_header, write_results
from benchmarks._workloads import get_workload
from benchmarks.baselines import run_baseline

# Runs in a fresh interpreter started in the repository root.
_END_TO_END = textwrap.dedent("""
    import json, time
    import torch
    torch.set_num_threads(1)
    from benchmarks._estimators import make_sk_estimator
    from benchmarks._harness import synchronize
    from benchmarks._workloads import get_workload
    workload = get_workload({workload!r}{workload_kwargs})
    tasks = workload.make_tasks({n_iter}, seed=1)
    est = make_sk_estimator(workload, "maml", device={device!r}, compile=True,
                            n_meta_iter={n_iter})
    start = time.perf_counter()
    est.meta_fit(iter(tasks))
    synchronize({device!r})
    print(json.dumps({{"seconds": time.perf_counter() - start,
                       "n_meta_iter": est.n_meta_iter_}}))
""")


def _time_meta_fit(workload, tasks, n_iter, device, **params):
    est = make_sk_estimator(workload, "maml", device=device, n_meta_iter=n_iter,
                            **params)
    synchronize(device)
    start = time.perf_counter()
    est.meta_fit(iter(tasks[: n_iter * workload.meta_batch_size]))
    synchronize(device)
    assert est.n_meta_iter_ == n_iter
    return time.perf_counter() - start


def steady_state(workload, tasks, n_short, n_long, device, **params):
    """Seconds per meta-iteration once compiled, and the one-off overhead.

    A first, untimed run fills the process's compile caches, so that the two
    timed runs pay the same (warm) compilation.
    """
    _time_meta_fit(workload, tasks, 2, device, **params)
    short = _time_meta_fit(workload, tasks, n_short, device, **params)
    long = _time_meta_fit(workload, tasks, n_long, device, **params)
    per_iteration = (long - short) / (n_long - n_short)
    return per_iteration, short - n_short * per_iteration


def end_to_end(workload_name, workload_kwargs, n_iter, device, cache_dir):
    script = _END_TO_END.format(
        workload=workload_name,
        workload_kwargs="".join(f", {k}={v!r}" for k, v in workload_kwargs.items()),
        n_iter=n_iter, device=str(device),
    )
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache_dir, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO_DIR,
                            check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])["seconds"]


COLUMNS = ["workload", "method", "it/s", "seconds", "compile s", "x learn2learn"]


def main(argv=None):
    parser = make_parser(__doc__.splitlines()[0], omniglot=True)
    parser.add_argument("--workloads", nargs="+", default=["sinusoid"],
                        choices=["sinusoid", "digits", "omniglot"])
    parser.add_argument("--no-end-to-end", dest="end_to_end", action="store_false",
                        help="skip the end-to-end runs in fresh processes (a cold "
                             "compile of a large model can take minutes)")
    args = parser.parse_args(argv)
    require_baselines(parser)
    device = parse_device(parser, args.device)
    set_threads(1)
    env = environment(device)
    print_header("Eager against compiled meta-training", env)
    plans = {
        "sinusoid": (200, 1200, 2000, 40) if not args.quick else (100, 400, 500, 10),
        "digits": (20, 120, 300, 4) if not args.quick else (10, 40, 60, 3),
        "omniglot": (10, 60, 300, 2) if not args.quick else (5, 15, 30, 2),
    }
    rows = []
    for name in args.workloads:
        n_short, n_long, n_end, n_baseline = plans[name]
        # absolute: the end-to-end runs start in the repository root
        kwargs = ({"path": os.path.abspath(args.omniglot_path)}
                  if name == "omniglot" else {})
        workload = get_workload(name, **kwargs)
        tasks = workload.make_tasks(max(n_long, n_end), seed=1)
        # learn2learn before and after the sk_meta runs: a drifting machine
        # shows as a spread between the two
        before = run_baseline("learn2learn", workload, tasks, n_baseline,
                              device=device)["it_per_s"]
        eager, _ = steady_state(workload, tasks, n_short, n_long, device)
        compiled, overhead = steady_state(workload, tasks, n_short, n_long, device,
                                          compile=True)
        after = run_baseline("learn2learn", workload, tasks, n_baseline,
                             device=device)["it_per_s"]
        baseline = (before + after) / 2
        print(f"{name}: learn2learn {before:.3g} it/s before, {after:.3g} after")
        workload_rows = [
            {"workload": name, "method": "learn2learn", "it/s": baseline,
             "x learn2learn": 1.0},
            {"workload": name, "method": "sk_meta eager", "it/s": 1 / eager,
             "x learn2learn": 1 / eager / baseline},
            {"workload": name, "method": "sk_meta compiled", "it/s": 1 / compiled,
             "x learn2learn": 1 / compiled / baseline,
             "compile s": overhead},  # per meta_fit call, caches warm
        ]
        # shown before the end-to-end runs, which a time limit may cut short
        print(format_table(workload_rows, columns=COLUMNS), flush=True)
        if args.end_to_end:
            with tempfile.TemporaryDirectory() as cache:
                cold = end_to_end(name, kwargs, n_end, device, cache)
                warm = end_to_end(name, kwargs, n_end, device, cache)
            baseline_seconds = n_end / baseline
            workload_rows += [
                {"workload": name, "method": f"end to end {n_end} it, cold cache",
                 "seconds": cold, "x learn2learn": baseline_seconds / cold},
                {"workload": name, "method": f"end to end {n_end} it, warm cache",
                 "seconds": warm, "x learn2learn": baseline_seconds / warm},
            ]
            print(format_table(workload_rows, columns=COLUMNS), flush=True)
        rows += workload_rows
    print()
    print(format_table(rows, columns=COLUMNS))
    write_results("bench_compile", {"environment": env, "args": vars(args),
                                    "rows": rows}, announce=True)


if __name__ == "__main__":
    main()
