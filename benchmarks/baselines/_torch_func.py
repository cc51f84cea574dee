# SPDX-License-Identifier: BSD-3-Clause
"""torch.func: ``functional_call`` + ``grad`` task by task (``func_loop``), and
the same per-task loss ``vmap``-ed over the meta-batch (``func_vmap``)."""

from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from benchmarks._workloads import TaskArrays, Workload
from benchmarks.baselines._loop import MetaStep, stack_batch, task_to_tensors, train


def _functional_task_loss(workload: Workload, module: nn.Module, first_order: bool):
    inner_steps = workload.hyperparams["inner_steps"]
    inner_lr = workload.hyperparams["inner_lr"]

    def support_loss(params, X, y):
        return workload.loss_fn(functional_call(module, params, (X,)), y)

    def task_loss(params, X_support, y_support, X_query, y_query):
        adapted = params
        for _ in range(inner_steps):
            grads = grad(support_loss)(adapted, X_support, y_support)
            if first_order:
                grads = {name: g.detach() for name, g in grads.items()}
            adapted = {name: p - inner_lr * grads[name] for name, p in adapted.items()}
        return workload.loss_fn(functional_call(module, adapted, (X_query,)), y_query)

    return task_loss


def func_loop_meta_step(workload: Workload, module: nn.Module,
                        first_order: bool = False) -> MetaStep:
    task_loss = _functional_task_loss(workload, module, first_order)
    params = dict(module.named_parameters())
    dtype = next(iter(params.values())).dtype
    device = next(iter(params.values())).device

    def meta_step(batch):
        meta_loss = 0.0
        for task in batch:
            query_loss = task_loss(params, *task_to_tensors(task, dtype, device))
            (query_loss / len(batch)).backward()
            meta_loss += query_loss.detach() / len(batch)
        return meta_loss

    return meta_step


def run_func_loop(workload: Workload, tasks: Sequence[TaskArrays], n_iter: int,
                  first_order: bool = False, *, seed: int = 0,
                  device: torch.device | str = "cpu") -> dict:
    return train(func_loop_meta_step, workload, tasks, n_iter, first_order, seed,
                 device)




def func_vmap_meta_step(workload: Workload, module: nn.Module,
                        first_order: bool = False) -> MetaStep:
    task_loss = _functional_task_loss(workload, module, first_order)
    batched_task_loss = vmap(task_loss, in_dims=(None, 0, 0, 0, 0))
    params = dict(module.named_parameters())
    dtype = next(iter(params.values())).dtype
    device = next(iter(params.values())).device

    def meta_step(batch):
        meta_loss = batched_task_loss(params, *stack_batch(batch, dtype,
                                                           device)).mean()
        meta_loss.backward()
        return meta_loss.detach()

    return meta_step


def run_func_vmap(workload: Workload, tasks: Sequence[TaskArrays], n_iter: int,
                  first_order: bool = False, *, seed: int = 0,
                  device: torch.device | str = "cpu") -> dict:
    return train(func_vmap_meta_step, workload, tasks, n_iter, first_order, seed,
                 device)
