"""Warm starts, validation tasks and feature names across calls: each case
was a silent wrong state (an init other than the one scored, a stream that
ran dry, names taken from the validation tasks) or a costly refusal."""

import os
import signal
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from sk_meta import MAMLClassifier, MAMLRegressor
from sk_meta.tasks import EpisodeSampler, SinusoidTasks, Task

COLUMNS = list("abcde")


def _tasks(n, seed=0, n_way=3, scale=1.0):
    rng = np.random.default_rng(seed)
    tasks = []
    for _ in range(n):
        centers = rng.normal(0, 2, (n_way, 5))
        y_support = np.repeat(np.arange(n_way), 3)
        y_query = np.repeat(np.arange(n_way), 4)
        X_support = centers[y_support] + rng.normal(size=(9, 5))
        X_query = centers[y_query] + rng.normal(size=(12, 5))
        tasks.append(Task(scale * X_support, y_support, scale * X_query, y_query))
    return tasks


def _params(estimator):
    return {k: v.detach().clone() for k, v in estimator.meta_params_.items()}


def _equal(first, second):
    return all(torch.equal(first[k], second[k]) for k in first)


def _framed(task):
    return (pd.DataFrame(task.X_support, columns=COLUMNS), task.y_support,
            pd.DataFrame(task.X_query, columns=COLUMNS), task.y_query)


def test_early_stopping_on_off_on_keeps_the_init_whose_score_it_reports(
        small_estimator):
    val = list(SinusoidTasks(k_shot=5, n_query=10, n_tasks=5, random_state=1))
    train = SinusoidTasks(k_shot=5, n_query=10, random_state=0)
    reg = small_estimator(MAMLRegressor, hidden_layer_sizes=(20,), meta_batch_size=4,
                 meta_lr=0.01, n_meta_iter=3, validation_interval=1,
                 early_stopping=True, n_iter_no_change=50)
    reg.meta_fit(train, validation_tasks=val)
    first = _params(reg)
    reg.set_params(warm_start=True, early_stopping=False, n_meta_iter=40)
    reg.meta_fit(train, validation_tasks=val)
    assert reg.best_validation_score_ > max(reg.validation_scores_[:3])
    # no improvement counts as one now: early stopping keeps the best init it scored
    reg.set_params(early_stopping=True, n_meta_iter=200, n_iter_no_change=2, tol=1.0)
    reg.meta_fit(train, validation_tasks=val)
    assert not _equal(first, _params(reg))  # run 1's init was scored lower
    scores = [np.mean([reg.fit(t.X_support, t.y_support).score(t.X_query, t.y_query)
                       for t in val])]
    np.testing.assert_allclose(scores[0], reg.best_validation_score_, rtol=1e-4)


def test_new_validation_tasks_at_a_warm_start_do_not_compare_with_old_scores(
        small_estimator):
    tasks = _tasks(10)
    clf = small_estimator(n_meta_iter=4, validation_interval=2, early_stopping=True,
                 n_iter_no_change=2)
    clf.meta_fit(tasks, validation_tasks=_tasks(3, seed=3))
    first = _params(clf)
    assert clf.best_validation_score_ > 0.9
    hard = _tasks(3, seed=4, scale=0.1)  # classes that barely separate
    clf.set_params(warm_start=True, n_meta_iter=40)
    clf.meta_fit(tasks, validation_tasks=hard)
    assert not _equal(first, _params(clf))
    assert clf.best_validation_score_ == max(clf.validation_scores_[2:])


def test_the_same_validation_tasks_keep_their_best_across_a_warm_start(small_estimator):
    tasks, val = _tasks(10), _tasks(3, seed=3)
    clf = small_estimator(n_meta_iter=4, validation_interval=2, early_stopping=True,
                 n_iter_no_change=2)
    clf.meta_fit(tasks, validation_tasks=val)
    best = clf.best_validation_score_
    clf.set_params(warm_start=True, n_meta_iter=8)
    clf.meta_fit(tasks, validation_tasks=[tuple(t) for t in val])  # equal values
    assert clf.best_validation_score_ >= best


