# SPDX-License-Identifier: BSD-3-Clause
"""The cost of progress output: ``meta_fit`` with ``verbose=0`` against ``verbose=1``.

The sinusoid workload (MLP 40-40, K=10, meta-batch 25, MAML), timed through
the public API with interleaved rounds: quiet, lines every 5 % (what a log
file gets), and the progress bar (forced as on a terminal, drawn into
``/dev/null``). Target: the progress output costs at most 2 % of the rate.

Usage::

    python -m benchmarks.bench_progress --quick
    python -m benchmarks.bench_progress
"""

import contextlib
import os
import sys
import time
from unittest import mock

from benchmarks._cli import make_parser, parse_device
from benchmarks._harness import interleaved_timing, set_threads
from benchmarks._report import environment, format_table, print_header, write_results
from benchmarks._workloads import sample_sinusoid_tasks
from sk_meta import MAMLRegressor

PLANS = {"quick": {"n_meta_iter": 300, "repeats": 5},
         "full": {"n_meta_iter": 1500, "repeats": 9}}
TARGET = 0.98  # at least 98 % of the quiet rate


def runner(tasks, n_meta_iter, verbose, bar, device="cpu"):
    def run():
        reg = MAMLRegressor(hidden_layer_sizes=(40, 40), inner_lr=0.01,
                            meta_batch_size=25, n_meta_iter=n_meta_iter,
                            verbose=verbose, random_state=0, device=device)
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), \
                contextlib.redirect_stderr(sink), \
                mock.patch.object(sys.stderr, "isatty", lambda: bar, create=True):
            start = time.perf_counter()
            reg.meta_fit(tasks)
            return n_meta_iter / (time.perf_counter() - start)

    return run


def main():
    parser = make_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    device = str(parse_device(parser, args.device))
    plan = PLANS["quick" if args.quick else "full"]
    set_threads(1)
    env = environment(device)
    print_header("Progress output: verbose=1 against verbose=0", env)
    tasks = sample_sinusoid_tasks(plan["n_meta_iter"] * 25, seed=0)
    timing = interleaved_timing({
        "verbose=0": runner(tasks, plan["n_meta_iter"], 0, False, device),
        "verbose=1, lines": runner(tasks, plan["n_meta_iter"], 1, False, device),
        "verbose=1, bar": runner(tasks, plan["n_meta_iter"], 1, True, device),
    }, repeats=plan["repeats"])
    print(format_table(timing.rows()))
    worst = min(timing.ratio_to_baseline.values())
    print(f"\nslowest progress output: {worst:.3f} of the quiet rate "
          f"(target >= {TARGET}): {'PASS' if worst >= TARGET else 'MISS'}")
    write_results("bench_progress", {"plan": plan, "environment": env,
                                     "timing": timing.__dict__})


if __name__ == "__main__":
    main()
