# SPDX-License-Identifier: BSD-3-Clause
"""Meta-training speed with 1 and 2 torch threads, on an idle and a busy machine.

sinusoid MAML and digits MAML (second order), sk_meta (``n_threads=1`` vs
``n_threads=2``) and learn2learn (``torch.set_num_threads``). Each
configuration is measured twice: with nothing else started by this script
("no spinner": the idle case; other users of a shared machine still count, see
the load average column), and while a ``python -c "while True: pass"``
subprocess keeps one core busy ("+1 spinning core"; killed afterwards).
Within one load condition the four methods are interleaved (A B C D, ...).

Usage::

    python -m benchmarks.bench_threads --quick
    python -m benchmarks.bench_threads [--device cuda]
"""

import contextlib
import dataclasses
import functools
import os
import subprocess
import sys
import time

from benchmarks._cli import make_parser, parse_device, require_baselines
from benchmarks._estimators import make_sk_estimator, time_sk_meta
from benchmarks._harness import interleaved_timing, set_threads, torch_threads
from benchmarks._report import environment, format_table, print_header, write_results
from benchmarks._workloads import get_workload
from benchmarks.baselines import run_learn2learn

# Meta-iterations per timed sample, for (1 thread, 2 threads). sk_meta is 5-10x
# faster, so it runs more. Two threads get far fewer: on a loaded 2-core
# machine every parallel region waits for a descheduled thread, and one
# meta-iteration can take 10-100x longer. (sk_meta's first one is untimed.)
PLANS = {
    "quick": {"sinusoid": {"sk_meta": (40, 5), "learn2learn": (4, 1)},
              "digits": {"sk_meta": (5, 2), "learn2learn": (1, 1)}, "repeats": 1},
    "full": {"sinusoid": {"sk_meta": (200, 20), "learn2learn": (20, 2)},
             "digits": {"sk_meta": (20, 4), "learn2learn": (5, 1)}, "repeats": 4},
}
THREADS = (1, 2)
LOADS = ("no spinner", "+1 spinning core")


@contextlib.contextmanager
def busy_core(enabled: bool):
    """Keep one core busy with a spinning Python subprocess (then kill it)."""
    if not enabled:
        yield None
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # let it get scheduled
        yield spinner
    finally:
        spinner.kill()
        spinner.wait()


class _WarmSmall:
    """Runner whose first (untimed warm-up) call uses meta-batches of 2 tasks:
    it only has to start the thread pool and load the kernels, and a full
    meta-batch with 2 threads on a loaded machine can take a minute."""

    def __init__(self, run, n_iter, workload):
        self.run, self.n_iter, self.calls = run, n_iter, 0
        self.small = dataclasses.replace(workload, hyperparams={
            **workload.hyperparams, "meta_batch_size": 2})

    def __call__(self):
        self.calls += 1
        if self.calls == 1:
            return self.run(2, self.small)
        return self.run(self.n_iter, None)


def _runners(workload, tasks, plan, device):
    runners = {}
    for n_threads, n_iter in zip(THREADS, plan["sk_meta"]):
        def run_sk(n, small, n_threads=n_threads):
            w = small or workload
            make = functools.partial(make_sk_estimator, w, "maml", device=device,
                                     n_threads=n_threads)
            return time_sk_meta(make, tasks, n, w.meta_batch_size, device)

        runners[f"sk_meta n_threads={n_threads}"] = _WarmSmall(run_sk, n_iter,
                                                               workload)
    for n_threads, n_iter in zip(THREADS, plan["learn2learn"]):
        def run_l2l(n, small, n_threads=n_threads):
            with torch_threads(n_threads):
                return run_learn2learn(small or workload, tasks, n, device=device)

        runners[f"learn2learn threads={n_threads}"] = _WarmSmall(run_l2l, n_iter,
                                                                 workload)
    return runners


def main(argv=None):
    parser = make_parser(__doc__.split("\n")[0])
    args = parser.parse_args(argv)
    require_baselines(parser, ("learn2learn",))
    device = parse_device(parser, args.device)
    set_threads(1)
    env = environment(device)
    print_header("bench_threads: 1 vs 2 torch threads, idle vs one busy core", env)
    plans = PLANS["quick" if args.quick else "full"]
    if device.type == "cuda":
        print("(on CUDA, threads only affect the host side)\n")

    rows, samples = [], {}
    for name in ("sinusoid", "digits"):
        workload = get_workload(name)
        plan = plans[name]
        tasks = workload.make_tasks(max(max(n) for n in plan.values()), seed=0)
        for load in LOADS:
            runners = _runners(workload, tasks, plan, device)
            load_before = os.getloadavg()[0]
            with busy_core(load == LOADS[1]):
                timing = interleaved_timing(
                    runners, repeats=plans["repeats"], warmup=1,
                    baseline="learn2learn threads=1")
            samples[f"{name} {load}"] = timing.samples
            one = {m: timing.median_it_per_s[f"{m}=1"]
                   for m in ("sk_meta n_threads", "learn2learn threads")}
            for method in runners:
                family = method.rsplit("=", 1)[0]
                rows.append({
                    "workload": name,
                    "load": load,
                    "method": method,
                    "it/s": timing.median_it_per_s[method],
                    "min": min(timing.samples[method]),
                    "max": max(timing.samples[method]),
                    "x same method, 1 thread": (timing.median_it_per_s[method]
                                                / one[family]),
                    "x learn2learn 1 thread": timing.ratio_to_baseline[method],
                    "load avg": load_before,
                })
            print(f"{name}, {load}: done", flush=True)

    # the busy machine against the idle one, same method and threads
    idle = {(r["workload"], r["method"]): r["it/s"] for r in rows
            if r["load"] == LOADS[0]}
    for row in rows:
        row["x no spinner"] = row["it/s"] / idle[(row["workload"], row["method"])]
    print("\n## Meta-iterations per second, MAML (second order)\n")
    print(format_table(rows, floatfmt=".3g"))
    print("\n`x same method, 1 thread`: speed-up from the second thread; "
          "`x no spinner`: with the spinning core against without (different "
          "rounds: noisier). `load avg`: the machine's 1-minute load average "
          "before the rounds (other users included).")
    write_results("bench_threads", {"environment": env, "args": vars(args),
                                    "plan": plans, "rows": rows,
                                    "samples_it_per_s": samples}, announce=True)


if __name__ == "__main__":
    main()
