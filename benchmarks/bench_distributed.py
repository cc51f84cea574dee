# SPDX-License-Identifier: BSD-3-Clause
"""Meta-training speed with 1, 2, ... processes of a torch.distributed group.

MAML (second order) on the digits MLP and on a conv-4 network (32 filters,
5-way 5-shot, Omniglot when the file is there, else random 28x28 images), as
``meta_partial_fit`` through the public API (``time_sk_meta``: one untimed
warm-up meta-batch, then a timed pass). Each meta-batch is split across the
processes, which all-reduce their meta-gradients; the speed is process 0's
wall clock. Efficiency is ``it/s(W) / (W * it/s(1))``: 1.0 is perfect
scaling.

Two ways to run it:

- spawned here, one process per worker and world size (1, 2, 4, ... up to
  ``--nprocs``), on a single machine: ``--backend gloo`` (CPU, default) or
  ``--backend nccl`` (one GPU per process)::

      python -m benchmarks.bench_distributed --quick
      python -m benchmarks.bench_distributed --backend nccl --nprocs 8

- under torchrun, at the world size torchrun starts (any number of nodes);
  process 0 first runs alone (the 1-process reference, and learn2learn on the
  same device when it is installed) while the others wait::

      torchrun --nproc_per_node=8 -m benchmarks.bench_distributed --backend nccl

On a machine with 2 cores, two CPU processes cannot run faster than the free
cores allow: with another job on one core, the efficiency of 2 processes is
bounded near 0.5 whatever the all-reduce costs.
"""

import datetime
import functools
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from benchmarks._cli import make_parser, positive_int
from benchmarks._estimators import make_sk_estimator, time_sk_meta
from benchmarks._harness import set_threads
from benchmarks._report import environment, format_table, print_header, write_results
from benchmarks._workloads import conv_workload, get_workload

# Meta-iterations per timed run (the first is an untimed warm-up), and runs.
PLANS = {
    "quick": {"digits": 12, "conv4": 4, "learn2learn": 3, "repeats": 1},
    "full": {"digits": 60, "conv4": 16, "learn2learn": 10, "repeats": 3},
}
WORKLOADS = ("digits", "conv4")


def _workload(name, omniglot_path):
    if name == "conv4":
        return conv_workload(omniglot_path)
    return get_workload(name)


def _device(backend, local_rank):
    if backend == "nccl":
        device = torch.device(f"cuda:{local_rank}")
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")


def _time_sk_meta(workload, n_iter, device, **params):
    tasks = workload.make_tasks(n_iter, seed=0)  # the same on every process
    make = functools.partial(make_sk_estimator, workload, "maml", device=device,
                             **params)
    return time_sk_meta(make, tasks, n_iter, workload.meta_batch_size, device)


def _time_learn2learn(workload, n_iter, device):
    try:
        from benchmarks.baselines import run_learn2learn

        tasks = workload.make_tasks(n_iter, seed=0)
        return run_learn2learn(workload, tasks, n_iter, device=device)["it_per_s"]
    except ImportError:
        return None


# -- spawned: one group per world size -----------------------------------------------

def _spawned_worker(rank, world_size, port, backend, name, n_iter, omniglot_path,
                    queue):
    set_threads(1)
    device = _device(backend, rank)
    if world_size > 1:
        dist.init_process_group(
            backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
            world_size=world_size, timeout=datetime.timedelta(minutes=5))
    result = _time_sk_meta(_workload(name, omniglot_path), n_iter, device)
    if rank == 0:
        queue.put(result["it_per_s"])
    if world_size > 1:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _spawned_it_per_s(world_size, backend, name, n_iter, omniglot_path):
    queue = mp.get_context("spawn").SimpleQueue()
    mp.start_processes(
        _spawned_worker, nprocs=world_size, start_method="spawn",
        args=(world_size, _free_port(), backend, name, n_iter, omniglot_path, queue))
    return queue.get()


def _world_sizes(nprocs):
    sizes, size = [], 1
    while size < nprocs:
        sizes.append(size)
        size *= 2
    return [*sizes, nprocs]


