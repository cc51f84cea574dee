"""BatchNorm at prediction time: transductive (batch statistics) or not."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.base import clone
from torch import nn

import sk_meta
from sk_meta import MAMLClassifier, ReptileClassifier


class _BatchNormNet(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(),
                         nn.Linear(16, 3))


def _batch_norm_net():
    torch.manual_seed(0)
    return _BatchNormNet()


def _task(rng, n_support=9, n_query=7):
    centers = rng.normal(scale=2.0, size=(3, 4))
    y = np.concatenate([np.arange(3).repeat(n_support // 3),
                        rng.integers(0, 3, n_query)])
    X = (centers[y] + rng.normal(size=(len(y), 4))).astype(np.float32)
    return X[:n_support], y[:n_support], X[n_support:], y[n_support:]


def _by_hand(params, X_support, x):
    """The adapted network on the support set plus one sample, written out."""
    batch = torch.cat([torch.from_numpy(X_support), torch.from_numpy(x)[None]])
    hidden = F.linear(batch, params["0.weight"], params["0.bias"])
    hidden = F.batch_norm(hidden, None, None, params["1.weight"], params["1.bias"],
                          training=True)
    logits = F.linear(F.relu(hidden), params["3.weight"], params["3.bias"])
    return logits.softmax(-1)[-1].numpy()


@pytest.mark.parametrize("estimator_class", [MAMLClassifier, ReptileClassifier])
def test_non_transductive_prediction_runs_each_sample_beside_the_support_set(
        estimator_class):
    X_support, y_support, X_query, _ = _task(np.random.default_rng(0))
    clf = estimator_class(_batch_norm_net(), inner_steps=3, transductive=False,
                          random_state=0).fit(X_support, y_support)
    proba = clf.predict_proba(X_query)
    expected = np.stack([_by_hand(clf.params_, X_support, x) for x in X_query])
    np.testing.assert_allclose(proba, expected, rtol=1e-5, atol=1e-6)
    # a sample's prediction does not depend on the others
    np.testing.assert_allclose(clf.predict_proba(X_query[2:3]), proba[2:3],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(clf.predict_proba(X_query[::-1]), proba[::-1],
                               rtol=1e-5, atol=1e-6)
    # transductive prediction normalizes the query batch with its own statistics
    transductive = clone(clf).set_params(transductive=True).fit(X_support, y_support)
    assert not np.allclose(transductive.predict_proba(X_query), proba, atol=1e-3)


def test_one_sample_is_predicted_beside_the_support_set_even_transductively():
    X_support, y_support, X_query, _ = _task(np.random.default_rng(1))
    clf = MAMLClassifier(_batch_norm_net(), inner_steps=1).fit(X_support, y_support)
    np.testing.assert_allclose(clf.predict_proba(X_query[:1]),
                               _by_hand(clf.params_, X_support, X_query[0])[None],
                               rtol=1e-5, atol=1e-6)
    # two samples are normalized together
    assert not np.allclose(clf.predict_proba(X_query[:2])[0],
                           clf.predict_proba(X_query[:1])[0], atol=1e-3)


@pytest.mark.parametrize("transductive, n_query", [(True, 7), (False, 7), (True, 1)])
def test_validation_scores_are_what_fit_and_score_give(transductive, n_query):
    rng = np.random.default_rng(2)
    tasks = [_task(rng) for _ in range(8)]
    validation = [_task(rng, n_query=n_query) for _ in range(4)]
    clf = MAMLClassifier(_batch_norm_net(), inner_steps=2, meta_batch_size=4,
                         n_meta_iter=5, validation_interval=5,
                         transductive=transductive, random_state=0)
    clf.meta_fit(tasks, validation_tasks=validation)
    expected = np.mean([clone(clf).fit(Xs, ys).score(Xq, yq)
                        for Xs, ys, Xq, yq in validation])
    assert clf.validation_scores_[-1] == pytest.approx(expected, abs=1e-6)


def test_non_transductive_predictions_survive_saving(tmp_path):
    X_support, y_support, X_query, _ = _task(np.random.default_rng(3))
    clf = MAMLClassifier(_BatchNormNet, inner_steps=2, transductive=False,
                         random_state=0).fit(X_support, y_support)
    path = tmp_path / "clf.pt"
    clf.save(path)
    loaded = sk_meta.load(path, module=_BatchNormNet)
    np.testing.assert_array_equal(loaded.predict_proba(X_query[:1]),
                                  clf.predict_proba(X_query[:1]))
    np.testing.assert_array_equal(loaded.predict_proba(X_query),
                                  clf.predict_proba(X_query))


def test_non_transductive_prediction_with_a_convolutional_network():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(15, 1, 6, 6)).astype(np.float32)
    y = np.arange(15) % 3
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Flatten(), nn.Linear(64, 3))
    clf = MAMLClassifier(net, inner_steps=2, transductive=False,
                         random_state=0).fit(X[:9], y[:9])
    proba = clf.predict_proba(X[9:])
    for i in range(6):
        np.testing.assert_allclose(clf.predict_proba(X[9 + i:10 + i]), proba[i:i + 1],
                                   rtol=1e-5, atol=1e-6)
    transductive = clone(clf).set_params(transductive=True).fit(X[:9], y[:9])
    assert not np.allclose(transductive.predict_proba(X[9:]), proba, atol=1e-3)


def test_single_sample_sets_get_a_clear_error_with_batch_norm_1d():
    rng = np.random.default_rng(5)
    X_support, y_support, X_query, y_query = _task(rng)
    one_query = [(X_support, y_support, X_query[:1], y_query[:1])] * 4
    clf = MAMLClassifier(_batch_norm_net(), meta_batch_size=2, n_meta_iter=2)
    message = r"query set of tasks \d+, \d+ has a single sample.*BatchNorm"
    with pytest.raises(ValueError, match=message):
        clf.meta_fit(one_query)
    clf.meta_fit([(X_support, y_support, X_query, y_query)] * 4)
    with pytest.raises(ValueError, match="the support set has a single sample"):
        clf.fit(X_support[:1], y_support[:1])
