"""A hostile user's cases, second round: bad tasks, state after errors,
persistence, interruption, determinism and resources.

Each test is one case tried against the public API; the docstring says what
once went wrong where a case needed a fix. Together with
``test_adversarial.py`` they pin down that bad input is refused with a
message naming the problem (and the task), that nothing the user passed is
changed, and that a failed call leaves a fitted estimator as it was.
"""

import io
import os
import pickle
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import sk_meta
from sk_meta import MAMLClassifier, MAMLRegressor, ReptileClassifier
from sk_meta.exceptions import DivergenceError, InterruptedWarning
from sk_meta.model_selection import evaluate_tasks, tasks_to_cv
from sk_meta.pipeline import meta_fit_pipeline
from sk_meta.tasks import EpisodeSampler, SinusoidTasks, Task


def _dataset(n_features=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(120, n_features))
    y = np.repeat(np.arange(6), 20)
    X[:, 0] += y
    return X, y


def _classification_tasks(n_tasks=8, n_features=4, seed=0, n_way=3):
    X, y = _dataset(n_features, seed)
    sampler = EpisodeSampler(X, y, n_way=n_way, k_shot=3, n_query=3,
                             random_state=seed)
    return [sampler.sample(i) for i in range(n_tasks)]


def _regression_tasks(n_tasks=4):
    sampler = SinusoidTasks(random_state=0)
    return [sampler.sample(i) for i in range(n_tasks)]


def _defaults(params):
    return {**dict(hidden_layer_sizes=(8,), meta_batch_size=4, n_meta_iter=2,
                   random_state=0), **params}


def _classifier(**params):
    return MAMLClassifier(**_defaults(params))


def _regressor(**params):
    return MAMLRegressor(**_defaults(params))


def _weights(estimator):
    return {k: v.clone() for k, v in estimator.meta_params_.items()}


def _same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _fitted_classifier():
    tasks = _classification_tasks()
    clf = _classifier().meta_fit(tasks).fit(tasks[0].X_support, tasks[0].y_support)
    return clf, tasks


def _assert_unchanged(clf, weights, X, proba, n_meta_iter):
    assert clf.n_meta_iter_ == n_meta_iter
    assert _same_weights(_weights(clf), weights)
    np.testing.assert_array_equal(clf.predict_proba(X), proba)


# -- bad tasks ------------------------------------------------------------------------

@pytest.mark.parametrize("field, value, message", [
    ("y_query", np.nan, "NaN or None: a missing target"),
    ("y_support", np.inf, "infinity or a value too large")])
def test_non_finite_regression_targets_are_refused_with_the_task_index(
        field, value, message):
    tasks = _regression_tasks(2)
    y = getattr(tasks[1], field).astype(np.float64)
    y[0] = value
    with pytest.raises(ValueError, match=f"task 1: {field} contains {message}"):
        _regressor().meta_fit([tasks[0], tasks[1]._replace(**{field: y})])


def test_3d_regression_targets_are_refused_in_tasks_as_in_fit():
    task = _regression_tasks(1)[0]
    bad = task._replace(y_support=task.y_support.reshape(-1, 1, 1),
                        y_query=task.y_query.reshape(-1, 1, 1))
    with pytest.raises(ValueError, match=r"task 0: y_support must be numeric of "
                                         r"shape \(n_samples,\) or"):
        _regressor().meta_fit([bad])
    with pytest.raises(ValueError, match="Found array with dim 3"):
        _regressor().fit(bad.X_support, bad.y_support)


def test_an_empty_query_set_is_refused():
    task = _classification_tasks(1)[0]
    with pytest.raises(ValueError, match="task 0: the query set is empty"):
        _classifier().meta_fit([task._replace(X_query=task.X_query[:0],
                                              y_query=task.y_query[:0])])


def test_float_labels_train_as_integer_labels_and_keep_their_type():
    tasks = _classification_tasks(4)
    as_floats = [t._replace(y_support=t.y_support + 1.0, y_query=t.y_query + 1.0)
                 for t in tasks]
    as_ints = [t._replace(y_support=t.y_support + 1, y_query=t.y_query + 1)
               for t in tasks]
    clf = _classifier().meta_fit(as_floats)
    assert _same_weights(_weights(clf), _weights(_classifier().meta_fit(as_ints)))
    clf.fit(as_floats[0].X_support, as_floats[0].y_support)
    assert clf.classes_.dtype.kind == "f"
    assert set(clf.predict(as_floats[0].X_query)) <= set(as_floats[0].y_support)


