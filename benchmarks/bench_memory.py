# SPDX-License-Identifier: BSD-3-Clause
"""Memory of sk_meta's meta-training: leaks, inner steps, and tasks_per_chunk.

(a) RSS over 2,000 meta-iterations of sinusoid MAML (``MAMLRegressor``), in a
    fresh interpreter: ``meta_partial_fit`` on consecutive chunks of 100
    meta-iterations, RSS (``/proc/self/statm``) after each chunk. Flat after
    warm-up means no leak; reported as first-vs-last RSS and a fitted slope.
(b) Peak RSS growth of second-order MAML against the number of inner steps
    (1, 2, 5, 10) on digits (MLP 64-64-64, meta-batch 32), sk_meta vs
    learn2learn, one fresh interpreter per configuration
    (``_harness.peak_rss_in_subprocess``, after an untimed warm-up iteration).
(c) The memory/speed trade-off of ``tasks_per_chunk`` (None, 16, 8, 4, 1) for
    second-order MAML on a small conv net: ``Conv4(n_filters=32)``, 5-way
    5-shot Omniglot (random 28x28 images when the file is missing), 5 query
    images per class, meta-batch 32, 1 inner step. Peak RSS per setting (fresh
    interpreter each) and it/s (interleaved, in this process), learn2learn for
    reference.

On CUDA, (b) and (c) also report the peak of ``torch.cuda.max_memory_allocated``
(RSS then mostly measures the host side), and (a) the allocated CUDA memory.

Usage::

    python -m benchmarks.bench_memory --quick
    python -m benchmarks.bench_memory [--device cuda] [--omniglot-path PATH]
"""

import dataclasses
import functools
import gc
import os
import time

import numpy as np
import torch

from benchmarks._cli import make_parser, parse_device, require_baselines
from benchmarks._estimators import make_sk_estimator, time_sk_meta
from benchmarks._harness import (
    ShortWarmup,
    interleaved_timing,
    peak_rss_in_subprocess,
    set_threads,
    synchronize,
)
from benchmarks._report import environment, format_table, print_header, write_results
from benchmarks._workloads import (
    Workload,
    conv_workload,
    digits_workload,
    sinusoid_workload,
)
from benchmarks.baselines import run_learn2learn

MB = 1024 * 1024
PLANS = {
    # quick: (c)'s it/s come from its memory subprocesses (run one after the
    # other); full: also interleaved in this process (chunk_repeats rounds)
    "quick": {"trace_iters": 2000, "trace_chunk": 100, "steps_iters": 1,
              "chunk_iters": 2, "chunk_time_iters": None, "chunk_repeats": 0},
    "full": {"trace_iters": 2000, "trace_chunk": 100, "steps_iters": 3,
             "chunk_iters": 3, "chunk_time_iters": 3, "chunk_repeats": 2},
}
INNER_STEPS = (1, 2, 5, 10)
TASKS_PER_CHUNK = (None, 16, 8, 4, 1)


def _rss_mb() -> float:
    """Resident set size now, from /proc/self/statm (Linux)."""
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / MB


def _cuda_mb(device: torch.device) -> dict:
    if device.type != "cuda":
        return {}
    return {"cuda_allocated_mb": torch.cuda.memory_allocated(device) / MB,
            "cuda_peak_mb": torch.cuda.max_memory_allocated(device) / MB}


