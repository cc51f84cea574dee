"""What the eleventh pass found: files that ``save`` wrote and ``load``
refused, and what the earlier passes left noticed but not fixed."""

import os

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from torch import nn

import sk_meta
from sk_meta import MAMLClassifier


def _blobs(counts, seed=0, n_features=5):
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.full(n, label) for label, n in enumerate(counts)])
    X = rng.normal(size=(len(y), n_features)) + y[:, None]
    return X.astype(np.float32), y


class _WithExtraState(nn.Module):
    def __init__(self, extra):
        super().__init__()
        self.out = nn.Linear(5, 3)
        self.extra = extra

    def forward(self, x):
        return self.out(x)

    def get_extra_state(self):
        return self.extra

    def set_extra_state(self, state):
        self.extra = state


class _Settings:  # a plain object: unpickling it runs code
    pass


_UNLOADABLE = {"array": np.arange(3), "numpy scalar in a dict": {"a": np.float64(1)},
               "object": _Settings()}


def _meta_fitted(extra, **params):
    X, y = _blobs((4, 4, 4))
    return MAMLClassifier(module=_WithExtraState(extra), head_init="meta",
                          n_meta_iter=2, inner_steps=1, random_state=0,
                          **params).meta_fit([(X, y, X, y)])


@pytest.mark.parametrize("extra", _UNLOADABLE.values(), ids=_UNLOADABLE.keys())
def test_save_refuses_extra_state_that_load_would_refuse(extra, tmp_path):
    # save wrote the file; load refused it ("holds objects that loading
    # without running code refuses"): the saved estimator was lost
    clf = _meta_fitted(extra)
    path = tmp_path / "clf.skm"
    with pytest.raises(TypeError, match="state entry '_extra_state' .*get_extra_state"):
        clf.save(path)
    assert not os.path.exists(path)


@pytest.mark.parametrize("extra", [{"version": 2, "names": ["a", "b"]},
                                   torch.arange(3), (1, "x")])
def test_extra_state_of_plain_values_saves_and_loads(extra, tmp_path):
    clf = _meta_fitted(extra)
    X, y = _blobs((4, 4, 4))
    clf.fit(X, y)
    clf.save(tmp_path / "clf.skm")
    loaded = sk_meta.load(tmp_path / "clf.skm", module=_WithExtraState(None))
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X))


@pytest.mark.parametrize("extra", _UNLOADABLE.values(), ids=_UNLOADABLE.keys())
def test_checkpoint_path_refuses_such_a_module_before_training(extra, tmp_path):
    # each checkpoint would have been a file that load refuses, found only
    # when the run was needed
    path = tmp_path / "ckpt.skm"
    clf = _meta_fitted({"version": 1})
    init = {k: v.clone() for k, v in clf.meta_params_.items()}
    clf.set_params(module=_WithExtraState(extra), checkpoint_path=path)
    X, y = _blobs((4, 4, 4))
    with pytest.raises(ValueError, match="checkpoint_path .*'_extra_state'"):
        clf.meta_fit([(X, y, X, y)])
    assert not os.path.exists(path)
    for name, value in clf.meta_params_.items():  # the earlier init is kept
        torch.testing.assert_close(value, init[name])


# -- evaluate_tasks: an accuracy of 0.96 on five tasks had the interval
#    [0.849, 1.071] -------------------------------------------------------------

def _constant_tasks(n_ones_per_task):
    """Tasks whose query labels hold ``n`` ones among ten: a classifier that
    always predicts 0 scores ``1 - n / 10`` on each."""
    X = np.zeros((10, 2))
    return [(X[:2], np.array([0, 1]), X, np.r_[np.zeros(10 - n), np.ones(n)])
            for n in n_ones_per_task]


@pytest.mark.filterwarnings("ignore:A single label was found")  # balanced accuracy
class _AlwaysZero(ClassifierMixin, BaseEstimator):
    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return np.zeros(len(X))


