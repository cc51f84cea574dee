# SPDX-License-Identifier: BSD-3-Clause
"""What the baselines share: tasks as tensors, the training loop, imports.

A *meta step* computes one meta-batch's mean query loss and *accumulates* its
meta-gradient into ``.grad`` of the module's parameters, without stepping.
``train`` (the timed loop) and ``check_agreement`` both use it, so what is
checked is what is timed.
"""

import time
from collections.abc import Callable, Sequence

import torch

from benchmarks._harness import synchronize
from benchmarks._workloads import TaskArrays, Workload

MetaStep = Callable[[Sequence[TaskArrays]], torch.Tensor]


def task_to_tensors(task: TaskArrays, dtype: torch.dtype = torch.float32,
                    device: torch.device | str | None = None):
    """numpy -> torch the way a user would: floats to the model dtype, labels as is,
    on the model's device."""
    return tuple(
        torch.as_tensor(array, dtype=dtype if array.dtype.kind == "f" else None,
                        device=device)
        for array in task
    )


def stack_batch(batch: Sequence[TaskArrays], dtype: torch.dtype,
                device: torch.device | str | None = None):
    """Meta-batch as 4 tensors with a leading task dimension (same-shape tasks)."""
    per_task = [task_to_tensors(task, dtype, device) for task in batch]
    return tuple(torch.stack(parts) for parts in zip(*per_task))


def import_or_explain(name: str):
    try:
        return __import__(name)
    except ImportError as exc:
        raise ImportError(
            f"{name} is not installed; run `bash benchmarks/install_baselines.sh`"
        ) from exc


def train(make_meta_step: Callable[..., MetaStep], workload: Workload,
          tasks: Sequence[TaskArrays], n_iter: int, first_order: bool,
          seed: int, device: torch.device | str = "cpu") -> dict:
    """Meta-train a fresh seeded module with Adam for ``n_iter`` meta-batches.

    Times the loop by wall clock (numpy-to-tensor conversion and the copy to
    ``device`` included) and returns ``it_per_s`` and ``final_loss`` (mean
    query loss of the last meta-batch).
    """
    batch_size = workload.meta_batch_size
    if len(tasks) < n_iter * batch_size:
        raise ValueError(
            f"{n_iter} iterations need {n_iter * batch_size} tasks, got {len(tasks)}"
        )
    module = workload.make_module(seed).to(device)
    meta_step = make_meta_step(workload, module, first_order)
    meta_optimizer = torch.optim.Adam(module.parameters(),
                                      lr=workload.hyperparams["meta_lr"])
    synchronize(device)
    start = time.perf_counter()
    for iteration in range(n_iter):
        meta_optimizer.zero_grad()
        meta_loss = meta_step(tasks[iteration * batch_size:
                                    (iteration + 1) * batch_size])
        meta_optimizer.step()
    synchronize(device)
    elapsed = time.perf_counter() - start
    return {"it_per_s": n_iter / elapsed, "final_loss": float(meta_loss)}
