"""Bad input, divergence, interruption, resuming and checkpoints."""

import pickle
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError

import sk_meta
from sk_meta import MAMLClassifier, MAMLRegressor, ReptileClassifier, ReptileRegressor
from sk_meta.exceptions import DivergenceError
from sk_meta.models import Conv4
from sk_meta.tasks import EpisodeSampler, SinusoidTasks


def _classification_tasks(n_tasks=24, n_features=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(120, n_features))
    y = np.repeat(np.arange(6), 20)
    X[:, 0] += y
    sampler = EpisodeSampler(X, y, n_way=3, k_shot=3, n_query=3, random_state=seed)
    return [sampler.sample(i) for i in range(n_tasks)]


def _fitted_classifier(**params):
    tasks = _classification_tasks()
    defaults = dict(hidden_layer_sizes=(8,), meta_batch_size=4, n_meta_iter=3,
                    random_state=0)
    clf = MAMLClassifier(**{**defaults, **params}).meta_fit(tasks)
    return clf.fit(tasks[0].X_support, tasks[0].y_support), tasks


def _snapshot(estimator):
    return dict(estimator.__dict__)


def _assert_same_state(estimator, before):
    assert estimator.__dict__.keys() == before.keys()
    for name, value in estimator.__dict__.items():
        assert value is before[name], name


def _weights(estimator):
    return {k: v.clone() for k, v in estimator.meta_params_.items()}


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


# -- bad input at fit and predict ------------------------------------------------------

def _bad_fit_inputs():
    task = _classification_tasks()[0]
    X, y = task.X_support, task.y_support
    with_nan = X.copy()
    with_nan[0, 1] = np.nan
    with_inf = X.copy()
    with_inf[2, 0] = np.inf
    return {
        "NaN in X": (with_nan, y, ValueError, "Input X contains NaN"),
        "inf in X": (with_inf, y, ValueError, "Input X contains infinity"),
        "length mismatch": (X, y[:-1], ValueError,
                            "inconsistent numbers of samples"),
        "wrong number of features": (
            X[:, :3], y, ValueError,
            "X has 3 features, but MAMLClassifier was meta-trained on 4 features"),
        "more classes than outputs": (
            np.vstack([X, X[:1]]), np.append(y, 99), ValueError,
            "The support set has 4 classes, but the network was meta-trained with 3 "
            "outputs"),
        "non-numeric X": (np.full(X.shape, "a"), y, ValueError,
                          "could not convert string to float"),
        "empty support": (X[:0], y[:0], ValueError, r"Found array with 0 sample\(s\)"),
        "continuous labels": (X, np.linspace(0, 1, len(y)), ValueError,
                              "Unknown label type"),
    }


@pytest.mark.parametrize("case", list(_bad_fit_inputs()))
def test_bad_support_set_is_a_clear_error_and_changes_nothing(case):
    X, y, error, message = _bad_fit_inputs()[case]
    clf, _ = _fitted_classifier()
    before = _snapshot(clf)
    with pytest.raises(error, match=message):
        clf.fit(X, y)
    _assert_same_state(clf, before)


def test_nan_in_regression_targets():
    task = SinusoidTasks(random_state=0).sample(0)
    y = task.y_support.copy()
    y[3] = np.nan
    with pytest.raises(ValueError, match="y contains NaN or None: a missing target"):
        MAMLRegressor().fit(task.X_support, y)


@pytest.mark.parametrize(
    "transform, message",
    [
        (lambda X: np.where(X > 1, np.nan, X), "Input X contains NaN"),
        (lambda X: X[:, :2], "X has 2 features, but MAMLClassifier is expecting 4"),
        (lambda X: np.full(X.shape, "x"), "could not convert string to float"),
    ],
    ids=["NaN", "n_features", "non-numeric"],
)
def test_bad_query_input_at_predict(transform, message):
    clf, tasks = _fitted_classifier()
    with pytest.raises(ValueError, match=message):
        clf.predict(transform(tasks[0].X_query))