def test_evaluate_tasks_keeps_an_accuracy_s_interval_within_0_and_1():
    from sk_meta.model_selection import evaluate_tasks

    always_zero = _AlwaysZero()
    tasks = _constant_tasks([0, 0, 0, 0, 2])
    for scoring in (None, "accuracy", "balanced_accuracy"):
        result = evaluate_tasks(always_zero, tasks, scoring=scoring)
        scores = result["_AlwaysZero"]
        assert scores.high == 1.0 and scores.low < scores.mean < 1.0
    # a scorer of unknown range keeps Student's t interval as it is
    result = evaluate_tasks(always_zero, tasks,
                            scoring=lambda model, X, y: model.score(X, y))
    scores = result["_AlwaysZero"]
    accuracies = np.array([1, 1, 1, 1, 0.8])
    from scipy import stats
    half = stats.t.ppf(0.975, 4) * accuracies.std(ddof=1) / np.sqrt(5)
    assert scores.high == pytest.approx(accuracies.mean() + half)
    assert scores.high > 1.0


def test_evaluate_tasks_keeps_an_error_s_interval_at_most_0():
    from sklearn.dummy import DummyRegressor

    from sk_meta.model_selection import evaluate_tasks

    X = np.zeros((4, 2))
    tasks = [(X, np.zeros(4), X, np.zeros(4))] * 4 + [
        (X, np.zeros(4), X, np.array([0.0, 0.0, 0.0, 2.0]))]
    result = evaluate_tasks(DummyRegressor(), tasks, scoring="neg_mean_squared_error")
    assert result["DummyRegressor"].high == 0.0
    assert result["DummyRegressor"].low < -0.1


# -- meta_partial_fit on a sampler of many classes built (64, 64), where
#    meta_fit builds (128, 128): "once per meta-batch gives the same init as
#    meta_fit" did not hold -------------------------------------------------------

@pytest.mark.parametrize("n_classes, expected", [(12, (128, 128)), (6, (64, 64))])
def test_meta_partial_fit_builds_the_network_meta_fit_builds(n_classes, expected,
                                                              monkeypatch):
    from sk_meta.tasks import EpisodeSampler

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(n_classes), 10)
    X = rng.normal(size=(len(y), 4)) + y[:, None]

    def sampler():
        return EpisodeSampler(X, y, 3, 2, 3, n_tasks=8, shuffle_labels=True,
                              random_state=0)

    params = dict(meta_batch_size=4, n_meta_iter=2, random_state=0)
    partial = MAMLClassifier(**params).meta_partial_fit(sampler())
    assert partial.hidden_layer_sizes_ == expected
    assert partial.meta_params_["layers.0.weight"].shape == (expected[0], 4)
    if n_classes >= 10:  # meta_fit runs no class folds there either
        whole = MAMLClassifier(**params).meta_fit(sampler())
        for name, value in whole.meta_params_.items():
            torch.testing.assert_close(partial.meta_params_[name], value)


# -- meta_fit(list(X), y) of a tensor, of pandas rows, of images: the labels
#    were blamed, as validation_tasks ----------------------------------------------

@pytest.mark.parametrize("kind", ["list(tensor)", "pandas rows", "list(images)",
                                  "list of string rows"])
def test_a_list_of_samples_of_any_kind_is_named_as_tasks(kind):
    import pandas as pd

    X, y = _blobs((4, 4, 4))
    rows = {"list(tensor)": list(torch.from_numpy(X)),
            "pandas rows": [row for _, row in pd.DataFrame(X).iterrows()],
            "list(images)": list(X.reshape(12, 5, 1)),
            "list of string rows": list(X.astype(str))}[kind]
    with pytest.raises(TypeError, match=r"^tasks must be an iterable of .* not an "
                                        r"array of samples \(list of (Tensor|Series|"
                                        r"ndarray)\)"):
        MAMLClassifier(n_meta_iter=2).meta_fit(rows, y)


