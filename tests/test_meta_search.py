"""MetaGridSearch: meta-training parameters chosen on held-out classes.

The selection logic is checked with a recording stand-in estimator whose
validation scores are set by its parameters (no torch), the whole path with
MAMLClassifier against a by-hand repetition of what the search does.
"""

import pickle

import numpy as np
import pytest
from sklearn.base import BaseEstimator, clone
from sklearn.datasets import load_digits
from sklearn.exceptions import FitFailedWarning, NotFittedError
from sklearn.utils._param_validation import InvalidParameterError

from sk_meta import MAMLClassifier
from sk_meta.model_selection import MetaGridSearch
from sk_meta.tasks import EpisodeSampler, split_classes


class Recorder(BaseEstimator):
    """Meta-trains by reading tasks; its validation curve is set by ``quality``.

    Validation scores rise to ``quality`` at meta-iteration ``peak`` and fall
    after it, one history row every 10 iterations; every call is recorded.
    """

    calls = []

    def __init__(self, quality=0.5, peak=30, n_meta_iter=60, early_stopping=False,
                 fail=False):
        self.quality = quality
        self.peak = peak
        self.n_meta_iter = n_meta_iter
        self.early_stopping = early_stopping
        self.fail = fail

    def meta_fit(self, tasks, validation_tasks=None):
        if self.fail:
            raise RuntimeError("the meta-loss diverged")
        seen = set()
        for _, (_, y_support, _, y_query) in zip(range(40), tasks):
            seen.update(np.asarray(y_support).tolist())
            seen.update(np.asarray(y_query).tolist())
        val_seen = set()
        for task in validation_tasks or []:
            val_seen.update(np.asarray(task[1]).tolist())
        Recorder.calls.append(dict(self.get_params(), seen=seen, val_seen=val_seen,
                                   n_validation=len(validation_tasks or [])))
        self.history_, best = [], None
        for it in range(10, self.n_meta_iter + 1, 10):
            score = self.quality - abs(it - self.peak) / 1000
            improved = best is None or score > best
            best = score if improved else best
            self.history_.append({"meta_iter": it, "valid_score": score,
                                  "valid_score_best": improved})
        self.best_validation_score_ = best
        self.n_meta_iter_ = self.n_meta_iter
        return self

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return np.full(len(X), self.classes_[0])


@pytest.fixture
def sampler():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 8)
    X = rng.normal(size=(80, 3)) + y[:, None]
    return EpisodeSampler(X, y, 3, 2, 3, random_state=0)


@pytest.fixture(autouse=True)
def _fresh_calls():
    Recorder.calls.clear()


def test_chooses_the_best_candidate_and_refits_it_on_every_class(sampler):
    search = MetaGridSearch(Recorder(), {"quality": [0.6, 0.9, 0.7],
                                         "peak": [20, 40]}, random_state=0)
    search.meta_fit(sampler)
    assert search.best_params_ == {"peak": 20, "quality": 0.9}
    assert search.best_score_ == pytest.approx(0.9)
    assert search.best_n_meta_iter_ == 20
    assert search.results_["best_meta_iter"] == [20, 20, 20, 40, 40, 40]
    assert search.results_["n_meta_iter"] == [60] * 6
    *candidates, refit = Recorder.calls
    assert len(candidates) == 6
    # held-out classes: ceil(0.25 * 10) = 3, never meta-trained on by candidates
    val = set(search.val_classes_.tolist())
    assert len(val) == 3 and val <= set(range(10))
    for call in candidates:
        assert call["early_stopping"] is True
        assert call["seen"].isdisjoint(val) and call["seen"]
        assert call["val_seen"] <= val and call["n_validation"] == 100
    # the refit: all classes, the best parameters, the best number of iterations,
    # and the user's early_stopping (False), without validation tasks
    assert refit["quality"] == 0.9 and refit["peak"] == 20
    assert refit["n_meta_iter"] == 20 and refit["early_stopping"] is False
    assert refit["n_validation"] == 0
    assert refit["seen"] & val
    assert search.best_estimator_.n_meta_iter == 20