def test_wrong_image_shape_for_a_cnn():
    rng = np.random.default_rng(0)
    images = rng.random((30, 1, 28, 28)).astype(np.float32)
    labels = np.repeat(np.arange(3), 10)
    tasks = EpisodeSampler(images, labels, 3, 2, 2, random_state=0)
    clf = MAMLClassifier(Conv4, module_params={"n_outputs": 3, "n_filters": 2},
                         n_meta_iter=1, meta_batch_size=2).meta_fit(tasks)
    with pytest.raises(ValueError, match=r"X has samples of shape \(1, 14, 14\), but "
                                         r"MAMLClassifier was meta-trained on samples "
                                         r"of shape \(1, 28, 28\)"):
        clf.fit(images[:6, :, :14, :14], labels[:6])


@pytest.mark.parametrize("estimator", [MAMLClassifier(), ReptileRegressor()])
def test_predict_before_fit(estimator):
    with pytest.raises(NotFittedError, match="is not fitted yet"):
        estimator.predict(np.zeros((2, 3)))


def test_predict_after_meta_fit_only_asks_for_fit():
    clf = MAMLClassifier(hidden_layer_sizes=(4,), n_meta_iter=1).meta_fit(
        _classification_tasks(4))
    with pytest.raises(NotFittedError, match="meta-trained but not adapted"):
        clf.predict(np.zeros((2, 4)))


@pytest.mark.parametrize(
    "params, message",
    [
        ({"inner_lr": 0}, "'inner_lr' parameter of MAMLClassifier must be a float in "
                          r"the range \(0.0, inf\)"),
        ({"inner_lr": -0.1}, "'inner_lr' parameter"),
        ({"meta_lr": 0.0}, "'meta_lr' parameter"),
        ({"inner_steps": -1}, "'inner_steps' parameter of MAMLClassifier must be an "
                              r"int in the range \[0, inf\)"),
        ({"inner_steps": 2.5}, "'inner_steps' parameter"),
        ({"meta_inner_steps": 0}, "'meta_inner_steps' parameter"),
        ({"n_meta_iter": 0}, "'n_meta_iter' parameter"),
        ({"meta_batch_size": 0}, "'meta_batch_size' parameter"),
        ({"meta_optimizer": "rmsprop"}, "'meta_optimizer' parameter of MAMLClassifier "
                                        "must be a str among"),
        ({"device": "gpu"}, "'device' parameter of MAMLClassifier must be a str among "
                            ".*'cuda:N'"),
        ({"device": "gpu"}, "'cpu:N'"),
        ({"hidden_layer_sizes": 5}, "'hidden_layer_sizes' parameter"),
        ({"module": "resnet"}, "'module' parameter"),
    ],
)
def test_invalid_hyperparameters(params, message):
    task = _classification_tasks(1)[0]
    with pytest.raises(InvalidParameterError, match=message):
        MAMLClassifier(**params).fit(task.X_support, task.y_support)
    with pytest.raises(InvalidParameterError, match=message):
        MAMLClassifier(**params).meta_fit([task])


def test_invalid_reptile_inner_optimizer():
    with pytest.raises(InvalidParameterError, match="'inner_optimizer' parameter"):
        ReptileClassifier(inner_optimizer="adagrad").meta_fit(_classification_tasks(1))


def test_hidden_layer_sizes_must_be_positive():
    with pytest.raises(ValueError, match="hidden_layer_sizes must be positive"):
        MAMLClassifier(hidden_layer_sizes=(8, 0), n_meta_iter=1).meta_fit(
            _classification_tasks(1))


# -- divergence ----------------------------------------------------------------------

def _sinusoids_then_overflow(n_good):
    # finite inputs whose squared error overflows float32: the loss becomes inf
    tasks = list(SinusoidTasks(n_tasks=n_good, random_state=0))
    bad = tasks[0]._replace(y_query=np.full_like(tasks[0].y_query, 1e25))
    return tasks + [bad] * 4