def test_boolean_labels_work_from_meta_fit_to_score():
    tasks = []
    for t in _classification_tasks(4):
        first, second = np.unique(t.y_support)[:2]
        support = np.isin(t.y_support, [first, second])
        query = np.isin(t.y_query, [first, second])
        tasks.append(Task(t.X_support[support], t.y_support[support] == first,
                          t.X_query[query], t.y_query[query] == first))
    clf = _classifier().meta_fit(tasks).fit(tasks[0].X_support, tasks[0].y_support)
    np.testing.assert_array_equal(clf.classes_, [False, True])
    assert clf.predict(tasks[0].X_query).dtype == bool
    assert 0 <= clf.score(tasks[0].X_query, tasks[0].y_query) <= 1


# numbers held as objects or strings are read as numbers, as fit (and
# scikit-learn) read them (round 5); words are not numbers
@pytest.mark.parametrize("dtype", [complex, str])
def test_non_numeric_inputs_are_refused_in_tasks(dtype):
    tasks = _classification_tasks(2)
    X = tasks[1].X_support
    bad = tasks[1]._replace(X_support=np.full(X.shape, "a") if dtype is str
                            else X.astype(dtype))
    with pytest.raises(ValueError, match="task 1: X_support must be numeric, got "
                                         "dtype"):
        _classifier(meta_batch_size=2).meta_partial_fit([tasks[0], bad])
    if dtype is complex:
        with pytest.raises(ValueError, match="Complex data not supported"):
            _classifier().fit(bad.X_support, bad.y_support)


def test_integer_inputs_give_the_init_of_the_same_values_as_floats():
    tasks = _classification_tasks(4)
    as_ints = [t._replace(X_support=np.round(t.X_support * 10).astype(np.int64),
                          X_query=np.round(t.X_query * 10).astype(np.int64))
               for t in tasks]
    as_floats = [t._replace(X_support=t.X_support.astype(np.float64),
                            X_query=t.X_query.astype(np.float64)) for t in as_ints]
    assert _same_weights(_weights(_classifier().meta_fit(as_ints)),
                         _weights(_classifier().meta_fit(as_floats)))


def test_a_module_with_fewer_outputs_than_classes_is_refused():
    class TwoOutputs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 2)

        def forward(self, X):
            return self.linear(X)

    with pytest.raises(ValueError, match="module has 2 outputs, but the tasks have "
                                         "up to 3 classes"):
        _classifier(module=TwoOutputs).meta_fit(_classification_tasks(2))


def test_a_feature_count_that_changes_mid_stream_is_refused_with_the_index():
    stream = iter(_classification_tasks(5) + _classification_tasks(4, n_features=5))
    with pytest.raises(ValueError, match=r"task 5: X_support has per-sample shape "
                                         r"\(5,\), but task 0's X_support has \(4,\)"):
        _classifier(n_meta_iter=4).meta_fit(stream)


def test_more_classes_later_in_a_stream_than_outputs_is_refused():
    stream = iter(_classification_tasks(4) + _classification_tasks(4, n_way=5))
    with pytest.raises(ValueError, match="task 4: has 5 classes, but the network "
                                         "has 3 outputs"):
        _classifier(n_meta_iter=3).meta_fit(stream)


@pytest.mark.parametrize("make, error, message", [
    (lambda t: [dict(zip("abcd", t))], TypeError, "task 0: expected a 4-tuple .*"
                                                  "got dict"),
    (lambda t: [(*t, None)], TypeError, "task 0: expected a 4-tuple .*tuple of "
                                        "length 5"),
    (lambda t: {0: t}, TypeError, "task 0: expected a 4-tuple .*got int"),
    (lambda t: [(t.X_support.tolist()[:-1] + [[0.0] * 3], t.y_support, t.X_query,
                 t.y_query)], ValueError, "task 0: X_support cannot be read as an "
                                          "array"),
])
def test_malformed_task_containers_are_refused_with_the_index(make, error, message):
    with pytest.raises(error, match=message):
        _classifier().meta_fit(make(_classification_tasks(1)[0]))