def test_with_validation_tasks_keeps_the_best_candidate_without_refit(sampler):
    val_tasks = list(EpisodeSampler(sampler.X, sampler.y, 3, 2, 3, n_tasks=7,
                                    random_state=1))
    search = MetaGridSearch(Recorder(), {"quality": [0.3, 0.8]})
    search.meta_fit(sampler, validation_tasks=val_tasks)
    assert len(Recorder.calls) == 2  # no refit
    assert [c["n_validation"] for c in Recorder.calls] == [7, 7]
    assert search.best_params_ == {"quality": 0.8}
    assert search.best_estimator_.quality == 0.8
    assert search.best_estimator_.early_stopping is True
    assert search.val_classes_ is None and search.fold_val_classes_ is None


def test_ties_go_to_the_first_candidate(sampler):
    search = MetaGridSearch(Recorder(), [{"quality": [0.5]}, {"quality": [0.5]}],
                            random_state=0).meta_fit(sampler)
    assert search.results_["validation_score"] == [0.5, 0.5]
    assert Recorder.calls[-1]["quality"] == 0.5


def test_a_nan_validation_score_never_wins(sampler):
    search = MetaGridSearch(Recorder(), {"quality": [np.nan, 0.2]},
                            random_state=0).meta_fit(sampler)
    assert search.best_params_ == {"quality": 0.2}


def test_a_failing_candidate_scores_error_score_and_never_wins(sampler):
    grid = [{"quality": [0.9], "fail": [True]},
            {"quality": [0.3, 0.2], "fail": [False]}]
    with pytest.warns(FitFailedWarning, match="diverged") as caught:
        search = MetaGridSearch(Recorder(), grid, random_state=0).meta_fit(sampler)
    assert len(caught) == 1
    assert search.best_params_ == {"fail": False, "quality": 0.3}
    assert np.isnan(search.results_["validation_score"][0])
    assert search.results_["best_meta_iter"][0] is None
    assert search.results_["n_meta_iter"][0] is None
    # a numeric error_score is recorded but a failed candidate still never wins
    with pytest.warns(FitFailedWarning):
        search = MetaGridSearch(Recorder(), grid, error_score=1.0,
                                random_state=0).meta_fit(sampler)
    assert search.best_params_ == {"fail": False, "quality": 0.3}
    assert 1.0 in search.results_["validation_score"]


def test_error_score_raise_and_every_candidate_failing(sampler):
    with pytest.raises(RuntimeError, match="diverged"):
        MetaGridSearch(Recorder(), {"fail": [False, True]}, error_score="raise",
                       random_state=0).meta_fit(sampler)
    fitted = MetaGridSearch(Recorder(), {"fail": [False]},
                            random_state=0).meta_fit(sampler)
    before = fitted.best_estimator_
    fitted.set_params(param_grid={"fail": [True], "quality": [0.1, 0.2]})
    with pytest.warns(FitFailedWarning), pytest.raises(
            ValueError, match="All 2 candidates failed.*RuntimeError: the meta-loss"):
        fitted.meta_fit(sampler)
    assert fitted.best_estimator_ is before  # a failed call leaves the fit as it was


def test_val_size_as_a_count_and_the_seed(sampler):
    first = MetaGridSearch(Recorder(), {"quality": [0.5]}, val_size=2,
                           random_state=3).meta_fit(sampler)
    again = MetaGridSearch(Recorder(), {"quality": [0.5]}, val_size=2,
                           random_state=3).meta_fit(sampler)
    other = [MetaGridSearch(Recorder(), {"quality": [0.5]}, val_size=2,
                            random_state=seed).meta_fit(sampler).val_classes_.tolist()
             for seed in range(6)]
    assert len(first.val_classes_) == 2
    np.testing.assert_array_equal(first.val_classes_, again.val_classes_)
    assert len({tuple(v) for v in other}) > 1


