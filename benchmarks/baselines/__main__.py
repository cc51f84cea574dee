# SPDX-License-Identifier: BSD-3-Clause
"""Check and time the baselines.

``python -m benchmarks.baselines --check`` verifies that the MAML
meta-gradients of all methods agree in float64; ``--quick`` is a one-minute
speed sanity run of every baseline on every workload.
"""

import argparse
import functools
from collections.abc import Sequence

from benchmarks._cli import require_baselines
from benchmarks._harness import interleaved_timing, set_threads
from benchmarks._report import format_table
from benchmarks._workloads import (
    DEFAULT_OMNIGLOT_PATH,
    WORKLOADS,
    digits_workload,
    get_workload,
    omniglot_workload,
    sinusoid_workload,
)
from benchmarks.baselines import check_agreement, maml_baselines_for

QUICK_ITERATIONS = {"sinusoid": 20, "digits": 5, "omniglot": 2}


def _quick_run(workload_names: Sequence[str], first_order: bool,
               omniglot_path: str) -> None:
    """A few interleaved iterations of every baseline on every workload."""
    rows = []
    for name in workload_names:
        kwargs = {"path": omniglot_path} if name == "omniglot" else {}
        workload = get_workload(name, **kwargs)
        n_iter = QUICK_ITERATIONS[name]
        tasks = workload.make_tasks(n_iter)
        runners = {
            method: functools.partial(run, workload, tasks, n_iter, first_order)
            for method, run in maml_baselines_for(workload).items()
        }
        timing = interleaved_timing(runners, repeats=1, warmup=1,
                                    baseline="learn2learn")
        for method in runners:
            rows.append({
                "workload": name, "method": method,
                "it/s": timing.median_it_per_s[method],
                "x learn2learn": timing.ratio_to_baseline[method],
                "final loss": timing.results[method][-1]["final_loss"],
            })
        print(f"{name}: done ({n_iter} iterations x meta-batch "
              f"{workload.meta_batch_size})", flush=True)
    print(format_table(rows, floatfmt=".3g"))


def _check_all(omniglot_path: str) -> None:
    """Strict on the MLP workloads; omniglot is reported (vmap + BatchNorm bug)."""
    checks = [
        ("sinusoid", sinusoid_workload(), None, True),
        ("digits", digits_workload(), None, True),
        ("omniglot (4 tasks)", omniglot_workload(omniglot_path), 4, False),
    ]
    for label, workload, n_tasks, strict in checks:
        for first_order in (False, True):
            differences = check_agreement(workload, first_order, n_tasks=n_tasks,
                                          strict=strict)
            mode = "first-order MAML" if first_order else "MAML"
            print(f"{label}, {mode}: max relative meta-gradient difference "
                  "vs func_loop, float64")
            for method, difference in differences.items():
                flag = "" if difference <= 1e-10 else "  <-- DISAGREES"
                print(f"  {method:>13}: {difference:.2e}{flag}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="check float64 meta-gradient agreement")
    parser.add_argument("--quick", action="store_true",
                        help="about a minute of it/s for every baseline")
    parser.add_argument("--first-order", action="store_true",
                        help="first-order MAML in --quick")
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS),
                        choices=list(WORKLOADS))
    parser.add_argument("--omniglot-path", default=str(DEFAULT_OMNIGLOT_PATH))
    args = parser.parse_args(argv)
    if not (args.check or args.quick):
        parser.error("choose --check and/or --quick")
    require_baselines(parser)

    set_threads(1)
    if args.check:
        _check_all(args.omniglot_path)
    if args.quick:
        _quick_run(args.workloads, args.first_order, args.omniglot_path)


if __name__ == "__main__":
    main()