def test_a_list_of_dataframes_is_still_read_as_tasks():
    # a task may not be a DataFrame, but the message is the per-task one
    import pandas as pd

    X, y = _blobs((4, 4, 4))
    with pytest.raises((TypeError, ValueError), match="task 0"):
        MAMLClassifier(n_meta_iter=2).meta_fit([pd.DataFrame(X)] * 3)


# -- threads: a fit of a module that draws (dropout) waited for another
#    thread's whole meta-training, which held torch's generator throughout ------

def test_a_fit_runs_between_the_meta_iterations_of_another_thread():
    import threading

    X, y = _blobs((4, 4, 4), n_features=64)

    def dropout_net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Dropout(0.3),
                             nn.Linear(16, 3))

    fitted = MAMLClassifier(module=dropout_net(), n_meta_iter=2,
                            random_state=0).meta_fit([(X, y, X, y)])
    expected = fitted.fit(X, y).predict_proba(X)

    started, stop = threading.Event(), threading.Event()

    class _Stop(Exception):
        pass

    def hook(module, inputs, output):
        started.set()
        if stop.is_set():
            raise _Stop

    long_run = dropout_net()
    long_run.register_forward_hook(hook)
    outcome = []

    def meta_train():
        try:
            MAMLClassifier(module=long_run, n_meta_iter=10**6, max_time=120,
                           random_state=0).meta_fit([(X, y, X, y)])
        except Exception as exc:  # the hook's _Stop, wrapped or not
            outcome.append(exc)

    worker = threading.Thread(target=meta_train)
    worker.start()
    try:
        assert started.wait(timeout=60)
        done = threading.Event()
        result = []
        fitter = threading.Thread(target=lambda: (
            result.append(fitted.fit(X, y).predict_proba(X)), done.set()))
        fitter.start()
        assert done.wait(timeout=30), "fit waited for the other meta-training"
        assert worker.is_alive()  # it ran while the meta-training went on
        np.testing.assert_array_equal(result[0], expected)  # and drew its own
    finally:
        stop.set()
        worker.join(timeout=60)
    assert not worker.is_alive() and outcome


# -- a sixth hostile pass over the checks above ----------------------------------

class _NumpyOnceWarm(nn.Module):
    """Extra state that is plain when meta_fit starts and numpy later."""

    def __init__(self):
        super().__init__()
        self.out = nn.Linear(5, 3)
        self.calls = 0

    def forward(self, x):
        self.calls = np.int64(self.calls + 1) if self.calls >= 3 else self.calls + 1
        return self.out(x)

    def get_extra_state(self):
        return {"calls": self.calls}

    def set_extra_state(self, state):
        self.calls = state["calls"]


def test_a_checkpoint_that_cannot_be_written_does_not_lose_the_run(tmp_path):
    # the final checkpoint's refusal made meta_fit fail after the whole run
    from sk_meta.exceptions import PersistenceWarning

    X, y = _blobs((4, 4, 4))
    path = tmp_path / "ckpt.skm"
    clf = MAMLClassifier(module=_NumpyOnceWarm(), head_init="meta", n_meta_iter=4,
                         inner_steps=1, random_state=0, checkpoint_path=path)
    with pytest.warns(PersistenceWarning, match="checkpoint not written .*extra"):
        clf.meta_fit([(X, y, X, y)])
    assert clf.n_meta_iter_ == 4
    assert not os.path.exists(path)
    with pytest.raises(TypeError, match="extra_state"):
        clf.save(tmp_path / "clf.skm")


def test_the_checkpoint_refusal_draws_no_task():
    X, y = _blobs((4, 4, 4))
    drawn = []

    def tasks():
        for _ in range(8):
            drawn.append(1)
            yield X, y, X, y

    clf = MAMLClassifier(module=_WithExtraState(np.arange(3)), head_init="meta",
                         n_meta_iter=2, meta_batch_size=4, checkpoint_path="c.skm")
    with pytest.raises(ValueError, match="checkpoint_path"):
        clf.meta_fit(tasks())
    assert drawn == []


