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


def _center(stacked):
    """The mean of every row of the stack, computed here in float64."""
    rows = np.concatenate([stacked.X_support.reshape(-1, stacked.X_support.shape[-1]),
                           stacked.X_query.reshape(-1, stacked.X_query.shape[-1])])
    return rows.astype(np.float64).mean(axis=0)


def _solve_mix(mixed, x, x_other, center):
    """``(lam, residual)`` with ``mixed = c + s (lam x + (1 - lam) x' - c)`` and
    ``s = 1 / sqrt(lam^2 + (1 - lam)^2)``: ``mixed - c = a (x - c) + b (x' - c)``
    is linear in ``a = s lam``, ``b = s (1 - lam)``; the residual also counts
    how far ``a + b`` is from the ``s`` of ``lam = a / (a + b)``."""
    basis = np.stack([x - center, x_other - center], axis=1)
    (a, b), *_ = np.linalg.lstsq(basis, mixed - center, rcond=None)
    if a + b <= 0:
        return None, np.inf
    lam = a / (a + b)
    residual = np.abs(basis @ [a, b] - (mixed - center)).max()
    return float(lam), max(residual, abs(a + b - 1 / np.hypot(lam, 1 - lam)))


def _trace(mixed, own, y, stacked, part, task):
    """For each row: (lam, partner task, partner class) found by least squares
    over every row of every other task; asserts that exactly one fits."""
    X_all = getattr(stacked, f"X_{part}").astype(np.float64)
    y_all = getattr(stacked, f"y_{part}")
    center = _center(stacked)
    found = []
    for row in range(len(mixed)):
        fits = []
        for other in range(len(X_all)):
            for other_row in range(X_all.shape[1]):
                x = own[row].astype(np.float64)
                if np.array_equal(X_all[other, other_row], x):
                    continue  # the row itself: nothing to solve for
                lam, residual = _solve_mix(mixed[row].astype(np.float64), x,
                                           X_all[other, other_row], center)
                if residual < 1e-4 and 0 < lam < 1:
                    fits.append((round(lam, 4), other, int(y_all[other, other_row])))
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
    # one row per class, task k's rows the unit vector e_k: a mixed row of
    # task 0 gives lam back exactly (its partner is task 1 or 2)
    X = np.repeat(np.eye(3, dtype=np.float32)[:, None, :], 2, axis=1)
    y = np.tile(np.arange(2), (3, 1))
    stacked = StackedTasks(X, y, X.copy(), y.copy(), n_classes=2, indices=(0, 1, 2))
    center = _center(stacked)
    lams = []
    rng = np.random.default_rng(0)
    for _ in range(3000):
        out = interpolate_tasks(stacked, 1.0, rng)
        mixed = out.X_support[0, 0].astype(np.float64)
        partner = 1 if mixed[1] > mixed[2] else 2
        lam, residual = _solve_mix(mixed, X[0, 0], X[partner, 0], center)
        assert residual < 1e-5
        lams.append(lam)
    lams = np.array(lams)
    assert abs(lams.mean() - 0.5) < 0.012
    assert abs(lams.var() - 1 / 20) < 0.006  # Beta(2, 2): variance 1/20
    assert lams.min() > 0 and lams.max() < 1


def test_mixed_rows_spread_as_much_as_real_rows():
    # plain lam x + (1 - lam) x' of independent rows would have about 0.6
    # times their variance; the rescaling about the mean keeps it, and the
    # mean too when the features are not centred (pixels in [0, 16])
    rng = np.random.default_rng(0)
    for loc in (0.0, 8.0):
        stacked = _stack(n_tasks=400, n_features=3, seed=1)
        stacked = stacked._replace(X_support=stacked.X_support * 2 + loc,
                                   X_query=stacked.X_query * 2 + loc)
        out = interpolate_tasks(stacked, 1.0, rng)
        for before, after in ((stacked.X_support, out.X_support),
                              (stacked.X_query, out.X_query)):
            np.testing.assert_allclose(after.var(axis=(0, 1)), before.var(axis=(0, 1)),
                                       rtol=0.06)
            np.testing.assert_allclose(after.mean(axis=(0, 1)),
                                       before.mean(axis=(0, 1)), atol=0.1)


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
