"""Malformed tasks in ``meta_fit``: a clear error naming the task, nothing changed."""

import numpy as np
import pytest
import torch

from sk_meta import MAMLClassifier, MAMLRegressor, ReptileClassifier
from sk_meta.tasks import EpisodeSampler, Task


def _task(n_support=4, n_query=3, n_features=3, seed=0, labels=(0, 1)):
    rng = np.random.default_rng(seed)
    y_support = np.resize(np.asarray(labels), n_support)
    y_query = np.resize(np.asarray(labels), n_query)
    return Task(rng.normal(size=(n_support, n_features)), y_support,
                rng.normal(size=(n_query, n_features)), y_query)


def _classifier(**params):
    defaults = dict(hidden_layer_sizes=(4,), meta_batch_size=2, n_meta_iter=2,
                    random_state=0)
    return MAMLClassifier(**{**defaults, **params})


def _state(estimator):
    state = {k: (v.clone() if isinstance(v, torch.Tensor) else v)
             for k, v in estimator.__dict__.items()}
    weights = {k: v.clone() for k, v in estimator.meta_params_.items()}
    return state, weights


def _assert_unchanged(estimator, before):
    before, weights = before
    assert estimator.__dict__.keys() == before.keys()
    for name, value in estimator.__dict__.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, before[name]), name
        else:
            assert value is before[name], name
    for name, value in weights.items():
        assert torch.equal(estimator.module_.state_dict()[name], value)


BAD_TASKS = {
    "not a 4-tuple": (
        lambda: [_task(), _task()[:3]], TypeError,
        r"task 1: expected a 4-tuple \(X_support, y_support, X_query, y_query\), "
        r"got tuple of length 3",
    ),
    "not a tuple at all": (
        lambda: [_task(), "task"], TypeError, "task 1: expected a 4-tuple .* got str",
    ),
    "length mismatch": (
        lambda: [_task(), _task()._replace(y_support=np.array([0, 1, 0]))],
        ValueError, "task 1: X_support has 4 samples but y_support has 3",
    ),
    "NaN": (
        lambda: [_task(), _task()._replace(
            X_query=np.where(np.eye(3, 3, dtype=bool), np.nan, 1.0))],
        ValueError, "task 1: X_query contains NaN or None: a missing value",
    ),
    "inf": (
        lambda: [_task()._replace(X_support=np.full((4, 3), np.inf)), _task()],
        ValueError, "task 0: X_support contains infinity",
    ),
    "finite in float64, too large for float32": (
        # non-regression: these became infinities in float32 and surfaced as
        # a DivergenceError advising lower learning rates
        lambda: [_task(), _task()._replace(X_support=np.full((4, 3), 1e39))],
        ValueError, "task 1: X_support contains .*a value too large for float32",
    ),
    "empty support": (
        lambda: [_task(), _task()._replace(X_support=np.zeros((0, 3)),
                                           y_support=np.zeros(0))],
        ValueError, "task 1: the support set is empty",
    ),
    "empty query": (
        lambda: [_task()._replace(X_query=np.zeros((0, 3)), y_query=np.zeros(0))],
        ValueError, "task 0: the query set is empty",
    ),
    "n_features differ": (
        lambda: [_task(), _task(n_features=5)], ValueError,
        # the list is shuffled: either task may come first
        r"task [01]: X_support has per-sample shape \([35],\), but task [01]'s "
        r"X_support has \([35],\)",
    ),
    "query labels not in support": (
        lambda: [_task(), _task()._replace(y_query=np.array([0, 1, 7]))],
        ValueError,
        r"task 1: query labels \[7\] do not appear in the task's support labels "
        r"\[0, 1\]",
    ),
    "non-numeric X": (
        lambda: [_task()._replace(X_support=np.array([["a"] * 3] * 4))],
        ValueError, "task 0: X_support must be numeric, got dtype <U1",
    ),
    "1-D X": (
        lambda: [_task()._replace(X_support=np.zeros(4))], ValueError,
        r"task 0: X_support must have at least 2 dimensions",
    ),
    "2-D labels": (
        lambda: [_task()._replace(y_support=np.zeros((4, 2)))], ValueError,
        r"task 0: y_support must be 1-D class labels",
    ),
}


