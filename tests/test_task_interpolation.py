"""Task interpolation (MLTI): the mixing rule, and how the estimators use it."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone

from sk_meta import (
    FOMAMLClassifier,
    MAMLClassifier,
    MAMLRegressor,
    ReptileClassifier,
    ReptileRegressor,
)
from sk_meta.tasks import EpisodeSampler, SinusoidTasks
from sk_meta.tasks._interpolation import interpolate_tasks
from sk_meta.tasks._validation import StackedTasks


def _stack(n_tasks=6, n_way=3, k_shot=2, n_query=4, n_features=5, seed=0):
    """Tasks whose every row is a distinct random vector (so each mixed row
    can be traced back to the two rows it came from)."""
    rng = np.random.default_rng(seed)
    X_support = rng.normal(size=(n_tasks, n_way * k_shot, n_features))
    X_query = rng.normal(size=(n_tasks, n_way * n_query, n_features))
    y_support = np.stack([rng.permutation(np.repeat(np.arange(n_way), k_shot))
                          for _ in range(n_tasks)])
    y_query = np.stack([rng.permutation(np.repeat(np.arange(n_way), n_query))
                        for _ in range(n_tasks)])
    return StackedTasks(X_support.astype(np.float32), y_support,
                        X_query.astype(np.float32), y_query, n_classes=n_way,
                        indices=tuple(range(n_tasks)))


def _trace(mixed, own, y, stacked, part, task):
    """For each row: (lam, partner task, partner class) found by least squares
    over every row of every other task; asserts that exactly one fits."""
    X_all = getattr(stacked, f"X_{part}")
    y_all = getattr(stacked, f"y_{part}")
    found = []
    for row in range(len(mixed)):
        fits = []
        for other in range(len(X_all)):
            for other_row in range(X_all.shape[1]):
                # mixed - x' = lam (x - x'): one unknown, solved in float64
                d = own[row].astype(np.float64) - X_all[other, other_row]
                r = mixed[row].astype(np.float64) - X_all[other, other_row]
                if not d.any():
                    continue
                lam = float(d @ r / (d @ d))
                if np.abs(lam * d - r).max() < 1e-5 and 0 < lam < 1:
                    fits.append((round(lam, 5), other, int(y_all[other, other_row])))
        assert len(fits) == 1, (part, task, row, fits)
        found.append((*fits[0], int(y[row])))
    return found


def test_an_interpolated_task_mixes_each_class_with_one_class_of_one_other_task():
    stacked = _stack()
    before = [a.copy() for a in stacked[:4]]
    out = interpolate_tasks(stacked, 1.0, np.random.default_rng(3))
    for original, array in zip(before, stacked[:4]):  # the input is untouched
        np.testing.assert_array_equal(original, array)
    np.testing.assert_array_equal(out.y_support, stacked.y_support)
    np.testing.assert_array_equal(out.y_query, stacked.y_query)
    for task in range(len(stacked.X_support)):
        rows = (_trace(out.X_support[task], stacked.X_support[task],
                       stacked.y_support[task], stacked, "support", task)
                + _trace(out.X_query[task], stacked.X_query[task],
                         stacked.y_query[task], stacked, "query", task))
        lams = {lam for lam, *_ in rows}
        partners = {other for _, other, _, _ in rows}
        assert len(lams) == 1 and len(partners) == 1  # one lam and partner per task
        assert partners != {task}
        class_map = {own: theirs for _, _, theirs, own in rows}
        # every row of a class is mixed with the same class of the partner,
        # and the classes are matched one to one
        assert all(class_map[own] == theirs for _, _, theirs, own in rows)
        assert sorted(class_map.values()) == list(range(stacked.n_classes))


def test_the_probability_decides_how_many_tasks_are_replaced():
    stacked = _stack(n_tasks=1000, n_features=2)
    assert interpolate_tasks(stacked, 0.0, np.random.default_rng(0)) is stacked
    out = interpolate_tasks(stacked, 0.3, np.random.default_rng(0))
    changed = np.array([not np.array_equal(a, b)
                        for a, b in zip(out.X_query, stacked.X_query)])
    assert 0.22 < changed.mean() < 0.38


def test_lam_follows_beta_2_2():
    # one row per class, x = 0 in task 0 and 1 in task 1: a mixed row of
    # task 0 (whose partner is task 1) reads 1 - lam
    X = np.array([[[0.0], [0.0]], [[1.0], [1.0]]], dtype=np.float32)
    y = np.tile(np.arange(2), (2, 1))
    stacked = StackedTasks(X, y, X.copy(), y.copy(), n_classes=2, indices=(0, 1))
    lams = []
    rng = np.random.default_rng(0)
    for _ in range(5000):
        out = interpolate_tasks(stacked, 1.0, rng)
        lams.append(1 - float(out.X_support[0, 0, 0]))
    lams = np.array(lams)
    assert abs(lams.mean() - 0.5) < 0.012
    assert abs(lams.var() - 1 / 20) < 0.006  # Beta(2, 2): variance 1/20
    assert lams.min() > 0 and lams.max() < 1


def test_a_class_missing_from_the_partner_leaves_its_rows_as_they_were():
    stacked = _stack(n_tasks=2, n_way=2)
    y_query = stacked.y_query.copy()
    y_query[1] = 0  # task 1's query has no class 1
    stacked = stacked._replace(y_query=y_query)
    out = interpolate_tasks(stacked, 1.0, np.random.default_rng(0))
    # task 0's query rows matched with task 1's missing class are unchanged,
    # the others are mixed
    unchanged = np.all(out.X_query[0] == stacked.X_query[0], axis=1)
    assert unchanged.any() and not unchanged.all()
    assert np.unique(stacked.y_query[0][unchanged]).size == 1


# -- the estimators --------------------------------------------------------------------

def _sampler(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(140, 4)).astype(np.float32)
    y = np.repeat(np.arange(7), 20)
    X[:, 0] += y
    return EpisodeSampler(X, y, n_way=3, k_shot=2, n_query=3, shuffle_labels=True,
                          random_state=seed)


_SMALL = dict(hidden_layer_sizes=(8,), meta_batch_size=4, n_meta_iter=6,
              random_state=0)


@pytest.mark.parametrize("Estimator", [MAMLClassifier, FOMAMLClassifier,
                                       ReptileClassifier])
def test_interpolation_changes_meta_training_and_is_reproducible(Estimator):
    plain = Estimator(**_SMALL).meta_fit(_sampler())
    mixed = Estimator(task_interpolation=1.0, **_SMALL).meta_fit(_sampler())
    again = Estimator(task_interpolation=1.0, **_SMALL).meta_fit(_sampler())
    assert mixed.meta_loss_curve_ != plain.meta_loss_curve_
    assert mixed.meta_loss_curve_ == again.meta_loss_curve_
    for name, value in mixed.meta_params_.items():
        assert torch.equal(value, again.meta_params_[name])


def test_interpolated_tasks_are_what_the_meta_gradient_sees(monkeypatch):
    """With probability 1, meta-training on the tasks equals meta-training on
    the tasks interpolated beforehand with the same draws."""
    import sk_meta._training as training

    seen = []
    real = training.interpolate_tasks

    def record(stacked, probability, rng):
        out = real(stacked, probability, rng)
        seen.append(out)
        return out

    monkeypatch.setattr(training, "interpolate_tasks", record)
    mixed = MAMLClassifier(task_interpolation=1.0, **_SMALL).meta_fit(_sampler())
    monkeypatch.setattr(training, "interpolate_tasks", lambda s, p, rng: s)
    replay = [tuple(zip(s.X_support, s.y_support, s.X_query, s.y_query))
              for s in seen]
    tasks = [task for batch in replay for task in batch]
    from_stream = MAMLClassifier(**_SMALL).meta_fit(iter(tasks))
    assert len(seen) == _SMALL["n_meta_iter"]
    np.testing.assert_allclose(mixed.meta_loss_curve_, from_stream.meta_loss_curve_,
                               rtol=1e-5)


def test_warm_start_continues_the_interpolation_draws():
    params = dict(_SMALL, task_interpolation=0.5)
    at_once = MAMLClassifier(**{**params, "n_meta_iter": 8}).meta_fit(_sampler())
    split = MAMLClassifier(**{**params, "n_meta_iter": 3, "warm_start": True})
    split.meta_fit(_sampler())
    split = pickle.loads(pickle.dumps(split))
    split.set_params(n_meta_iter=8).meta_fit(_sampler())
    assert split.meta_loss_curve_ == at_once.meta_loss_curve_


def test_fit_and_predict_never_interpolate():
    clf = MAMLClassifier(**_SMALL).meta_fit(_sampler())
    task = _sampler(1).sample(0)
    expected = clf.fit(task.X_support, task.y_support).predict_proba(task.X_query)
    clf.set_params(task_interpolation=1.0)
    got = clf.fit(task.X_support, task.y_support).predict_proba(task.X_query)
    np.testing.assert_array_equal(got, expected)
    assert clone(clf).get_params()["task_interpolation"] == 1.0


@pytest.mark.parametrize("Estimator", [MAMLRegressor, ReptileRegressor])
def test_regressors_refuse_interpolation_and_keep_their_init(Estimator):
    tasks = SinusoidTasks(n_tasks=8, k_shot=5, random_state=0)
    reg = Estimator(hidden_layer_sizes=(8,), meta_batch_size=4, n_meta_iter=2,
                    random_state=0).meta_fit(tasks)
    before = {k: v.clone() for k, v in reg.meta_params_.items()}
    reg.set_params(task_interpolation=0.5)
    with pytest.raises(ValueError, match="task_interpolation=0.5 is for classifiers"):
        reg.meta_fit(tasks)
    for name, value in reg.meta_params_.items():
        assert torch.equal(value, before[name])


@pytest.mark.parametrize("value", [-0.1, 1.5, "half", None])
def test_bad_values_are_refused_with_the_parameter_named(value):
    clf = MAMLClassifier(task_interpolation=value, **_SMALL)
    with pytest.raises((ValueError, TypeError), match="task_interpolation"):
        clf.meta_fit(_sampler())


def test_files_without_the_parameter_load_with_it_off(tmp_path):
    """A file written before the parameter existed was meta-trained without
    interpolation; it loads with 0.0 (so a warm start continues the same way),
    while a new estimator's default is 0.5."""
    import sk_meta

    clf = MAMLClassifier(**_SMALL).meta_fit(_sampler())
    assert clf.task_interpolation == 0.5
    path = tmp_path / "old.skmeta"
    clf.save(path)
    state = torch.load(path, weights_only=True)
    assert state["params"].pop("task_interpolation") == 0.5
    torch.save(state, path)
    assert sk_meta.load(path).task_interpolation == 0.0
    clf.save(path)
    assert sk_meta.load(path).task_interpolation == 0.5
    assert pickle.loads(pickle.dumps(clf)).task_interpolation == 0.5
