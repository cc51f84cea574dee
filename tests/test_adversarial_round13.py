"""What the thirteenth pass found: a data scientist's tables (a pipeline
ending in MetaGridSearch lost its search when cloned, messages that named
tasks the user never passed or blamed the wrong array, labels that fit
refused and meta_fit took, a query without the support's feature names)."""

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sk_meta import MAMLClassifier, ReptileClassifier
from sk_meta.model_selection import MetaGridSearch, evaluate_tasks, tasks_to_cv
from sk_meta.pipeline import meta_fit_pipeline
from sk_meta.tasks import EpisodeSampler

X_DIGITS, Y_DIGITS = load_digits(return_X_y=True)


def _searched_pipeline():
    train = EpisodeSampler(X_DIGITS, Y_DIGITS, 3, 5, 5, classes=range(5),
                           shuffle_labels=True, random_state=0)
    validation = EpisodeSampler(X_DIGITS, Y_DIGITS, 2, 5, 5, classes=[5, 6],
                                n_tasks=5, random_state=2)
    search = MetaGridSearch(
        MAMLClassifier(n_meta_iter=6, validation_interval=3, random_state=0),
        {"hidden_layer_sizes": [(), (16,)]})
    return meta_fit_pipeline(make_pipeline(StandardScaler(), search), train,
                             validation_tasks=validation)


def test_a_clone_of_a_searched_pipeline_keeps_the_search():
    pipe = _searched_pipeline()
    test = EpisodeSampler(X_DIGITS, Y_DIGITS, 3, 5, 5, classes=[7, 8, 9],
                          n_tasks=4, random_state=3)
    task = test.sample()
    expected = pipe.fit(task.X_support, task.y_support).predict_proba(task.X_query)
    copy_ = clone(pipe)
    np.testing.assert_array_equal(
        copy_.fit(task.X_support, task.y_support).predict_proba(task.X_query),
        expected)
    search, copied = pipe[-1], copy_[-1]
    assert copied.best_params_ == search.best_params_
    assert copied.best_estimator_ is not search.best_estimator_
    X_cv, y_cv, cv = tasks_to_cv(test)
    scores = cross_val_score(pipe, X_cv, y_cv, cv=cv, error_score="raise")
    assert len(scores) == 4 and np.all((scores >= 0) & (scores <= 1))
    assert evaluate_tasks(pipe, test) is not None
    # an unsearched search's clone is unsearched
    with pytest.raises(Exception, match="has not searched yet: call meta_fit"):
        clone(MetaGridSearch(MAMLClassifier(), {"inner_lr": [0.1]})).fit(
            task.X_support, task.y_support)