def test_validation_tasks_with_another_feature_count_are_refused():
    with pytest.raises(ValueError, match=r"validation_tasks: task 0: X_support has "
                                         r"per-sample shape \(5,\)"):
        _classifier().meta_fit(_classification_tasks(4), validation_tasks=
                               _classification_tasks(2, n_features=5))


def test_missing_labels_are_refused_by_the_sampler():
    """NaN labels became a class of their own, and None among strings failed
    with a bare TypeError ('<' not supported)."""
    X, y = _dataset()
    with_nan = y.astype(float)
    with_nan[:20] = np.nan
    with pytest.raises(ValueError, match="y contains 20 missing or infinite labels "
                                         r"\(first at row 0\)"):
        EpisodeSampler(X, with_nan, n_way=3, k_shot=1, n_query=1)
    names = np.array(list("abcdef"), dtype=object)[y]
    names[7] = None
    with pytest.raises(ValueError, match="y contains 1 missing or infinite labels "
                                         r"\(first at row 7\)"):
        EpisodeSampler(X, names, n_way=3, k_shot=1, n_query=1)
    names[7] = 3
    with pytest.raises(ValueError, match="y's labels cannot be sorted"):
        EpisodeSampler(X, names, n_way=3, k_shot=1, n_query=1)


# -- state after errors ---------------------------------------------------------------

def test_a_generator_raising_midway_leaves_a_fitted_estimator_as_it_was():
    clf, tasks = _fitted_classifier()
    weights, proba = _weights(clf), clf.predict_proba(tasks[0].X_query)

    def stream():
        yield from tasks[:5]
        raise RuntimeError("the data source went away")

    with pytest.raises(RuntimeError, match="went away"):
        clf.set_params(warm_start=True, n_meta_iter=6).meta_fit(stream())
    _assert_unchanged(clf, weights, tasks[0].X_query, proba, 2)


def test_a_bad_task_late_in_a_fresh_meta_fit_leaves_the_estimator_as_it_was():
    clf, tasks = _fitted_classifier()
    weights, proba = _weights(clf), clf.predict_proba(tasks[0].X_query)
    bad = tasks[3]._replace(X_query=tasks[3].X_query[:, :3])
    with pytest.raises(ValueError, match="task 3: X_query has per-sample shape"):
        clf.set_params(n_meta_iter=5).meta_fit(tasks[:3] + [bad])
    _assert_unchanged(clf, weights, tasks[0].X_query, proba, 2)


def test_an_invalid_parameter_set_after_fit_does_not_break_predict():
    clf, tasks = _fitted_classifier()
    proba = clf.predict_proba(tasks[0].X_query)
    clf.set_params(inner_lr=-1.0)
    np.testing.assert_array_equal(clf.predict_proba(tasks[0].X_query), proba)
    with pytest.raises(ValueError, match="'inner_lr' parameter"):
        clf.fit(tasks[1].X_support, tasks[1].y_support)
    np.testing.assert_array_equal(clf.predict_proba(tasks[0].X_query), proba)


@pytest.mark.parametrize("method", ["predict", "predict_proba", "score"])
def test_predicting_after_meta_fit_without_fit_is_not_fitted_error(method):
    tasks = _classification_tasks(4)
    clf = _classifier().meta_fit(tasks)
    args = (tasks[0].X_query, tasks[0].y_query)[: 2 if method == "score" else 1]
    with pytest.raises(NotFittedError, match=r"call fit\(X_support, y_support\)"):
        getattr(clf, method)(*args)


@pytest.mark.filterwarnings("ignore::sk_meta.exceptions.FeatureScaleWarning")
def test_a_diverging_fit_keeps_the_previous_adaptation():
    clf, tasks = _fitted_classifier()
    proba = clf.predict_proba(tasks[0].X_query)
    with pytest.raises(DivergenceError, match="adaptation diverged"):
        clf.set_params(inner_lr=1e30).fit(tasks[1].X_support * 1e30,
                                          tasks[1].y_support)
    np.testing.assert_array_equal(clf.predict_proba(tasks[0].X_query), proba)