def test_divergence_stops_meta_training_and_leaves_the_estimator_as_it_was():
    params = dict(hidden_layer_sizes=(8,), meta_batch_size=2, n_meta_iter=10,
                  random_state=0)
    reg = MAMLRegressor(**params)
    with pytest.raises(DivergenceError, match="meta-training diverged at "
                                              "meta-iteration 3.*left as it was.*"
                                              r"last finite init \(after 2 "
                                              "meta-iterations") as info:
        reg.meta_partial_fit(_sinusoids_then_overflow(4))
    assert not hasattr(reg, "module_")
    last_finite = info.value.estimator
    assert last_finite is not reg
    assert last_finite.n_meta_iter_ == 2
    assert len(last_finite.meta_loss_curve_) == 2
    assert all(np.isfinite(last_finite.meta_loss_curve_))
    expected = MAMLRegressor(**params).meta_partial_fit(_sinusoids_then_overflow(4)[:4])
    _assert_same_weights(_weights(last_finite), _weights(expected))
    task = SinusoidTasks(random_state=1).sample(0)
    assert np.isfinite(last_finite.fit(task.X_support, task.y_support).predict(
        task.X_query)).all()


@pytest.mark.filterwarnings("ignore::sk_meta.exceptions.FeatureScaleWarning")
def test_a_diverging_meta_fit_keeps_a_fitted_estimator_as_it_was():
    # non-regression: a fresh meta_fit that diverged at its first
    # meta-iteration used to leave a random init and no adapted model
    tasks = list(SinusoidTasks(n_tasks=4, random_state=5))
    reg = MAMLRegressor(hidden_layer_sizes=(8,), meta_batch_size=2, n_meta_iter=2,
                        random_state=0).meta_fit(tasks)
    reg.fit(tasks[0].X_support, tasks[0].y_support)
    predictions = reg.predict(tasks[0].X_query)
    before = _snapshot(reg)
    exploding = [t._replace(X_support=t.X_support * 1e30, X_query=t.X_query * 1e30,
                            y_query=t.y_query * 1e30) for t in tasks]
    with pytest.raises(DivergenceError, match="meta-iteration 1.*left as it was") \
            as info:
        reg.meta_fit(exploding)
    assert info.value.estimator is None  # no meta-iteration completed
    _assert_same_state(reg, before)
    np.testing.assert_array_equal(reg.predict(tasks[0].X_query), predictions)


def test_divergence_of_a_later_meta_fit_hands_over_the_progress_of_that_call():
    reg = MAMLRegressor(hidden_layer_sizes=(8,), meta_batch_size=2, n_meta_iter=2,
                        random_state=0).meta_fit(list(SinusoidTasks(n_tasks=4,
                                                                    random_state=5)))
    before = _snapshot(reg)
    with pytest.raises(DivergenceError) as info:
        reg.meta_partial_fit(_sinusoids_then_overflow(2))
    _assert_same_state(reg, before)
    assert info.value.estimator.n_meta_iter_ == 3
    assert all(torch.isfinite(v).all()
               for v in info.value.estimator.meta_params_.values())


@pytest.mark.parametrize("check_every", [2, 3, 5])
def test_deferred_divergence_checks_roll_back_to_the_last_finite_init(
        monkeypatch, check_every):
    # on a GPU the loss is read back every few meta-iterations; the same path
    # runs here on the CPU
    monkeypatch.setattr("sk_meta._training.check_interval", lambda device: check_every)
    params = dict(hidden_layer_sizes=(8,), meta_batch_size=2, n_meta_iter=10,
                  random_state=0)
    reg = MAMLRegressor(**params)
    with pytest.raises(DivergenceError, match="diverged at meta-iteration 3") as info:
        reg.meta_partial_fit(_sinusoids_then_overflow(4))
    assert not hasattr(reg, "module_")
    # the last check before the divergence: a multiple of check_every below 3
    kept = 2 if check_every == 2 else 0
    last_finite = info.value.estimator
    if kept:
        assert last_finite.n_meta_iter_ == kept
        assert len(last_finite.meta_loss_curve_) == kept
        expected = MAMLRegressor(**params).meta_partial_fit(
            _sinusoids_then_overflow(4)[:4])
        _assert_same_weights(_weights(last_finite), _weights(expected))
        assert all(torch.isfinite(v).all() for v in last_finite.meta_params_.values())
    else:
        assert last_finite is None


