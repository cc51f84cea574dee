"""A module torch cannot pickle, and a missing target named as such by
meta_fit: each case was torch's or a vaguer error from deep inside."""

import copy
import io
import pickle
import threading

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.nn.utils import parametrizations

import sk_meta
from sk_meta import MAMLClassifier, MAMLRegressor
from sk_meta.tasks import Task


def _weight_normed_module(n_features=4, n_classes=3):
    torch.manual_seed(0)
    return nn.Sequential(parametrizations.weight_norm(nn.Linear(n_features, 8)),
                         nn.ReLU(), nn.Linear(8, n_classes))


@pytest.fixture
def weight_normed_classifier(blob_tasks):
    clf = MAMLClassifier(module=_weight_normed_module(), inner_steps=2,
                         meta_inner_steps=1, meta_batch_size=2, n_meta_iter=3,
                         random_state=0)
    with pytest.warns(UserWarning, match="batching rule"):  # torch's own
        return clf.meta_fit(blob_tasks())


@pytest.mark.parametrize("meta_fitted", [False, True])
@pytest.mark.parametrize("dump", [pickle.dumps,
                                  lambda obj: joblib.dump(obj, io.BytesIO())])
def test_pickling_a_parametrized_module_names_the_parameter_and_what_works(
        weight_normed_classifier, meta_fitted, dump):
    """torch refuses to pickle a module with parametrizations (weight_norm)
    with a RuntimeError raised from inside pickle; the estimator now says
    which parameter and points to save/load."""
    clf = (weight_normed_classifier if meta_fitted
           else MAMLClassifier(module=_weight_normed_module()))
    with pytest.raises(TypeError, match=r"cannot pickle MAMLClassifier: its module "
                       r"\(a Sequential\) uses torch parametrizations.*"
                       r"estimator\.save"):
        dump(clf)
    with pytest.raises(TypeError, match=r"its module \(a Sequential\) uses torch "
                       "parametrizations"):
        dump(make_pipeline(StandardScaler(), clf))


def test_a_parametrized_module_in_module_params_is_named():
    class Head(nn.Module):
        def __init__(self, body):
            super().__init__()
            self.body = body

        def forward(self, X):
            return self.body(X)

    clf = MAMLClassifier(module=Head,
                         module_params={"body": _weight_normed_module()})
    with pytest.raises(TypeError, match=r"its module_params \(a Sequential\) uses "
                       "torch parametrizations"):
        pickle.dumps(clf)


class _WeightNormed(nn.Module):
    """A module class that applies weight_norm itself: the estimator builds it."""

    def __init__(self, n_features=4, n_classes=3):
        super().__init__()
        self.hidden = parametrizations.weight_norm(nn.Linear(n_features, 8))
        self.out = nn.Linear(8, n_classes)

    def forward(self, X):
        return self.out(torch.relu(self.hidden(X)))


