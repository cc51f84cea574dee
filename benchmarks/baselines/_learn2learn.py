# SPDX-License-Identifier: BSD-3-Clause
"""learn2learn: ``l2l.algorithms.MAML``, ``clone()`` + ``adapt()`` per task
(its README way)."""

from collections.abc import Sequence

import torch
from torch import nn

from benchmarks._workloads import TaskArrays, Workload
from benchmarks.baselines._loop import (
    MetaStep,
    import_or_explain,
    task_to_tensors,
    train,
)


def learn2learn_meta_step(workload: Workload, module: nn.Module,
                          first_order: bool = False) -> MetaStep:
    l2l = import_or_explain("learn2learn")
    maml = l2l.algorithms.MAML(module, lr=workload.hyperparams["inner_lr"],
                               first_order=first_order)
    inner_steps = workload.hyperparams["inner_steps"]
    dtype = next(module.parameters()).dtype
    device = next(module.parameters()).device

    def meta_step(batch):
        meta_loss = 0.0
        for task in batch:
            X_support, y_support, X_query, y_query = task_to_tensors(task, dtype,
                                                                     device)
            learner = maml.clone()
            for _ in range(inner_steps):
                learner.adapt(workload.loss_fn(learner(X_support), y_support))
            query_loss = workload.loss_fn(learner(X_query), y_query)
            # Per-task backward frees each task's graph; /len gives the mean.
            (query_loss / len(batch)).backward()
            meta_loss += query_loss.detach() / len(batch)
        return meta_loss

    return meta_step


def run_learn2learn(workload: Workload, tasks: Sequence[TaskArrays], n_iter: int,
                    first_order: bool = False, *, seed: int = 0,
                    device: torch.device | str = "cpu") -> dict:
    return train(learn2learn_meta_step, workload, tasks, n_iter, first_order, seed,
                 device)