# --------------------------------------------------------------------------- #
# (a) RSS over meta-iterations
# --------------------------------------------------------------------------- #
def rss_trace(n_iter: int, chunk_iters: int, device: str) -> dict:
    """Runs in a fresh interpreter: RSS after each chunk of meta-iterations."""
    device = torch.device(device)
    workload = sinusoid_workload()
    estimator = make_sk_estimator(workload, "maml", device=device)
    samples = [{"iteration": 0, "rss_mb": _rss_mb(), **_cuda_mb(device)}]
    for chunk in range(n_iter // chunk_iters):
        # new tasks every chunk (as a stream would bring), freed after use
        tasks = workload.make_tasks(chunk_iters, seed=1000 + chunk)
        estimator.meta_partial_fit(tasks)
        synchronize(device)
        del tasks
        gc.collect()
        samples.append({"iteration": (chunk + 1) * chunk_iters,
                        "rss_mb": _rss_mb(), **_cuda_mb(device)})
    assert estimator.n_meta_iter_ == n_iter, estimator.n_meta_iter_
    return {"samples": samples,
            "final_loss": estimator.meta_loss_curve_[-1]}


def _slope_per_1000(iterations, values) -> float:
    if len(iterations) < 2:
        return float("nan")
    return float(np.polyfit(iterations, values, 1)[0]) * 1000


def part_a(plan, device):
    print("## (a) RSS over meta-iterations: sinusoid MAMLRegressor, "
          f"meta_partial_fit on chunks of {plan['trace_chunk']} meta-iterations\n",
          flush=True)
    measured = peak_rss_in_subprocess(
        rss_trace, (plan["trace_iters"], plan["trace_chunk"], str(device)))
    samples = measured["result"]["samples"]
    # warm-up: the first quarter of the run (allocator pools, lazily loaded code)
    warm_index = max(2, len(samples) // 4)
    after = samples[warm_index:]
    its = [s["iteration"] for s in after]
    rss = [s["rss_mb"] for s in after]
    summary = {
        "meta-iterations": samples[-1]["iteration"],
        "RSS start (MB)": samples[0]["rss_mb"],
        f"RSS at it {samples[1]['iteration']}": samples[1]["rss_mb"],
        f"RSS at it {after[0]['iteration']}": after[0]["rss_mb"],
        "RSS last (MB)": samples[-1]["rss_mb"],
        "last - first after warm-up (MB)": rss[-1] - rss[0],
        "slope after warm-up (MB / 1000 it)": _slope_per_1000(its, rss),
        "peak RSS (MB)": measured["peak_rss_mb"],
    }
    if device.type == "cuda":
        cuda = [s["cuda_allocated_mb"] for s in after]
        summary["CUDA allocated last - first (MB)"] = cuda[-1] - cuda[0]
        summary["CUDA peak (MB)"] = max(s["cuda_peak_mb"] for s in samples)
    flat = abs(summary["slope after warm-up (MB / 1000 it)"]) < 1.0
    summary["flat (|slope| < 1 MB / 1000 it)"] = "yes" if flat else "NO"
    trace_rows = [{"iteration": s["iteration"], "RSS (MB)": s["rss_mb"],
                   **({"CUDA allocated (MB)": s["cuda_allocated_mb"]}
                      if device.type == "cuda" else {})}
                  for i, s in enumerate(samples)
                  if i % max(1, len(samples) // 10) == 0 or i == len(samples) - 1]
    print(format_table(trace_rows, floatfmt=".1f"))
    print()
    print(format_table([{"measure": k, "value": v} for k, v in summary.items()],
                       floatfmt=".3g"))
    print(flush=True)
    return {"summary": summary, "samples": samples}


# --------------------------------------------------------------------------- #
# (b) peak RSS against inner steps, digits
# --------------------------------------------------------------------------- #
def setup_digits(inner_steps: int, n_iter: int):
    """(workload, tasks) of digits with ``inner_steps`` (runs in the child)."""
    base = digits_workload()
    workload = dataclasses.replace(
        base, hyperparams={**base.hyperparams, "inner_steps": inner_steps})
    return workload, workload.make_tasks(n_iter, seed=0)


def _small_batches(workload: Workload, warm_tasks: int | None) -> Workload:
    """The workload with a meta-batch of ``warm_tasks`` (cheap warm-up calls)."""
    if warm_tasks is None:
        return workload
    return dataclasses.replace(workload, hyperparams={
        **workload.hyperparams, "meta_batch_size": warm_tasks})


def train_sk_meta(workload: Workload, tasks, n_iter: int, device: str,
                  tasks_per_chunk=None, warm_tasks=None) -> dict:
    """``n_iter`` meta-iterations of a new MAML estimator (runs in the child).

    With ``n_iter >= 2`` the first is untimed and the rest timed, as in
    ``_estimators.time_sk_meta``; memory counts them all.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    workload = _small_batches(workload, warm_tasks)
    batch = workload.meta_batch_size
    estimator = make_sk_estimator(workload, "maml", device=device,
                                  tasks_per_chunk=tasks_per_chunk)
    estimator.meta_partial_fit(tasks[:batch])
    it_per_s = None
    if n_iter >= 2:
        synchronize(device)
        start = time.perf_counter()
        estimator.meta_partial_fit(tasks[batch:n_iter * batch])
        synchronize(device)
        it_per_s = (n_iter - 1) / (time.perf_counter() - start)
    return {"final_loss": estimator.meta_loss_curve_[-1], "it_per_s": it_per_s,
            **_cuda_mb(device)}


def train_learn2learn(workload: Workload, tasks, n_iter: int, device: str,
                      warm_tasks=None) -> dict:
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result = run_learn2learn(_small_batches(workload, warm_tasks), tasks, n_iter,
                             device=device)
    return {**result, **_cuda_mb(device)}


def _memory_row(measured, device):
    row = {"peak RSS growth (MB)": measured["peak_rss_growth_mb"],
           "peak RSS (MB)": measured["peak_rss_mb"]}
    if device.type == "cuda":
        row["CUDA peak (MB)"] = measured["result"]["cuda_peak_mb"]
    return row


def part_b(plan, device):
    print("## (b) Peak memory against inner steps: digits, second-order MAML, "
          f"meta-batch 32, {plan['steps_iters']} meta-iterations measured\n",
          flush=True)
    rows = []
    n_iter = plan["steps_iters"]
    for inner_steps in INNER_STEPS:
        # warm-up: one meta-iteration of 4 tasks (pages in torch's code)
        for method, function, warmup_args in (
                ("sk_meta", train_sk_meta, (1, str(device), None, 4)),
                ("learn2learn", train_learn2learn, (1, str(device), 4))):
            measured = peak_rss_in_subprocess(
                function, (n_iter, str(device)), setup=setup_digits,
                setup_args=(inner_steps, n_iter), warmup_args=warmup_args)
            rows.append({"inner steps": inner_steps, "method": method,
                         **_memory_row(measured, device),
                         "final loss": measured["result"]["final_loss"]})
            print(f"  inner steps {inner_steps:>2}, {method}: "
                  f"{measured['peak_rss_growth_mb']:.1f} MB", flush=True)
    by_key = {(r["inner steps"], r["method"]): r for r in rows}
    for r in rows:
        l2l = by_key[(r["inner steps"], "learn2learn")]["peak RSS growth (MB)"]
        r["x learn2learn"] = r["peak RSS growth (MB)"] / l2l if l2l > 0 else None
    print()
    print(format_table(rows, floatfmt=".3g"))
    print(flush=True)
    return rows


# --------------------------------------------------------------------------- #
# (c) tasks_per_chunk on a small conv net
# --------------------------------------------------------------------------- #
def setup_conv(omniglot_path: str, n_iter: int):
    workload = conv_workload(omniglot_path or None)
    return workload, workload.make_tasks(n_iter, seed=0)


def part_c(plan, device, omniglot_path):
    workload = conv_workload(omniglot_path)
    print(f"## (c) tasks_per_chunk: Conv4(n_filters=32) on "
          f"{workload.hyperparams['data']}, 5-way 5-shot, 5 query per class, "
          "meta-batch 32, second-order MAML, 1 inner step\n", flush=True)
    n_iter = plan["chunk_iters"]
    device_arg = str(device)
    # absolute: the memory subprocesses start in the repository root
    path_arg = os.path.abspath(omniglot_path) if omniglot_path else ""
    settings = [("sk_meta", tpc) for tpc in TASKS_PER_CHUNK] + [("learn2learn", None)]
    labels = [f"sk_meta tasks_per_chunk={tpc}" if method == "sk_meta" else method
              for method, tpc in settings]
    memory = {}
    for (method, tpc), label in zip(settings, labels):
        # warm-up: one meta-iteration of 4 tasks (pages in torch's code)
        if method == "sk_meta":
            function = train_sk_meta
            args, warmup_args = (n_iter, device_arg, tpc), (1, device_arg, tpc, 4)
        else:
            function = train_learn2learn
            args, warmup_args = (n_iter, device_arg), (1, device_arg, 4)
        memory[label] = peak_rss_in_subprocess(
            function, args, setup=setup_conv, setup_args=(path_arg, n_iter),
            warmup_args=warmup_args)
        print(f"  {label}: {memory[label]['peak_rss_growth_mb']:.1f} MB, "
              f"{memory[label]['result']['it_per_s']:.3g} it/s", flush=True)

    timing = None
    if plan["chunk_repeats"]:
        # it/s interleaved in this process
        time_iters = plan["chunk_time_iters"]
        tasks = workload.make_tasks(time_iters, seed=0)
        runners = {}
        for (method, tpc), label in zip(settings, labels):
            if method == "sk_meta":
                make = functools.partial(make_sk_estimator, workload, "maml",
                                         device=device, tasks_per_chunk=tpc)

                def run(n, make=make):
                    return time_sk_meta(make, tasks, n, workload.meta_batch_size,
                                        device)
            else:
                def run(n):
                    return run_learn2learn(workload, tasks, n, device=device)
            runners[label] = ShortWarmup(run, time_iters, 2)
        timing = interleaved_timing(runners, repeats=plan["chunk_repeats"],
                                    warmup=1, baseline="learn2learn")

    rows = []
    for (method, tpc), label in zip(settings, labels):
        measured = memory[label]
        row = {
            "method": method,
            "tasks_per_chunk": "-" if method == "learn2learn" else str(tpc),
            **_memory_row(measured, device),
        }
        if timing is not None:
            row["it/s"] = timing.median_it_per_s[label]
        else:
            row["it/s"] = measured["result"]["it_per_s"]
        rows.append(row)
    l2l_speed = rows[-1]["it/s"]
    none_rss, none_speed = rows[0]["peak RSS growth (MB)"], rows[0]["it/s"]
    for row in rows:
        row["speed x learn2learn"] = row["it/s"] / l2l_speed
        row["memory vs None"] = row["peak RSS growth (MB)"] / none_rss
        row["speed vs None"] = row["it/s"] / none_speed
    print()
    print(format_table(rows, floatfmt=".3g"))
    if timing is None:
        how = (f"it/s from the same subprocesses, run one after the other "
               f"({n_iter - 1} timed sk_meta / {n_iter} learn2learn "
               "meta-iterations): not interleaved, noisier")
    else:
        how = (f"it/s interleaved in this process, {plan['chunk_time_iters'] - 1} "
               f"timed sk_meta / {plan['chunk_time_iters']} learn2learn "
               f"meta-iterations x {plan['chunk_repeats']} rounds")
    print(f"\n(peak memory: {n_iter} meta-iterations after a small warm-up one, "
          f"a fresh interpreter per row; {how})", flush=True)
    return {"workload": workload.hyperparams, "rows": rows,
            "samples_it_per_s": None if timing is None else timing.samples}


def main(argv=None):
    parser = make_parser(__doc__.split("\n")[0], omniglot=True)
    parser.add_argument("--parts", nargs="+", default=["a", "b", "c"],
                        choices=["a", "b", "c"])
    args = parser.parse_args(argv)
    if {"b", "c"} & set(args.parts):
        require_baselines(parser, ("learn2learn",))
    device = parse_device(parser, args.device)
    set_threads(1)
    env = environment(device)
    print_header("bench_memory: memory of meta-training", env)
    plan = PLANS["quick" if args.quick else "full"]
    results = {"environment": env, "args": vars(args), "plan": plan}
    if "a" in args.parts:
        results["a_rss_trace"] = part_a(plan, device)
    if "b" in args.parts:
        results["b_inner_steps"] = part_b(plan, device)
    if "c" in args.parts:
        results["c_tasks_per_chunk"] = part_c(plan, device, args.omniglot_path)
    write_results("bench_memory", results, announce=True)


if __name__ == "__main__":
    main()
