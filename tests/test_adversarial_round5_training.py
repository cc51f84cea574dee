"""A hostile user's cases, fifth round: meta-training controls, task sources,
pipelines and the messages that should say what to do.

Each test is one case that once went wrong (its docstring says how).
"""

import os
import pickle
import signal
import warnings
from itertools import islice

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.datasets import load_digits
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sk_meta import FOMAMLClassifier, MAMLClassifier, MAMLRegressor
from sk_meta.exceptions import DivergenceError, TargetScaleWarning
from sk_meta.model_selection import MetaGridSearch
from sk_meta.pipeline import meta_fit_pipeline
from sk_meta.tasks import EpisodeSampler, SinusoidTasks

X_DIGITS, Y_DIGITS = load_digits(return_X_y=True)
X_DIGITS = X_DIGITS / 16


def _sampler(**kwargs):
    return EpisodeSampler(X_DIGITS, Y_DIGITS, 3, 3, 5, classes=range(7),
                          shuffle_labels=True, random_state=0, **kwargs)


def _validation(n_tasks=5):
    return list(EpisodeSampler(X_DIGITS, Y_DIGITS, 3, 3, 5, classes=[7, 8, 9],
                               n_tasks=n_tasks, random_state=1))


def _classifier(cls=MAMLClassifier, **params):
    defaults = dict(hidden_layer_sizes=(8,), n_meta_iter=6, meta_batch_size=2,
                    inner_steps=2, random_state=0)
    return cls(**{**defaults, **params})


def _counting(tasks):
    drawn = []

    def generator():
        for task in tasks:
            drawn.append(task)
            yield task

    return generator(), drawn


def _weights(estimator):
    return [p.detach().clone() for p in estimator._meta.module.parameters()]


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("validation_tasks, error, message", [
    (5, TypeError, "validation_tasks: tasks must be an iterable"),
    ([("not", "a", "task")], TypeError, "validation_tasks: task 0: expected a 4-tuple"),
    (EpisodeSampler(X_DIGITS, Y_DIGITS, 3, 3, 5, classes=[7, 8, 9]), ValueError,
     "validation_tasks must be a finite collection"),
])
def test_bad_validation_tasks_are_refused_before_a_task_is_drawn(
        validation_tasks, error, message):
    """These refusals need no training task, but came after ``meta_fit`` had
    drawn a whole meta-batch from the user's one-shot generator."""
    tasks, drawn = _counting(_sampler(n_tasks=40))
    with pytest.raises(error, match=message):
        _classifier().meta_fit(tasks, validation_tasks=validation_tasks)
    assert drawn == []


def test_metagridsearch_refits_an_early_stopping_estimator():
    """With ``early_stopping=True`` on the estimator, every candidate
    meta-trained and then the refit on all classes raised "early_stopping=True
    needs validation tasks": the whole search was lost."""
    base = _classifier(early_stopping=True, validation_interval=2, n_meta_iter=4)
    search = MetaGridSearch(base, {"inner_lr": [0.05, 0.1]}, n_val_tasks=4,
                            random_state=0)
    search.meta_fit(EpisodeSampler(X_DIGITS, Y_DIGITS, 3, 3, 5, classes=range(10),
                                   shuffle_labels=True, random_state=0))
    assert search.best_estimator_.n_meta_iter_ == search.best_n_meta_iter_
    assert len(search.results_["params"]) == 2


def test_metagridsearch_meta_trains_candidates_from_a_fresh_init():
    """On a meta-fitted estimator with ``warm_start=True``, the candidates
    (clones keep the init) continued from an init meta-trained on the
    held-out classes themselves (their scores leaked), or, with the budget
    spent, failed with a bare TypeError."""
    sampler = EpisodeSampler(X_DIGITS, Y_DIGITS, 3, 3, 5, classes=range(10),
                             shuffle_labels=True, random_state=0)
    grid = {"inner_lr": [0.05, 0.1]}

    def scores(base):
        search = MetaGridSearch(base, grid, n_val_tasks=4, random_state=0)
        return search.meta_fit(sampler).results_["validation_score"]

    fresh = scores(_classifier(validation_interval=3))
    meta_fitted = _classifier(validation_interval=3).meta_fit(sampler)
    assert scores(meta_fitted.set_params(warm_start=True)) == fresh
    with pytest.raises(ValueError, match="must not set warm_start"):
        MetaGridSearch(_classifier(), {"warm_start": [True]}).meta_fit(sampler)


