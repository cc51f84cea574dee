"""class_weight="balanced": every class of a support set weighs alike in the
inner steps, checked against independent computations."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import InvalidParameterError

from sk_meta import (
    FOMAMLClassifier,
    MAMLClassifier,
    MAMLRegressor,
    ReptileClassifier,
)
from sk_meta.functional import cross_entropy_loss


def _per_class_mean(logits, y, n_classes):
    """Float64, by hand: each task's mean over its classes of the class's
    mean cross-entropy, summed over tasks."""
    total = 0.0
    for task_logits, task_y in zip(logits.double(), y):
        losses = F.cross_entropy(task_logits[:, :n_classes], task_y, reduction="none")
        total += torch.stack([losses[task_y == c].mean()
                              for c in task_y.unique()]).mean()
    return total


def test_the_balanced_loss_is_each_task_s_mean_over_its_classes():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 9, 4, generator=generator)
    y = torch.tensor([[0, 0, 0, 0, 0, 0, 1, 1, 2],
                      [3, 3, 1, 1, 1, 1, 1, 1, 1],
                      [0, 1, 2, 0, 1, 2, 0, 1, 2]])
    got = cross_entropy_loss(logits, y, 4, balanced=True)
    torch.testing.assert_close(got.double(), _per_class_mean(logits, y, 4))


def test_the_balanced_loss_of_balanced_tasks_is_the_plain_mean_exactly():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 15, 5, generator=generator, requires_grad=True)
    y = torch.stack([torch.randperm(15, generator=generator) % 5 for _ in range(4)])
    plain = cross_entropy_loss(logits, y, 5)
    balanced = cross_entropy_loss(logits, y, 5, balanced=True)
    assert torch.equal(plain, balanced)
    assert torch.equal(torch.autograd.grad(plain, logits)[0],
                       torch.autograd.grad(balanced, logits)[0])


def _imbalanced_task(seed=0):
    rng = np.random.default_rng(seed)
    y = np.array([0] * 8 + [1] * 2 + [2] * 2)
    X = rng.normal(size=(12, 5)) + y[:, None]
    return X.astype(np.float32), y


def _duplicated(X, y):
    """The minority classes repeated up to the largest count (8)."""
    rows = np.concatenate([np.repeat(np.flatnonzero(y == c), 8 // (y == c).sum())
                           for c in np.unique(y)])
    return X[rows], y[rows]


@pytest.mark.parametrize("Estimator", [MAMLClassifier, FOMAMLClassifier,
                                       ReptileClassifier])
def test_fit_balanced_equals_fit_on_the_support_set_with_its_classes_repeated(
        Estimator):
    # weights n / (n_classes * count) are what repeating each sample of a
    # smaller class up to the largest count gives the plain mean
    X, y = _imbalanced_task()
    X_query = np.random.default_rng(5).normal(size=(20, 5)).astype(np.float32)
    params = dict(hidden_layer_sizes=(8,), inner_steps=5, random_state=0)
    balanced = Estimator(**params).fit(X, y).predict_proba(X_query)
    repeated = Estimator(class_weight=None, **params).fit(
        *_duplicated(X, y)).predict_proba(X_query)
    plain = Estimator(class_weight=None, **params).fit(X, y).predict_proba(X_query)
    np.testing.assert_allclose(balanced, repeated, rtol=1e-4, atol=1e-5)
    assert not np.allclose(balanced, plain, atol=1e-3)


def _repeated(X, y, times):
    """The samples of classes 1 and 2 repeated ``times`` times."""
    rows = np.concatenate([np.flatnonzero(y == 0),
                           np.repeat(np.flatnonzero(y != 0), times)])
    return X[rows], y[rows]


@pytest.mark.parametrize("Estimator", [MAMLClassifier, ReptileClassifier])
def test_meta_training_balanced_equals_meta_training_on_repeated_classes(Estimator):
    X, y = _imbalanced_task()                          # 8, 2 and 2 samples
    X_query = np.random.default_rng(1).normal(size=(6, 5)).astype(np.float32)
    if Estimator is MAMLClassifier:  # a balanced query: the outer loss as is
        y_query = np.array([0, 1, 2] * 2)
        repeated = [(*_repeated(X, y, 4), X_query, y_query)]
    else:  # Reptile trains on the whole task (12, 3 and 3): both repeated
        y_query = np.array([0, 0, 0, 0, 1, 2])
        repeated = [(*_repeated(X, y, 4), *_repeated(X_query, y_query, 4))]
    tasks = [(X, y, X_query, y_query)]
    params = dict(hidden_layer_sizes=(8,), meta_inner_steps=2, n_meta_iter=2,
                  meta_batch_size=1, task_interpolation=0.0, random_state=0)
    balanced = Estimator(**params).meta_fit(tasks).meta_params_
    expected = Estimator(class_weight=None, **params).meta_fit(repeated).meta_params_
    plain = Estimator(class_weight=None, **params).meta_fit(tasks).meta_params_
    for name in balanced:
        torch.testing.assert_close(balanced[name], expected[name], rtol=1e-4,
                                   atol=1e-6)
    assert any(not torch.allclose(balanced[name], plain[name], atol=1e-5)
               for name in balanced)


def test_class_weight_is_checked_and_is_for_classifiers():
    X, y = _imbalanced_task()
    with pytest.raises(InvalidParameterError, match="class_weight"):
        MAMLClassifier(class_weight="auto").fit(X, y)
    with pytest.raises(TypeError, match="class_weight"):
        MAMLRegressor(class_weight="balanced")
    assert MAMLClassifier().class_weight == "balanced"
    assert FOMAMLClassifier(class_weight=None).get_params()["class_weight"] is None