def test_deferred_checks_give_the_same_result_as_checks_every_iteration(
        monkeypatch):
    tasks = _classification_tasks(12)
    every_iteration = _resumable().meta_fit(tasks)
    monkeypatch.setattr("sk_meta._training.check_interval", lambda device: 4)
    deferred = _resumable(validation_interval=3).meta_fit(tasks)
    _assert_same_weights(_weights(deferred), _weights(every_iteration))
    assert deferred.meta_loss_curve_ == every_iteration.meta_loss_curve_


def test_divergent_adaptation_raises_and_changes_nothing():
    task = SinusoidTasks(random_state=0).sample(0)
    reg = MAMLRegressor(hidden_layer_sizes=(8,), random_state=0)
    reg.fit(task.X_support, task.y_support)
    before = _snapshot(reg)
    with pytest.raises(DivergenceError, match="adaptation diverged.*lower inner_lr"):
        reg.set_params(inner_lr=1e20).fit(task.X_support, task.y_support)
    reg.set_params(inner_lr=before["inner_lr"])
    _assert_same_state(reg, before)


@pytest.mark.filterwarnings("ignore::sk_meta.exceptions.FeatureScaleWarning")
def test_divergence_from_an_outlier_names_the_extreme_values():
    rng = np.random.RandomState(0)
    X = rng.randn(15, 6).astype(np.float32)
    y = np.repeat([0, 1, 2], 5)
    clf = MAMLClassifier(random_state=0).fit(X, y)
    before = _snapshot(clf)
    outlier = X.copy()
    # one value far out: the gradient steps blow up (at the default
    # prototype_scale, 0.3, from about 1e6; at 1.0 from 1e4)
    outlier[0, 0] = 1e6
    with pytest.raises(DivergenceError, match=r"values up to 1e\+06.*clip"):
        clf.fit(outlier, y)
    _assert_same_state(clf, before)
    # the remedy the message names works on the same support set
    clipped = np.clip(outlier, -5, 5)
    adapted = MAMLClassifier(random_state=0).fit(clipped, y)
    assert adapted.predict(clipped).shape == (15,)


def test_divergence_without_outliers_does_not_blame_the_features():
    task = SinusoidTasks(random_state=0).sample(0)
    with pytest.raises(DivergenceError, match="lower inner_lr or inner_steps$"):
        MAMLRegressor(hidden_layer_sizes=(8,), inner_lr=1e20, random_state=0).fit(
            task.X_support, task.y_support)


# -- interruption and resuming -------------------------------------------------------


def _resumable(**params):
    defaults = dict(hidden_layer_sizes=(8,), meta_batch_size=4, n_meta_iter=10,
                    random_state=0)
    return MAMLClassifier(**{**defaults, **params})


def test_keyboard_interrupt_keeps_the_last_completed_iteration(interrupting_list):
    tasks = _classification_tasks(12)
    clf = _resumable()
    with pytest.warns(UserWarning, match="interrupted after 3 meta-iterations"):
        clf.meta_fit(interrupting_list(tasks, interrupt_at=15))
    assert clf.n_meta_iter_ == 3
    assert len(clf.meta_loss_curve_) == 3
    expected = _resumable(n_meta_iter=3).meta_fit(list(tasks))
    _assert_same_weights(_weights(clf), _weights(expected))
    task = tasks[0]
    assert clf.fit(task.X_support, task.y_support).predict(task.X_query).shape == (9,)


