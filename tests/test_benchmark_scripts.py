"""The benchmark scripts' own bookkeeping, where a slip loses a long run's result."""

import argparse
import io
import warnings

import numpy as np

from benchmarks import fidelity_omniglot
from sk_meta import MAMLClassifier
from sk_meta.tasks import EpisodeSampler


class _SilentTimer:
    def __init__(self):
        self.lines = io.StringIO()

    def log(self, message):
        print(message, file=self.lines)


def test_chunked_meta_training_counts_the_iterations_already_run():
    # The Omniglot protocol meta-trains in warm-started chunks sized by the
    # measured rate; it must read how far the estimator got (a fitted
    # attribute served from its record), or it restarts its count at 0,
    # asks for fewer iterations than were run and reports none.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4)).astype(np.float32)
    y = np.repeat(np.arange(6), 10)
    sampler = EpisodeSampler(X, y, n_way=3, k_shot=2, n_query=3, random_state=0)
    est = MAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=1, meta_batch_size=2,
                         warm_start=True, random_state=0)
    progress = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a chunk that trains nothing warns
        seconds = fidelity_omniglot.train_with_budget(
            est, sampler, n_meta_iter=23, time_budget=30.0,
            config={"meta_lr": 1e-3, "epsilon_schedule": "none"},
            args=argparse.Namespace(report_every=0.05, epsilon_schedule="none"),
            timer=_SilentTimer(), label="test",
            on_progress=lambda est, seconds: progress.append(est.n_meta_iter_),
            stop_flag=fidelity_omniglot.StopFlag())
    assert est.n_meta_iter_ == 23
    assert progress[-1] == 23 and progress == sorted(progress)
    assert seconds < 30.0