@pytest.mark.parametrize("val_size, n_val", [(0.25, 3), (0.1, 2), (0.3, 3), (4, 4)])
def test_held_out_classes_are_split_classes_validation_pool(sampler, val_size, n_val):
    # A fraction rounds up, to at least 2; the split is the project's own.
    search = MetaGridSearch(Recorder(), {"quality": [0.5]}, val_size=val_size,
                            random_state=7).meta_fit(sampler)
    _, expected, _ = split_classes(sampler.class_labels, train_size=10 - n_val,
                                   val_size=n_val, random_state=7)
    np.testing.assert_array_equal(search.val_classes_, expected)


def test_groups_are_held_out_whole(sampler):
    groups = sampler.y // 2  # five groups of two classes
    search = MetaGridSearch(Recorder(), {"quality": [0.5]}, val_size=2,
                            random_state=1).meta_fit(sampler, groups=groups)
    val = set(search.val_classes_.tolist())
    assert len(val) == 4
    assert all((c ^ 1) in val for c in val)  # a class's group-mate is held out too
    candidate = Recorder.calls[0]
    assert not candidate["seen"] & val and candidate["val_seen"] <= val
    # groups of one class each: the same split as without groups
    plain = MetaGridSearch(Recorder(), {"quality": [0.5]}, val_size=2,
                           random_state=1)
    np.testing.assert_array_equal(
        plain.meta_fit(sampler).val_classes_,
        plain.meta_fit(sampler, groups=sampler.y * 10).val_classes_)


@pytest.mark.parametrize("groups, match", [
    (np.arange(80) % 2, "class 0 has rows in 2 groups"),
    (np.zeros(79), "one label per row of the sampler"),
    (np.zeros(80), "holds out 2 of the sampler's 1 groups"),
    (np.array([1, "a"] * 40, dtype=object), "groups' labels cannot be sorted"),
])
def test_bad_groups(sampler, groups, match):
    with pytest.raises(ValueError, match=match):
        MetaGridSearch(Recorder(), {"quality": [0.5]}).meta_fit(sampler,
                                                                groups=groups)


def test_groups_with_validation_tasks_is_refused(sampler):
    with pytest.raises(ValueError, match="one or the other"):
        MetaGridSearch(Recorder(), {"quality": [0.5]}).meta_fit(
            sampler, validation_tasks=[next(iter(sampler))], groups=sampler.y)


def test_nothing_passed_in_is_changed(sampler):
    estimator = Recorder(quality=0.1)
    grid = {"quality": [0.2, 0.4]}
    classes_before = sampler.class_labels.copy()
    MetaGridSearch(estimator, grid, random_state=0).meta_fit(sampler)
    assert grid == {"quality": [0.2, 0.4]}
    assert estimator.quality == 0.1 and not hasattr(estimator, "history_")
    np.testing.assert_array_equal(sampler.class_labels, classes_before)
    assert sampler.n_classes == 10


@pytest.mark.parametrize("val_size, match", [
    (8, "leaves 2 to meta-train on, fewer than n_way=3"),
    (0.9, "leaves 1 to meta-train on"),
])
def test_too_many_held_out_classes(sampler, val_size, match):
    with pytest.raises(ValueError, match=match):
        MetaGridSearch(Recorder(), {"quality": [0.5]},
                       val_size=val_size).meta_fit(sampler)
    assert not Recorder.calls


@pytest.mark.parametrize("val_size", [1, 0, 1.0, -0.5, "a"])
def test_bad_val_size(sampler, val_size):
    with pytest.raises(InvalidParameterError, match="val_size"):
        MetaGridSearch(Recorder(), {"quality": [0.5]},
                       val_size=val_size).meta_fit(sampler)


def test_tasks_it_cannot_split_or_read_twice(sampler):
    tasks = [sampler.sample(s) for s in range(5)]
    search = MetaGridSearch(Recorder(), {"quality": [0.5]})
    with pytest.raises(TypeError, match="must be an EpisodeSampler"):
        search.meta_fit(tasks)
    with pytest.raises(TypeError, match="can be read only once"):
        search.meta_fit(iter(tasks), validation_tasks=tasks)
    with pytest.raises(ValueError, match="validation_tasks is empty"):
        search.meta_fit(tasks, validation_tasks=[])
    endless = EpisodeSampler(sampler.X, sampler.y, 3, 2, 3)
    with pytest.raises(ValueError, match="endless"):
        search.meta_fit(tasks, validation_tasks=endless)
    assert not Recorder.calls