def test_warm_meta_fit_after_a_partial_pass_over_the_same_list_cycles_it(
        small_estimator):
    tasks = _tasks(6)
    clf = small_estimator(task_interpolation=0.0)
    clf.meta_partial_fit(tasks)
    clf.set_params(warm_start=True, n_meta_iter=8)
    clf.meta_fit(tasks)  # raised "tasks is empty"
    assert clf.n_meta_iter_ == 8


def test_warm_meta_fit_after_an_interrupted_partial_pass_runs_its_budget(
        small_estimator):
    class InterruptedOnce(list):
        armed = True

        def __getitem__(self, index):
            if self.armed and index == 2:
                self.armed = False
                os.kill(os.getpid(), signal.SIGINT)
            return list.__getitem__(self, index)

    tasks = InterruptedOnce(_tasks(8))
    clf = small_estimator(task_interpolation=0.0)
    # Python's own handler (a process started in the background ignores
    # Ctrl-C, and sk_meta then leaves it so)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.warns(UserWarning, match="interrupted"):
            clf.meta_partial_fit(tasks)
    finally:
        signal.signal(signal.SIGINT, previous)
    clf.set_params(warm_start=True, n_meta_iter=12)
    clf.meta_fit(tasks)  # stopped silently at 4
    assert clf.n_meta_iter_ == 12


def test_an_endless_validation_sampler_is_refused_before_any_draw(small_estimator):
    class CountingSampler(EpisodeSampler):
        drawn = 0

        def __iter__(self):
            for task in super().__iter__():
                type(self).drawn += 1
                yield task

    X = np.random.default_rng(0).normal(size=(60, 5))
    y = np.repeat(np.arange(6), 10)
    endless = CountingSampler(X, y, 3, 2, 3, random_state=0)
    with pytest.raises(ValueError,
                       match="finite collection.*CountingSampler has no end"):
        small_estimator().meta_fit(_tasks(4), validation_tasks=endless)
    assert CountingSampler.drawn == 0


def test_validation_tasks_names_are_not_the_estimators(small_estimator):
    tasks = _tasks(6)
    with pytest.warns(UserWarning, match="validation_tasks: task 0: X_support has "
                      r"feature names, but meta-training task \d has none"):
        clf = small_estimator().meta_fit(tasks,
                                validation_tasks=[_framed(t) for t in _tasks(2, 3)])
    assert not hasattr(clf, "feature_names_in_")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned that the init saw names
        clf.fit(tasks[0].X_support, tasks[0].y_support)


@pytest.mark.parametrize("named_first", [True, False])
def test_tasks_with_and_without_feature_names_in_one_stream_warn(
        named_first, small_estimator):
    tasks = _tasks(4)
    mixed = ([_framed(tasks[0])] + tasks[1:] if named_first
             else tasks[:3] + [_framed(tasks[3])])
    # meta_fit shuffles a list: which task comes first is the stream's
    message = (r"task [1-3] has no feature names, but task 0 has" if named_first
               else r"task 3: X_support has feature names, but task [0-2] has none")
    with pytest.warns(UserWarning, match=message):
        small_estimator(meta_batch_size=4, n_meta_iter=2).meta_fit(mixed)


def test_a_validation_shape_error_names_the_meta_training_task(small_estimator):
    tasks = _tasks(4)
    val = [(t.X_support[:, :4], t.y_support, t.X_query[:, :4], t.y_query)
           for t in _tasks(2, seed=3)]
    with pytest.raises(ValueError, match=r"validation_tasks: task 0: X_support has "
                       r"per-sample shape \(4,\), but meta-training task 0's X_support "
                       r"has \(5,\)"):
        small_estimator().meta_fit(tasks, validation_tasks=val)


