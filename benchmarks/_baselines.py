# SPDX-License-Identifier: BSD-3-Clause
"""Benchmark workloads and the baseline meta-training loops sk_meta is timed against.

Every method trains on exactly the same numpy tasks, in the same order, from the
same seeded initialisation, so the benchmark scripts can interleave them (A B A B)
and compare iterations per second and final meta-losses.

Workloads (``get_workload(name)``):

* ``sinusoid``: the MAML paper's regression protocol (MLP 1-40-40-1).
* ``digits``: scikit-learn digits, 5-way 5-shot classification (MLP 64-64-64-64-5).
* ``omniglot``: 28x28 Omniglot, 5-way 1-shot, the MAML paper's conv-4 network.

Baselines (``run_<method>(workload, tasks, n_iter, first_order=False)``):

* ``learn2learn``: ``l2l.algorithms.MAML``, clone/adapt per task (its README way).
* ``higher``: ``higher.innerloop_ctx`` with a differentiable SGD inner optimizer.
* ``func_loop``: ``torch.func.functional_call`` + ``torch.func.grad``, task by task.
* ``func_vmap``: the same per-task loss, ``torch.func.vmap``-ed over the meta-batch.
* ``hand_batched``: MLPs only, all tasks at once with ``torch.baddbmm``.
* ``reptile_loop`` (separate, first-order by nature): learn2learn-style Reptile.

Run ``python benchmarks/_baselines.py --check`` to verify that the MAML
meta-gradients of all methods agree in float64, and ``--quick`` for a
one-minute speed sanity run. learn2learn and higher are installed by
``benchmarks/install_baselines.sh``; they are imported only when used.
"""

import argparse
import copy
import functools
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

# (X_support, y_support, X_query, y_query); floats are float32, labels int64.
TaskArrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

DEFAULT_OMNIGLOT_PATH = Path(
    os.environ.get(
        "SK_META_OMNIGLOT_PATH", "/work/shared/data/omniglot/omniglot28.npz"
    )
)