def test_estimator_parameters_set_after_the_search_act_at_fit():
    search = _searched_pipeline()[-1]
    X_cv, y_cv, cv = tasks_to_cv(EpisodeSampler(
        StandardScaler().fit_transform(X_DIGITS), Y_DIGITS, 3, 5, 5,
        classes=[7, 8, 9], n_tasks=3, random_state=3))
    # a grid over the search's estimator tunes fit as one over best_estimator_,
    # its value at the search included
    values = [search.estimator.inner_steps, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        through_search = GridSearchCV(search, {"estimator__inner_steps": values},
                                      cv=cv, error_score="raise").fit(X_cv, y_cv)
    on_best = GridSearchCV(search.best_estimator_, {"inner_steps": values}, cv=cv,
                           error_score="raise").fit(X_cv, y_cv)
    np.testing.assert_array_equal(through_search.cv_results_["mean_test_score"],
                                  on_best.cv_results_["mean_test_score"])
    scores = on_best.cv_results_["mean_test_score"]
    assert scores[0] != scores[1]  # the grid scored two models, not one twice
    task = EpisodeSampler(X_DIGITS, Y_DIGITS, 3, 5, 5, classes=[7, 8, 9],
                          random_state=4).sample()
    # what is set on best_estimator_ itself stays
    copy_ = clone(search)
    copy_.best_estimator_.set_params(inner_steps=17)
    assert copy_.fit(task.X_support, task.y_support).best_estimator_.inner_steps == 17
    # a setting of meta-training alone warns, as on the estimator
    with pytest.warns(UserWarning, match="n_meta_iter=.*differs from what the init"):
        clone(search).set_params(estimator__n_meta_iter=99).fit(
            task.X_support, task.y_support)
    regridded = clone(search).set_params(param_grid={"inner_steps": [1]})
    with pytest.warns(UserWarning, match="param_grid set after meta_fit"):
        clone(regridded).fit(task.X_support, task.y_support)  # a clone too
    swapped = clone(search).set_params(estimator=ReptileClassifier())
    with pytest.warns(UserWarning, match="estimator set after meta_fit"), \
            pytest.raises(ValueError, match="meta_fit the search again"):
        swapped.fit(task.X_support, task.y_support)
    # before the search, set_params sets the template alone
    fresh = MetaGridSearch(MAMLClassifier(), {"inner_lr": [0.1]})
    assert fresh.set_params(estimator__inner_steps=3).estimator.inner_steps == 3


def _frame_sampler(column, classes=range(6)):
    rng = np.random.RandomState(0)
    frame = pd.DataFrame({"a": rng.randn(900), "b": rng.randn(900), "c": column})
    return EpisodeSampler(frame, np.repeat(np.arange(9), 100), 3, 5, 5,
                          classes=classes, shuffle_labels=True, random_state=0)


def test_the_auto_network_names_the_fold_s_tasks_by_their_classes():
    rng = np.random.RandomState(1)
    sampler = _frame_sampler(pd.Categorical(rng.choice(list("xyz"), 900)))
    with pytest.raises(ValueError) as explicit:
        MAMLClassifier(n_meta_iter=2, hidden_layer_sizes=(8,)).meta_fit(sampler)
    with pytest.raises(ValueError) as auto:
        MAMLClassifier(n_meta_iter=2, random_state=0).meta_fit(sampler)
    assert "validation_tasks" not in str(auto.value)
    assert str(auto.value).startswith("X_support must be numeric")
    assert "(a task drawn from its held-out classes, in hidden_layer_sizes='auto'" in (
        str(auto.value))
    # the reason itself is the one an explicit network gives
    assert str(explicit.value).split(": ", 1)[1] in str(auto.value)


def test_the_auto_network_names_the_fold_s_training_tasks_by_their_classes():
    values = np.random.RandomState(1).randn(900)
    values[::7] = np.nan
    with pytest.raises(ValueError) as auto:
        MAMLClassifier(n_meta_iter=2, random_state=0).meta_fit(_frame_sampler(values))
    message = str(auto.value)
    assert "(a task drawn from its" in message and "on class fold 1 of 3)" in message
    assert "contains NaN" in message and "validation_tasks" not in message


def _digits_tasks(n_tasks, classes=range(7), seed=0):
    sampler = EpisodeSampler(X_DIGITS / 16, Y_DIGITS, 3, 5, 5, classes=classes,
                             shuffle_labels=True, random_state=seed)
    return [tuple(task) for task, _ in zip(sampler, range(n_tasks))]


def test_a_task_whose_support_has_other_features_than_its_query_names_both():
    validation = [(X_support[:, :5], y_support, X_query, y_query)
                  for X_support, y_support, X_query, y_query
                  in _digits_tasks(2, classes=[7, 8, 9])]
    with pytest.raises(ValueError, match=r"X_query has per-sample shape \(64,\), "
                                         r"but task 0's X_support has \(5,\)"):
        MAMLClassifier(n_meta_iter=2, hidden_layer_sizes=(8,)).meta_fit(
            _digits_tasks(4), validation_tasks=validation)


@pytest.mark.parametrize("labels", [[(0,), (1,), (2,)],
                                    [frozenset([0]), frozenset([1]), frozenset([2])],
                                    [[0], [1], [2]]],
                         ids=["tuple", "frozenset", "list"])
def test_collections_as_labels_are_refused_by_fit_and_meta_fit_alike(labels):
    tasks = _digits_tasks(4)
    X_support, y_support, X_query, y_query = tasks[0]
    as_objects = np.empty(3, dtype=object)
    as_objects[:] = labels
    with pytest.raises(ValueError, match="y holds labels that are collections"):
        MAMLClassifier().fit(X_support, as_objects[y_support])
    bad = (X_support, as_objects[y_support], X_query, as_objects[y_query])
    with pytest.raises(ValueError,
                       match="task 3: y_support holds labels that are collections"):
        MAMLClassifier(n_meta_iter=1, hidden_layer_sizes=(8,)).meta_fit(
            tasks[1:] + [bad])


def test_a_query_without_the_support_s_feature_names_warns():
    frame = pd.DataFrame(X_DIGITS / 16, columns=[f"px{i}" for i in range(64)])
    sampler = EpisodeSampler(frame, Y_DIGITS, 3, 5, 5, classes=range(7),
                             shuffle_labels=True, random_state=0)
    tasks = [tuple(task) for task, _ in zip(sampler, range(6))]
    X_support, y_support, X_query, y_query = tasks[3]
    tasks[3] = (X_support, y_support, X_query.to_numpy()[:, ::-1], y_query)
    with pytest.warns(UserWarning, match="task 3: X_query has no feature names, "
                                         "but X_support has"):
        MAMLClassifier(n_meta_iter=2, hidden_layer_sizes=(8,),
                       random_state=0).meta_fit(tasks)
    with warnings.catch_warnings():  # named alike: nothing to say
        warnings.simplefilter("error", UserWarning)
        MAMLClassifier(n_meta_iter=2, hidden_layer_sizes=(8,),
                       random_state=0).meta_fit(tasks[:3] + tasks[4:])


@pytest.mark.parametrize("column", ["category", "period"])
def test_fit_names_a_column_that_is_not_numbers(column):
    frame = pd.DataFrame(X_DIGITS[:12] / 16, columns=[f"px{i}" for i in range(64)])
    frame["px3"] = (pd.Categorical(np.where(frame.px3 > 0.2, "hi", "lo"))
                    if column == "category"
                    else pd.period_range("2020", periods=12, freq="D"))
    with pytest.raises(ValueError, match=r"X must be numeric, but its column\(s\) "
                                         r"'px3' \((category|period\[D\])\)"):
        MAMLClassifier().fit(frame, np.repeat([0, 1, 2], 4))


def test_warm_start_on_a_changed_network_says_how_to_start_afresh():
    tasks = _digits_tasks(6)
    clf = MAMLClassifier(n_meta_iter=2, hidden_layer_sizes=(16,), warm_start=True,
                         random_state=0).meta_fit(tasks)
    clf.set_params(hidden_layer_sizes=(32,), n_meta_iter=4)
    with pytest.raises(ValueError, match="meta_fit with warm_start=False"):
        clf.meta_fit(tasks)
    clf.set_params(warm_start=False).meta_fit(tasks)  # which works
    assert clf.n_meta_iter_ == 4