def test_resuming_after_an_interrupt_equals_an_uninterrupted_run(interrupting_list):
    tasks = _classification_tasks(12)
    clf = _resumable()
    with pytest.warns(UserWarning, match="interrupted"):
        clf.meta_fit(interrupting_list(tasks, interrupt_at=23))
    clf.set_params(warm_start=True).meta_fit(list(tasks))
    uninterrupted = _resumable().meta_fit(list(tasks))
    assert clf.n_meta_iter_ == 10
    _assert_same_weights(_weights(clf), _weights(uninterrupted))
    assert clf.meta_loss_curve_ == uninterrupted.meta_loss_curve_


def test_sigint_stops_at_the_end_of_the_meta_iteration():
    tasks = _classification_tasks(40)

    def stream():
        for i, task in enumerate(tasks):
            if i == 9:  # third meta-batch: Ctrl-C while it is being drawn
                # raise_signal delivers it to this thread (os.kill may pick
                # another thread of the process)
                signal.raise_signal(signal.SIGINT)
            yield task

    clf = _resumable()
    # Python's own handler, whatever earlier tests or libraries installed
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.warns(UserWarning, match="interrupted after 3 meta-iterations"):
            clf.meta_fit(stream())
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)
    assert clf.n_meta_iter_ == 3
    expected = _resumable(n_meta_iter=3).meta_partial_fit(tasks[:12])
    _assert_same_weights(_weights(clf), _weights(expected))


@pytest.mark.parametrize("source", ["list", "sampler", "sampler, after pickling"])
def test_n_then_m_iterations_equal_n_plus_m(source):
    if source == "list":
        tasks = _classification_tasks(10)
    else:
        rng = np.random.default_rng(0)
        X = rng.normal(size=(60, 4))
        y = np.repeat(np.arange(6), 10)
        tasks = EpisodeSampler(X, y, n_way=3, k_shot=2, n_query=2, random_state=0)
    clf = _resumable(n_meta_iter=4, warm_start=True).meta_fit(tasks)
    if source == "sampler, after pickling":
        clf = pickle.loads(pickle.dumps(clf))  # no live iterator: fast-forwarded
    clf.set_params(n_meta_iter=9).meta_fit(tasks)
    at_once = _resumable(n_meta_iter=9).meta_fit(tasks)
    _assert_same_weights(_weights(clf), _weights(at_once))
    assert clf.meta_loss_curve_ == at_once.meta_loss_curve_


def test_meta_partial_fit_per_meta_batch_equals_meta_fit_on_the_stream():
    tasks = _classification_tasks(12)
    incremental = _resumable()
    for start in range(0, 12, 4):
        incremental.meta_partial_fit(tasks[start:start + 4])
    at_once = _resumable(n_meta_iter=3).meta_fit(iter(tasks))
    assert incremental.n_meta_iter_ == 3
    _assert_same_weights(_weights(incremental), _weights(at_once))


def test_warm_start_with_the_budget_spent_warns_and_changes_nothing():
    tasks = _classification_tasks(8)
    clf = _resumable(n_meta_iter=2, warm_start=True).meta_fit(tasks)
    before = _weights(clf)
    with pytest.warns(UserWarning, match="already ran 2 meta-iterations"):
        clf.meta_fit(tasks)
    _assert_same_weights(_weights(clf), before)


def test_meta_fit_without_warm_start_starts_over():
    tasks = _classification_tasks(8)
    clf = _resumable(n_meta_iter=2).meta_fit(tasks)
    first = _weights(clf)
    clf.meta_fit(tasks)
    assert clf.n_meta_iter_ == 2
    _assert_same_weights(_weights(clf), first)


