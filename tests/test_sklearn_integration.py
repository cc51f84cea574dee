"""The scikit-learn contract: clone, model selection, pipelines, persistence, pandas."""

import pickle

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted
from torch import nn

import sk_meta
from sk_meta import MAMLClassifier, MAMLRegressor, ReptileClassifier
from sk_meta.model_selection import tasks_to_cv
from sk_meta.pipeline import meta_fit_pipeline
from sk_meta.tasks import EpisodeSampler, SinusoidTasks


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16, y


@pytest.fixture(scope="module")
def meta_fitted(digits):
    X, y = digits
    tasks = EpisodeSampler(X, y, n_way=3, k_shot=5, n_query=5, classes=range(7),
                           random_state=0)
    return MAMLClassifier(hidden_layer_sizes=(32,), n_meta_iter=30,
                          random_state=0).meta_fit(tasks)


@pytest.fixture(scope="module")
def new_task(digits):
    X, y = digits
    return EpisodeSampler(X, y, n_way=3, k_shot=10, n_query=10, classes=[7, 8, 9],
                          random_state=1).sample(0)


def _predictions(estimator, task):
    return estimator.fit(task.X_support, task.y_support).predict_proba(task.X_query)


# -- clone --------------------------------------------------------------------------

def test_clone_keeps_the_meta_learned_init_but_not_the_fit(meta_fitted, new_task):
    fitted = clone(meta_fitted).fit(new_task.X_support, new_task.y_support)
    copy = clone(fitted)
    with pytest.raises(NotFittedError):
        check_is_fitted(copy)
    assert copy.module_ is meta_fitted.module_
    np.testing.assert_array_equal(_predictions(copy, new_task),
                                  _predictions(clone(meta_fitted), new_task))
    untrained = MAMLClassifier(hidden_layer_sizes=(32,), random_state=0)
    assert not np.allclose(_predictions(copy, new_task),
                           _predictions(untrained, new_task))


def test_changing_the_architecture_after_meta_fit_fails_at_fit(meta_fitted, new_task):
    changed = clone(meta_fitted).set_params(hidden_layer_sizes=(64,))
    with pytest.raises(ValueError, match=r"architecture changed since meta_fit "
                                         r"\(hidden_layer_sizes: \(32,\) at meta_fit, "
                                         r"now \(64,\)\)"):
        changed.fit(new_task.X_support, new_task.y_support)
    changed = clone(meta_fitted).set_params(activation="tanh")
    with pytest.raises(ValueError, match="activation"):
        changed.fit(new_task.X_support, new_task.y_support)


def test_grid_search_in_parallel_adapts_every_candidate_from_the_init(meta_fitted,
                                                                       new_task):
    grid = {"inner_lr": [0.01, 0.1, 0.5], "inner_steps": [1, 5]}
    search = GridSearchCV(meta_fitted, grid, cv=3, n_jobs=2)
    search.fit(new_task.X_support, new_task.y_support)
    best = search.best_estimator_
    for name, value in best.meta_params_.items():
        assert torch.equal(value, meta_fitted.meta_params_[name])
    expected = clone(meta_fitted).set_params(**search.best_params_)
    np.testing.assert_array_equal(best.predict_proba(new_task.X_query),
                                  _predictions(expected, new_task))
    serial = GridSearchCV(meta_fitted, grid, cv=3).fit(new_task.X_support,
                                                        new_task.y_support)
    np.testing.assert_allclose(search.cv_results_["mean_test_score"],
                               serial.cv_results_["mean_test_score"])


def test_cross_validation_in_parallel_uses_the_init(meta_fitted, new_task):
    X, y = new_task.X_support, new_task.y_support
    parallel = cross_val_score(meta_fitted, X, y, cv=5, n_jobs=2)
    serial = cross_val_score(meta_fitted, X, y, cv=5)
    np.testing.assert_allclose(parallel, serial)
    # the probabilities show which init was adapted (accuracies can tie)
    trained, untrained = (cross_val_score(est, X, y, cv=5, scoring="neg_log_loss")
                          for est in (meta_fitted, MAMLClassifier(
                              hidden_layer_sizes=(32,), random_state=0)))
    assert not np.allclose(trained, untrained)
    results = cross_validate(meta_fitted, X, y, cv=5, n_jobs=2,
                             return_estimator=True)
    assert all(est.module_ is not None for est in results["estimator"])