def test_ctrl_c_stops_metagridsearch():
    """Ctrl-C stopped only the candidate being meta-trained: it was scored on
    its cut-short run and compared with the others, and the search went on
    to the next candidates and the refit."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("Ctrl-C is handled by the test runner here")
    sampler = _sampler()

    class CtrlCAtTask:
        def __init__(self, n):
            self.n, self.count = n, 0

        def __iter__(self):
            for task in sampler:
                self.count += 1
                if self.count == self.n:
                    os.kill(os.getpid(), signal.SIGINT)
                yield task

    search = MetaGridSearch(_classifier(n_meta_iter=30, validation_interval=5),
                            {"inner_lr": [0.05, 0.1]})
    with pytest.raises(KeyboardInterrupt, match="candidate .*inner_lr"):
        search.meta_fit(CtrlCAtTask(8), validation_tasks=_validation())
    assert not hasattr(search, "results_")


@pytest.mark.parametrize("change", [
    lambda tasks: tasks.extend(EpisodeSampler(X_DIGITS, Y_DIGITS, 3, 3, 5,
                                              classes=range(7), n_tasks=4,
                                              random_state=9)),
    lambda tasks: tasks.__delitem__(slice(3, None)),
], ids=["grown", "shrunk"])
def test_warm_start_on_a_list_that_changed_length(change):
    """The kept task stream reused the order of the list's old length when
    the same list grew or shrank in place: an IndexError (grown) or "list
    index out of range" (shrunk) mid-run, while a pickled copy of the same
    estimator resumed on the same list."""
    tasks = list(_sampler(n_tasks=6))
    clf = _classifier(n_meta_iter=2).meta_fit(tasks)
    copy = pickle.loads(pickle.dumps(clf))
    change(tasks)
    clf.set_params(warm_start=True, n_meta_iter=8).meta_fit(tasks)
    copy.set_params(warm_start=True, n_meta_iter=8).meta_fit(tasks)
    assert clf.n_meta_iter_ == copy.n_meta_iter_ == 8
    assert _same(_weights(clf), _weights(copy))


def test_early_stopping_turned_on_at_a_warm_start_keeps_the_init_it_reports():
    """The first call validated without early stopping; the warm start turned
    it on. best_validation_score_ went on reporting the first call's best,
    whose init was never kept, so the estimator ended on its last init, and
    the first call's no-improvement count stopped the new one at once."""
    val = _validation()
    clf = _classifier(FOMAMLClassifier, meta_lr=0.05, validation_interval=2,
                      n_meta_iter=10)
    clf.meta_fit(_sampler(), validation_tasks=val)
    n_first = len(clf.history_)
    clf.set_params(warm_start=True, early_stopping=True, n_iter_no_change=2,
                   n_meta_iter=40).meta_fit(_sampler(), validation_tasks=val)
    new_scores = clf.history_[n_first:, "valid_score"]
    assert len(new_scores) > 2  # the count started over
    assert clf.best_validation_score_ == max(new_scores)
    kept = np.mean([clf.fit(t.X_support, t.y_support).score(t.X_query, t.y_query)
                    for t in val])
    assert kept == pytest.approx(clf.best_validation_score_, abs=1e-6)