def test_n_meta_iter_in_the_grid_bounds_the_candidates(sampler):
    search = MetaGridSearch(Recorder(), {"n_meta_iter": [20, 80], "peak": [50]},
                            random_state=0).meta_fit(sampler)
    assert search.results_["best_meta_iter"] == [20, 50]
    assert search.best_params_ == {"n_meta_iter": 80, "peak": 50}
    assert Recorder.calls[-1]["n_meta_iter"] == 50  # the refit


def test_bad_grid_and_estimator(sampler):
    with pytest.raises(ValueError, match="must not set early_stopping"):
        MetaGridSearch(Recorder(), {"early_stopping": [False]}).meta_fit(sampler)
    with pytest.raises(ValueError, match="no candidate"):
        MetaGridSearch(Recorder(), []).meta_fit(sampler)
    with pytest.raises(ValueError, match="Invalid parameter 'nope'"):
        MetaGridSearch(Recorder(), {"nope": [1]}).meta_fit(sampler)
    with pytest.raises(InvalidParameterError, match="estimator"):
        MetaGridSearch(object(), {"quality": [1]}).meta_fit(sampler)
    with pytest.raises(InvalidParameterError, match="param_grid"):
        MetaGridSearch(Recorder(), "quality").meta_fit(sampler)


def test_a_failed_meta_fit_leaves_a_fitted_search_as_it_was(sampler):
    search = MetaGridSearch(Recorder(), {"quality": [0.5, 0.7]}, random_state=0)
    search.meta_fit(sampler)
    before = (search.best_params_, search.best_estimator_, search.val_classes_)
    search.set_params(val_size=9)
    with pytest.raises(ValueError, match="leaves 1"):
        search.meta_fit(sampler)
    assert (search.best_params_, search.best_estimator_) == before[:2]
    np.testing.assert_array_equal(search.val_classes_, before[2])


def test_not_fitted_yet(sampler):
    search = MetaGridSearch(Recorder(), {"quality": [0.5]})
    with pytest.raises(NotFittedError, match="call meta_fit first"):
        search.fit(sampler.X[:3], [0, 1, 2])
    search.meta_fit(sampler)
    # a clone keeps the search, as an estimator's keeps its meta-learned
    # init, with the best estimator not adapted
    copy_ = clone(search)
    assert copy_.best_params_ == search.best_params_
    assert copy_.best_estimator_ is not search.best_estimator_
    assert not hasattr(copy_.best_estimator_, "classes_")


# -- with MAMLClassifier ---------------------------------------------------------------
@pytest.fixture(scope="module")
def digits_sampler():
    X, y = load_digits(return_X_y=True)
    return EpisodeSampler((X / 16).astype(np.float32), y, 3, 2, 4, classes=range(7),
                          shuffle_labels=True, random_state=0)


@pytest.fixture(scope="module")
def maml_search(digits_sampler):
    estimator = MAMLClassifier(hidden_layer_sizes=(16,), n_meta_iter=12,
                               validation_interval=4, inner_steps=3,
                               meta_inner_steps=1, random_state=0)
    return MetaGridSearch(estimator, {"concat_input": [False, True]},
                          n_val_tasks=6, random_state=0).meta_fit(digits_sampler)