def test_an_interrupt_inside_an_update_fails_the_call_and_changes_nothing(
        small_estimator):
    """An interrupt sk_meta does not defer (the program has its own SIGINT
    handler) landing after the optimizer step but before the count kept a
    third step under two meta-iterations; the call now fails instead."""
    tasks = _tasks(8)
    clf = small_estimator(task_interpolation=0.0, n_meta_iter=2).meta_fit(tasks)
    before = _params(clf)
    steps = {"n": 0}

    def interrupt_the_second_step(optimizer, args, kwargs):
        steps["n"] += 1
        if steps["n"] == 2:
            raise KeyboardInterrupt

    def own_handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, own_handler)
    hook = register_optimizer_step_post_hook(
        interrupt_the_second_step)
    try:
        clf.set_params(warm_start=True, n_meta_iter=6)
        with pytest.raises(KeyboardInterrupt):
            clf.meta_fit(tasks)
    finally:
        hook.remove()
        signal.signal(signal.SIGINT, previous)
    assert clf.n_meta_iter_ == 2 and len(clf.meta_loss_curve_) == 2
    assert _equal(before, _params(clf))
    clf.meta_fit(tasks)  # resumes as if the failed call had not happened
    reference = small_estimator(task_interpolation=0.0, n_meta_iter=6).meta_fit(tasks)
    assert _equal(_params(reference), _params(clf))


@pytest.mark.parametrize("labels, message", [
    (np.array(["a", "a", "a", "b", "b", "b", None, None, None], dtype=object),
     r"holds 3 missing label\(s\) \(None\)"),
    (pd.Series(["a", "a", "a", "b", "b", "b", pd.NA, "a", "b"], dtype=object),
     r"holds 1 missing label\(s\) \(<NA>\)"),
])
def test_missing_labels_are_refused_by_fit_and_meta_fit_alike(
        labels, message, small_estimator):
    """fit stopped in numpy's sort ("'<' not supported between 'NoneType' and
    'str'") or pandas ("boolean value of NA is ambiguous")."""
    task = _tasks(1)[0]
    with pytest.raises(ValueError, match="y " + message):
        small_estimator().fit(task.X_support, labels)
    labelled = (task.X_support, labels, task.X_query, task.y_query)
    with pytest.raises(ValueError, match="task 0: y_support " + message):
        small_estimator().meta_fit([labelled])


@pytest.mark.parametrize("nullable", [False, True])
def test_a_nan_label_in_a_task_is_called_missing_not_continuous(
        nullable, small_estimator):
    """meta_fit said "holds continuous values" where fit says "contains NaN"."""
    task = _tasks(1)[0]
    labels = task.y_support.astype(float)
    labels[-1] = np.nan
    if nullable:
        labels = pd.array([*task.y_support[:-1], None], dtype="Int64")
    with pytest.raises(ValueError, match="Input y contains NaN"):
        small_estimator().fit(task.X_support, labels)
    with pytest.raises(ValueError, match="task 0: y_support contains NaN"):
        small_estimator().meta_fit(
            [(task.X_support, labels, task.X_query, task.y_query)])


def test_a_new_generator_at_a_warm_start_numbers_its_tasks_from_zero(small_estimator):
    tasks = _tasks(8)
    clf = small_estimator().meta_fit(iter(tasks))
    clf.set_params(warm_start=True, n_meta_iter=8)
    bad = tasks[1]._replace(X_support=tasks[1].X_support[:, :4],
                            X_query=tasks[1].X_query[:, :4])
    with pytest.raises(ValueError, match="^task 1: X_support has per-sample shape"):
        clf.meta_fit(iter([tasks[0], bad, *tasks[2:]]))