def test_meta_partial_fit_validates_every_validation_interval():
    """Each meta_partial_fit call ended with a validation, so streaming one
    meta-batch per call validated at every meta-iteration (and early stopping
    counted calls, not intervals)."""
    tasks = list(_sampler(n_tasks=20))
    val = _validation(3)
    streamed = _classifier(validation_interval=5)
    for start in range(0, 20, 2):
        streamed.meta_partial_fit(tasks[start:start + 2], validation_tasks=val)
    whole = _classifier(validation_interval=5, n_meta_iter=10)
    whole.meta_partial_fit(tasks, validation_tasks=val)

    def validated(clf):
        return [row["meta_iter"] for row in clf.history_ if "valid_score" in row]

    assert validated(streamed) == validated(whole) == [5, 10]
    assert _same(_weights(streamed), _weights(whole))


@pytest.mark.parametrize("params, message", [
    ({"inner_lr": -1.0}, "inner_lr"),
    ({"early_stopping": True}, "early_stopping=True needs validation tasks"),
])
def test_meta_fit_pipeline_refuses_the_last_step_before_reading_tasks(
        params, message):
    """The preprocessing read up to 1,000 tasks from the user's one-shot
    iterator before the last step's parameters were refused (meta_fit alone
    reads none)."""
    tasks, drawn = _counting(_sampler(n_tasks=40))
    with pytest.raises(ValueError, match=message):
        meta_fit_pipeline(make_pipeline(StandardScaler(), _classifier(**params)),
                          tasks)
    assert drawn == []


class _CountingScaler(TransformerMixin, BaseEstimator):
    """StandardScaler that counts its transform calls."""

    def fit(self, X, y=None):
        self.scaler_ = StandardScaler().fit(X)
        self.calls_ = [0]
        return self

    def transform(self, X):
        self.calls_[0] += 1
        return self.scaler_.transform(X)


class _Reiterable:
    """A re-iterable that is not an EpisodeSampler."""

    def __init__(self, tasks):
        self.tasks = tasks

    def __iter__(self):
        return iter(self.tasks)


def test_meta_fit_pipeline_transforms_a_sampler_once():
    """Every episode's rows went through the preprocessing again (8 times the
    meta-training time on a DataFrame with a ColumnTransformer); a sampler
    is now transformed once and draws the same episodes."""
    # the same preprocessing for both (a shuffled sampler alone is fitted on
    # its rows, not on its episodes)
    fitted_on = list(islice(_sampler(), 5))
    fast = meta_fit_pipeline(make_pipeline(_CountingScaler(), _classifier()),
                             _sampler(), preprocessing_tasks=fitted_on)
    slow = meta_fit_pipeline(make_pipeline(_CountingScaler(), _classifier()),
                             _Reiterable(_sampler()), preprocessing_tasks=fitted_on)
    # the table once, and two blocks of rows that check it transforms row by row
    assert fast[0].estimator.calls_[0] == 3
    assert slow[0].estimator.calls_[0] > 10
    assert _same(_weights(fast[-1]), _weights(slow[-1]))


