# SPDX-License-Identifier: BSD-3-Clause
"""higher: ``higher.innerloop_ctx`` with a differentiable SGD inner optimizer."""

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


def higher_meta_step(workload: Workload, module: nn.Module,
                     first_order: bool = False) -> MetaStep:
    higher = import_or_explain("higher")
    inner_optimizer = torch.optim.SGD(module.parameters(),
                                      lr=workload.hyperparams["inner_lr"])
    inner_steps = workload.hyperparams["inner_steps"]
    params = list(module.parameters())
    dtype, device = params[0].dtype, params[0].device

    def meta_step(batch):
        meta_loss = 0.0
        for task in batch:
            X_support, y_support, X_query, y_query = task_to_tensors(task, dtype,
                                                                     device)
            with higher.innerloop_ctx(
                module, inner_optimizer, copy_initial_weights=False,
                track_higher_grads=not first_order,
            ) as (fmodel, diffopt):
                for _ in range(inner_steps):
                    diffopt.step(workload.loss_fn(fmodel(X_support), y_support))
                query_loss = workload.loss_fn(fmodel(X_query), y_query)
                if first_order:
                    # Untracked fast weights are detached leaves: their gradient
                    # is the first-order meta-gradient; hand it to the module.
                    task_grads = torch.autograd.grad(query_loss / len(batch),
                                                     list(fmodel.parameters()))
                    for param, task_grad in zip(params, task_grads):
                        param.grad = (task_grad if param.grad is None
                                      else param.grad + task_grad)
                else:
                    (query_loss / len(batch)).backward()
            meta_loss += query_loss.detach() / len(batch)
        return meta_loss

    return meta_step


def run_higher(workload: Workload, tasks: Sequence[TaskArrays], n_iter: int,
               first_order: bool = False, *, seed: int = 0,
               device: torch.device | str = "cpu") -> dict:
    return train(higher_meta_step, workload, tasks, n_iter, first_order, seed,
                 device)