def test_integer_ids_that_float32_would_merge_are_warned_of(small_estimator):
    """2**24 + 1 becomes 2**24 in float32: two ids of an embedding were one,
    silently."""
    from sklearn.exceptions import DataConversionWarning

    ids = np.array([[2**24], [2**24 + 1], [2**24 + 2]] * 3, dtype=np.int64)
    assert np.float32(ids[1, 0]) == np.float32(ids[0, 0])  # the collision itself
    y = np.repeat(np.arange(3), 3)
    clf = small_estimator(inner_steps=0)
    message = "holds integers beyond 2\\*\\*24, which float32"
    with pytest.warns(DataConversionWarning, match="X " + message):
        clf.fit(ids, y)
    with pytest.warns(DataConversionWarning, match="X " + message):
        clf.predict(ids)
    frame = pd.DataFrame({"id": ids[:, 0], "value": np.linspace(0, 1, 9)})
    with pytest.warns(DataConversionWarning, match="X " + message):
        clf.fit(frame, y)
    with pytest.warns(DataConversionWarning, match="task [01] " + message):
        small_estimator(inner_lr=1e-9, meta_lr=1e-9, n_meta_iter=1).meta_fit(
            [(ids, y, ids, y)] * 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataConversionWarning)
        clf.fit(ids - 2**24, y)  # small ids are exact


def test_integer_ids_held_as_lists_objects_or_categories_are_warned_of_too(
        small_estimator):
    from sklearn.exceptions import DataConversionWarning

    ids = [[2**24], [2**24 + 1], [2**24 + 2]] * 3
    y = np.repeat(np.arange(3), 3)
    clf = small_estimator(inner_steps=0)
    message = "holds integers beyond 2\\*\\*24, which float32"
    with pytest.warns(DataConversionWarning, match="X " + message):
        clf.fit(ids, y)  # a list
    with pytest.warns(DataConversionWarning, match="X " + message):
        clf.predict(ids)
    held = np.array(ids, dtype=object)
    with pytest.warns(DataConversionWarning, match="task [01] " + message):
        small_estimator(inner_lr=1e-9, meta_lr=1e-9, n_meta_iter=1).meta_fit(
            [(held, y, held, y)] * 2)
    for column in (pd.Series([row[0] for row in ids], dtype=object),
                   pd.Categorical([row[0] for row in ids])):
        frame = pd.DataFrame({"id": column, "value": np.linspace(0, 1, 9)})
        with pytest.warns(DataConversionWarning, match="X " + message):
            try:
                clf.fit(frame, y)
            except (TypeError, ValueError):
                pass  # refused further on, after the warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataConversionWarning)
        clf.fit([[row[0] - 2**24] for row in ids], y)  # small ids are exact
        clf.fit(np.array([[1.5], [2.5], [3.5]] * 3, dtype=object), y)


# -- model selection and samplers (a hostile pass) -------------------------------------

def _table(n_classes=12, rows=10, seed=0):
    X = np.random.default_rng(seed).normal(size=(n_classes * rows, 4))
    return X, np.repeat(np.arange(n_classes), rows)


def test_string_classes_for_number_labels_are_refused_not_matched_as_text():
    """classes=['11'] for labels 0..11 drew every episode from class 2."""
    from sk_meta.tasks import GroupTaskSampler

    X, y = _table()
    with pytest.raises(ValueError, match=r"classes holds string labels \(\['11', "
                       r"'10'\]\), but y holds number labels"):
        EpisodeSampler(X, y, 2, 1, 1, classes=["11", "10"])
    with pytest.raises(ValueError, match="group_labels holds string labels"):
        GroupTaskSampler(X, y.astype(float), y, 1, 1, group_labels=["3"])
    assert EpisodeSampler(X, y, 2, 1, 1, classes=[11, 10]).class_labels.tolist() == [
        10, 11]


def test_meta_grid_search_refuses_a_sampler_subclass_it_would_replace(small_estimator):
    from sk_meta.model_selection import MetaGridSearch

    class Noisy(EpisodeSampler):
        pass

    X, y = _table()
    search = MetaGridSearch(small_estimator(), {"inner_lr": [0.1]}, random_state=0)
    with pytest.raises(TypeError, match=r"not a subclass of it \(Noisy\)"):
        search.meta_fit(Noisy(X, y, 2, 1, 1, random_state=0))