def test_meta_fit_pipeline_fits_steps_that_use_y_on_the_rows_own_labels():
    """With shuffle_labels=True the preprocessing was fitted on the episodes'
    labels, codes drawn anew per episode: SelectKBest chose 0 of the 10 best
    features of the true labels, silently. A shuffled sampler's steps are now
    fitted on the rows of its classes with their own labels."""
    X, y = load_digits(return_X_y=True)
    train = np.isin(y, range(7))
    tasks = EpisodeSampler(X / 16, y, 3, 5, 5, classes=range(7),
                           shuffle_labels=True, random_state=0)
    selector = SelectKBest(f_classif, k=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant pixels
        pipe = meta_fit_pipeline(make_pipeline(selector, _classifier()), tasks)
        expected = clone(selector).fit(X[train] / 16, y[train]).get_support()
    np.testing.assert_array_equal(pipe[0].estimator.get_support(), expected)
    # a sampler whose labels are the classes' own is read as before
    plain = EpisodeSampler(X / 16, y, 3, 5, 5, classes=range(7), random_state=0)
    scaled = meta_fit_pipeline(make_pipeline(StandardScaler(), _classifier()), plain,
                               n_preprocessing_tasks=2)
    first_two = list(islice(plain, 2))
    rows = np.concatenate([part for task in first_two for part in (task[0], task[2])])
    np.testing.assert_allclose(scaled[0].estimator.mean_, rows.mean(0))


def test_meta_fit_pipeline_takes_validation_tasks():
    """meta_fit_pipeline had no validation_tasks: early stopping and
    validation scores could not be used with preprocessing in the pipeline."""
    pipe = meta_fit_pipeline(
        make_pipeline(StandardScaler(), _classifier(
            early_stopping=True, validation_interval=2, n_meta_iter=8)),
        _sampler(), validation_tasks=_validation())
    final = pipe[-1]
    assert len(final.validation_scores_) >= 1
    # scored on the transformed validation tasks: the same as scoring by hand
    val = _validation()
    by_hand = np.mean([pipe.fit(t.X_support, t.y_support).score(t.X_query, t.y_query)
                       for t in val])
    assert by_hand == pytest.approx(final.best_validation_score_, abs=1e-6)


@pytest.mark.parametrize("make", [
    lambda: EpisodeSampler(X_DIGITS, Y_DIGITS, 3, 2, 2, random_state=1),
    lambda: SinusoidTasks(random_state=1),
], ids=["episodes", "sinusoid"])
def test_sample_follows_the_samplers_random_state(make):
    """``sample()`` ignored the sampler's random_state: a script that built
    ``EpisodeSampler(..., random_state=1).sample()`` (as README showed) drew
    another task at every run."""
    first, again = make(), make()
    a, b = first.sample(), again.sample()
    np.testing.assert_array_equal(a.X_support, b.X_support)
    c = first.sample()
    assert not np.array_equal(a.X_support, c.X_support)  # each call draws anew
    np.testing.assert_array_equal(first.sample(random_state=3).X_support,
                                  again.sample(random_state=3).X_support)


def test_large_regression_targets_are_named():
    """Targets in real units (a spread of hundreds) diverged with advice to
    lower the rates, which only made the model learn nothing; nothing said
    the targets were the cause."""
    rng = np.random.RandomState(0)
    X = rng.randn(40, 3).astype(np.float32)
    y = 300 * (X @ np.array([1.0, 2.0, 3.0]))
    tasks = [(X[:10], y[:10], X[10:20], y[10:20])]
    reg = MAMLRegressor(hidden_layer_sizes=(8,), n_meta_iter=3, random_state=0)
    with pytest.warns(TargetScaleWarning, match="targets up to"):
        try:
            reg.meta_fit(tasks)
        except DivergenceError as error:
            assert "standardize the targets" in str(error)
    with pytest.warns(TargetScaleWarning, match="The support set has targets"):
        try:
            MAMLRegressor(hidden_layer_sizes=(8,), random_state=0).fit(X, y)
        except DivergenceError as error:
            assert "standardize the targets" in str(error)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TargetScaleWarning)
        MAMLRegressor(hidden_layer_sizes=(8,), random_state=0).fit(X, y / y.std())


def test_more_classes_than_meta_training_says_what_to_do():
    """"The support set has 5 classes, but the network was meta-trained with 3
    outputs" left the user guessing (also after GridSearchCV's refit)."""
    clf = _classifier().meta_fit(_sampler())
    task = EpisodeSampler(X_DIGITS, Y_DIGITS, 5, 2, 2, random_state=0).sample()
    with pytest.raises(ValueError, match="meta-train on tasks of 5 or more classes"
                       r".*refit=False"):
        clf.fit(task.X_support, task.y_support)


def test_ignored_network_parameters_set_after_meta_fit_are_said_to_be_ignored():
    """module_params set beside the default MLP after meta_fit was ignored
    without the warning it gets before meta_fit."""
    clf = _classifier().meta_fit(_sampler())
    clf.set_params(module_params={"width": 3})
    task = _validation(1)[0]
    with pytest.warns(UserWarning, match="module_params=.* is ignored"):
        clf.fit(task.X_support, task.y_support)
    with pytest.warns(UserWarning, match="module_params=.* is ignored"):
        clf.set_params(warm_start=True, n_meta_iter=8).meta_fit(_sampler())