def test_tasks_to_cv_scores_each_candidate_on_the_query_sets(meta_fitted, digits):
    X, y = digits
    held_out = list(EpisodeSampler(X, y, 3, 5, 6, classes=[7, 8, 9], n_tasks=4,
                                   random_state=2))
    X_cv, y_cv, cv = tasks_to_cv(held_out)
    assert len(cv) == 4
    search = GridSearchCV(meta_fitted, {"inner_steps": [1, 3]}, cv=cv, refit=False)
    search.fit(X_cv, y_cv)
    for i, steps in enumerate([1, 3]):
        est = clone(meta_fitted).set_params(inner_steps=steps)
        expected = np.mean([est.fit(t.X_support, t.y_support).score(t.X_query,
                                                                    t.y_query)
                            for t in held_out])
        assert search.cv_results_["mean_test_score"][i] == pytest.approx(expected)


# -- pipelines ----------------------------------------------------------------------

def test_meta_fit_pipeline_learns_preprocessing_on_meta_training_data(digits):
    X, y = digits
    tasks = [EpisodeSampler(X, y, 3, 5, 5, classes=range(7), random_state=0).sample(i)
             for i in range(20)]
    pipeline = make_pipeline(StandardScaler(),
                             MAMLClassifier(hidden_layer_sizes=(16,), n_meta_iter=5,
                                            random_state=0))
    fitted = meta_fit_pipeline(pipeline, tasks)
    assert not hasattr(pipeline[0], "mean_")  # the input pipeline is untouched
    rows = np.concatenate([np.concatenate([t.X_support, t.X_query]) for t in tasks])
    scaler = fitted[0]
    np.testing.assert_allclose(scaler.mean_, rows.mean(axis=0))
    task = EpisodeSampler(X, y, 3, 5, 5, classes=[7, 8, 9], random_state=1).sample(0)
    fitted.fit(task.X_support, task.y_support)
    np.testing.assert_allclose(fitted[0].mean_, rows.mean(axis=0))  # still frozen
    search = GridSearchCV(fitted, {"mamlclassifier__inner_lr": [0.05, 0.2]}, cv=3)
    search.fit(task.X_support, task.y_support)
    np.testing.assert_allclose(search.best_estimator_[0].mean_, rows.mean(axis=0))
    assert search.best_estimator_[-1].module_ is fitted[-1].module_
    # the meta-learner was trained on scaled inputs
    manual = MAMLClassifier(hidden_layer_sizes=(16,), n_meta_iter=5, random_state=0)
    manual.meta_fit([(scaler.transform(a), b, scaler.transform(c), d)
                     for a, b, c, d in tasks])
    for name, value in manual.meta_params_.items():
        torch.testing.assert_close(fitted[-1].meta_params_[name], value)


def test_meta_fit_pipeline_keeps_the_tasks_of_a_generator(digits):
    X, y = digits
    sampler = EpisodeSampler(X, y, 3, 5, 5, random_state=0)
    tasks = (sampler.sample(i) for i in range(6))
    pipeline = make_pipeline(StandardScaler(),
                             MAMLClassifier(hidden_layer_sizes=(8,), meta_batch_size=2,
                                            n_meta_iter=100))
    fitted = meta_fit_pipeline(pipeline, tasks, n_preprocessing_tasks=4)
    assert fitted[-1].n_meta_iter_ == 3


# -- persistence -------------------------------------------------------------------

@pytest.mark.parametrize("round_trip", ["pickle", "joblib", "weights_only"])
def test_round_trips_give_identical_predictions(meta_fitted, new_task, tmp_path,
                                                round_trip):
    def reload(est):
        path = tmp_path / "model"
        if round_trip == "pickle":
            return pickle.loads(pickle.dumps(est))
        if round_trip == "joblib":
            joblib.dump(est, path)
            return joblib.load(path)
        est.save(path)
        return sk_meta.load(path)

    meta_only = reload(clone(meta_fitted))
    np.testing.assert_array_equal(_predictions(meta_only, new_task),
                                  _predictions(clone(meta_fitted), new_task))
    fitted = clone(meta_fitted).fit(new_task.X_support, new_task.y_support)
    loaded = reload(fitted)
    np.testing.assert_array_equal(loaded.predict_proba(new_task.X_query),
                                  fitted.predict_proba(new_task.X_query))
    np.testing.assert_array_equal(loaded.classes_, fitted.classes_)
    assert loaded.get_params() == fitted.get_params()
    assert loaded.meta_loss_curve_ == fitted.meta_loss_curve_


