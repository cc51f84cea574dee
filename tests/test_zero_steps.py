"""``inner_steps=0``: ``fit`` takes no step, so the predictions are the init's
(the point before adaptation of a learning curve). Each expectation is
computed here from ``meta_params_`` with numpy, not through ``fit``."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score

import sk_meta.functional as F
from sk_meta import MAMLClassifier, MAMLRegressor, ReptileClassifier, ReptileRegressor
from sk_meta.tasks import EpisodeSampler, SinusoidTasks

RNG = np.random.RandomState(0)
CENTERS = RNG.randn(6, 5) * 2
Y = np.repeat(np.arange(6), 20)
X = (CENTERS[Y] + RNG.randn(len(Y), 5)).astype(np.float32)


def _hidden(params, X):
    """The default MLP's last hidden layer, from its parameters, in numpy."""
    hidden = X.astype(np.float64)
    n_layers = len({name.split(".")[1] for name in params})
    for i in range(n_layers - 1):
        weight = params[f"layers.{i}.weight"].numpy().astype(np.float64)
        bias = params[f"layers.{i}.bias"].numpy().astype(np.float64)
        hidden = np.maximum(hidden @ weight.T + bias, 0.0)
    return hidden


def _meta_fitted(cls, **params):
    tasks = EpisodeSampler(X, Y, 3, 4, 5, classes=[0, 1, 2, 3], n_tasks=20,
                           shuffle_labels=True, random_state=0)
    return cls(hidden_layer_sizes=(16,), n_meta_iter=10, random_state=0,
               **params).meta_fit(tasks)


@pytest.mark.parametrize("cls", [MAMLClassifier, ReptileClassifier])
def test_no_step_predicts_the_nearest_class_mean_of_the_init_features(cls):
    clf = clone(_meta_fitted(cls)).set_params(inner_steps=0)
    support = np.r_[np.where(Y == 4)[0][:3], np.where(Y == 5)[0][:3]]
    query = np.r_[np.where(Y == 4)[0][3:], np.where(Y == 5)[0][3:]]
    clf.fit(X[support], Y[support])
    features = _hidden(clf.meta_params_, X)
    means = np.stack([features[support][Y[support] == c].mean(0) for c in (4, 5)])
    distances = ((features[query][:, None] - means[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(clf.predict(X[query]),
                                  np.array([4, 5])[distances.argmin(1)])
    # a step moves the prediction's probabilities away from the init's
    stepped = clone(clf).set_params(inner_steps=1).fit(X[support], Y[support])
    assert not np.allclose(stepped.predict_proba(X[query]),
                           clf.predict_proba(X[query]))


def test_no_step_regressor_predicts_with_the_init():
    tasks = SinusoidTasks(n_tasks=10, random_state=0)
    reg = MAMLRegressor(hidden_layer_sizes=(8,), n_meta_iter=5, inner_steps=0,
                        meta_inner_steps=1, random_state=0).meta_fit(tasks)
    task = SinusoidTasks(n_tasks=1, random_state=3).sample()
    reg.fit(task.X_support, task.y_support)
    params = reg.meta_params_
    expected = (_hidden(params, task.X_query)
                @ params["layers.1.weight"].numpy().T.astype(np.float64)
                + params["layers.1.bias"].numpy())
    np.testing.assert_allclose(reg.predict(task.X_query), expected.ravel(),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [MAMLRegressor, ReptileRegressor])
def test_meta_training_without_a_step_is_refused_with_the_way_out(cls):
    reg = cls(hidden_layer_sizes=(8,), n_meta_iter=2, inner_steps=0)
    with pytest.raises(ValueError, match=r"inner_steps=0 takes no inner step.*"
                                         r"set meta_inner_steps"):
        reg.meta_fit(SinusoidTasks(n_tasks=4, random_state=0))
    assert not hasattr(reg, "meta_params_")


def test_grid_search_over_steps_includes_the_init():
    clf = _meta_fitted(MAMLClassifier)
    rows = np.isin(Y, [4, 5])
    search = GridSearchCV(clf, {"inner_steps": [0, 1, 5]}, cv=3).fit(X[rows], Y[rows])
    assert list(search.cv_results_["param_inner_steps"]) == [0, 1, 5]
    no_step = cross_val_score(clone(clf).set_params(inner_steps=0), X[rows],
                              Y[rows], cv=3)
    assert search.cv_results_["mean_test_score"][0] == pytest.approx(no_step.mean())
    assert clf.inner_steps == 20  # the searched estimator is not changed


def test_functional_adapt_without_a_step_returns_the_start_and_its_loss():
    torch.manual_seed(0)
    params = {"w": torch.randn(2, 3, dtype=torch.float64, requires_grad=True)}
    X_t = torch.randn(2, 4, 3, dtype=torch.float64)
    y_t = torch.randn(2, 4, dtype=torch.float64)

    def forward(p, X):
        return torch.einsum("bnd,bd->bn", X, p["w"])

    def loss_fn(outputs, y):
        return ((outputs - y) ** 2).mean(1).sum()

    expected = ((X_t.detach().numpy() @ params["w"].detach().numpy()[:, :, None])
                [..., 0] - y_t.numpy()) ** 2
    for options in ({}, {"detach": True}, {"detach": True, "backtracking": True},
                    {"functional": True}):
        adapted, loss = F.adapt(forward, params, X_t, y_t, loss_fn=loss_fn, lr=0.1,
                                n_steps=0, **options)
        assert torch.equal(adapted["w"], params["w"]), options
        assert adapted["w"].requires_grad != bool(options.get("detach")), options
        np.testing.assert_allclose(float(loss), expected.mean(1).sum(), rtol=1e-12)
    batch = F.TaskBatch(X_t, y_t, X_t, y_t, None)
    with pytest.raises(ValueError, match="n_steps must be at least 1, got 0"):
        F.maml_meta_loss(forward, {"w": params["w"][0]}, batch, loss_fn=loss_fn,
                         lr=0.1, n_steps=0)
    with pytest.raises(ValueError, match="n_steps must be at least 1, got 0"):
        F.reptile_meta_gradient(forward, {"w": params["w"][0]}, batch,
                                loss_fn=loss_fn, lr=0.1, n_steps=0)
    with pytest.raises(ValueError, match="n_steps must be at least 0, got -1"):
        F.adapt(forward, params, X_t, y_t, loss_fn=loss_fn, lr=0.1, n_steps=-1)


@pytest.mark.parametrize("lr, error, message", [
    (float("nan"), ValueError, "lr"),
    ("0.1", TypeError, "lr must be a float"),
    ({"other": 0.1}, ValueError,
     r"lr has no rate for the adapting parameter\(s\) \['w'\]"),
])
def test_adapt_without_steps_refuses_the_rates_a_step_refuses(lr, error, message):
    params = {"w": torch.zeros(2, 3)}
    X_t, y_t = torch.ones(2, 4, 3), torch.zeros(2, 4)

    def forward(p, X):
        return torch.einsum("bnd,bd->bn", X, p["w"])

    def loss_fn(outputs, y):
        return ((outputs - y) ** 2).mean(1).sum()

    for n_steps in (1, 0):  # the same refusal with no step to take
        for options in ({}, {"detach": True, "backtracking": True}):
            with pytest.raises(error, match=message):
                F.adapt(forward, params, X_t, y_t, loss_fn=loss_fn, lr=lr,
                        n_steps=n_steps, **options)
