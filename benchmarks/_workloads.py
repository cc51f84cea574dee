# SPDX-License-Identifier: BSD-3-Clause
"""The problems the benchmarks time: tasks, seeded networks and settings.

Every method trains on exactly the same numpy tasks, in the same order, from
the same seeded initialisation, so the scripts can interleave them (A B A B)
and compare iterations per second and final meta-losses.

Workloads (``get_workload(name)``):

* ``sinusoid``: the MAML paper's regression protocol (MLP 1-40-40-1).
* ``digits``: scikit-learn digits, 5-way 5-shot classification (MLP 64-64-64-64-5).
* ``omniglot``: 28x28 Omniglot, 5-way 1-shot, the MAML paper's conv-4 network.
* ``conv_workload(path)``: ``bench_memory``'s smaller conv net, 5-way 5-shot,
  on Omniglot or (without the file) random 28x28 images.

``ShuffledLabels`` relabels the tasks of an ``sk_meta.tasks`` sampler (the
papers' episode protocol), for the fidelity scripts.
"""

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO_DIR = Path(__file__).resolve().parent.parent
# (X_support, y_support, X_query, y_query); floats are float32, labels int64.
TaskArrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

# The data lives beside the repository, never in it.
DEFAULT_OMNIGLOT_PATH = Path(os.environ.get(
    "SK_META_OMNIGLOT_PATH",
    REPO_DIR.parent / "shared" / "data" / "omniglot" / "omniglot28.npz",
))


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
    """Linear/ReLU stack; the layout the ``hand_batched`` baseline batches."""

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


def sample_random_image_tasks(n_tasks: int, seed: int = 0, *, n_way: int = 5,
                              n_shot: int = 5, n_query: int = 5) -> list[TaskArrays]:
    """Omniglot-shaped tasks of random binary 28x28 images (no data file)."""
    rng = np.random.default_rng(seed)
    tasks = []
    for _ in range(n_tasks):
        images = (rng.random((n_way * (n_shot + n_query), 1, 28, 28)) < 0.2)
        images = images.astype(np.float32)
        X_support, X_query = images[:n_way * n_shot], images[n_way * n_shot:]
        tasks.append((X_support, np.repeat(np.arange(n_way), n_shot),
                      X_query, np.repeat(np.arange(n_way), n_query)))
    return tasks


def conv_workload(omniglot_path: str | os.PathLike | None) -> Workload:
    """Conv4(n_filters=32), 5-way 5-shot, 5 query per class, meta-batch 32.

    On Omniglot when ``omniglot_path`` is a file, else on random 28x28 images.
    """
    if omniglot_path and Path(omniglot_path).is_file():
        sample = functools.partial(sample_omniglot_tasks, path=str(omniglot_path),
                                   n_way=5, n_shot=5, n_query=5)
        data = "omniglot"
    else:
        sample = functools.partial(sample_random_image_tasks, n_way=5, n_shot=5,
                                   n_query=5)
        data = "random 28x28 images"
    hyperparams = {
        "network": "conv4", "n_filters": 32, "loss": "cross_entropy", "n_way": 5,
        "n_shot": 5, "n_query": 5, "inner_steps": 1, "inner_lr": 0.4,
        "meta_batch_size": 32, "meta_optimizer": "adam", "meta_lr": 1e-3,
        "data": data,
    }
    return Workload(
        name="conv4-32 5-shot", hyperparams=hyperparams, sample_tasks=sample,
        make_module=functools.partial(make_conv4, n_classes=5, n_filters=32))


class ShuffledLabels:
    """Re-iterable tasks whose labels are a fresh permutation of 0..N-1 each.

    Wraps an ``sk_meta.tasks`` sampler; ``n_way`` is passed on, so that the
    estimators size their output layer from it as they do for the sampler
    itself.
    """

    def __init__(self, sampler, seed):
        self.sampler = sampler
        self.n_way = sampler.n_way
        self.seed = seed

    def __iter__(self):
        from sk_meta.tasks import Task

        rng = np.random.default_rng(self.seed)
        for task in self.sampler:
            classes = np.unique(task.y_support)
            code = rng.permutation(len(classes))
            yield Task(task.X_support, code[np.searchsorted(classes, task.y_support)],
                       task.X_query, code[np.searchsorted(classes, task.y_query)])