@pytest.mark.parametrize("params, error, message", [
    ({"n_val_tasks": 10_001}, ValueError, r"'n_val_tasks' parameter .* \[1, 10000\]"),
    ({"cv": True}, TypeError, "cv must be an int, got True"),
])
def test_meta_grid_search_settings_are_checked_before_any_task(
        params, error, message, small_estimator):
    from sk_meta.model_selection import MetaGridSearch

    X, y = _table()
    search = MetaGridSearch(small_estimator(), {"inner_lr": [0.1]}, random_state=0,
                            **params)
    with pytest.raises(error, match=message):
        search.meta_fit(EpisodeSampler(X, y, 2, 1, 1, random_state=0))
    with pytest.raises(TypeError, match=r"not the class MAMLClassifier: pass "
                       r"MAMLClassifier\(\)"):
        MetaGridSearch(MAMLClassifier, {}).meta_fit(
            EpisodeSampler(X, y, 2, 1, 1, random_state=0))


def test_evaluate_tasks_warns_of_an_estimator_never_meta_trained(small_estimator):
    from sk_meta.model_selection import evaluate_tasks

    with pytest.warns(UserWarning, match="MAMLClassifier is not meta-trained"):
        evaluate_tasks(small_estimator(inner_steps=0), _tasks(2))


def test_evaluate_tasks_refuses_what_it_cannot_report_before_fitting(small_estimator):
    from sklearn.linear_model import LogisticRegression

    from sk_meta.model_selection import evaluate_tasks

    clf = small_estimator().meta_fit(_tasks(4))
    with pytest.raises(ValueError, match="scoring must be one scorer"):
        evaluate_tasks(clf, _tasks(2), scoring=["accuracy", "f1_macro"])
    with pytest.raises(TypeError, match="got LogisticRegression \\(put one estimator "
                       "in a list\\)"):
        evaluate_tasks(clf, _tasks(2), baselines=LogisticRegression())
    with pytest.raises(TypeError, match="baseline names must be strings, got 1"):
        evaluate_tasks(clf, _tasks(2), baselines={1: LogisticRegression()})


def test_meta_fit_pipeline_refuses_a_search_whose_held_out_classes_it_would_see(
        small_estimator):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sk_meta.model_selection import MetaGridSearch
    from sk_meta.pipeline import meta_fit_pipeline

    X, y = _table()
    search = MetaGridSearch(small_estimator(), {"inner_lr": [0.1]}, random_state=0)
    pipe = make_pipeline(StandardScaler(), search)
    sampler = EpisodeSampler(X, y, 2, 1, 1, n_tasks=8, random_state=0)
    with pytest.raises(ValueError, match="the held-out ones too: pass validation"):
        meta_fit_pipeline(pipe, sampler)
    # preprocessing fitted elsewhere, or nothing fitted: nothing is seen
    other = EpisodeSampler(X, y, 2, 1, 1, classes=[0, 1, 2], n_tasks=8, random_state=0)
    meta_fit_pipeline(pipe, sampler, preprocessing_tasks=other)
    meta_fit_pipeline(make_pipeline("passthrough", pipe[-1]), sampler)
    from sklearn.frozen import FrozenEstimator

    frozen = FrozenEstimator(StandardScaler().fit(X))
    meta_fit_pipeline(make_pipeline(frozen, pipe[-1]), sampler)
    with pytest.raises(TypeError, match="tasks must be an iterable .* got int"):
        meta_fit_pipeline(make_pipeline(StandardScaler(), small_estimator()), 5)


def test_tasks_to_cv_refuses_what_meta_fit_refuses():
    from sk_meta.model_selection import tasks_to_cv

    tasks = _tasks(2)
    empty = tasks[1]._replace(X_query=tasks[1].X_query[:0],
                              y_query=tasks[1].y_query[:0])
    with pytest.raises(ValueError, match="task 1: the query set is empty"):
        tasks_to_cv([tasks[0], empty])
    objects = tasks[1]._replace(y_support=np.array(list("aaabbbccc"), dtype=object),
                                y_query=np.array(list("aaaabbbbcccc"), dtype=object))
    with pytest.raises(ValueError, match="task 1: y_support mixes numeric and string"):
        tasks_to_cv([tasks[0], objects])  # a baseline then failed on "Unknown label"
    with pytest.warns(UserWarning, match="task 1: X_support is not a DataFrame, "
                      "unlike task 0's X_support"):
        tasks_to_cv([_framed(tasks[0]), tasks[1]])