def test_a_linear_candidate_is_scored_like_the_networks(digits_sampler):
    """The user guide's grid: the MLP, with or without the raw features, or
    a linear model started from scaled class means. The three are scored in
    order, the linear one is the output layer alone, and the search adapts
    the refit best candidate."""
    estimator = MAMLClassifier(hidden_layer_sizes=(16,), n_meta_iter=8,
                               validation_interval=4, inner_steps=3,
                               meta_inner_steps=1, random_state=0)
    grid = [{"concat_input": [False, True]},
            {"hidden_layer_sizes": [()], "prototype_scale": [0.1]}]
    search = MetaGridSearch(estimator, grid, n_val_tasks=6,
                            random_state=0).meta_fit(digits_sampler)
    assert search.results_["params"] == [
        {"concat_input": False}, {"concat_input": True},
        {"hidden_layer_sizes": (), "prototype_scale": 0.1}]
    linear = clone(estimator).set_params(hidden_layer_sizes=(), prototype_scale=0.1,
                                         n_meta_iter=4)
    linear.meta_fit(digits_sampler)
    # no hidden layer: the output layer alone, on the 64 pixels
    assert {name: tuple(p.shape) for name, p in linear.meta_params_.items()} == {
        "layers.0.weight": (3, 64), "layers.0.bias": (3,)}
    best = search.best_estimator_
    assert best.get_params()["prototype_scale"] == search.best_params_.get(
        "prototype_scale", "auto")
    X_s, y_s, X_q, y_q = next(iter(EpisodeSampler(
        digits_sampler.X, digits_sampler.y, 3, 5, 5, classes=range(7, 10),
        random_state=1)))
    assert search.fit(X_s, y_s).score(X_q, y_q) == best.fit(X_s, y_s).score(X_q, y_q)


def test_maml_search_equals_doing_it_by_hand(maml_search, digits_sampler):
    search = maml_search
    assert search.results_["params"] == [{"concat_input": False},
                                         {"concat_input": True}]
    assert set(search.results_["best_meta_iter"]) <= {4, 8, 12}
    best = int(np.argmax(search.results_["validation_score"]))
    assert search.best_params_ == search.results_["params"][best]
    # by hand: meta-train the best parameters on all classes for the chosen
    # number of iterations; the init must be the refit's
    by_hand = clone(search.estimator).set_params(
        **search.best_params_, n_meta_iter=search.best_n_meta_iter_)
    by_hand.meta_fit(digits_sampler)
    assert search.best_estimator_.n_meta_iter_ == search.best_n_meta_iter_
    for name, value in by_hand.module_.state_dict().items():
        np.testing.assert_array_equal(
            search.best_estimator_.module_.state_dict()[name].numpy(), value.numpy())
    assert search.best_estimator_.concat_input == search.best_params_["concat_input"]


def test_maml_with_validation_tasks_scores_each_candidate_as_by_hand(
        maml_search, digits_sampler):
    X, y = digits_sampler.X, digits_sampler.y
    train = EpisodeSampler(X, y, 3, 2, 4, classes=range(5), shuffle_labels=True,
                           random_state=0)
    val_tasks = list(EpisodeSampler(X, y, 2, 2, 4, classes=[5, 6], n_tasks=6,
                                    random_state=1))
    search = MetaGridSearch(maml_search.estimator, {"concat_input": [False, True]})
    search.meta_fit(train, validation_tasks=val_tasks)
    for params, score in zip(search.results_["params"],
                             search.results_["validation_score"]):
        by_hand = clone(maml_search.estimator).set_params(
            **params, early_stopping=True).meta_fit(train, validation_tasks=val_tasks)
        assert score == pytest.approx(by_hand.best_validation_score_, abs=1e-6)
    # the kept candidate holds its best init: adapting it on the validation
    # tasks gives back the best score
    best = search.best_estimator_
    mean_score = np.mean([clone(best).fit(t[0], t[1]).score(t[2], t[3])
                          for t in val_tasks])
    assert search.best_score_ == pytest.approx(mean_score, abs=1e-6)
    assert search.best_score_ == max(search.results_["validation_score"])


def test_tags_follow_the_estimator():
    from sklearn.base import is_classifier, is_regressor

    from sk_meta import MAMLRegressor

    assert is_classifier(MetaGridSearch(MAMLClassifier(), {}))
    assert is_regressor(MetaGridSearch(MAMLRegressor(), {}))
    assert not is_classifier(MetaGridSearch(Recorder(), {}))


