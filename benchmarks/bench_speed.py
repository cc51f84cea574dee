# SPDX-License-Identifier: BSD-3-Clause
"""Meta-training throughput of sk_meta's estimators against the baselines.

sk_meta is driven through its public API only: ``meta_partial_fit`` on the
same numpy tasks the baselines get (one pass, in order), numpy validation and
host-to-device copies included, timed by wall clock around the call. The first
meta-batch goes through an untimed ``meta_partial_fit`` that builds the network
and optimizer (the baselines also build theirs outside their timer). Every
method starts from the same seeded weights, so the final meta-losses of the
MAML methods agree (up to float32 noise amplified by Adam).

Workloads (see ``README.md``): ``sinusoid`` (MAML paper: K=10, MLP 40-40, 1
inner step, meta-batch 25), ``digits`` (5-way 5-shot, MLP 64-64-64, 5 inner
steps, meta-batch 32) and ``omniglot`` (5-way 1-shot, conv-4, 1 inner step,
meta-batch 32). Methods run interleaved (A B C, A B C, ...) in one process;
the target ratios are medians of per-round ratios.

Usage::

    python -m benchmarks.bench_speed --quick            # about a minute (CPU)
    python -m benchmarks.bench_speed                    # a few minutes
    python -m benchmarks.bench_speed --device cuda
    python -m benchmarks.bench_speed --workloads sinusoid digits
"""

import functools
import statistics
from pathlib import Path

from benchmarks._cli import make_parser, parse_device, require_baselines
from benchmarks._estimators import make_sk_estimator, sk_meta_module_like, time_sk_meta
from benchmarks._harness import (
    ShortWarmup,
    interleaved_timing,
    round_ratios,
    set_threads,
)
from benchmarks._report import environment, format_table, print_header, write_results
from benchmarks._workloads import get_workload
from benchmarks.baselines import run_baseline

# Iterations per timed call. sk_meta runs more iterations than the (much
# slower) baselines so that each of its samples lasts long enough to time;
# its first ``baseline`` meta-batches are the baselines' tasks, so its loss at
# that point is compared with theirs.
PLANS = {
    "quick": {
        "sinusoid": {"baseline": 20, "sk_meta": 200, "repeats": 3},
        "digits": {"baseline": 6, "sk_meta": 30, "repeats": 3},
        "omniglot": {"baseline": 3, "sk_meta": 3, "repeats": 1, "warmup": 2},
    },
    "full": {
        "sinusoid": {"baseline": 50, "sk_meta": 500, "repeats": 5},
        "digits": {"baseline": 12, "sk_meta": 60, "repeats": 5},
        "omniglot": {"baseline": 4, "sk_meta": 4, "repeats": 2, "warmup": 2},
    },
}

# (label, kind, algorithm or baseline name, first_order, extra estimator params)
METHODS = {
    "sinusoid": [
        ("sk_meta MAML", "sk", "maml", False, {}),
        ("sk_meta FOMAML", "sk", "fomaml", True, {}),
        ("sk_meta Reptile", "sk", "reptile", True, {}),
        ("learn2learn", "baseline", "learn2learn", False, {}),
        ("learn2learn FO", "baseline", "learn2learn", True, {}),
        ("higher", "baseline", "higher", False, {}),
        ("func_loop", "baseline", "func_loop", False, {}),
        ("func_vmap", "baseline", "func_vmap", False, {}),
        ("hand_batched", "baseline", "hand_batched", False, {}),
        ("reptile_loop", "baseline", "reptile_loop", True, {}),
    ],
    "digits": [
        ("sk_meta MAML", "sk", "maml", False, {}),
        ("sk_meta FOMAML", "sk", "fomaml", True, {}),
        ("learn2learn", "baseline", "learn2learn", False, {}),
        ("learn2learn FO", "baseline", "learn2learn", True, {}),
        ("higher", "baseline", "higher", False, {}),
        ("func_loop", "baseline", "func_loop", False, {}),
        ("func_vmap", "baseline", "func_vmap", False, {}),
        ("hand_batched", "baseline", "hand_batched", False, {}),
    ],
    "omniglot": [
        ("sk_meta MAML", "sk", "maml", False, {}),
        ("sk_meta MAML chunk=4", "sk", "maml", False, {"tasks_per_chunk": 4}),
        ("sk_meta FOMAML", "sk", "fomaml", True, {}),
        ("learn2learn", "baseline", "learn2learn", False, {}),
        ("learn2learn FO", "baseline", "learn2learn", True, {}),
        ("higher", "baseline", "higher", False, {}),
        ("func_loop", "baseline", "func_loop", False, {}),
        ("func_vmap", "baseline", "func_vmap", False, {}),
    ],
}
# --quick skips these on omniglot (each costs several seconds per iteration on
# a CPU; learn2learn, the reference, is kept).
QUICK_OMNIGLOT_SKIP = {"sk_meta FOMAML", "learn2learn FO", "higher", "func_loop",
                       "func_vmap"}