def test_warm_start_on_another_feature_count_is_refused_and_changes_nothing():
    clf, tasks = _fitted_classifier()
    weights, proba = _weights(clf), clf.predict_proba(tasks[0].X_query)
    with pytest.raises(ValueError, match="but the estimator was meta-trained on "
                                         r"\(4,\)"):
        clf.set_params(warm_start=True, n_meta_iter=4).meta_fit(
            _classification_tasks(4, n_features=5))
    _assert_unchanged(clf, weights, tasks[0].X_query, proba, 2)


def test_meta_partial_fit_with_more_classes_than_outputs_changes_nothing():
    clf = _classifier().meta_partial_fit(_classification_tasks(4))
    weights = _weights(clf)
    with pytest.raises(ValueError, match="task 0: has 4 classes, but the network "
                                         "has 3 outputs"):
        clf.meta_partial_fit(_classification_tasks(1, n_way=4))
    assert clf.n_meta_iter_ == 1 and _same_weights(_weights(clf), weights)


# -- nothing the user passed is changed, whatever its layout --------------------------

def test_read_only_arrays_are_accepted_everywhere():
    tasks = _classification_tasks(4)
    for task in tasks:
        for array in task:
            array.setflags(write=False)
    clf = _classifier().meta_fit(tasks).fit(tasks[0].X_support, tasks[0].y_support)
    assert clf.predict(tasks[0].X_query).shape == (9,)


@pytest.mark.parametrize("layout", [
    np.asfortranarray,
    lambda X: np.repeat(X, 2, axis=1)[:, ::2],  # a strided view
    lambda X: X[::-1].copy()[::-1],  # negative strides
])
def test_memory_layout_does_not_change_the_init_or_predictions(layout):
    tasks = _classification_tasks(4)
    reference = _classifier().meta_fit(tasks)
    clf = _classifier().meta_fit([t._replace(X_support=layout(t.X_support),
                                             X_query=layout(t.X_query))
                                  for t in tasks])
    assert _same_weights(_weights(clf), _weights(reference))
    reference.fit(tasks[0].X_support, tasks[0].y_support)
    clf.fit(layout(tasks[0].X_support), tasks[0].y_support)
    np.testing.assert_array_equal(clf.predict_proba(layout(tasks[0].X_query)),
                                  reference.predict_proba(tasks[0].X_query))


def test_memory_mapped_tasks_give_the_init_of_in_memory_tasks(tmp_path):
    tasks = _classification_tasks(4)
    mapped = []
    for i, task in enumerate(tasks):
        arrays = []
        for j, array in enumerate(task):
            np.save(tmp_path / f"{i}_{j}.npy", array)
            arrays.append(np.load(tmp_path / f"{i}_{j}.npy", mmap_mode="r"))
        mapped.append(Task(*arrays))
    assert _same_weights(_weights(_classifier().meta_fit(mapped)),
                         _weights(_classifier().meta_fit(tasks)))


def test_float32_tasks_and_support_sets_are_not_modified():
    tasks = [Task(*(a.astype(np.float32) if a.dtype.kind == "f" else a
                    for a in t)) for t in _classification_tasks(4)]
    copies = [tuple(a.copy() for a in t) for t in tasks]
    _classifier(transductive=True).meta_fit(tasks)
    ReptileClassifier(**_defaults({})).meta_fit(tasks)
    clf = _classifier(head_init="prototype").meta_fit(tasks)
    clf.fit(tasks[0].X_support, tasks[0].y_support).predict(tasks[0].X_query)
    for task, copy in zip(tasks, copies):
        for array, original in zip(task, copy):
            np.testing.assert_array_equal(array, original)


# -- persistence ----------------------------------------------------------------------

def test_saving_to_a_directory_names_the_directory_and_leaves_nothing(tmp_path):
    """The error named a temporary file beside the directory, as if that were
    the problem."""
    clf = _classifier().meta_fit(_classification_tasks(4))
    target = tmp_path / "models"
    target.mkdir()
    with pytest.raises(IsADirectoryError, match=f"cannot save to a directory.*"
                                                f"'{target}'"):
        clf.save(target)
    assert sorted(os.listdir(tmp_path)) == ["models"]
    assert not os.listdir(target)