def test_warm_start_after_changing_the_architecture_is_refused():
    clf = _resumable(n_meta_iter=2, warm_start=True).meta_fit(_classification_tasks(8))
    clf.set_params(hidden_layer_sizes=(16,), n_meta_iter=4)
    with pytest.raises(ValueError, match="architecture changed since meta_fit"):
        clf.meta_fit(_classification_tasks(8))


# -- checkpoints ---------------------------------------------------------------------

def test_checkpoint_resumes_in_a_new_process(tmp_path):
    path = tmp_path / "run.pt"
    tasks_path = tmp_path / "tasks.pkl"
    tasks = _classification_tasks(12)
    with open(tasks_path, "wb") as f:
        pickle.dump(tasks, f)

    class CrashingList(list):
        def __getitem__(self, index):
            if len(crash_counter) == 21:  # in the sixth meta-iteration
                raise RuntimeError("power failure")
            crash_counter.append(index)
            return super().__getitem__(index)

    crash_counter = []
    clf = _resumable(checkpoint_path=str(path), checkpoint_every=2)
    with pytest.raises(RuntimeError, match="power failure"):
        clf.meta_fit(CrashingList(tasks))
    assert not hasattr(clf, "module_")  # the failed call changed nothing here...
    assert path.exists()                # ...but the checkpoint of iteration 4 is there

    script = textwrap.dedent(f"""
        import pickle, torch, sk_meta
        est = sk_meta.load({str(path)!r})
        assert est.n_meta_iter_ == 4, est.n_meta_iter_
        with open({str(tasks_path)!r}, "rb") as f:
            tasks = pickle.load(f)
        est.set_params(warm_start=True, checkpoint_path=None).meta_fit(tasks)
        torch.save(dict(est.meta_params_), {str(tmp_path / "resumed.pt")!r})
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    resumed = torch.load(tmp_path / "resumed.pt", weights_only=True)
    uninterrupted = _resumable().meta_fit(tasks)
    _assert_same_weights(resumed, _weights(uninterrupted))


def test_checkpoint_is_written_at_the_end(tmp_path):
    path = tmp_path / "final.pt"
    clf = _resumable(n_meta_iter=3, checkpoint_path=path, checkpoint_every=100)
    clf.meta_fit(_classification_tasks(8))
    loaded = sk_meta.load(path)
    assert loaded.n_meta_iter_ == 3
    _assert_same_weights(_weights(loaded), _weights(clf))


# -- long runs ----------------------------------------------------------------------

def test_repeated_fits_do_not_accumulate_state():
    clf, tasks = _fitted_classifier()
    names = set(clf.__dict__)
    for task in tasks[:20]:
        clf.fit(task.X_support, task.y_support)
    assert set(clf.__dict__) == names
    assert all(not v.requires_grad and v.grad_fn is None for v in clf.params_.values())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.predict(tasks[0].X_query)


def test_linear_meta_lr_schedule_decays_to_zero_and_resumes_exactly(interrupting_list):
    tasks = _classification_tasks(12)
    params = dict(meta_optimizer="sgd", meta_lr=0.5, meta_lr_schedule="linear",
                  n_meta_iter=6)
    run = _resumable(**params).meta_fit(tasks)
    constant = _resumable(**{**params, "meta_lr_schedule": "constant"}).meta_fit(tasks)
    assert not all(torch.equal(v, constant.meta_params_[k])
                   for k, v in run.meta_params_.items())
    # the step sizes were 0.5 * (1 - t / 6), t = 0..5: replay them by hand
    manual = _resumable(meta_optimizer="sgd", n_meta_iter=6, warm_start=True)
    for t in range(6):
        manual.set_params(meta_lr=0.5 * (1 - t / 6), n_meta_iter=t + 1)
        manual.meta_fit(tasks)
    for name, value in run.meta_params_.items():
        torch.testing.assert_close(manual.meta_params_[name], value, rtol=1e-6,
                                   atol=1e-7)
    resumed = _resumable(**{**params, "n_meta_iter": 6, "warm_start": True})
    resumed.set_params(n_meta_iter=6)
    with pytest.warns(UserWarning, match="interrupted"):
        resumed.meta_fit(interrupting_list(tasks, interrupt_at=9))
    resumed.meta_fit(tasks)
    _assert_same_weights(_weights(resumed), _weights(run))


class _SlowTasks:
    """Re-iterable tasks that take ``delay`` seconds each to draw."""

    def __init__(self, tasks, delay):
        self.tasks, self.delay = tasks, delay

    def __iter__(self):
        for task in self.tasks:
            time.sleep(self.delay)
            yield task


def test_max_time_stops_meta_training_at_the_end_of_an_iteration():
    tasks = _classification_tasks(8)
    clf = _resumable(meta_batch_size=2, n_meta_iter=1000, max_time=0.3)
    start = time.perf_counter()
    clf.meta_fit(_SlowTasks(tasks, delay=0.03))  # >= 0.06 s per meta-iteration
    assert time.perf_counter() - start < 5
    assert 1 <= clf.n_meta_iter_ < 1000
    assert len(clf.meta_loss_curve_) == clf.n_meta_iter_
    # what ran is an ordinary run of that length
    expected = _resumable(meta_batch_size=2, n_meta_iter=clf.n_meta_iter_)
    expected.meta_fit(_SlowTasks(tasks, delay=0))
    _assert_same_weights(_weights(clf), _weights(expected))


def test_linear_schedule_reaches_zero_by_the_max_time_deadline():
    tasks = _classification_tasks(8)
    clf = _resumable(meta_batch_size=2, n_meta_iter=1000, max_time=0.5,
                     meta_lr=0.01, meta_lr_schedule="linear")
    clf.meta_fit(_SlowTasks(tasks, delay=0.03))
    last_lr = clf._meta.training_state.optimizer_state["param_groups"][0]["lr"]
    # by iterations alone the rate would still be above 0.0099
    assert 0 <= last_lr < 0.01 * 0.4


def test_max_time_must_be_positive():
    with pytest.raises(InvalidParameterError, match="max_time"):
        _resumable(max_time=0).meta_fit(_classification_tasks(4))


# -- inputs far beyond standardized features ----------------------------------------
def test_fit_warns_about_an_outlier_in_the_support_set():
    clf, tasks = _fitted_classifier()
    task = tasks[1]
    X = task.X_support.copy()
    X[0, 1] = 1e4
    with warnings.catch_warnings():
        warnings.simplefilter("error", sk_meta.exceptions.FeatureScaleWarning)
        clf.fit(task.X_support, task.y_support)  # standardized-like: no warning
    with pytest.warns(sk_meta.exceptions.FeatureScaleWarning,
                      match="The support set has values up to 1e\\+04"):
        clf.fit(X, task.y_support)


def test_meta_fit_warns_about_large_values_in_its_first_meta_batch():
    tasks = [(t.X_support * 2000, t.y_support, t.X_query * 2000, t.y_query)
             for t in _classification_tasks()]
    with pytest.warns(sk_meta.exceptions.FeatureScaleWarning,
                      match="The first meta-batch has values up to"):
        try:
            MAMLClassifier(hidden_layer_sizes=(8,), meta_batch_size=4, n_meta_iter=2,
                           random_state=0).meta_fit(tasks)
        except DivergenceError:
            pass  # the warning came first


def test_a_custom_module_gets_no_feature_scale_warning():
    tasks = [(t.X_support * 2000, t.y_support, t.X_query * 2000, t.y_query)
             for t in _classification_tasks()]
    module = torch.nn.Sequential(torch.nn.LayerNorm(4), torch.nn.Linear(4, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error", sk_meta.exceptions.FeatureScaleWarning)
        clf = MAMLClassifier(module=module, head_init="meta", meta_batch_size=4,
                             n_meta_iter=2, random_state=0).meta_fit(tasks)
        clf.fit(tasks[0][0], tasks[0][1])