@pytest.mark.parametrize("call, error, message", [
    (lambda X, y: EpisodeSampler(X, y, 2, 1, 1, shuffle_labels="no"), TypeError,
     "shuffle_labels must be True or False, got 'no'"),
    (lambda X, y: EpisodeSampler(X, y, 2, 1, 1, n_tasks=10**30), ValueError,
     "n_tasks must be at most"),
    (lambda X, y: __import__("sk_meta.tasks").tasks.split_classes(
        np.c_[y, y], train_size=3), ValueError, r"y must be 1-D class labels"),
    (lambda X, y: __import__("sk_meta.tasks").tasks.split_classes(
        np.array(["a", 1, "b", 2], dtype=object), train_size=1), ValueError,
     "y's labels cannot be sorted"),
    # class_splits reads labels as split_classes does (it gave numpy's TypeError)
    (lambda X, y: __import__("sk_meta.tasks").tasks.class_splits(
        np.array(["a", 1, "b", 2], dtype=object), 2, train_size=1), ValueError,
     "y's labels cannot be sorted"),
    (lambda X, y: __import__("sk_meta.tasks").tasks.class_splits(
        np.c_[y, y], 2, train_size=3), ValueError, r"y must be 1-D class labels"),
])
def test_sampler_arguments_that_were_taken_silently_or_with_a_bare_error(
        call, error, message):
    X, y = _table()
    with pytest.raises(error, match=message):
        call(X, y)


def test_validation_tasks_in_another_order_keep_their_best(small_estimator):
    tasks, val = _tasks(10), _tasks(4, seed=3)
    clf = small_estimator(n_meta_iter=4, validation_interval=2, early_stopping=True,
                 n_iter_no_change=2)
    clf.meta_fit(tasks, validation_tasks=val)
    best, kept = clf.best_validation_score_, _params(clf)
    clf.set_params(warm_start=True, n_meta_iter=6, tol=10.0)  # no score improves
    clf.meta_fit(tasks, validation_tasks=val[::-1])
    assert clf.best_validation_score_ == best
    assert _equal(kept, _params(clf))


def test_an_interrupt_inside_validation_fails_the_call(small_estimator):
    """A history row was lost: the resumed history differed from an
    uninterrupted run's."""
    from sk_meta import _training

    tasks, val = _tasks(8), _tasks(2, seed=3)
    clf = small_estimator(task_interpolation=0.0, n_meta_iter=2, validation_interval=2)
    clf.meta_fit(tasks, validation_tasks=val)
    before = _params(clf)
    evaluate = _training.MetaTrainer._evaluate

    def interrupted(self):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, lambda *args: None)  # not deferred
    _training.MetaTrainer._evaluate = interrupted
    try:
        clf.set_params(warm_start=True, n_meta_iter=4)
        with pytest.raises(KeyboardInterrupt):
            clf.meta_fit(tasks, validation_tasks=val)
    finally:
        _training.MetaTrainer._evaluate = evaluate
        signal.signal(signal.SIGINT, previous)
    assert clf.n_meta_iter_ == 2 and len(clf.history_) == 1
    assert _equal(before, _params(clf))


@pytest.mark.parametrize("value", [1, 0, np.True_])
def test_shuffle_labels_takes_the_bools_it_took(value):
    X, y = _table()
    assert EpisodeSampler(X, y, 2, 1, 1, shuffle_labels=value).shuffle_labels is bool(
        value)


def test_a_float32_nan_among_string_labels_is_a_missing_label(small_estimator):
    task = _tasks(1)[0]
    labels = np.array(["a"] * 8 + [np.float32("nan")], dtype=object)
    with pytest.raises(ValueError, match=r"y holds 1 missing label\(s\)"):
        small_estimator().fit(task.X_support, labels)