@pytest.mark.parametrize("case", list(BAD_TASKS))
def test_bad_task_is_reported_with_its_index(case):
    make_tasks, error, message = BAD_TASKS[case]
    with pytest.raises(error, match=message):
        _classifier().meta_fit(make_tasks())


def test_regression_target_too_large_for_float32_is_reported():
    task = _task()._replace(y_query=np.array([0.0, 1.0, -1e300]))
    reg = MAMLRegressor(hidden_layer_sizes=(4,), n_meta_iter=2, random_state=0)
    with pytest.raises(ValueError, match="task 0: y_query contains .*too large for "
                                         "float32"):
        reg.meta_fit([task])


@pytest.mark.parametrize("case", list(BAD_TASKS))
def test_bad_task_leaves_a_meta_fitted_estimator_unchanged(case):
    make_tasks, error, _ = BAD_TASKS[case]
    clf = _classifier(warm_start=True).meta_fit([_task(), _task(seed=1)])
    clf.fit(_task().X_support, _task().y_support)
    clf.set_params(n_meta_iter=4)
    before = _state(clf)
    with pytest.raises(error):
        clf.meta_fit(make_tasks())
    _assert_unchanged(clf, before)


def test_a_bad_task_in_a_later_meta_batch_changes_nothing():
    tasks = [_task(seed=i) for i in range(6)]
    tasks[5] = tasks[5]._replace(X_query=np.full((3, 3), np.nan))
    clf = _classifier(n_meta_iter=1).meta_fit(tasks[:2])
    before = _state(clf)
    with pytest.raises(ValueError, match="task 5: X_query contains NaN"):
        clf.meta_partial_fit(tasks)
    _assert_unchanged(clf, before)


def test_regression_targets_are_checked():
    task = _task()._replace(y_support=np.array([0.0, np.nan, 1.0, 2.0]))
    with pytest.raises(ValueError, match="task 0: y_support contains NaN"):
        MAMLRegressor(n_meta_iter=1).meta_fit([task])
    task = _task()._replace(y_query=np.array(["a", "b", "c"]))
    with pytest.raises(ValueError, match="task 0: y_query must be numeric"):
        MAMLRegressor(n_meta_iter=1).meta_fit([task])


def test_input_shape_must_match_the_meta_trained_one():
    clf = _classifier().meta_fit([_task(), _task(seed=1)])
    with pytest.raises(ValueError, match=r"task 0: X_support has per-sample shape "
                                         r"\(5,\), but the estimator was "
                                         r"meta-trained on \(3,\)"):
        clf.meta_partial_fit([_task(n_features=5)])


def test_a_single_task_instead_of_a_list_gets_a_hint():
    with pytest.raises(TypeError, match="pass an iterable of tasks, not a single task"):
        _classifier().meta_fit(_task())


@pytest.mark.parametrize("tasks", [[], iter([]), (t for t in [])],
                         ids=["list", "iterator", "generator"])
def test_empty_tasks(tasks):
    with pytest.raises(ValueError, match="tasks is empty"):
        _classifier().meta_fit(tasks)


@pytest.mark.parametrize("tasks", [3, None, "tasks"])
def test_tasks_must_be_iterable(tasks):
    with pytest.raises(TypeError, match="tasks must be an iterable of .* got"):
        _classifier().meta_fit(tasks)


def test_more_classes_than_outputs_in_a_later_task_of_a_stream():
    def stream():
        yield _task(labels=(0, 1))
        yield _task(labels=(0, 1))
        yield _task(labels=(0, 1, 2))
    with pytest.raises(ValueError, match="task 2: has 3 classes, but the network has "
                                         "2 outputs"):
        _classifier().meta_fit(stream())