def test_maml_search_predicts_pickles_and_clones(maml_search, digits_sampler):
    X, y = load_digits(return_X_y=True)
    rows = np.flatnonzero(np.isin(y, [7, 8, 9]))[:30]
    Xs, ys = (X[rows] / 16).astype(np.float32), y[rows]
    proba = maml_search.fit(Xs, ys).predict_proba(Xs)
    assert proba.shape == (30, 3)
    np.testing.assert_array_equal(maml_search.classes_, [7, 8, 9])
    assert 0 <= maml_search.score(Xs, ys) <= 1
    restored = pickle.loads(pickle.dumps(maml_search))
    np.testing.assert_allclose(restored.fit(Xs, ys).predict_proba(Xs), proba,
                               atol=1e-6)
    copy_ = clone(maml_search)  # searched, not adapted
    assert copy_.get_params()["estimator__hidden_layer_sizes"] == (16,)
    assert copy_.best_params_ == maml_search.best_params_
    with pytest.raises(NotFittedError):
        copy_.predict(Xs)
    np.testing.assert_allclose(copy_.fit(Xs, ys).predict_proba(Xs), proba, atol=1e-6)


# -- class folds (cv) ------------------------------------------------------------------
class FoldRecorder(Recorder):
    """A Recorder whose curve depends on which classes its fold holds out.

    ``lucky``: 0.3 more on the fold that holds that class out. ``peak_by_class``:
    the peak at ``10 * (1 + min(held-out class) % 5)``. ``short_if_held_out``:
    only 40 meta-iterations on the fold that holds that class out.
    """

    def __init__(self, quality=0.5, peak=30, n_meta_iter=60, early_stopping=False,
                 fail=False, lucky=None, peak_by_class=False,
                 short_if_held_out=None, tol=0.0):
        super().__init__(quality, peak, n_meta_iter, early_stopping, fail)
        self.lucky = lucky
        self.peak_by_class = peak_by_class
        self.short_if_held_out = short_if_held_out
        self.tol = tol

    def meta_fit(self, tasks, validation_tasks=None):
        super().meta_fit(tasks, validation_tasks)
        val_seen = Recorder.calls[-1]["val_seen"]
        peak = (10 * (1 + min(val_seen) % 5) if self.peak_by_class and val_seen
                else self.peak)
        last = 40 if self.short_if_held_out in val_seen else self.n_meta_iter
        bonus = 0.3 if self.lucky in val_seen else 0.0
        self.history_ = [
            {"meta_iter": it, "valid_score": self.quality - abs(it - peak) / 1000
             + bonus} for it in range(10, last + 1, 10)]
        self.n_meta_iter_ = last
        return self


def test_cv_folds_hold_out_disjoint_classes_no_candidate_meta_trains_on(sampler):
    search = MetaGridSearch(FoldRecorder(), {"quality": [0.4, 0.6]}, val_size=3,
                            cv=3, random_state=0).meta_fit(sampler)
    folds = [set(classes.tolist()) for classes in search.fold_val_classes_]
    assert [len(fold) for fold in folds] == [3, 3, 3]
    assert len(set().union(*folds)) == 9  # disjoint
    # the first fold is the one cv=1 holds out with the same seed
    single = MetaGridSearch(FoldRecorder(), {"quality": [0.4, 0.6]}, val_size=3,
                            random_state=0).meta_fit(sampler)
    np.testing.assert_array_equal(search.val_classes_, single.val_classes_)
    np.testing.assert_array_equal(search.fold_val_classes_[0], single.val_classes_)
    calls = Recorder.calls[:7]  # the cv=3 search: 2 candidates x 3 folds, refit
    *candidates, refit = calls
    assert [c["quality"] for c in candidates] == [0.4] * 3 + [0.6] * 3
    for call, fold in zip(candidates, folds * 2):
        assert call["seen"] and call["seen"].isdisjoint(fold)
        assert call["val_seen"] <= fold and call["n_validation"] == 100
    assert refit["quality"] == 0.6 and refit["n_validation"] == 0
    assert refit["seen"] & set().union(*folds)