def test_saving_into_a_missing_directory_names_the_directory(tmp_path):
    """The error named the temporary file inside the missing directory."""
    clf = _classifier().meta_fit(_classification_tasks(4))
    with pytest.raises(FileNotFoundError, match=f"the directory "
                                                f"'{tmp_path / 'missing'}' does not "
                                                "exist"):
        clf.save(tmp_path / "missing" / "model.pt")


def test_a_bytes_path_saves_as_open_would_take_it(tmp_path):
    """A bytes path failed with 'Can't mix strings and bytes in path components'."""
    clf = _classifier().meta_fit(_classification_tasks(4))
    clf.save(os.fsencode(tmp_path / "model.pt"))
    assert sorted(os.listdir(tmp_path)) == ["model.pt"]
    assert _same_weights(_weights(sk_meta.load(tmp_path / "model.pt")), _weights(clf))


def test_an_unfitted_estimator_saves_and_loads_unfitted(tmp_path):
    clf = _classifier(inner_steps=3)
    clf.save(tmp_path / "model.pt")
    loaded = sk_meta.load(tmp_path / "model.pt")
    assert loaded.get_params() == clf.get_params()
    with pytest.raises(AttributeError, match="before meta_fit"):
        loaded.meta_params_


def test_loading_a_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="is not a file"):
        sk_meta.load(tmp_path)


def test_loading_with_a_module_of_other_shapes_is_a_clear_error(tmp_path):
    class Net(torch.nn.Module):
        def __init__(self, width=3):
            super().__init__()
            self.linear = torch.nn.Linear(4, width)

        def forward(self, X):
            return self.linear(X)

    class Wider(Net):
        def __init__(self):
            super().__init__(width=5)

    _classifier(module=Net).meta_fit(_classification_tasks(4)).save(
        tmp_path / "model.pt")
    with pytest.warns(UserWarning, match="loading with"), \
            pytest.raises(ValueError, match="the saved weights do not fit the module"):
        sk_meta.load(tmp_path / "model.pt", module=Wider)


def test_a_file_relabelled_as_another_estimator_class_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    ReptileClassifier(**_defaults({})).meta_fit(_classification_tasks(4)).save(path)
    state = torch.load(path, weights_only=True)
    state["estimator"] = "MAMLClassifier"
    torch.save(state, path)
    with pytest.raises(ValueError, match="unknown parameters .* for MAMLClassifier"):
        sk_meta.load(path)


def test_a_fit_only_file_predicts_the_same_and_checks_features(tmp_path):
    task = _classification_tasks(1)[0]
    clf = _classifier().fit(task.X_support, task.y_support)
    clf.save(tmp_path / "model.pt")
    loaded = sk_meta.load(tmp_path / "model.pt")
    np.testing.assert_array_equal(loaded.predict_proba(task.X_query),
                                  clf.predict_proba(task.X_query))
    with pytest.raises(ValueError, match="X has 3 features, but MAMLClassifier is "
                                         "expecting 4"):
        loaded.predict(task.X_query[:, :3])


def test_an_unpickled_estimator_continues_meta_partial_fit_as_the_original():
    tasks = _classification_tasks(8)
    original = _classifier().meta_partial_fit(tasks[:4])
    unpickled = pickle.loads(pickle.dumps(original))
    original.meta_partial_fit(tasks[4:])
    unpickled.meta_partial_fit(tasks[4:])
    assert _same_weights(_weights(unpickled), _weights(original))


def test_an_unpickled_estimator_resumes_as_an_uninterrupted_run():
    tasks = _classification_tasks(8)
    uninterrupted = _classifier(n_meta_iter=6).meta_fit(tasks)
    half = pickle.loads(pickle.dumps(_classifier(n_meta_iter=3).meta_fit(tasks)))
    half.set_params(warm_start=True, n_meta_iter=6).meta_fit(tasks)
    assert half.n_meta_iter_ == 6
    assert _same_weights(_weights(half), _weights(uninterrupted))


