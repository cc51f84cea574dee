"""Small estimators and tasks shared by test modules, as fixtures that
return the factory (the tests import in importlib mode: no module of
helpers is importable from them)."""

import numpy as np
import pytest

from sk_meta import MAMLClassifier
from sk_meta.tasks import Task


def _blob_tasks(n=6, seed=0, n_way=3, n_features=4, k_shot=3):
    """``n`` tasks of ``n_way`` Gaussian blobs, ``k_shot`` samples per class
    in each of the support and query sets."""
    rng = np.random.default_rng(seed)
    tasks = []
    for _ in range(n):
        centers = rng.normal(0, 2, (n_way, n_features))
        y = np.repeat(np.arange(n_way), k_shot)
        tasks.append(Task(centers[y] + rng.normal(size=(len(y), n_features)), y,
                          centers[y] + rng.normal(size=(len(y), n_features)), y))
    return tasks


def _small_estimator(cls=MAMLClassifier, **params):
    """``cls`` with a network and a budget small enough for a unit test."""
    settings = dict(hidden_layer_sizes=(8,), inner_steps=2, meta_inner_steps=1,
                    meta_batch_size=2, n_meta_iter=4, random_state=0)
    settings.update(params)
    return cls(**settings)


class _InterruptingList(list):
    """A list of tasks whose n-th read raises KeyboardInterrupt, as Ctrl-C would."""

    def __init__(self, tasks, interrupt_at):
        super().__init__(tasks)
        self.reads = 0
        self.interrupt_at = interrupt_at

    def __getitem__(self, index):
        self.reads += 1
        if self.reads == self.interrupt_at:
            raise KeyboardInterrupt
        return super().__getitem__(index)


@pytest.fixture
def interrupting_list():
    """:class:`_InterruptingList`: ``interrupting_list(tasks, interrupt_at)``."""
    return _InterruptingList


@pytest.fixture
def blob_tasks():
    """:func:`_blob_tasks`."""
    return _blob_tasks


@pytest.fixture
def small_estimator():
    """:func:`_small_estimator`."""
    return _small_estimator
