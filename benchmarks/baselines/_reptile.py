# SPDX-License-Identifier: BSD-3-Clause
"""Reptile, written the way learn2learn's examples do it (first-order by nature)."""

import copy
import time
from collections.abc import Sequence

import torch

from benchmarks._harness import synchronize
from benchmarks._workloads import TaskArrays, Workload
from benchmarks.baselines._loop import task_to_tensors


def run_reptile_loop(workload: Workload, tasks: Sequence[TaskArrays], n_iter: int,
                     *, seed: int = 0, device: torch.device | str = "cpu") -> dict:
    """Reptile: per task, plain SGD on a deep copy for ``inner_steps`` steps on the
    support set; the outer Adam steps along mean(theta - adapted theta).

    ``final_loss`` is the mean query loss of the last meta-batch's adapted copies.
    """
    batch_size = workload.meta_batch_size
    if len(tasks) < n_iter * batch_size:
        raise ValueError(
            f"{n_iter} iterations need {n_iter * batch_size} tasks, got {len(tasks)}"
        )
    inner_steps = workload.hyperparams["inner_steps"]
    module = workload.make_module(seed).to(device)
    params = list(module.parameters())
    dtype = params[0].dtype
    meta_optimizer = torch.optim.Adam(params, lr=workload.hyperparams["meta_lr"])
    synchronize(device)
    start = time.perf_counter()
    for iteration in range(n_iter):
        batch = tasks[iteration * batch_size:(iteration + 1) * batch_size]
        meta_optimizer.zero_grad()
        for param in params:
            param.grad = torch.zeros_like(param)
        meta_loss = 0.0
        for task in batch:
            X_support, y_support, X_query, y_query = task_to_tensors(task, dtype,
                                                                     device)
            learner = copy.deepcopy(module)
            inner_optimizer = torch.optim.SGD(learner.parameters(),
                                              lr=workload.hyperparams["inner_lr"])
            for _ in range(inner_steps):
                inner_optimizer.zero_grad()
                workload.loss_fn(learner(X_support), y_support).backward()
                inner_optimizer.step()
            with torch.no_grad():
                meta_loss += workload.loss_fn(learner(X_query), y_query) / len(batch)
                for param, adapted in zip(params, learner.parameters()):
                    param.grad += (param - adapted) / len(batch)
        meta_optimizer.step()
    synchronize(device)
    elapsed = time.perf_counter() - start
    return {"it_per_s": n_iter / elapsed, "final_loss": float(meta_loss)}