class _TensorSubclass(torch.Tensor):
    pass


class _TaggedStats(_WithExtraState):
    """Extra state made when asked: a tensor subclass."""

    def get_extra_state(self):
        return torch.arange(3.0).as_subclass(_TensorSubclass)


class _HookedEntry(nn.Module):
    """A state-dict hook keeps a numpy scale beside the weights."""

    def __init__(self):
        super().__init__()
        self.out = nn.Linear(5, 3)
        self._register_state_dict_hook(_HookedEntry._add)
        self.register_load_state_dict_pre_hook(_HookedEntry._drop)

    @staticmethod
    def _add(module, state, prefix, local_metadata):
        state[prefix + "scale"] = np.float32(2.0)

    @staticmethod
    def _drop(module, state, prefix, *args):
        state.pop(prefix + "scale", None)

    def forward(self, x):
        return self.out(x)


@pytest.mark.parametrize("case", ["tensor subclass", "state-dict hook", "defaultdict"])
def test_save_refuses_every_state_entry_load_would_refuse(case, tmp_path):
    import collections

    X, y = _blobs((4, 4, 4))
    module = {"tensor subclass": lambda: _TaggedStats(None),
              "state-dict hook": _HookedEntry,
              "defaultdict": lambda: _WithExtraState(
                  collections.defaultdict(int, a=1))}[case]()
    clf = MAMLClassifier(module=module, head_init="meta", n_meta_iter=1,
                         inner_steps=1, random_state=0).meta_fit([(X, y, X, y)])
    entry = "'scale' .*in its state_dict" if case == "state-dict hook" else \
        "'_extra_state' .*get_extra_state"
    with pytest.raises(TypeError, match=f"state entry {entry}"):
        clf.save(tmp_path / "clf.skm")
    assert not os.path.exists(tmp_path / "clf.skm")


def test_a_search_s_own_score_keeps_its_interval():
    # a search scores with its scoring: [0.000, -0.412] was printed
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV

    from sk_meta.model_selection import evaluate_tasks

    X, y = _blobs((6, 6, 6))
    tasks = [(X, y, X, y), (X[::-1], y[::-1], X, y), (X, y, X[::2], y[::2])]
    result = evaluate_tasks(GridSearchCV(LogisticRegression(), {"C": [0.01, 1.0]},
                                         scoring="neg_log_loss", cv=2), tasks)
    scores = result["GridSearchCV"]
    assert scores.high < 0 and scores.low <= scores.mean <= scores.high


def test_meta_partial_fit_refuses_before_it_prints_its_choice(capsys):
    from sk_meta.tasks import EpisodeSampler

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(12), 10)
    X = rng.normal(size=(len(y), 4)) + y[:, None]
    sampler = EpisodeSampler(X, y, 3, 2, 3, n_tasks=4, random_state=0)
    with pytest.raises(ValueError, match="linear"):
        MAMLClassifier(meta_lr_schedule="linear", verbose=1).meta_partial_fit(sampler)
    assert "hidden_layer_sizes" not in capsys.readouterr().out


# -- a warm start that turned task interpolation off and on again repeated
#    the first run's draws (nothing was saved while nothing drew) ---------------