# (workload, numerator, denominator, target or None, what it says)
COMPARISONS = [
    ("sinusoid", "sk_meta MAML", "learn2learn", 7.0, "MAML vs learn2learn"),
    ("sinusoid", "sk_meta FOMAML", "sk_meta MAML", 1.3, "FOMAML vs MAML"),
    ("sinusoid", "sk_meta MAML", "hand_batched", None,
     "gap to a hand-batched loop"),
    ("sinusoid", "sk_meta FOMAML", "learn2learn FO", None,
     "FOMAML vs learn2learn FO"),
    ("sinusoid", "sk_meta Reptile", "reptile_loop", None,
     "Reptile vs reptile_loop"),
    ("digits", "sk_meta MAML", "learn2learn", 3.0, "MAML vs learn2learn"),
    ("digits", "sk_meta FOMAML", "sk_meta MAML", None, "FOMAML vs MAML"),
    ("digits", "sk_meta MAML", "hand_batched", None,
     "gap to a hand-batched loop"),
    ("omniglot", "sk_meta MAML", "learn2learn", 2.0, "MAML vs learn2learn"),
    ("omniglot", "sk_meta MAML chunk=4", "learn2learn", None,
     "MAML, tasks_per_chunk=4, vs learn2learn"),
    ("omniglot", "sk_meta MAML", "func_vmap", None, "MAML vs func_vmap"),
]


