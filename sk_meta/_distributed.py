"""Meta-training split across the processes of a ``torch.distributed`` group.

Every process draws the same meta-batches (same tasks, same
``random_state``), computes the meta-gradient of its share of each one, and
the processes sum their shares with an all-reduce: every process then
applies the same update, as one process would on the whole meta-batch.

The collectives wait at most the timeout the group was created with
(``torch.distributed.init_process_group(timeout=...)``); when a process
fails, is killed or falls that far behind, the others raise a
``RuntimeError`` that says so instead of waiting forever.
"""

import dataclasses
import zlib

import numpy as np
import torch
from torch import distributed as dist

from sk_meta.functional import TaskBatch
from sk_meta.tasks._validation import StackedTasks


@dataclasses.dataclass(frozen=True)
class World:
    """The processes meta-training is split across: this one's rank, their number."""

    rank: int
    size: int
    backend: str

    @property
    def writes(self):
        """Whether this process writes files (checkpoints): rank 0 alone."""
        return self.rank == 0


def world(setting="auto"):
    """The default process group when ``setting`` allows it and it has 2+ processes.

    Parameters
    ----------
    setting : "auto" or bool, default="auto"
        The estimator's ``distributed``; ``False`` ignores any group.

    Returns
    -------
    world : World or None
        None: meta-train in this process alone.
    """
    if setting is False or not dist.is_available() or not dist.is_initialized():
        return None
    size = dist.get_world_size()
    if size < 2:
        return None
    return World(rank=dist.get_rank(), size=size, backend=str(dist.get_backend()))


def check_device(world, device):
    """Refuse a device the group's backend cannot reduce tensors of."""
    if world is None:
        return
    backends = world.backend.lower()
    if device.type != "cuda" and "gloo" not in backends and "nccl" in backends:
        raise ValueError(
            f"the process group's backend is {world.backend!r}, which reduces CUDA "
            f"tensors only, but device={str(device)!r}: pass "
            "device=f'cuda:{local_rank}', or create the group with backend='gloo' "
            "for the CPU"
        )


def _comm_device(world, device):
    """Where tensors are reduced: on the GPU with nccl, on the CPU with gloo."""
    if device.type == "cuda" and "nccl" in world.backend.lower():
        return device
    return torch.device("cpu")


def shard(groups, world):
    """This process's share of a meta-batch: tasks ``rank, rank + size, ...``.

    ``groups`` are the meta-batch's tasks grouped by shape (``StackedTasks``);
    a task's position is its place in the order the tasks were drawn. Returns
    the groups restricted to this share, empty ones left out (a process with
    no task in a meta-batch contributes zeros).
    """
    order = sorted(index for group in groups for index in group.indices)
    position = {index: p for p, index in enumerate(order)}
    mine = []
    for group in groups:
        rows = [i for i, index in enumerate(group.indices)
                if position[index] % world.size == world.rank]
        if not rows:
            continue
        rows = np.asarray(rows)
        mine.append(StackedTasks(
            group.X_support[rows], group.y_support[rows], group.X_query[rows],
            group.y_query[rows], n_classes=group.n_classes,
            indices=tuple(group.indices[i] for i in rows),
        ))
    return mine


def shard_batch(batch, world):
    """This process's share of a :class:`TaskBatch` (None when it gets no task)."""
    if batch.n_tasks <= world.rank:
        return None
    part = slice(world.rank, None, world.size)
    return TaskBatch(batch.X_support[part], batch.y_support[part],
                     batch.X_query[part], batch.y_query[part], batch.n_classes)


def all_reduce_sum(tensors, world, device):
    """Sum each tensor of the dict ``tensors`` over the processes.

    One all-reduce per dtype (the tensors are flattened into one buffer);
    the sums come back on each tensor's device, in a new dict.
    """
    by_dtype = {}
    for name, tensor in tensors.items():
        by_dtype.setdefault(tensor.dtype, []).append(name)
    comm = _comm_device(world, device)
    summed = {}
    for names in by_dtype.values():
        buffer = torch.cat([tensors[n].detach().reshape(-1).to(comm) for n in names])
        _collective(dist.all_reduce, buffer, dist.ReduceOp.SUM, world=world,
                    what="the meta-gradient")
        sizes = [tensors[n].numel() for n in names]
        for name, part in zip(names, buffer.split(sizes)):
            summed[name] = part.view_as(tensors[name]).to(tensors[name].device)
    return summed


def all_reduce_max(values, world, device):
    """The largest value of each of ``values`` (floats) over the processes.

    How the processes agree to stop: a stop flag raised on any process
    (Ctrl-C, ``max_time``) is raised on all.
    """
    buffer = torch.tensor([float(v) for v in values], dtype=torch.float64,
                          device=_comm_device(world, device))
    _collective(dist.all_reduce, buffer, dist.ReduceOp.MAX, world=world,
                what="the stop flags")
    return buffer.tolist()


def check_agreement(facts, world, device):
    """Raise on every process if the numbers ``facts`` (name -> number) are
    not the same on all of them: a setup that differs between processes
    would pair their collectives wrongly (a loss read as a stop flag) or
    abort in the backend."""
    names = list(facts)
    values = [float(facts[name]) for name in names]
    buffer = torch.tensor(values + [-v for v in values], dtype=torch.float64,
                          device=_comm_device(world, device))
    _collective(dist.all_reduce, buffer, dist.ReduceOp.MAX, world=world,
                what="the meta-training setup")
    highest, lowest = buffer[:len(values)].tolist(), (-buffer[len(values):]).tolist()
    differ = [name for name, high, low in zip(names, highest, lowest) if high != low]
    if differ:
        raise ValueError(
            f"distributed meta-training: the processes differ in {'; '.join(differ)} "
            f"(process {world.rank} of {world.size}). Every process runs the same "
            "script: the same estimator settings, the same tasks and "
            "validation_tasks (pass them on every process; each validates its "
            "share)."
        )


def shape_signature(tensors):
    """A number that changes with the names and shapes of ``tensors``."""
    described = repr([(str(name), tuple(t.shape)) for name, t in tensors.items()])
    return zlib.crc32(described.encode())


def broadcast_from_first(tensors, world, device):
    """Overwrite the dict ``tensors`` in place with rank 0's values.

    Every process then starts from the same weights, even from a module
    instance initialized differently in each process.
    """
    comm = _comm_device(world, device)
    for tensor in tensors.values():
        buffer = tensor.detach().to(comm).contiguous()
        _collective(dist.broadcast, buffer, 0, world=world,
                    what="the initial weights")
        with torch.no_grad():
            tensor.copy_(buffer)


def _collective(operation, *args, world, what):
    """Run a collective; turn a failure or a timeout into a clear error."""
    try:
        operation(*args)
    except RuntimeError as exc:  # DistBackendError, DistNetworkError among them
        raise RuntimeError(
            f"distributed meta-training: process {world.rank} of {world.size} could "
            f"not reduce {what} with the others ({type(exc).__name__}: {exc}). "
            "Another process failed, was killed, or fell behind by more than the "
            "process group's timeout (the timeout= of "
            "torch.distributed.init_process_group); see the other processes' "
            "errors."
        ) from exc