def test_a_clone_of_a_fitted_estimator_is_unfitted_and_adapts_the_same():
    clf, tasks = _fitted_classifier()
    copy = clone(clf)
    assert copy.get_params() == clf.get_params()
    with pytest.raises(NotFittedError):
        copy.predict(tasks[0].X_query)
    copy.fit(tasks[0].X_support, tasks[0].y_support)
    np.testing.assert_array_equal(copy.predict_proba(tasks[0].X_query),
                                  clf.predict_proba(tasks[0].X_query))


# -- interruption ---------------------------------------------------------------------

def test_keyboard_interrupt_in_a_users_generator_stops_like_ctrl_c():
    tasks = _classification_tasks(8)

    def stream():
        yield from tasks[:6]
        raise KeyboardInterrupt

    clf = _classifier(n_meta_iter=4)
    with pytest.warns(InterruptedWarning, match="interrupted after 1 "
                                                "meta-iterations"):
        clf.meta_fit(stream())
    assert clf.n_meta_iter_ == 1


class _BreakingStream(io.StringIO):
    """Standard output whose reader goes away after a few writes (``| head``)."""

    def __init__(self, n_writes):
        super().__init__()
        self.n_writes = n_writes

    def write(self, text):
        self.n_writes -= 1
        if self.n_writes < 0:
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(text)


def test_a_closed_output_mid_run_does_not_lose_the_meta_training(monkeypatch):
    tasks = _classification_tasks(8)
    clf = _classifier(n_meta_iter=3).meta_fit(tasks)
    monkeypatch.setattr(sys, "stdout", _BreakingStream(6))
    clf.set_params(verbose=2, warm_start=True, n_meta_iter=20).meta_fit(tasks)
    # the reader going away ends the report, not the run
    assert clf.n_meta_iter_ == 20
    # lines were written until the reader went away (print writes text, newline)
    assert sys.stdout.getvalue().count("Meta-iteration") == 3


# -- determinism ----------------------------------------------------------------------

def test_a_random_state_instance_seeds_as_its_integer_and_advances_as_sklearn():
    tasks = _classification_tasks(8)
    rng = np.random.RandomState(0)
    first = _classifier(random_state=rng).meta_fit(tasks)
    assert _same_weights(_weights(first), _weights(
        _classifier(random_state=np.random.RandomState(0)).meta_fit(tasks)))
    # as in scikit-learn, the instance is consumed: the next fit draws new seeds
    second = _classifier(random_state=rng).meta_fit(tasks)
    assert not _same_weights(_weights(first), _weights(second))
    assert clone(_classifier(random_state=rng)).random_state is not rng


def test_a_meta_batch_larger_than_the_task_list_runs_the_budget():
    clf = _classifier(meta_batch_size=50, n_meta_iter=2).meta_fit(
        _classification_tasks(3))
    assert clf.n_meta_iter_ == 2 and len(clf.meta_loss_curve_) == 2


def test_a_tiny_max_time_runs_one_meta_iteration():
    clf = _classifier(max_time=1e-9, n_meta_iter=100).meta_fit(
        _classification_tasks(4))
    assert clf.n_meta_iter_ == 1


@pytest.mark.parametrize("params", [{"max_time": 0}, {"max_time": -1},
                                    {"n_meta_iter": 0}, {"n_threads": 0}])
def test_zero_and_negative_budgets_are_refused_before_training(params):
    with pytest.raises(ValueError, match=f"'{next(iter(params))}' parameter"):
        _classifier(**params).meta_fit(_classification_tasks(4))


# -- resources ------------------------------------------------------------------------