def run_spawned(args, plan):
    device = torch.device("cuda:0" if args.backend == "nccl" else "cpu")
    env = environment(device)
    print_header(f"bench_distributed: 1 to {args.nprocs} processes ({args.backend})",
                 env)
    if args.backend == "gloo":
        print(f"({os.cpu_count()} logical cores; load average "
              f"{os.getloadavg()[0]:.2f}: processes beyond the free cores "
              "share them, which bounds the efficiency)\n", flush=True)
    rows = []
    for name in WORKLOADS:
        samples = {w: [] for w in _world_sizes(args.nprocs)}
        for _ in range(plan["repeats"]):
            for world_size in samples:  # interleaved: drifts hit all sizes alike
                samples[world_size].append(_spawned_it_per_s(
                    world_size, args.backend, name, plan[name], args.omniglot_path))
        one = _median(samples[1])
        for world_size, values in samples.items():
            it_per_s = _median(values)
            rows.append(_row(name, world_size, it_per_s, one, values))
        print(f"{name}: done", flush=True)
    learn2learn = {}
    if args.backend == "nccl":
        with torch.cuda.device(device):
            learn2learn = {name: _time_learn2learn(_workload(name, args.omniglot_path),
                                                   plan["learn2learn"], device)
                           for name in WORKLOADS}
    _report(args, plan, env, rows, learn2learn)


# -- under torchrun: the world size it started ---------------------------------------

def run_under_torchrun(args, plan):
    dist.init_process_group(args.backend, timeout=datetime.timedelta(minutes=10))
    rank, world_size = dist.get_rank(), dist.get_world_size()
    device = _device(args.backend, int(os.environ.get("LOCAL_RANK", 0)))
    set_threads(1)
    env = environment(device)
    if rank == 0:
        print_header(f"bench_distributed under torchrun: {world_size} processes "
                     f"({args.backend})", env)
    rows, learn2learn = [], {}
    for name in WORKLOADS:
        workload = _workload(name, args.omniglot_path)
        one, many = [], []
        for _ in range(plan["repeats"]):
            if rank == 0:  # alone, on the same device, while the others wait
                one.append(_time_sk_meta(workload, plan[name], device,
                                         distributed=False)["it_per_s"])
            dist.barrier()
            many.append(_time_sk_meta(workload, plan[name], device)["it_per_s"])
        if rank == 0:
            rows.append(_row(name, 1, _median(one), _median(one), one))
            rows.append(_row(name, world_size, _median(many), _median(one), many))
            learn2learn[name] = _time_learn2learn(workload, plan["learn2learn"],
                                                  device)
        dist.barrier()
    if rank == 0:
        _report(args, plan, env, rows, learn2learn)
    dist.destroy_process_group()


# -- the report ----------------------------------------------------------------------

def _median(values):
    return sorted(values)[len(values) // 2]


def _row(name, world_size, it_per_s, one, samples):
    return {"workload": name, "processes": world_size, "it/s": it_per_s,
            "min": min(samples), "max": max(samples),
            "x 1 process": it_per_s / one,
            "efficiency": it_per_s / (world_size * one),
            "it/s per process": it_per_s / world_size}


def _report(args, plan, env, rows, learn2learn):
    print("\n## MAML meta-iterations per second (meta-batch 32, split across the "
          "processes)\n")
    print(format_table(rows, floatfmt=".3g"))
    print("\n`efficiency`: it/s(W) / (W * it/s(1)); 1.0 is perfect scaling.")
    if any(v is not None for v in learn2learn.values()):
        print("learn2learn (one process, same device): " + ", ".join(
            f"{name} {v:.3g} it/s" for name, v in learn2learn.items()
            if v is not None))
    write_results("bench_distributed", {
        "environment": env, "args": vars(args), "plan": plan, "rows": rows,
        "learn2learn_it_per_s": learn2learn}, announce=True)


def main(argv=None):
    parser = make_parser(__doc__.split("\n")[0], omniglot=True)
    parser.add_argument("--backend", choices=("gloo", "nccl"), default="gloo",
                        help="gloo: CPU processes (default); nccl: one GPU each")
    parser.add_argument("--nprocs", type=positive_int, default=2,
                        help="the most processes spawned (default: %(default)s; "
                        "ignored under torchrun)")
    args = parser.parse_args(argv)
    if args.device != "cpu":
        parser.error("--device: the backend chooses the device (nccl: cuda:<rank>)")
    if args.backend == "nccl" and torch.cuda.device_count() < (
            1 if "LOCAL_RANK" in os.environ else args.nprocs):
        parser.error(f"--backend nccl needs one GPU per process; "
                     f"{torch.cuda.device_count()} found")
    plan = PLANS["quick" if args.quick else "full"]
    if "LOCAL_RANK" in os.environ:  # started by torchrun
        run_under_torchrun(args, plan)
    else:
        run_spawned(args, plan)


if __name__ == "__main__":
    main()
