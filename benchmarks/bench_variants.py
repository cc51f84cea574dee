# SPDX-License-Identifier: BSD-3-Clause
"""Meta-training speed of MAML's variants against plain MAML.

The options added for few-shot tabular classification (``head_init``,
``inner_lr_mode``, ``adapt_layers``, ``multi_step_loss``) each change the
inner loop, ``task_interpolation`` mixes the meta-batch's inputs in numpy
and ``meta_grad_max_norm`` rescales the meta-gradient before the outer
step; this script measures what they cost. Every variant meta-trains
``MAMLClassifier`` / ``MAMLRegressor`` through ``meta_partial_fit`` on the
same numpy tasks from the same seeded network (``_estimators.time_sk_meta``),
interleaved with plain MAML in one process (A B C ..., A B C ...); the ratio
of a variant is the median over rounds of its meta-iterations per second over
plain MAML's in the same round.

Workloads (``_workloads``): ``sinusoid`` (MLP 1-40-40-1, 1 inner step,
meta-batch 25; regression, so no ``head_init`` variants) and ``digits``
(5-way 5-shot, MLP 64-64-64-5, 5 inner steps, meta-batch 32).

Targets: every variant at least 1/1.3 of plain MAML's speed; ANIL
(``adapt_layers="head"``) faster than plain MAML. ``multi_step_loss`` pays
for the query passes of every inner step during MAML++'s annealing (the
first tenth of ``n_meta_iter``) and runs as plain MAML afterwards; it is
timed in both phases and judged on a whole run (slowdown of the first
tenth x 0.1 + 0.9).

Usage::

    python -m benchmarks.bench_variants --quick     # about a minute
    python -m benchmarks.bench_variants             # a few minutes
"""

import functools
import statistics

from benchmarks._cli import make_parser, parse_device
from benchmarks._estimators import make_sk_estimator, sk_meta_module_like, time_sk_meta
from benchmarks._harness import (
    ShortWarmup,
    interleaved_timing,
    round_ratios,
    set_threads,
)
from benchmarks._report import environment, format_table, print_header, write_results
from benchmarks._workloads import get_workload

# name -> estimator parameters; "regression": usable by a regressor
VARIANTS = {
    "plain MAML": ({}, True),
    "head_init=zero": ({"head_init": "zero"}, False),
    "head_init=prototype": ({"head_init": "prototype"}, False),
    "per_layer_step": ({"inner_lr_mode": "per_layer_step"}, True),
    "per_parameter": ({"inner_lr_mode": "per_parameter"}, True),
    "ANIL": ({"adapt_layers": "head"}, True),
    # MAML++ anneals the earlier steps' losses away over the first tenth of
    # training; both phases are timed (n_meta_iter=1: annealed from the start)
    "multi_step_loss (first 10%)": ({"multi_step_loss": True}, True),
    "multi_step_loss (annealed)": ({"multi_step_loss": True, "n_meta_iter": 1},
                                   True),
    # numpy work on the meta-batch before it reaches the device
    "task_interpolation=0.5": ({"task_interpolation": 0.5}, False),
    # one norm over all meta-gradients and a scaling, on the device
    "meta_grad_max_norm=1": ({"meta_grad_max_norm": 1.0}, True),
    "prototype + ANIL": ({"head_init": "prototype", "adapt_layers": "head"}, False),
    "zero + per_layer_step + msl (first 10%)": ({"head_init": "zero",
                                                 "inner_lr_mode": "per_layer_step",
                                                 "multi_step_loss": True}, False),
}
SLOWDOWN_LIMIT = 1.3

# sk_meta iterations per timed call, timed rounds
PLANS = {
    "quick": {"sinusoid": (200, 3), "digits": (20, 3)},
    "full": {"sinusoid": (500, 5), "digits": (60, 5)},
}


def bench_workload(name, n_iter, repeats, device):
    workload = get_workload(name)
    classification = workload.hyperparams["loss"] == "cross_entropy"
    tasks = workload.make_tasks(n_iter, seed=0)
    module = sk_meta_module_like(workload, seed=0)
    runners = {}
    for label, (params, regression) in VARIANTS.items():
        if not (classification or regression):
            continue
        make = functools.partial(make_sk_estimator, workload, "maml", module=module,
                                 device=device, **params)

        def run(n, make=make):
            return time_sk_meta(make, tasks, n, workload.meta_batch_size, device)

        runners[label] = ShortWarmup(run, n_iter, max(2, n_iter // 4))
    timing = interleaved_timing(runners, repeats=repeats, warmup=1,
                                baseline="plain MAML")
    rows = []
    for label in runners:
        ratios = round_ratios(timing.samples[label], timing.samples["plain MAML"])
        ratio = statistics.median(ratios)
        if label == "plain MAML":
            target, verdict = "-", "-"
        elif label == "ANIL":
            target, verdict = "> 1", "PASS" if ratio > 1 else "FAIL"
        elif "first 10%" in label:
            # a tenth of the run: judged on the run's average
            target = f"0.1/r + 0.9 <= {SLOWDOWN_LIMIT:g}"
            verdict = "PASS" if 0.1 / ratio + 0.9 <= SLOWDOWN_LIMIT else "FAIL"
        else:
            target = f">= 1/{SLOWDOWN_LIMIT:g}"
            verdict = "PASS" if ratio >= 1 / SLOWDOWN_LIMIT else "FAIL"
        rows.append({
            "workload": name, "variant": label,
            "it/s (median)": timing.median_it_per_s[label],
            "x plain MAML (median of rounds)": ratio,
            "range": f"{min(ratios):.3g}-{max(ratios):.3g}",
            "slowdown": 1 / ratio, "target": target, "result": verdict,
        })
    return timing, rows


def main(argv=None):
    parser = make_parser(__doc__.split("\n")[0])
    parser.add_argument("--workloads", nargs="+", default=["sinusoid", "digits"],
                        choices=["sinusoid", "digits"])
    args = parser.parse_args(argv)
    device = parse_device(parser, args.device)
    set_threads(1)
    env = environment(device)
    print_header("bench_variants: MAML variants against plain MAML", env)
    plan = PLANS["quick" if args.quick else "full"]
    all_rows, samples = [], {}
    for name in args.workloads:
        n_iter, repeats = plan[name]
        print(f"{name}: {n_iter} meta-iterations per sample, {repeats} timed rounds",
              flush=True)
        timing, rows = bench_workload(name, n_iter, repeats, device)
        all_rows += rows
        samples[name] = timing.samples
    print("\n## Meta-iterations per second, variants against plain MAML\n")
    print(format_table(all_rows, floatfmt=".3g"))
    verdicts = [r["result"] for r in all_rows]
    print(f"\n{verdicts.count('PASS')} PASS, {verdicts.count('FAIL')} FAIL")
    write_results("bench_variants", {
        "environment": env, "args": vars(args), "plan": plan, "rows": all_rows,
        "samples_it_per_s": samples,
    }, announce=True)


if __name__ == "__main__":
    main()
