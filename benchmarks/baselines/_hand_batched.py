# SPDX-License-Identifier: BSD-3-Clause
"""Hand-batched MLP: every task's copy of the weights in one (B, in, out)
tensor, all tasks at once with ``torch.baddbmm`` (MLPs only)."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks._workloads import TaskArrays, Workload
from benchmarks.baselines._loop import MetaStep, stack_batch, train


def _mlp_linears(module: nn.Module) -> list[nn.Linear]:
    layers = list(module.children()) if isinstance(module, nn.Sequential) else []
    if not layers or not all(isinstance(m, nn.Linear | nn.ReLU) for m in layers):
        raise ValueError("hand_batched needs an nn.Sequential of Linear and ReLU")
    return [m for m in layers if isinstance(m, nn.Linear)]


def _per_task_losses(loss: str, prediction: torch.Tensor,
                     target: torch.Tensor) -> torch.Tensor:
    """(B,) mean loss of each task from (B, n, ...) predictions and targets."""
    n_tasks, n_samples = prediction.shape[:2]
    if loss == "mse":
        return F.mse_loss(prediction, target, reduction="none").mean(dim=(1, 2))
    losses = F.cross_entropy(prediction.reshape(n_tasks * n_samples, -1),
                             target.reshape(-1), reduction="none")
    return losses.view(n_tasks, n_samples).mean(dim=1)


def hand_batched_meta_step(workload: Workload, module: nn.Module,
                           first_order: bool = False) -> MetaStep:
    linears = _mlp_linears(module)
    inner_steps = workload.hyperparams["inner_steps"]
    inner_lr = workload.hyperparams["inner_lr"]
    loss = workload.hyperparams["loss"]
    dtype, device = linears[0].weight.dtype, linears[0].weight.device

    def forward(batched_params, X):
        hidden = X
        for i in range(0, len(batched_params), 2):
            weight_t, bias = batched_params[i], batched_params[i + 1]
            hidden = torch.baddbmm(bias, hidden, weight_t)  # (B, n, out)
            if i + 2 < len(batched_params):
                hidden = torch.relu(hidden)
        return hidden

    def meta_step(batch):
        X_support, y_support, X_query, y_query = stack_batch(batch, dtype, device)
        n_tasks = len(batch)
        # expand() is a view: each task starts from the same meta-parameters and
        # autograd sums the tasks' gradients back into them.
        batched_params = []
        for linear in linears:
            batched_params.append(linear.weight.t().expand(n_tasks, -1, -1))
            batched_params.append(linear.bias.expand(n_tasks, 1, -1))
        for _ in range(inner_steps):
            # Tasks are independent, so d(sum of losses)/d(task copy) is that
            # task's own gradient.
            support_losses = _per_task_losses(loss, forward(batched_params, X_support),
                                              y_support)
            grads = torch.autograd.grad(support_losses.sum(), batched_params,
                                        create_graph=not first_order)
            batched_params = [p - inner_lr * g for p, g in zip(batched_params, grads)]
        meta_loss = _per_task_losses(loss, forward(batched_params, X_query),
                                     y_query).mean()
        meta_loss.backward()
        return meta_loss.detach()

    return meta_step


def run_hand_batched(workload: Workload, tasks: Sequence[TaskArrays], n_iter: int,
                     first_order: bool = False, *, seed: int = 0,
                     device: torch.device | str = "cpu") -> dict:
    return train(hand_batched_meta_step, workload, tasks, n_iter, first_order, seed,
                 device)