def _runner(workload, tasks, method, plan, device, module, quick_warmup):
    label, kind, name, first_order, params = method
    if kind == "sk":
        algorithm = name
        n_iter = plan["sk_meta"]
        make_estimator = functools.partial(
            make_sk_estimator, workload, algorithm, module=module, device=device,
            **params)

        def run(n):
            return time_sk_meta(make_estimator, tasks, n, workload.meta_batch_size,
                                device)
    else:
        n_iter = plan["baseline"]

        def run(n):
            return run_baseline(name, workload, tasks, n, first_order, device=device)
    warmup_n_iter = plan.get("warmup", max(2, n_iter // 2))
    return ShortWarmup(run, n_iter, warmup_n_iter if quick_warmup else None)


def bench_workload(name, plan, device, omniglot_path, quick):
    kwargs = {"path": omniglot_path} if name == "omniglot" else {}
    workload = get_workload(name, **kwargs)
    n_tasks_iter = max(plan["baseline"], plan["sk_meta"])
    tasks = workload.make_tasks(n_tasks_iter, seed=0)
    module = sk_meta_module_like(workload, seed=0)
    methods = [m for m in METHODS[name]
               if not (quick and name == "omniglot" and m[0] in QUICK_OMNIGLOT_SKIP)]
    runners = {m[0]: _runner(workload, tasks, m, plan, device, module, True)
               for m in methods}
    timing = interleaved_timing(runners, repeats=plan["repeats"], warmup=1,
                                baseline="learn2learn")
    rows = []
    for label, kind, *_ in methods:
        last = timing.results[label][-1]
        if kind == "sk":
            # the loss after the baselines' number of meta-batches (same tasks)
            loss = last["loss_curve"][plan["baseline"] - 1]
        else:
            loss = last["final_loss"]
        rows.append({
            "workload": name,
            "method": label,
            "it/s": timing.median_it_per_s[label],
            "min": min(timing.samples[label]),
            "max": max(timing.samples[label]),
            "x learn2learn": timing.ratio_to_baseline[label],
            "loss at it": plan["baseline"],
            "loss": f"{loss:.6g}",
        })
    return workload, timing, rows


def verdict(value: float, target: float) -> str:
    return "PASS" if value >= target else "FAIL"


def comparison_rows(timings):
    rows = []
    for workload, numerator, denominator, target, what in COMPARISONS:
        timing = timings.get(workload)
        if timing is None or numerator not in timing.samples or (
                denominator not in timing.samples):
            continue
        ratios = round_ratios(timing.samples[numerator], timing.samples[denominator])
        ratio = statistics.median(ratios)
        rows.append({
            "workload": workload,
            "comparison": f"{numerator} / {denominator}",
            "what": what,
            "ratio (median of rounds)": ratio,
            "range": f"{min(ratios):.3g}-{max(ratios):.3g}",
            "target": "-" if target is None else f">= {target:g}",
            "result": "info" if target is None else verdict(ratio, target),
        })
    return rows


def main(argv=None):
    parser = make_parser(__doc__.split("\n")[0], omniglot=True)
    parser.add_argument("--workloads", nargs="+", default=list(METHODS),
                        choices=list(METHODS))
    args = parser.parse_args(argv)
    require_baselines(parser)
    device = parse_device(parser, args.device)
    set_threads(1)
    env = environment(device)
    print_header("bench_speed: meta-training iterations per second", env)
    plans = PLANS["quick" if args.quick else "full"]

    workloads = list(args.workloads)
    if "omniglot" in workloads and not Path(args.omniglot_path).is_file():
        print(f"omniglot skipped: {args.omniglot_path} not found "
              "(pass --omniglot-path)\n")
        workloads.remove("omniglot")

    all_rows, timings, settings = [], {}, {}
    for name in workloads:
        plan = plans[name]
        workload, timing, rows = bench_workload(name, plan, device,
                                                getattr(args, "omniglot_path", None),
                                                args.quick)
        timings[name] = timing
        settings[name] = {"hyperparams": workload.hyperparams, "plan": plan}
        all_rows += rows
        print(f"{name}: baselines {plan['baseline']} meta-iterations per sample, "
              f"sk_meta {plan['sk_meta']} (first one untimed), "
              f"{plan['repeats']} timed rounds", flush=True)

    print("\n## Meta-iterations per second (median of interleaved rounds)\n")
    print(format_table(all_rows, floatfmt=".3g"))
    print("\n`loss`: mean query loss of meta-batch `loss at it`, the same tasks for "
          "every method and the same initial weights. The MAML methods agree "
          "(first-order and Reptile rows differ by design); func_vmap's omniglot "
          "loss is off (vmap + BatchNorm second-order bug, see README).")
    targets = comparison_rows(timings)
    print("\n## Ratios and targets (per-round ratios, median)\n")
    print(format_table(targets, floatfmt=".3g"))
    print(f"\n{sum(r['result'] == 'PASS' for r in targets)} PASS, "
          f"{sum(r['result'] == 'FAIL' for r in targets)} FAIL")
    write_results("bench_speed", {
        "environment": env,
        "args": vars(args),
        "settings": settings,
        "rows": all_rows,
        "targets": targets,
        "samples_it_per_s": {name: t.samples for name, t in timings.items()},
    }, announce=True)


if __name__ == "__main__":
    main()