def test_weights_only_file_loads_with_torch_weights_only(meta_fitted, tmp_path):
    path = tmp_path / "model.pt"
    meta_fitted.save(path)
    state = torch.load(path, weights_only=True)
    assert state["estimator"] == "MAMLClassifier"
    assert set(state["meta"]["module_state"]) == set(meta_fitted.meta_params_)
    loaded = sk_meta.load(path)
    for name, value in meta_fitted.meta_params_.items():
        assert torch.equal(loaded.meta_params_[name], value)
    # sk_meta.load reads it in the same weights-only mode: an object that
    # runs code when unpickled is refused, and its code never runs
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').close()",))

    state["params"]["verbose"] = Payload()
    torch.save(state, path)
    with pytest.raises(ValueError, match="not a valid sk_meta file"):
        sk_meta.load(path)
    assert not marker.exists()


class _TinyNet(nn.Module):
    def __init__(self, n_hidden=8):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, n_hidden), nn.Tanh(),
                                 nn.Linear(n_hidden, 1))

    def forward(self, X):
        return self.net(X)


def test_weights_only_load_of_a_custom_module_needs_the_module(tmp_path):
    task = SinusoidTasks(random_state=0).sample(0)
    reg = MAMLRegressor(_TinyNet, module_params={"n_hidden": 4}, n_meta_iter=2,
                        random_state=0).meta_fit([task])
    reg.fit(task.X_support, task.y_support)
    path = tmp_path / "custom.pt"
    reg.save(path)
    with pytest.raises(ValueError, match="custom module .*_TinyNet; pass it to "
                                         r"load\(path, module=...\)"):
        sk_meta.load(path)
    loaded = sk_meta.load(path, module=_TinyNet)
    np.testing.assert_array_equal(loaded.predict(task.X_query),
                                  reg.predict(task.X_query))


def test_pickles_hold_cpu_tensors_only(meta_fitted, new_task):
    fitted = clone(meta_fitted).fit(new_task.X_support, new_task.y_support)
    restored = pickle.loads(pickle.dumps(fitted))
    tensors = list(restored.params_.values())
    tensors += list(restored.module_.parameters())
    tensors += list(restored._fit.module.parameters())
    assert all(t.device.type == "cpu" for t in tensors)
    assert "_live_stream" not in fitted.__getstate__()
    assert "_live_stream" in meta_fitted.__dict__  # the estimator keeps its own


def test_a_file_that_is_not_sk_meta_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="is not an sk_meta file"):
        sk_meta.load(path)


# -- pandas -----------------------------------------------------------------------

def test_dataframes_set_and_check_feature_names(meta_fitted, new_task):
    columns = [f"pixel_{i}" for i in range(64)]
    X_support = pd.DataFrame(new_task.X_support, columns=columns)
    clf = clone(meta_fitted).fit(X_support, pd.Series(new_task.y_support))
    np.testing.assert_array_equal(clf.feature_names_in_, columns)
    X_query = pd.DataFrame(new_task.X_query, columns=columns)
    np.testing.assert_array_equal(clf.predict(X_query),
                                  clone(meta_fitted).fit(new_task.X_support,
                                                         new_task.y_support)
                                  .predict(new_task.X_query))
    with pytest.raises(ValueError, match="feature names should match"):
        clf.predict(X_query.rename(columns={"pixel_0": "other"}))


def test_meta_fit_accepts_dataframe_tasks(digits):
    X, y = digits
    frame = pd.DataFrame(X)
    sampler = EpisodeSampler(frame.to_numpy(), y, 3, 4, 4, random_state=0)
    tasks = [(pd.DataFrame(t.X_support), pd.Series(t.y_support),
              pd.DataFrame(t.X_query), pd.Series(t.y_query))
             for t in (sampler.sample(i) for i in range(4))]
    clf = ReptileClassifier(hidden_layer_sizes=(8,), n_meta_iter=2).meta_fit(tasks)
    assert clf.meta_input_shape_ == (64,)


# -- skorch -----------------------------------------------------------------------