def test_cv_a_candidate_lucky_on_one_fold_loses_on_the_mean(sampler):
    first_fold = MetaGridSearch(FoldRecorder(), {"quality": [0.5]}, val_size=3,
                                random_state=0).meta_fit(sampler).val_classes_
    grid = [{"quality": [0.5], "lucky": [int(first_fold[0])]}, {"quality": [0.65]}]
    one = MetaGridSearch(FoldRecorder(), grid, val_size=3,
                         random_state=0).meta_fit(sampler)
    assert one.best_params_["quality"] == 0.5  # 0.8 on the one fold it sees
    three = MetaGridSearch(FoldRecorder(), grid, val_size=3, cv=3,
                           random_state=0).meta_fit(sampler)
    assert three.best_params_ == {"quality": 0.65}
    assert three.results_["validation_score"] == pytest.approx([0.6, 0.65])
    assert three.results_["fold_validation_scores"][0] == pytest.approx(
        [0.8, 0.5, 0.5])


def test_cv_reads_the_best_meta_iter_off_the_mean_of_the_folds(sampler):
    search = MetaGridSearch(FoldRecorder(peak_by_class=True), {"quality": [0.5]},
                            val_size=3, cv=3, random_state=0).meta_fit(sampler)
    peaks = [10 * (1 + min(fold) % 5) for fold in search.fold_val_classes_]
    # by hand: each fold's curve at 10, 20, ... 60, their mean, its argmax
    its = np.arange(10, 61, 10)
    curves = np.array([0.5 - np.abs(its - peak) / 1000 for peak in peaks])
    best = int(np.argmax(curves.mean(axis=0)))
    assert search.best_n_meta_iter_ == its[best]
    assert search.best_score_ == pytest.approx(curves.mean(axis=0)[best])
    assert search.results_["fold_validation_scores"][0] == pytest.approx(
        curves[:, best])
    assert Recorder.calls[-1]["n_meta_iter"] == its[best]  # the refit


def test_cv_folds_stopped_early_are_compared_over_the_validations_all_ran(sampler):
    fold = MetaGridSearch(FoldRecorder(), {"quality": [0.5]}, val_size=3, cv=3,
                          random_state=0).meta_fit(sampler).fold_val_classes_[1]
    # the peak at 60 lies beyond the short fold's 40 iterations
    search = MetaGridSearch(
        FoldRecorder(peak=60, short_if_held_out=int(fold[0])), {"quality": [0.5]},
        val_size=3, cv=3, random_state=0).meta_fit(sampler)
    assert search.best_n_meta_iter_ == 40
    assert search.results_["n_meta_iter"] == [40]
    assert search.best_score_ == pytest.approx(0.5 - 20 / 1000)


def test_cv_an_improvement_of_the_mean_must_exceed_tol(sampler):
    # each fold rises 0.01 per validation up to its peak at 60; tol=0.015:
    # 10 (0.45), then 0.47 at 30 and 0.49 at 50 improve enough, 0.50 at 60 not
    search = MetaGridSearch(FoldRecorder(peak=60, tol=0.015), {"quality": [0.5]},
                            val_size=3, cv=3, random_state=0).meta_fit(sampler)
    assert search.best_n_meta_iter_ == 50
    assert search.best_score_ == pytest.approx(0.49)


@pytest.mark.parametrize("cv, val_size, match", [
    (4, 3, r"cv=4 disjoint folds of 3 held-out classes \(val_size=3\) need 12 "
           r"classes; the sampler has 10"),
    (6, 0.2, r"cv=6 disjoint folds of 2 held-out classes .* need 12"),
])
def test_cv_with_too_few_classes(sampler, cv, val_size, match):
    with pytest.raises(ValueError, match=match):
        MetaGridSearch(FoldRecorder(), {"quality": [0.5]}, val_size=val_size,
                       cv=cv).meta_fit(sampler)
    assert not Recorder.calls


def test_cv_with_validation_tasks_is_refused(sampler):
    val_tasks = list(EpisodeSampler(sampler.X, sampler.y, 3, 2, 3, n_tasks=3,
                                    random_state=1))
    with pytest.raises(ValueError, match="cv=2 holds out classes in 2 folds"):
        MetaGridSearch(FoldRecorder(), {"quality": [0.5]}, cv=2).meta_fit(
            sampler, validation_tasks=val_tasks)