def test_interpolation_turned_off_and_on_goes_on_with_new_draws(monkeypatch):
    from sk_meta import _training

    drawn = []
    original = _training.MetaTrainer._interpolation_rng

    def recording(self):
        rng = original(self)
        if rng is not None:  # its seed, drawn from torch's generator
            drawn.append(rng.bit_generator.state["state"]["state"])
        return rng

    monkeypatch.setattr(_training.MetaTrainer, "_interpolation_rng", recording)
    X, y = _blobs((4, 4, 4, 4))
    tasks = [(X, y, X, y)] * 4
    params = dict(hidden_layer_sizes=(8,), meta_batch_size=2, random_state=0)
    MAMLClassifier(task_interpolation=0.5, n_meta_iter=6, **params).meta_fit(tasks)
    straight = list(drawn)
    drawn.clear()
    clf = MAMLClassifier(task_interpolation=0.5, n_meta_iter=3, **params)
    clf.meta_fit(tasks)
    clf.set_params(warm_start=True, task_interpolation=0.0, n_meta_iter=4)
    clf.meta_fit(tasks)
    clf.set_params(task_interpolation=0.5, n_meta_iter=7).meta_fit(tasks)
    assert len(drawn) == 6
    assert drawn == straight  # the third run drew the 4th to 6th numbers


# -- hidden_layer_sizes="auto" chose (64, 64) without a word for a sampler
#    subclass or a list, even with verbose --------------------------------------

@pytest.mark.parametrize("case, reason", [
    ("subclass", "class folds need an EpisodeSampler itself, not a subclass"),
    ("list", "class folds need an EpisodeSampler, got list"),
    ("meta_partial_fit", "meta_partial_fit runs no class folds"),
    ("four classes", "too few classes for two class folds")])
def test_verbose_says_why_auto_compared_no_networks(case, reason, capsys):
    from sk_meta.tasks import EpisodeSampler

    class Sampler(EpisodeSampler):
        pass

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(6), 10)
    X = rng.normal(size=(len(y), 4)) + y[:, None]
    estimator = MAMLClassifier(n_meta_iter=1, verbose=1)
    if case == "subclass":
        estimator.meta_fit(Sampler(X, y, 3, 2, 3, random_state=0))
    elif case == "list":
        estimator.meta_fit(list(EpisodeSampler(X, y, 3, 2, 3, n_tasks=2,
                                               random_state=0)))
    elif case == "meta_partial_fit":
        estimator.meta_partial_fit(EpisodeSampler(X, y, 3, 2, 3, n_tasks=2,
                                                  random_state=0))
    else:
        keep = y < 4
        estimator.meta_fit(EpisodeSampler(X[keep], y[keep], 3, 2, 3,
                                          random_state=0))
    assert estimator.hidden_layer_sizes_ == (64, 64)
    assert f"hidden_layer_sizes='auto': MLP (64, 64) ({reason})" in \
        capsys.readouterr().out


# -- a seventh hostile pass ----------------------------------------------------------

def test_checkpoint_path_takes_a_module_of_lazy_layers(tmp_path):
    # its weights are sized by the first forward pass, after the check
    X, y = _blobs((4, 4, 4))
    torch.manual_seed(0)
    module = nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.LazyLinear(3))
    clf = MAMLClassifier(module=module, head_init="meta", n_meta_iter=2,
                         inner_steps=1, random_state=0,
                         checkpoint_path=tmp_path / "ckpt.skm").meta_fit(
        [(X, y, X, y)])
    loaded = sk_meta.load(tmp_path / "ckpt.skm", module=nn.Sequential(
        nn.LazyLinear(8), nn.ReLU(), nn.LazyLinear(3)))
    assert loaded.n_meta_iter_ == clf.n_meta_iter_ == 2