def test_an_absurd_thread_count_is_refused_instead_of_killing_the_process():
    """n_threads=10**6 reached torch.set_num_threads, which killed the process
    (a segmentation fault; libgomp aborts from 65,536 threads)."""
    code = (
        "import numpy as np\n"
        "from sk_meta import MAMLClassifier\n"
        "X, y = np.zeros((6, 2)), np.array([0, 1] * 3)\n"
        "try:\n"
        "    MAMLClassifier(n_threads=10**6).fit(X, y)\n"
        "except ValueError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                            text=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-500:]
    assert "'n_threads' parameter" in result.stdout


def test_two_estimators_predict_from_two_threads_as_from_one():
    clf, tasks = _fitted_classifier()
    sinusoid = _regression_tasks(1)[0]
    reg = _regressor().meta_fit(_regression_tasks()).fit(sinusoid.X_support,
                                                         sinusoid.y_support)
    expected = [clf.predict_proba(tasks[0].X_query), reg.predict(sinusoid.X_query)]
    calls = [lambda: clf.predict_proba(tasks[0].X_query),
             lambda: reg.predict(sinusoid.X_query)]
    threads_before = torch.get_num_threads()
    failures = []

    def run(call, reference):
        try:
            for _ in range(100):
                if not np.array_equal(call(), reference):
                    failures.append("different predictions")
        except Exception as exc:  # reported below
            failures.append(repr(exc))

    workers = [threading.Thread(target=run, args=pair)
               for pair in zip(calls, expected)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not failures
    assert torch.get_num_threads() == threads_before


def test_memory_is_flat_over_200_fits():
    psutil = pytest.importorskip("psutil")
    clf, tasks = _fitted_classifier()
    process = psutil.Process()
    for _ in range(20):  # allocator warm-up
        clf.fit(tasks[0].X_support, tasks[0].y_support).predict(tasks[0].X_query)
    before = process.memory_info().rss
    for _ in range(200):
        clf.fit(tasks[0].X_support, tasks[0].y_support).predict(tasks[0].X_query)
    assert process.memory_info().rss - before < 20e6


# -- model selection and pipelines ----------------------------------------------------

def test_evaluate_tasks_names_the_task_a_model_fails_on():
    """The error was the estimator's own ('X has 3 features...'), without
    saying which of the tasks was bad."""
    tasks = _classification_tasks(4)
    clf = _classifier().meta_fit(tasks)
    bad = tasks[2]._replace(X_support=tasks[2].X_support[:, :3])
    with pytest.raises(ValueError, match="task 1: MAMLClassifier: X has 3 features"):
        evaluate_tasks(clf, [tasks[1], bad])
    X_query = tasks[2].X_query.copy()
    X_query[0, 0] = np.nan
    with pytest.raises(ValueError, match="task 1: MAMLClassifier: Input X contains "
                                         "NaN"):
        evaluate_tasks(clf, [tasks[1], tasks[2]._replace(X_query=X_query)])


def test_evaluate_tasks_leaves_the_fitted_estimator_as_it_was():
    clf, tasks = _fitted_classifier()
    weights, proba = _weights(clf), clf.predict_proba(tasks[0].X_query)
    evaluate_tasks(clf, tasks[1:3])
    _assert_unchanged(clf, weights, tasks[0].X_query, proba, 2)


def test_tasks_to_cv_names_the_task_whose_shapes_differ():
    """Tasks of other feature counts failed in numpy's concatenation ('all the
    input array dimensions ... must match'), scalars with "object of type
    'int' has no len()"."""
    tasks = _classification_tasks(2)
    with pytest.raises(ValueError, match=r"task 2: X_support has per-sample shape "
                                         r"\(5,\), but task 0 has \(4,\)"):
        tasks_to_cv(tasks + _classification_tasks(1, n_features=5))
    with pytest.raises(ValueError, match="task 0: X_support, y_support, X_query and "
                                         "y_query must be arrays of samples"):
        tasks_to_cv([(1, 2, 3, 4)])
    X, y, cv = tasks_to_cv(iter(tasks))  # a one-shot iterator is fine
    assert X.shape == (36, 4) and len(cv) == 2


def test_meta_fit_pipeline_leaves_the_pipeline_and_tasks_as_they_were():
    tasks = _classification_tasks(8)
    copies = [tuple(a.copy() for a in t) for t in tasks]
    pipeline = make_pipeline(StandardScaler(), _classifier())

    def stream():
        yield from tasks[:3]
        raise RuntimeError("the data source went away")

    with pytest.raises(RuntimeError, match="went away"):
        meta_fit_pipeline(pipeline, stream(), n_preprocessing_tasks=2)
    meta_fit_pipeline(pipeline, tasks)
    assert not hasattr(pipeline[0], "mean_")
    assert not pipeline[-1]._is_meta_fitted()
    for task, copy in zip(tasks, copies):
        for array, original in zip(task, copy):
            np.testing.assert_array_equal(array, original)