@pytest.mark.parametrize("cv", [0, -1, 1.5, "3", None])
def test_bad_cv(sampler, cv):
    with pytest.raises(InvalidParameterError, match="'cv' parameter"):
        MetaGridSearch(FoldRecorder(), {"quality": [0.5]}, cv=cv).meta_fit(sampler)


def test_cv_a_candidate_failing_on_one_fold_fails(sampler):
    with pytest.warns(FitFailedWarning, match="failed to meta-train"):
        search = MetaGridSearch(FoldRecorder(), [{"fail": [True]},
                                                 {"quality": [0.2]}],
                                cv=2, random_state=0).meta_fit(sampler)
    assert search.best_params_ == {"quality": 0.2}
    assert search.results_["fold_validation_scores"][0] is None
    assert np.isnan(search.results_["validation_score"][0])


def test_maml_search_with_class_folds(digits_sampler):
    estimator = MAMLClassifier(hidden_layer_sizes=(16,), n_meta_iter=8,
                               validation_interval=4, inner_steps=2,
                               meta_inner_steps=1, random_state=0)
    search = MetaGridSearch(estimator, {"concat_input": [False, True]}, cv=2,
                            n_val_tasks=4, random_state=0).meta_fit(digits_sampler)
    first, second = (set(c.tolist()) for c in search.fold_val_classes_)
    assert len(first) == len(second) == 2 and first.isdisjoint(second)
    for scores, mean in zip(search.results_["fold_validation_scores"],
                            search.results_["validation_score"]):
        assert len(scores) == 2 and np.mean(scores) == pytest.approx(mean)
    by_hand = clone(estimator).set_params(
        **search.best_params_, n_meta_iter=search.best_n_meta_iter_)
    by_hand.meta_fit(digits_sampler)
    for name, value in by_hand.module_.state_dict().items():
        np.testing.assert_array_equal(
            search.best_estimator_.module_.state_dict()[name].numpy(), value.numpy())


class Talker(Recorder):
    """A Recorder whose ``verbose`` prints a line of progress per meta-training,
    as an sk_meta estimator's stop line does, without naming the run."""

    def __init__(self, quality=0.5, peak=30, n_meta_iter=60, early_stopping=False,
                 fail=False, verbose=0):
        super().__init__(quality, peak, n_meta_iter, early_stopping, fail)
        self.verbose = verbose

    def meta_fit(self, tasks, validation_tasks=None):
        if self.verbose:
            print(f"stopped at meta-iteration {self.n_meta_iter}")
        return super().meta_fit(tasks, validation_tasks)


@pytest.mark.parametrize("verbose", [1, True, np.True_])
def test_verbose_names_the_candidate_and_fold_before_each_meta_training(
        sampler, capsys, verbose):
    MetaGridSearch(Talker(verbose=verbose), {"quality": [0.6, 0.9]}, cv=2,
                   random_state=0).meta_fit(sampler)
    assert capsys.readouterr().out.splitlines() == [
        "MetaGridSearch: candidate 1 of 2 {'quality': 0.6}, class fold 1 of 2",
        "stopped at meta-iteration 60",
        "MetaGridSearch: candidate 1 of 2 {'quality': 0.6}, class fold 2 of 2",
        "stopped at meta-iteration 60",
        "MetaGridSearch: candidate 2 of 2 {'quality': 0.9}, class fold 1 of 2",
        "stopped at meta-iteration 60",
        "MetaGridSearch: candidate 2 of 2 {'quality': 0.9}, class fold 2 of 2",
        "stopped at meta-iteration 60",
        "MetaGridSearch: the refit of the best candidate {'quality': 0.9} on all "
        "the classes",
        "stopped at meta-iteration 30",
    ]
    # silent estimators give a silent search
    MetaGridSearch(Talker(), {"quality": [0.6, 0.9]}, random_state=0).meta_fit(sampler)
    assert capsys.readouterr().out == ""