def test_meta_fit_accepts_an_episode_sampler_directly():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = np.repeat(np.arange(6), 10)
    X[:, 0] += y
    sampler = EpisodeSampler(X, y, n_way=3, k_shot=2, n_query=3, random_state=0)
    clf = ReptileClassifier(hidden_layer_sizes=(8,), n_meta_iter=5, random_state=0)
    clf.meta_fit(sampler)
    assert clf.n_meta_iter_ == 5
    assert clf.meta_n_outputs_ == 3
    assert len(clf.meta_loss_curve_) == 5


def test_generator_is_consumed_until_exhausted():
    tasks = (_task(seed=i) for i in range(5))
    clf = _classifier(meta_batch_size=2, n_meta_iter=100).meta_fit(tasks)
    assert clf.n_meta_iter_ == 3  # 2 + 2 + 1 tasks
    assert next(tasks, None) is None


def test_generator_is_consumed_only_up_to_the_budget():
    tasks = (_task(seed=i) for i in range(10))
    _classifier(meta_batch_size=2, n_meta_iter=2).meta_fit(tasks)
    assert len(list(tasks)) == 6


def test_a_list_is_cycled_in_a_new_order_each_pass():
    seen = []

    class RecordingList(list):
        def __getitem__(self, index):
            seen.append(index)
            return super().__getitem__(index)

    tasks = RecordingList(_task(seed=i) for i in range(4))
    _classifier(meta_batch_size=2, n_meta_iter=6).meta_fit(tasks)
    passes = [seen[i:i + 4] for i in range(0, 12, 4)]
    assert all(sorted(p) == [0, 1, 2, 3] for p in passes)
    assert len({tuple(p) for p in passes}) > 1


# -- a list's tasks are all checked before meta-training --------------------------

class _CountingList(list):
    """A list that counts the tasks read from it by index (meta-training's draws)."""

    def __init__(self, tasks):
        super().__init__(tasks)
        self.draws = 0

    def __getitem__(self, index):
        self.draws += 1
        return super().__getitem__(index)


def _nan_query(task):
    return task._replace(X_query=np.full(task.X_query.shape, np.nan))


def test_a_bad_task_a_short_meta_training_never_draws_is_refused():
    # one meta-iteration of 2 tasks draws 2 of the 40
    tasks = [_task(seed=i) for i in range(40)]
    tasks[37] = _nan_query(tasks[37])
    with pytest.raises(ValueError, match="task 37: X_query contains NaN"):
        _classifier(n_meta_iter=1).meta_fit(tasks)


@pytest.mark.parametrize("method", ["meta_fit", "meta_partial_fit"])
def test_a_list_is_checked_in_its_order_before_any_task_is_drawn(method):
    tasks = [_task(seed=i) for i in range(30)]
    tasks[29] = tasks[29]._replace(X_support=np.ones((4, 5)))
    tasks[11] = _nan_query(tasks[11])
    tasks = _CountingList(tasks)
    with pytest.raises(ValueError, match="task 11: X_query contains NaN"):
        getattr(_classifier(n_meta_iter=50), method)(tasks)
    assert tasks.draws == 0


def test_a_warm_start_refuses_a_listed_task_of_more_classes_than_outputs():
    clf = _classifier(warm_start=True, head_init="meta").meta_fit(
        [_task(), _task(seed=1)])
    clf.set_params(n_meta_iter=4)
    before = _state(clf)
    tasks = [_task(seed=i) for i in range(20)]
    tasks[17] = _task(n_support=6, n_query=6, seed=17, labels=(0, 1, 2))
    with pytest.raises(ValueError, match="task 17: has 3 classes, but the network "
                                         "has 2 outputs"):
        clf.meta_fit(tasks)
    _assert_unchanged(clf, before)


def test_the_listed_task_of_most_classes_sizes_the_network():
    tasks = [_task(seed=i) for i in range(20)]
    tasks[19] = _task(n_support=8, n_query=8, seed=19, labels=(0, 1, 2, 3))
    clf = _classifier(n_meta_iter=1, head_init="meta").meta_fit(tasks)
    assert clf.meta_params_["layers.1.weight"].shape[0] == 4