# --------------------------------------------------------------------------- #
# Workloads
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class Workload:
    """A benchmark problem: how to sample its tasks, its network, its settings.

    ``sample_tasks(n_tasks, seed)`` and ``make_module(seed)`` are
    ``functools.partial`` objects of module-level functions, so a workload
    pickles (e.g. into ``_harness.peak_rss_in_subprocess``).
    """

    name: str
    hyperparams: dict
    sample_tasks: Callable[[int, int], list[TaskArrays]]
    make_module: Callable[[int], nn.Module]

    @property
    def meta_batch_size(self) -> int:
        return self.hyperparams["meta_batch_size"]

    @property
    def is_mlp(self) -> bool:
        return self.hyperparams["network"] == "mlp"

    def make_tasks(self, n_iter: int, seed: int = 0) -> list[TaskArrays]:
        """The flat task list for ``n_iter`` meta-batches: batch i is
        ``tasks[i * meta_batch_size:(i + 1) * meta_batch_size]``."""
        return self.sample_tasks(n_iter * self.meta_batch_size, seed)

    def loss_fn(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.hyperparams["loss"] == "mse":
            return F.mse_loss(prediction, target)
        return F.cross_entropy(prediction, target)


def _seeded_module(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    # fork_rng: creating a model must not shift the caller's global torch RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def make_mlp(seed: int = 0, *, n_inputs: int, hidden_layer_sizes: Sequence[int],
             n_outputs: int) -> nn.Sequential:
    """Linear/ReLU stack; the layout ``run_hand_batched`` knows how to batch."""

    def build():
        sizes = [n_inputs, *hidden_layer_sizes, n_outputs]
        layers = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        return nn.Sequential(*layers[:-1])  # no ReLU after the output layer

    return _seeded_module(build, seed)


def make_conv4(seed: int = 0, *, n_classes: int = 5,
               n_filters: int = 64) -> nn.Sequential:
    """The MAML paper's Omniglot network: 4 x (conv3x3, BN, ReLU, maxpool 2).

    BatchNorm uses batch statistics only (``track_running_stats=False``), as MAML
    does, so the module has no buffers and every method sees the same function.
    """

    def build():
        blocks = []
        for n_in in (1, n_filters, n_filters, n_filters):
            blocks += [
                nn.Conv2d(n_in, n_filters, kernel_size=3, padding=1),
                nn.BatchNorm2d(n_filters, track_running_stats=False),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
        # 28 -> 14 -> 7 -> 3 -> 1 pixels after the four pools.
        return nn.Sequential(*blocks, nn.Flatten(), nn.Linear(n_filters, n_classes))

    return _seeded_module(build, seed)


def sample_sinusoid_tasks(n_tasks: int, seed: int = 0, *, n_support: int = 10,
                          n_query: int = 10) -> list[TaskArrays]:
    """MAML's sinusoids: y = A sin(x - phase), A ~ U[0.1, 5], phase ~ U[0, pi]."""
    rng = np.random.default_rng(seed)
    tasks = []
    for _ in range(n_tasks):
        amplitude = rng.uniform(0.1, 5.0)
        phase = rng.uniform(0.0, np.pi)
        x = rng.uniform(-5.0, 5.0, size=(n_support + n_query, 1))
        y = amplitude * np.sin(x - phase)
        x, y = x.astype(np.float32), y.astype(np.float32)
        tasks.append((x[:n_support], y[:n_support], x[n_support:], y[n_support:]))
    return tasks


def _sample_n_way_tasks(images: np.ndarray, labels: np.ndarray,
                        class_pool: np.ndarray, n_tasks: int, seed: int, *,
                        n_way: int, n_shot: int, n_query: int,
                        scale: float) -> list[TaskArrays]:
    """N-way K-shot tasks; labels remapped to 0..n_way-1 in sorted class order.

    ``images`` may stay uint8: each task converts only its own rows to float32,
    so large datasets (Omniglot) are not expanded to float up front.
    """
    rng = np.random.default_rng(seed)
    rows_by_class = {c: np.flatnonzero(labels == c) for c in class_pool}
    n_per_class = n_shot + n_query
    tasks = []
    for _ in range(n_tasks):
        classes = np.sort(rng.choice(class_pool, size=n_way, replace=False))
        support_rows, query_rows = [], []
        for c in classes:
            rows = rng.choice(rows_by_class[c], size=n_per_class, replace=False)
            support_rows.append(rows[:n_shot])
            query_rows.append(rows[n_shot:])
        y_support = np.repeat(np.arange(n_way, dtype=np.int64), n_shot)
        y_query = np.repeat(np.arange(n_way, dtype=np.int64), n_query)
        X_support = images[np.concatenate(support_rows)].astype(np.float32) / scale
        X_query = images[np.concatenate(query_rows)].astype(np.float32) / scale
        tasks.append((X_support, y_support, X_query, y_query))
    return tasks


@functools.cache
def _load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.data, digits.target


def sample_digits_tasks(n_tasks: int, seed: int = 0, *, n_way: int = 5,
                        n_shot: int = 5, n_query: int = 15) -> list[TaskArrays]:
    """5-way 5-shot tasks from scikit-learn's 8x8 digits, pixels scaled to [0, 1]."""
    images, labels = _load_digits_arrays()
    return _sample_n_way_tasks(
        images, labels, np.unique(labels), n_tasks, seed,
        n_way=n_way, n_shot=n_shot, n_query=n_query, scale=16.0,
    )


@functools.cache
def _load_omniglot_arrays(path: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as archive:
        # images_nearest is the binary resize MAML really used; ink = 255.
        images = archive["images_nearest"][:, None, :, :]  # (N, 1, 28, 28) uint8
        return images, archive["character"]


def omniglot_train_classes(labels: np.ndarray, n_train_classes: int = 1200,
                           split_seed: int = 0) -> np.ndarray:
    """The meta-training characters: MAML and Reptile pool all 1,623 characters,
    shuffle them and meta-train on 1,200 (we record our own shuffle seed)."""
    characters = np.unique(labels)
    permuted = np.random.default_rng(split_seed).permutation(characters)
    return np.sort(permuted[:n_train_classes])


def sample_omniglot_tasks(n_tasks: int, seed: int = 0, *,
                          path: str = str(DEFAULT_OMNIGLOT_PATH), n_way: int = 5,
                          n_shot: int = 1, n_query: int = 5,
                          split_seed: int = 0) -> list[TaskArrays]:
    """5-way 1-shot Omniglot tasks, float32 images in [0, 1] with ink = 1.

    No rotation augmentation or jitter: a speed benchmark only needs realistic
    shapes and values, and every method must see identical inputs.
    """
    images, labels = _load_omniglot_arrays(str(path))
    return _sample_n_way_tasks(
        images, labels, omniglot_train_classes(labels, split_seed=split_seed),
        n_tasks, seed, n_way=n_way, n_shot=n_shot, n_query=n_query, scale=255.0,
    )


def sinusoid_workload() -> Workload:
    hyperparams = {
        "network": "mlp", "hidden_layer_sizes": (40, 40), "loss": "mse",
        "n_support": 10, "n_query": 10, "inner_steps": 1, "inner_lr": 0.01,
        "meta_batch_size": 25, "meta_optimizer": "adam", "meta_lr": 1e-3,
    }
    return Workload(
        name="sinusoid",
        hyperparams=hyperparams,
        sample_tasks=functools.partial(sample_sinusoid_tasks, n_support=10,
                                       n_query=10),
        make_module=functools.partial(make_mlp, n_inputs=1,
                                      hidden_layer_sizes=(40, 40), n_outputs=1),
    )


def digits_workload() -> Workload:
    hyperparams = {
        "network": "mlp", "hidden_layer_sizes": (64, 64, 64),
        "loss": "cross_entropy", "n_way": 5, "n_shot": 5, "n_query": 15,
        "inner_steps": 5, "inner_lr": 0.1, "meta_batch_size": 32,
        "meta_optimizer": "adam", "meta_lr": 1e-3,
    }
    return Workload(
        name="digits",
        hyperparams=hyperparams,
        sample_tasks=functools.partial(sample_digits_tasks, n_way=5, n_shot=5,
                                       n_query=15),
        make_module=functools.partial(make_mlp, n_inputs=64,
                                      hidden_layer_sizes=(64, 64, 64),
                                      n_outputs=5),
    )


def omniglot_workload(path: str | os.PathLike = DEFAULT_OMNIGLOT_PATH,
                      n_query: int = 5) -> Workload:
    hyperparams = {
        "network": "conv4", "loss": "cross_entropy", "n_way": 5, "n_shot": 1,
        "n_query": n_query, "inner_steps": 1, "inner_lr": 0.4,
        "meta_batch_size": 32, "meta_optimizer": "adam", "meta_lr": 1e-3,
        "data": str(path), "n_train_classes": 1200, "class_split_seed": 0,
    }
    return Workload(
        name="omniglot",
        hyperparams=hyperparams,
        sample_tasks=functools.partial(sample_omniglot_tasks, path=str(path),
                                       n_way=5, n_shot=1, n_query=n_query),
        make_module=functools.partial(make_conv4, n_classes=5),
    )


WORKLOADS = {
    "sinusoid": sinusoid_workload,
    "digits": digits_workload,
    "omniglot": omniglot_workload,
}


def get_workload(name: str, **kwargs) -> Workload:
    """``get_workload("omniglot", path=..., n_query=15)``; kwargs go to the factory."""
    return WORKLOADS[name](**kwargs)


def prepare_workload(name: str, n_iter: int, task_seed: int = 0,
                     **kwargs) -> tuple[Workload, list[TaskArrays]]:
    """Workload plus its task list; a ``setup`` for ``peak_rss_in_subprocess``."""
    workload = get_workload(name, **kwargs)
    return workload, workload.make_tasks(n_iter, task_seed)


# --------------------------------------------------------------------------- #
# Shared pieces of the baselines
# --------------------------------------------------------------------------- #
def task_to_tensors(task: TaskArrays, dtype: torch.dtype = torch.float32,
                    device: torch.device | str | None = None):
    """numpy -> torch the way a user would: floats to the model dtype, labels as is,
    on the model's device."""
    return tuple(
        torch.as_tensor(array, dtype=dtype if array.dtype.kind == "f" else None,
                        device=device)
        for array in task
    )


def synchronize(device: torch.device | str) -> None:
    """Wait for the device's queued kernels, so wall-clock timings are complete."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _import_or_explain(name: str):
    try:
        return __import__(name)
    except ImportError as exc:
        raise ImportError(
            f"{name} is not installed; run `bash benchmarks/install_baselines.sh`"
        ) from exc


# A "meta step" computes one meta-batch's mean query loss and *accumulates* its
# meta-gradient into ``.grad`` of the module's parameters, without stepping. The
# training loop and the agreement check both use it, so what is checked is what
# is timed.
MetaStep = Callable[[Sequence[TaskArrays]], torch.Tensor]


def _train(make_meta_step: Callable[..., MetaStep], workload: Workload,
           tasks: Sequence[TaskArrays], n_iter: int, first_order: bool,
           seed: int, device: torch.device | str = "cpu") -> dict:
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


# --------------------------------------------------------------------------- #
# learn2learn
# --------------------------------------------------------------------------- #
def learn2learn_meta_step(workload: Workload, module: nn.Module,
                          first_order: bool = False) -> MetaStep:
    l2l = _import_or_explain("learn2learn")
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
    return _train(learn2learn_meta_step, workload, tasks, n_iter, first_order, seed,
                  device)


# --------------------------------------------------------------------------- #
# higher
# --------------------------------------------------------------------------- #
def higher_meta_step(workload: Workload, module: nn.Module,
                     first_order: bool = False) -> MetaStep:
    higher = _import_or_explain("higher")
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
    return _train(higher_meta_step, workload, tasks, n_iter, first_order, seed,
                  device)


# --------------------------------------------------------------------------- #
# torch.func: per-task loop and vmap share one pure per-task loss
# --------------------------------------------------------------------------- #
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
    return _train(func_loop_meta_step, workload, tasks, n_iter, first_order, seed,
                  device)


def _stack_batch(batch: Sequence[TaskArrays], dtype: torch.dtype,
                 device: torch.device | str | None = None):
    """Meta-batch as 4 tensors with a leading task dimension (same-shape tasks)."""
    per_task = [task_to_tensors(task, dtype, device) for task in batch]
    return tuple(torch.stack(parts) for parts in zip(*per_task))


def func_vmap_meta_step(workload: Workload, module: nn.Module,
                        first_order: bool = False) -> MetaStep:
    task_loss = _functional_task_loss(workload, module, first_order)
    batched_task_loss = vmap(task_loss, in_dims=(None, 0, 0, 0, 0))
    params = dict(module.named_parameters())
    dtype = next(iter(params.values())).dtype
    device = next(iter(params.values())).device

    def meta_step(batch):
        meta_loss = batched_task_loss(params, *_stack_batch(batch, dtype,
                                                            device)).mean()
        meta_loss.backward()
        return meta_loss.detach()

    return meta_step


def run_func_vmap(workload: Workload, tasks: Sequence[TaskArrays], n_iter: int,
                  first_order: bool = False, *, seed: int = 0,
                  device: torch.device | str = "cpu") -> dict:
    return _train(func_vmap_meta_step, workload, tasks, n_iter, first_order, seed,
                  device)


# --------------------------------------------------------------------------- #
# Hand-batched MLP: every task's copy of the weights in one (B, in, out) tensor
# --------------------------------------------------------------------------- #
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
        X_support, y_support, X_query, y_query = _stack_batch(batch, dtype, device)
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
    return _train(hand_batched_meta_step, workload, tasks, n_iter, first_order, seed,
                  device)


# --------------------------------------------------------------------------- #
# Reptile, written the way learn2learn's examples do it
# --------------------------------------------------------------------------- #
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


# --------------------------------------------------------------------------- #
# Registry
# --------------------------------------------------------------------------- #
MAML_BASELINES = {
    "learn2learn": run_learn2learn,
    "higher": run_higher,
    "func_loop": run_func_loop,
    "func_vmap": run_func_vmap,
    "hand_batched": run_hand_batched,
}
META_STEPS = {
    "learn2learn": learn2learn_meta_step,
    "higher": higher_meta_step,
    "func_loop": func_loop_meta_step,
    "func_vmap": func_vmap_meta_step,
    "hand_batched": hand_batched_meta_step,
}
REPTILE_BASELINES = {"reptile_loop": run_reptile_loop}


def maml_baselines_for(workload: Workload) -> dict[str, Callable[..., dict]]:
    """The MAML baselines that apply to ``workload`` (hand_batched: MLPs only)."""
    return {name: run for name, run in MAML_BASELINES.items()
            if workload.is_mlp or name != "hand_batched"}


def run_baseline(method: str, workload: Workload, tasks: Sequence[TaskArrays],
                 n_iter: int, first_order: bool = False, *, seed: int = 0,
                 device: torch.device | str = "cpu") -> dict:
    """Dispatch by name, e.g. for ``_harness.peak_rss_in_subprocess``."""
    if method in REPTILE_BASELINES:
        return REPTILE_BASELINES[method](workload, tasks, n_iter, seed=seed,
                                         device=device)
    return MAML_BASELINES[method](workload, tasks, n_iter, first_order, seed=seed,
                                  device=device)


# --------------------------------------------------------------------------- #
# Agreement check
# --------------------------------------------------------------------------- #
def meta_gradient(method: str, workload: Workload, batch: Sequence[TaskArrays],
                  first_order: bool = False, *, seed: int = 0,
                  dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    """One meta-batch's MAML meta-gradient by ``method``, as name -> tensor."""
    module = workload.make_module(seed).to(dtype)
    META_STEPS[method](workload, module, first_order)(batch)
    return {name: p.grad.detach().clone() for name, p in module.named_parameters()}


def check_agreement(workload: Workload | None = None, first_order: bool = False,
                    *, methods: Sequence[str] | None = None, task_seed: int = 0,
                    n_tasks: int | None = None, rtol: float = 1e-10,
                    strict: bool = True) -> dict[str, float]:
    """Check in float64 that all methods give the same meta-gradient.

    Returns the max relative difference of each method against ``func_loop``
    (max |g - g_ref| / max |g_ref| over all parameters) and, when ``strict``,
    raises ``AssertionError`` if any exceeds ``rtol``. ``n_tasks`` shrinks the
    meta-batch (float64 convolutions are slow).

    Known failure (torch 2.13): ``func_vmap`` on ``omniglot`` disagrees, by
    ~1e-3 relative, in MAML (not first-order) mode. Finite differences side with
    the loops: vmap's batching rule for the backward of batch_norm (and
    layer_norm) is wrong for second-order gradients (functorch issue #534).
    """
    workload = workload or sinusoid_workload()
    methods = list(methods or maml_baselines_for(workload))
    batch = workload.make_tasks(1, task_seed)[:n_tasks]
    reference = meta_gradient("func_loop", workload, batch, first_order)
    scale = max(g.abs().max().item() for g in reference.values())
    differences = {}
    for method in methods:
        gradients = meta_gradient(method, workload, batch, first_order)
        differences[method] = max(
            (gradients[name] - reference[name]).abs().max().item() / scale
            for name in reference
        )
    failing = {m: d for m, d in differences.items() if not d <= rtol}
    assert not (strict and failing), f"meta-gradients disagree (rtol={rtol}): {failing}"
    return differences


# --------------------------------------------------------------------------- #
# Command line
# --------------------------------------------------------------------------- #
QUICK_ITERATIONS = {"sinusoid": 20, "digits": 5, "omniglot": 2}


def _quick_run(workload_names: Sequence[str], first_order: bool,
               omniglot_path: str) -> None:
    """A few interleaved iterations of every baseline on every workload."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _harness import format_table, interleaved_timing

    rows = []
    for name in workload_names:
        kwargs = {"path": omniglot_path} if name == "omniglot" else {}
        workload = get_workload(name, **kwargs)
        n_iter = QUICK_ITERATIONS[name]
        tasks = workload.make_tasks(n_iter)
        runners = {
            method: functools.partial(run, workload, tasks, n_iter, first_order)
            for method, run in maml_baselines_for(workload).items()
        }
        timing = interleaved_timing(runners, repeats=1, warmup=1,
                                    baseline="learn2learn")
        for method in runners:
            rows.append({
                "workload": name, "method": method,
                "it/s": timing.median_it_per_s[method],
                "x learn2learn": timing.ratio_to_baseline[method],
                "final loss": timing.results[method][-1]["final_loss"],
            })
        print(f"{name}: done ({n_iter} iterations x meta-batch "
              f"{workload.meta_batch_size})", flush=True)
    print(format_table(rows, floatfmt=".3g"))


def _check_all(omniglot_path: str) -> None:
    """Strict on the MLP workloads; omniglot is reported (vmap + BatchNorm bug)."""
    checks = [
        ("sinusoid", sinusoid_workload(), None, True),
        ("digits", digits_workload(), None, True),
        ("omniglot (4 tasks)", omniglot_workload(omniglot_path), 4, False),
    ]
    for label, workload, n_tasks, strict in checks:
        for first_order in (False, True):
            differences = check_agreement(workload, first_order, n_tasks=n_tasks,
                                          strict=strict)
            mode = "first-order MAML" if first_order else "MAML"
            print(f"{label}, {mode}: max relative meta-gradient difference "
                  "vs func_loop, float64")
            for method, difference in differences.items():
                flag = "" if difference <= 1e-10 else "  <-- DISAGREES"
                print(f"  {method:>13}: {difference:.2e}{flag}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="check float64 meta-gradient agreement")
    parser.add_argument("--quick", action="store_true",
                        help="about a minute of it/s for every baseline")
    parser.add_argument("--first-order", action="store_true",
                        help="first-order MAML in --quick")
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS),
                        choices=list(WORKLOADS))
    parser.add_argument("--omniglot-path", default=str(DEFAULT_OMNIGLOT_PATH))
    args = parser.parse_args(argv)
    if not (args.check or args.quick):
        parser.error("choose --check and/or --quick")

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    if args.check:
        _check_all(args.omniglot_path)
    if args.quick:
        _quick_run(args.workloads, args.first_order, args.omniglot_path)


if __name__ == "__main__":
    main()