def test_a_line_searched_fit_in_a_thread_leaves_another_s_draws_alone():
    # the fit of sk_meta's MLP (which draws nothing, so holds nothing) took
    # another thread's draws for its own noise and set the generator back
    import threading

    X, y = _blobs((6, 6, 6), n_features=8)
    tasks = [(X, y, X, y), (X[::-1], y[::-1], X, y)]

    def dropout_run():
        torch.manual_seed(0)
        module = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3),
                               nn.Linear(16, 3))
        return MAMLClassifier(module=module, head_init="meta", n_meta_iter=30,
                              meta_batch_size=2, inner_steps=2, meta_inner_steps=1,
                              task_interpolation=0.0, random_state=1).meta_fit(
            tasks).meta_params_

    expected = dropout_run()
    mlp = MAMLClassifier(hidden_layer_sizes=(8,), backtracking=True, inner_steps=5,
                         n_meta_iter=1, task_interpolation=0.0,
                         random_state=5).meta_fit(tasks)
    stop = threading.Event()

    def fit_in_a_loop():
        while not stop.is_set():
            mlp.fit(X, y)

    fitter = threading.Thread(target=fit_in_a_loop)
    fitter.start()
    try:
        result = dropout_run()
    finally:
        stop.set()
        fitter.join()
    for name, value in expected.items():
        assert torch.equal(result[name], value), name


def test_tasks_from_a_producer_thread_that_fits_do_not_deadlock():
    # meta_fit held torch's generator while it waited for the next tasks, and
    # the producer's fit of a dropout module waited for the generator
    import queue
    import threading

    X, y = _blobs((6, 6, 6), n_features=4)

    def dropout_net():
        return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.3),
                             nn.Linear(8, 3))

    params = dict(head_init="meta", meta_batch_size=2, inner_steps=1,
                  meta_inner_steps=1, random_state=0)
    helper = MAMLClassifier(module=dropout_net(), n_meta_iter=1, **params).meta_fit(
        [(X, y, X, y)])
    produced, stop = queue.Queue(maxsize=1), threading.Event()

    def producer():
        while not stop.is_set():
            helper.fit(X, y)  # holds the generator: the module draws
            while not stop.is_set():
                try:
                    produced.put((X, y, X, y), timeout=0.2)
                    break
                except queue.Full:
                    pass

    def tasks(n):
        for _ in range(n):
            try:
                yield produced.get(timeout=20)
            except queue.Empty:
                raise RuntimeError("no task in 20 s: deadlock") from None

    worker = threading.Thread(target=producer, daemon=True)
    worker.start()
    try:
        clf = MAMLClassifier(module=dropout_net(), n_meta_iter=5, **params).meta_fit(
            tasks(10))
    finally:
        stop.set()
        worker.join(timeout=20)
    assert clf.n_meta_iter_ == 5


def test_a_line_searched_fit_of_sk_meta_s_mlp_holds_no_lock_of_its_own():
    # a user's lock held around the fit, and taken by another thread's
    # module during its meta-training (which holds torch's generator):
    # the fit waited for the generator, the module for the user's lock
    import threading

    X, y = _blobs((6, 6, 6), n_features=4)
    users_lock = threading.Lock()

    class Logged(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.3))
            self.out = nn.Linear(8, 3)

        def forward(self, x):
            with users_lock:  # a shared log, say
                pass
            return self.out(self.body(x))

    mlp = MAMLClassifier(hidden_layer_sizes=(8,), backtracking=True, inner_steps=3,
                         n_meta_iter=1, task_interpolation=0.0,
                         random_state=0).meta_fit([(X, y, X, y)])
    stop, finished = threading.Event(), []

    def fit_under_the_lock():
        while not stop.is_set():
            with users_lock:
                mlp.fit(X, y)
        finished.append("fit")

    def meta_train():
        MAMLClassifier(module=Logged(), head_init="meta", n_meta_iter=10,
                       meta_batch_size=2, inner_steps=2, meta_inner_steps=1,
                       random_state=1).meta_fit([(X, y, X, y)] * 4)
        finished.append("meta_fit")

    fitter = threading.Thread(target=fit_under_the_lock, daemon=True)
    trainer = threading.Thread(target=meta_train, daemon=True)
    fitter.start()
    trainer.start()
    trainer.join(timeout=60)
    stop.set()
    fitter.join(timeout=30)
    assert sorted(finished) == ["fit", "meta_fit"], "deadlock"