class _Wrapper(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner[0]

    def forward(self, X):
        return self.inner(X)


def test_the_built_network_and_nested_modules_are_named(blob_tasks):
    """Found by the second pass: a module class that parametrizes itself
    (the network lives in the meta-learned record), and a module in a list
    in module_params, still gave torch's RuntimeError."""
    clf = MAMLClassifier(module=_WeightNormed, inner_steps=1, meta_batch_size=2,
                         n_meta_iter=2, random_state=0)
    with pytest.warns(UserWarning, match="batching rule"):
        clf.meta_fit(blob_tasks())
    with pytest.raises(TypeError, match=r"its meta-trained network \(a _WeightNormed\) "
                       r"uses torch parametrizations.*estimator\.save"):
        pickle.dumps(clf)
    nested = MAMLClassifier(module=_Wrapper,
                            module_params={"inner": [_weight_normed_module()]})
    # save() stores no module held in module_params: not recommended there
    with pytest.raises(TypeError, match=r"its module_params \(a Sequential\) uses "
                       r"torch parametrizations.*remove_parametrizations"):
        pickle.dumps(nested)


def test_copy_pickle_and_subclass_state_are_as_before(blob_tasks, small_estimator):
    """The second pass: copy.copy went through the pickling check (refused a
    parametrized module), a subclass's own __getstate__ was skipped by
    deepcopy, and an invalid module_params broke pickling before fit could
    say it is invalid."""
    clf = MAMLClassifier(module=_weight_normed_module())
    shallow = copy.copy(clf)
    assert shallow.module is clf.module

    class Locked(MAMLClassifier):
        def meta_fit(self, *args, **kwargs):
            self._lock = threading.Lock()
            return super().meta_fit(*args, **kwargs)

        def __getstate__(self):
            state = super().__getstate__()
            state.pop("_lock", None)
            return state

    locked = small_estimator(Locked).meta_fit(blob_tasks())
    assert not hasattr(copy.deepcopy(locked), "_lock")
    assert not hasattr(copy.copy(locked), "_lock")
    invalid = pickle.loads(pickle.dumps(MAMLClassifier(module_params=[("a", 1)])))
    assert invalid.module_params == [("a", 1)]


def test_deepcopy_and_clone_still_copy_a_parametrized_module(
        weight_normed_classifier, blob_tasks):
    """The check is pickle's alone: GridSearchCV clones and deepcopies."""
    clf = weight_normed_classifier
    task = blob_tasks()[0]
    expected = clone(clf).fit(task.X_support, task.y_support).predict_proba(
        task.X_query)
    copied = copy.deepcopy(clf)
    assert copied.module is not clf.module
    with torch.no_grad():  # the copy's module is its own
        next(copied.module.parameters()).add_(1.0)
    np.testing.assert_allclose(
        clone(clf).fit(task.X_support, task.y_support).predict_proba(task.X_query),
        expected)
    np.testing.assert_allclose(
        copy.deepcopy(clf).fit(task.X_support, task.y_support).predict_proba(
            task.X_query), expected, rtol=1e-6)


def test_save_and_load_carry_a_parametrized_module(weight_normed_classifier,
                                                   blob_tasks, tmp_path):
    clf = weight_normed_classifier
    task = blob_tasks()[0]
    expected = clone(clf).fit(task.X_support, task.y_support).predict_proba(
        task.X_query)
    clf.save(tmp_path / "model.pt")
    loaded = sk_meta.load(tmp_path / "model.pt", module=_weight_normed_module())
    np.testing.assert_allclose(
        loaded.fit(task.X_support, task.y_support).predict_proba(task.X_query),
        expected, rtol=1e-5)


def test_an_ordinary_estimator_still_pickles(blob_tasks, small_estimator):
    clf = small_estimator().meta_fit(blob_tasks())
    task = blob_tasks()[0]
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(
        restored.fit(task.X_support, task.y_support).predict_proba(task.X_query),
        clf.fit(task.X_support, task.y_support).predict_proba(task.X_query))


def _regression_task(rng, y_support=None, y_query=None):
    X = rng.normal(size=(5, 2))
    return Task(X, rng.normal(size=5) if y_support is None else y_support,
                X, rng.normal(size=5) if y_query is None else y_query)


@pytest.mark.parametrize("missing", [
    np.array([1.0, None, 2.0, 3.0, 4.0], dtype=object),
    pd.array([1.0, pd.NA, 2.0, 3.0, 4.0]),
    np.array([1.0, np.nan, 2.0, 3.0, 4.0]),
])
@pytest.mark.parametrize("field", ["y_support", "y_query"])
def test_meta_fit_names_a_missing_target_as_fit_does(missing, field):
    """fit said "a missing target"; meta_fit said "NaN, infinity or a value
    too large for float32" for the same None."""
    rng = np.random.default_rng(0)
    tasks = [_regression_task(rng), _regression_task(rng, **{field: missing})]
    reg = MAMLRegressor(hidden_layer_sizes=(4,), n_meta_iter=1, random_state=0)
    with pytest.raises(ValueError, match=f"task 1: {field} contains NaN or None: "
                       "a missing target"):
        reg.meta_fit(tasks)
    with pytest.raises(ValueError, match="y contains NaN or None: a missing target"):
        reg.meta_fit([tasks[0]]).fit(tasks[0].X_support, missing)


def test_missing_values_held_as_objects_are_named_in_fit_and_meta_fit():
    """pandas' NA in a list or an object array: meta_fit said "must be
    numeric ... not 'NAType'", and fit raised numpy's TypeError for X."""
    rng = np.random.default_rng(0)
    y = [1.0, pd.NA, 2.0, 3.0, 4.0]
    reg = MAMLRegressor(hidden_layer_sizes=(4,), n_meta_iter=1, random_state=0)
    with pytest.raises(ValueError, match="task 1: y_support contains NaN or None: "
                       "a missing target"):
        reg.meta_fit([_regression_task(rng), _regression_task(rng, y)])
    task = _regression_task(rng)
    X = task.X_support.astype(object)
    X[1, 1] = pd.NA
    with pytest.raises(ValueError, match="task 0: X_support contains NaN or None: "
                       "a missing value"):
        reg.meta_fit([task._replace(X_support=X)])
    reg.meta_fit([task])
    with pytest.raises(ValueError, match="X contains NaN or None: a missing value"):
        reg.fit(X, task.y_support)
    with pytest.raises(ValueError, match="y contains NaN or None: a missing target"):
        reg.fit(task.X_support, np.r_[1.0, np.nan, 2.0, 3.0, 4.0])


def test_meta_fit_still_names_infinity_and_float32_overflow():
    rng = np.random.default_rng(0)
    for value in (np.inf, 1e39):
        y = np.array([1.0, value, 2.0, 3.0, 4.0])
        with pytest.raises(ValueError, match="task 0: y_support contains infinity "
                           "or a value too large for float32"):
            MAMLRegressor(n_meta_iter=1).meta_fit([_regression_task(rng, y)])


class _TaskDataset(torch.utils.data.Dataset):
    """A map-style dataset of tasks, as a PyTorch user writes one: its
    __getitem__ never raises IndexError (it indexes modulo its length), so
    Python's fallback iteration would never end."""

    def __init__(self, tasks):
        self.tasks = tasks
        self.reads = []

    def __len__(self):
        return len(self.tasks)

    def __getitem__(self, index):
        self.reads.append(index)
        return self.tasks[index % len(self.tasks)]


def test_meta_fit_reads_a_map_style_dataset_as_a_list(blob_tasks, small_estimator):
    """It was refused ("got _TaskDataset") though it holds tasks by index."""
    tasks = blob_tasks()
    dataset = _TaskDataset(tasks)
    from_dataset = small_estimator().meta_fit(dataset, validation_tasks=_TaskDataset(
        tasks[:2]))
    from_list = small_estimator().meta_fit(tasks, validation_tasks=tasks[:2])
    for name, value in from_list.meta_params_.items():
        torch.testing.assert_close(from_dataset.meta_params_[name], value)
    assert dataset.reads and max(dataset.reads) < len(tasks)  # never past its end
    # meta_partial_fit: one pass, in order
    partial = small_estimator().meta_partial_fit(dataset)
    assert partial.n_meta_iter_ == len(tasks) // partial.meta_batch_size


def test_evaluation_and_pipelines_read_a_map_style_dataset(blob_tasks,
                                                           small_estimator):
    from sk_meta.model_selection import evaluate_tasks
    from sk_meta.pipeline import meta_fit_pipeline

    tasks = blob_tasks()
    clf = small_estimator().meta_fit(tasks)
    dataset = _TaskDataset(tasks)
    from_dataset, from_list = (evaluate_tasks(clf, given) for given in (dataset,
                                                                        tasks))
    assert list(from_dataset) == list(from_list)
    for name, result in from_list.items():
        assert len(result.scores) == len(tasks)
        np.testing.assert_allclose(from_dataset[name].scores, result.scores)
    assert max(dataset.reads) < len(tasks)
    pipe = meta_fit_pipeline(make_pipeline(StandardScaler(), small_estimator()),
                             _TaskDataset(tasks))
    expected = meta_fit_pipeline(make_pipeline(StandardScaler(), small_estimator()),
                                 tasks)
    task = tasks[0]
    np.testing.assert_allclose(
        pipe.fit(task.X_support, task.y_support).predict_proba(task.X_query),
        expected.fit(task.X_support, task.y_support).predict_proba(task.X_query))


def test_an_object_with_getitem_but_no_length_is_named(small_estimator):
    class Indexed:
        def __getitem__(self, index):
            raise IndexError

    with pytest.raises(TypeError, match="has __getitem__ but neither __iter__ nor "
                       "__len__"):
        small_estimator().meta_fit(Indexed())
    from sk_meta.pipeline import meta_fit_pipeline

    with pytest.raises(TypeError, match="tasks must be an iterable.*a map-style "
                       "dataset needs __len__"):
        meta_fit_pipeline(make_pipeline(StandardScaler(), small_estimator()),
                          Indexed())


def _tasks_of(n_ways, seed=0):
    rng = np.random.default_rng(seed)
    tasks = []
    for n_way in n_ways:
        y = np.repeat(np.arange(n_way), 3)
        tasks.append(Task(rng.normal(size=(len(y), 4)), y,
                          rng.normal(size=(len(y), 4)), y))
    return tasks


def test_a_map_style_dataset_is_read_lazily_and_its_n_way_sizes_the_network():
    """A list is scanned for its largest task before the network is built; a
    dataset may load each task from disk, so only its first meta-batch is
    (the third pass found a version that read all of it first). Its n_way
    attribute gives the network a list's size, and without it a larger task
    later is an error that says so."""
    tasks = _tasks_of([2, 2, 2, 2, 2, 4])
    settings = dict(hidden_layer_sizes=(8,), meta_batch_size=1, n_meta_iter=6,
                    random_state=0)
    from_list = MAMLClassifier(**settings).meta_fit(tasks)
    assert from_list.meta_params_["layers.1.weight"].shape[0] == 4
    dataset = _TaskDataset(tasks)
    dataset.n_way = 4
    from_dataset = MAMLClassifier(**settings).meta_fit(dataset)
    for name, value in from_list.meta_params_.items():
        torch.testing.assert_close(from_dataset.meta_params_[name], value)
    assert len(dataset.reads) == 6  # each task once, as drawn
    with pytest.raises(ValueError, match="task 5: has 4 classes, but the network "
                       "has 2 outputs.*give them an n_way attribute"):
        MAMLClassifier(**settings).meta_fit(_TaskDataset(tasks))
    lazy = _TaskDataset(_tasks_of([3] * 50))
    MAMLClassifier(**dict(settings, n_meta_iter=2)).meta_fit(lazy)
    assert len(lazy.reads) == 2


def test_a_map_style_dataset_is_refused_by_its_length_before_it_is_read(
        small_estimator):
    """The third pass: a huge __len__ allocated its order (7 TiB), validation
    tasks were read before being refused, and a length Python cannot index
    gave a bare OverflowError."""
    from sk_meta.model_selection import evaluate_tasks

    class Huge:
        def __init__(self, n):
            self.n, self.reads = n, 0

        def __len__(self):
            return self.n

        def __getitem__(self, index):
            self.reads += 1
            return _tasks_of([3])[0]

    with pytest.raises(ValueError, match=r"holds 1000000000000 tasks by its "
                       r"__len__.*give Huge an __iter__"):
        small_estimator().meta_fit(Huge(10**12))
    clf = small_estimator().meta_fit(_tasks_of([3, 3]))
    many = Huge(20_000)
    with pytest.raises(ValueError, match="validation_tasks must be a finite "
                       "collection of at most 10000"):
        small_estimator().meta_fit(_tasks_of([3, 3]), validation_tasks=many)
    with pytest.raises(ValueError, match="at most 10000 tasks, got 20000"):
        list(evaluate_tasks(clf, many))
    assert many.reads == 0
    for length, error in ((2**70, TypeError), (-1, TypeError), (2.5, TypeError)):
        with pytest.raises(error, match="Huge.__len__ must return a non-negative "
                           "int"):
            small_estimator().meta_fit(Huge(length))


def test_an_index_error_inside_a_datasets_length_is_not_its_end(small_estimator):
    """The third pass: evaluate_tasks stopped at an IndexError raised inside
    the dataset's length (a missing file), and scored 3 tasks of 6 in
    silence; meta_fit raised a bare IndexError."""
    from sk_meta.model_selection import evaluate_tasks

    tasks = _tasks_of([3] * 6)

    class Broken:
        def __len__(self):
            return 6

        def __getitem__(self, index):
            if index >= 3:
                raise IndexError("no such file")
            return tasks[index]

    clf = small_estimator().meta_fit(tasks)
    with pytest.raises(ValueError, match=r"task 3: Broken\[3\] raised IndexError "
                       r"\(no such file\) though its __len__ is 6"):
        evaluate_tasks(clf, Broken())
    with pytest.raises(ValueError, match=r"Broken\[\d\] raised IndexError"):
        small_estimator(n_meta_iter=6).meta_fit(Broken())


def test_the_pickling_check_finds_modules_in_any_container():
    """The third pass: modules in a set or an object array were missed."""
    for holder in ({_weight_normed_module()}, np.array([_weight_normed_module()],
                                                        dtype=object)):
        with pytest.raises(TypeError, match="uses torch parametrizations"):
            pickle.dumps(MAMLClassifier(module=_Wrapper,
                                        module_params={"inner": holder}))


def test_the_pickling_check_goes_past_functions_and_nested_estimators():
    """The fourth pass: a lambda before the module stopped the check (pickle
    refuses lambdas), so cloudpickle (loky's workers) met torch's error; and
    each nested estimator checked its inside again (2**depth calls)."""
    cloudpickle = pytest.importorskip("cloudpickle")  # loky's, with joblib

    class Head(nn.Module):
        def __init__(self, act, body):
            super().__init__()
            self.act, self.body = act, body

        def forward(self, X):
            return self.body(X)

    clf = MAMLClassifier(module=Head, module_params={
        "act": lambda X: X, "body": _weight_normed_module()})
    for dump in (pickle.dumps, cloudpickle.dumps):
        with pytest.raises(TypeError, match=r"its module_params \(a Sequential\) "
                           "uses torch parametrizations"):
            dump(clf)
    calls = []
    getstate = MAMLClassifier.__getstate__

    def counted(self):
        calls.append(self)
        return getstate(self)

    nested = MAMLClassifier()
    for _ in range(10):
        nested = MAMLClassifier(module_params={"inner": nested})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(MAMLClassifier, "__getstate__", counted)
        pickle.dumps(nested)
    assert len(calls) <= 11 * 12  # each level's check walks the levels below


def test_lengths_and_index_errors_are_named_on_every_path(small_estimator):
    """The fourth pass: a negative __len__ of validation_tasks gave a bare
    ValueError, the pipeline named validation_tasks "tasks", and a
    StopIteration from __getitem__ became a RuntimeError."""
    from sk_meta.pipeline import meta_fit_pipeline

    tasks = _tasks_of([3] * 4)

    class Negative:
        def __len__(self):
            return -1

        def __getitem__(self, index):
            return tasks[index]

    class Stopping:
        def __len__(self):
            return 4

        def __getitem__(self, index):
            raise StopIteration

    with pytest.raises(TypeError, match="validation_tasks: Negative.__len__ must "
                       "return a non-negative int"):
        small_estimator().meta_fit(tasks, validation_tasks=Negative())
    with pytest.raises(TypeError, match="validation_tasks: Negative.__len__"):
        meta_fit_pipeline(make_pipeline(StandardScaler(), small_estimator()),
                          tasks, validation_tasks=Negative())
    with pytest.raises(ValueError, match=r"Stopping\[\d\] raised StopIteration"):
        small_estimator().meta_partial_fit(Stopping())


def test_a_pipeline_without_preprocessing_reads_a_dataset_lazily(blob_tasks):
    """The fifth pass: with no preprocessing step, the pipeline handed its
    sequence view of the dataset on, which was read in full and lost its
    n_way."""
    from sklearn.pipeline import Pipeline

    from sk_meta.pipeline import meta_fit_pipeline

    dataset = _TaskDataset(_tasks_of([3] * 8))
    dataset.n_way = 4
    pipe = meta_fit_pipeline(Pipeline([("clf", MAMLClassifier(
        hidden_layer_sizes=(8,), n_meta_iter=3, meta_batch_size=2,
        random_state=0))]), dataset)
    assert len(dataset.reads) == 6  # the drawn tasks only
    assert pipe[-1].meta_params_["layers.1.weight"].shape[0] == 4  # its n_way


def test_a_nested_estimators_network_is_named_as_its_own(blob_tasks):
    """The fifth pass: a parametrized network inside an estimator held in
    module_params was called a module of module_params, with advice that
    did not apply."""
    inner = MAMLClassifier(module=_WeightNormed, inner_steps=1, meta_batch_size=2,
                           n_meta_iter=2, random_state=0)
    with pytest.warns(UserWarning, match="batching rule"):
        inner.meta_fit(blob_tasks())
    outer = MAMLClassifier(module=_Wrapper, module_params={"inner": [inner]})
    with pytest.raises(TypeError, match=r"its meta-trained network \(a "
                       r"_WeightNormed\).*estimator\.save"):
        pickle.dumps(outer)
