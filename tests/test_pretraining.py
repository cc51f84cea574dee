"""The documented recipe "pretrain on all meta-training classes with skorch,
then meta-learn" (docs/user_guide/pretraining.rst), run as written there."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from skorch import NeuralNetClassifier

from sk_meta import FOMAMLClassifier, MAMLClassifier, ReptileClassifier
from sk_meta.models import MLP
from sk_meta.tasks import EpisodeSampler

TRAIN_CLASSES, TEST_CLASSES = np.arange(7), np.array([7, 8, 9])


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32), y


@pytest.fixture(scope="module")
def pretrained(digits):
    X, y = digits
    rows = np.isin(y, TRAIN_CLASSES)
    torch.manual_seed(0)
    net = NeuralNetClassifier(
        MLP, module__n_features=X.shape[1], module__hidden_layer_sizes=(32, 32),
        module__n_outputs=len(TRAIN_CLASSES), criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam, lr=1e-3, max_epochs=5, batch_size=64,
        train_split=None, verbose=0,
    )
    return net.fit(X[rows], y[rows].astype(np.int64))


def _state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("estimator_class", [MAMLClassifier, FOMAMLClassifier,
                                             ReptileClassifier])
@pytest.mark.parametrize("head_init", ["prototype", "zero"])
def test_meta_training_starts_from_the_pretrained_body(digits, pretrained,
                                                       estimator_class, head_init):
    X, y = digits
    before = _state(pretrained.module_)
    tasks = EpisodeSampler(X, y, 3, 2, 5, classes=TRAIN_CLASSES, shuffle_labels=True,
                           random_state=0)
    clf = estimator_class(pretrained.module_, head_init=head_init, n_meta_iter=2,
                          meta_lr=1e-4, meta_batch_size=4, random_state=0)
    clf.meta_fit(tasks)
    # the skorch net is untouched
    for name, value in _state(pretrained.module_).items():
        assert torch.equal(value, before[name]), name
    # the body starts from the pretrained weights: two small outer steps
    # from them, far from a fresh network
    torch.manual_seed(1)
    fresh = _state(MLP(X.shape[1], (32, 32), len(TRAIN_CLASSES)))
    for name in ("layers.0.weight", "layers.1.weight"):
        learned = clf.meta_params_[name]
        assert (learned - before[name]).abs().max() < 1e-2, name
        assert (learned - fresh[name]).abs().max() > 0.1, name
    # the 7-class pretrained output layer serves 3-way tasks: each task's
    # head starts from its prototypes (or zero), not from the 7 outputs
    task = EpisodeSampler(X, y, 3, 2, 5, classes=TEST_CLASSES,
                          random_state=1).sample()
    proba = clf.fit(task.X_support, task.y_support).predict_proba(task.X_query)
    assert proba.shape == (15, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)


def test_pretrained_features_make_the_prototype_head_a_nearest_centroid(digits,
                                                                       pretrained):
    """With ANIL and no inner step worth the name, predictions are those of
    the nearest class mean in the pretrained network's last hidden layer."""
    X, y = digits
    clf = MAMLClassifier(pretrained.module_, head_init="prototype",
                         adapt_layers="head", inner_lr=1e-9, inner_steps=1)
    task = EpisodeSampler(X, y, 3, 3, 5, classes=TEST_CLASSES,
                          random_state=2).sample()
    clf.fit(task.X_support, task.y_support)
    body = pretrained.module_
    with torch.no_grad():
        def features(A):
            h = torch.from_numpy(A)
            for layer in body.layers[:-1]:
                h = torch.relu(layer(h))
            return h
        support, query = features(task.X_support), features(task.X_query)
    codes = np.searchsorted(clf.classes_, task.y_support)
    centres = torch.stack([support[codes == k].mean(0) for k in range(3)])
    nearest = torch.cdist(query, centres).argmin(1).numpy()
    np.testing.assert_array_equal(clf.predict(task.X_query), clf.classes_[nearest])


def test_a_soft_vote_averages_the_meta_trained_and_the_pretrained_network(digits,
                                                                         pretrained):
    # the page's "Averaging" recipe: VotingClassifier clones its members,
    # and a clone keeps the meta-learned init, so each member adapts from its
    # own init and the vote averages their probabilities
    from sklearn.ensemble import VotingClassifier

    X, y = digits
    tasks = EpisodeSampler(X, y, 3, 2, 5, classes=TRAIN_CLASSES, shuffle_labels=True,
                           random_state=0)
    meta = MAMLClassifier(hidden_layer_sizes=(16,), n_meta_iter=5, meta_batch_size=4,
                          random_state=0).meta_fit(tasks)
    pre = MAMLClassifier(pretrained.module_, adapt_layers="head", prototype_scale=0.1,
                         n_meta_iter=1, meta_batch_size=4, random_state=0)
    pre.meta_fit(tasks)
    task = EpisodeSampler(X, y, 3, 2, 10, classes=TEST_CLASSES, random_state=1).sample()
    both = VotingClassifier([("meta", meta), ("pretrained", pre)], voting="soft")
    both.fit(task.X_support, task.y_support)
    assert [member.n_meta_iter_ for member in both.estimators_] == [5, 1]
    expected = np.mean([member.fit(task.X_support, task.y_support)
                        .predict_proba(task.X_query) for member in (meta, pre)], axis=0)
    np.testing.assert_allclose(both.predict_proba(task.X_query), expected, atol=1e-6)
    assert not np.allclose(expected, meta.predict_proba(task.X_query), atol=1e-3)