def test_history_is_a_skorch_history_with_validation_scores(digits):
    X, y = digits
    train = EpisodeSampler(X, y, 3, 5, 5, classes=range(7), random_state=0)
    valid = EpisodeSampler(X, y, 3, 5, 5, classes=[7, 8, 9], n_tasks=6,
                           random_state=1)
    clf = MAMLClassifier(hidden_layer_sizes=(16,), n_meta_iter=20,
                         validation_interval=5, random_state=0)
    clf.meta_fit(train, validation_tasks=valid)
    from skorch.history import History
    assert isinstance(clf.history_, History)
    assert clf.history_[:, "meta_iter"] == [5, 10, 15, 20]
    np.testing.assert_allclose(clf.history_[:, "meta_loss"],
                               np.mean(np.reshape(clf.meta_loss_curve_, (4, 5)), 1))
    assert clf.history_[:, "valid_score"] == clf.validation_scores_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    # the last validation score is the mean post-adaptation query accuracy
    expected = np.mean([clone(clf).fit(t.X_support, t.y_support)
                        .score(t.X_query, t.y_query) for t in valid])
    assert clf.validation_scores_[-1] == pytest.approx(expected, abs=1e-6)


def test_early_stopping_keeps_the_best_init(digits):
    X, y = digits
    train = EpisodeSampler(X, y, 3, 5, 5, classes=range(7), random_state=0)
    valid = list(EpisodeSampler(X, y, 3, 5, 5, classes=[7, 8, 9], n_tasks=4,
                                random_state=1))
    clf = MAMLClassifier(hidden_layer_sizes=(16,), meta_lr=0.05, n_meta_iter=400,
                         validation_interval=2, early_stopping=True,
                         n_iter_no_change=3, tol=0.0, random_state=0)
    clf.meta_fit(train, validation_tasks=valid)
    assert clf.n_meta_iter_ < 400
    best = int(np.argmax(clf.validation_scores_))
    assert len(clf.validation_scores_) == best + 1 + 3
    score = np.mean([clone(clf).fit(t.X_support, t.y_support)
                     .score(t.X_query, t.y_query) for t in valid])
    assert score == pytest.approx(clf.best_validation_score_, abs=1e-6)


def test_early_stopping_needs_validation_tasks(digits):
    X, y = digits
    with pytest.raises(ValueError, match="early_stopping=True needs validation tasks"):
        MAMLClassifier(early_stopping=True, n_meta_iter=2).meta_fit(
            EpisodeSampler(X, y, 3, 2, 2, random_state=0))


def test_export_to_skorch_continues_from_the_adapted_network(meta_fitted, new_task):
    clf = clone(meta_fitted).fit(new_task.X_support, new_task.y_support)
    adapted = {k: v.clone() for k, v in clf.params_.items()}
    init = {k: v.clone() for k, v in clf.meta_params_.items()}
    proba = clf.predict_proba(new_task.X_query)
    net = clf.to_skorch(max_epochs=1, lr=0.5)
    X_query = new_task.X_query.astype(np.float32)
    np.testing.assert_allclose(net.predict_proba(X_query), proba, rtol=1e-5,
                               atol=1e-6)
    codes = np.searchsorted(clf.classes_, new_task.y_support)
    net.partial_fit(new_task.X_support.astype(np.float32), codes)
    assert len(net.history) == 1
    # the net trained on...
    assert not np.allclose(net.predict_proba(X_query), proba, atol=1e-3)
    # ...its own copy: the estimator's adapted and meta-learned weights and
    # its predictions are as they were
    for name, value in clf.params_.items():
        assert torch.equal(value, adapted[name]), name
        assert not value.requires_grad
    for name, value in clf.meta_params_.items():
        assert torch.equal(value, init[name]), name
    np.testing.assert_array_equal(clf.predict_proba(new_task.X_query), proba)



def test_pickles_without_newer_parameters_load_with_their_defaults(meta_fitted,
                                                                    new_task):
    fitted = clone(meta_fitted).fit(new_task.X_support, new_task.y_support)
    state = fitted.__getstate__()
    for name in ("max_time", "transductive"):  # absent from older pickles
        del state[name]
    restored = type(fitted).__new__(type(fitted))
    restored.__setstate__(state)
    assert restored.max_time is None and restored.transductive is True
    np.testing.assert_array_equal(restored.predict(new_task.X_query),
                                  fitted.predict(new_task.X_query))