def test_predict_after_meta_fit_says_to_adapt_first():
    """predict after meta_fit (no fit) said "Call 'fit' with appropriate
    arguments", which did not tell a new user that fit adapts the init to a
    task's support set."""
    from sklearn.exceptions import NotFittedError

    clf = _classifier().meta_fit(_sampler())
    with pytest.raises(NotFittedError, match=r"meta-trained but not adapted.*"
                                             r"fit\(X_support, y_support\)"):
        clf.predict(X_DIGITS[:3])


def _per_set_standardize(X):
    X = np.asarray(X, dtype=float)
    return (X - X.mean(axis=0)) / (X.std(axis=0) + 1.0)


class _AugmentedSampler(EpisodeSampler):
    """A subclass whose episodes are not the table's rows."""

    def __iter__(self):
        for task in super().__iter__():
            yield task._replace(X_support=task.X_support + 1.0,
                                X_query=task.X_query + 1.0)


def test_meta_fit_pipeline_transforms_once_only_what_transforms_row_by_row():
    """The one-time transform of a sampler's table (found by the review of
    this change): a transform of each set by its own statistics changed
    meta-training silently; a subclass's own episodes were replaced by the
    table's; a sparse output meta-trained fully and then failed in fit."""
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

    per_set = FunctionTransformer(_per_set_standardize)
    fast = meta_fit_pipeline(make_pipeline(per_set, _classifier()), _sampler(),
                             n_preprocessing_tasks=5)
    slow = meta_fit_pipeline(make_pipeline(per_set, _classifier()),
                             _Reiterable(_sampler()), n_preprocessing_tasks=5)
    assert _same(_weights(fast[-1]), _weights(slow[-1]))

    subclass = meta_fit_pipeline(make_pipeline(StandardScaler(), _classifier()),
                                 _AugmentedSampler(X_DIGITS, Y_DIGITS, 3, 3, 5,
                                                   classes=range(7), random_state=0),
                                 n_preprocessing_tasks=5)
    by_hand = meta_fit_pipeline(make_pipeline(StandardScaler(), _classifier()),
                                _Reiterable(_AugmentedSampler(
                                    X_DIGITS, Y_DIGITS, 3, 3, 5, classes=range(7),
                                    random_state=0)), n_preprocessing_tasks=5)
    assert _same(_weights(subclass[-1]), _weights(by_hand[-1]))

    codes = (X_DIGITS[:, 20:23] * 4).round()
    sparse_out = make_pipeline(OneHotEncoder(handle_unknown="ignore"), _classifier())
    with pytest.raises(TypeError, match="sparse matrix"):
        meta_fit_pipeline(sparse_out, EpisodeSampler(codes, Y_DIGITS, 3, 3, 5,
                                                     classes=range(7),
                                                     random_state=0))


def test_sample_without_a_seed_draws_fresh_in_copies_too():
    """With random_state=None, copies of a sampler (pickled to workers) that
    had drawn once carried the same stream and drew the same tasks."""
    sampler = EpisodeSampler(X_DIGITS, Y_DIGITS, 3, 2, 2)
    sampler.sample()
    copies = [pickle.loads(pickle.dumps(sampler)) for _ in range(4)]
    drawn = {tuple(c.sample().X_support.ravel()[:20]) for c in copies}
    assert len(drawn) == 4


def test_column_labels_of_validation_tasks_are_said_to_be_theirs():
    """The DataConversionWarning for (n, 1) labels in validation tasks named
    "task 0", which was a 1-D training task."""
    val = [t._replace(y_support=np.asarray(t.y_support)[:, None])
           for t in _validation(2)]
    with pytest.warns(UserWarning, match="validation_tasks: A column-vector y"):
        _classifier(n_meta_iter=2).meta_fit(_sampler(), validation_tasks=val)
