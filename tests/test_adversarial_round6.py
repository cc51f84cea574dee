"""A hostile user's cases, sixth round: networks of their own and what
travels with them (save and load, copies), and the scikit-learn tools around
a meta-fitted estimator.

Each test is one case that once went wrong (its docstring says how).
"""

import os
import threading
import time
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import sk_meta
from sk_meta import MAMLClassifier, ReptileClassifier

RNG = np.random.RandomState(0)


def _tasks(n_tasks=4, shape=(6,), seed=0):
    rng = np.random.RandomState(seed)
    tasks = []
    for _ in range(n_tasks):
        X = rng.randn(18, *shape).astype(np.float32)
        y = np.arange(18) % 3
        X.reshape(18, -1)[:, 0] += y  # a little signal
        tasks.append((X[:9], y[:9], X[9:], y[9:]))
    return tasks


class _InstanceNormNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 3, padding=1)
        self.norm = nn.InstanceNorm1d(4, affine=True, track_running_stats=True)
        self.out = nn.Linear(24, 3)

    def forward(self, x):
        return self.out(torch.relu(self.norm(self.conv(x))).flatten(1))


@pytest.mark.parametrize("cls", [MAMLClassifier, ReptileClassifier])
def test_load_restores_the_buffers_that_fit_updated(cls, tmp_path):
    """load rebuilt a meta-trained estimator's fitted network as a copy of the
    meta-trained one: the running statistics that fit's steps had updated
    were the init's again, and the loaded estimator's probabilities differed
    by up to 0.04 from the saved one's, silently."""
    tasks = _tasks(shape=(1, 6))
    X_s, y_s, X_q, _ = _tasks(1, shape=(1, 6), seed=5)[0]
    clf = cls(module=_InstanceNormNet, n_meta_iter=3, meta_batch_size=2,
              inner_steps=5, random_state=0).meta_fit(tasks)
    init_stats = clf.module_.norm.running_mean.clone()
    clf.fit(X_s, y_s)
    assert not torch.equal(clf._fit.module.norm.running_mean, init_stats)
    path = tmp_path / "model.skm"
    clf.save(path)
    loaded = sk_meta.load(path, module=_InstanceNormNet)
    np.testing.assert_array_equal(loaded.predict_proba(X_q), clf.predict_proba(X_q))
    # the meta-trained init keeps its own statistics
    torch.testing.assert_close(loaded.module_.norm.running_mean, init_stats)


class _Projected(nn.Module):
    def __init__(self, projection=None):
        super().__init__()
        self.register_buffer("projection", torch.from_numpy(projection))
        self.hidden = nn.Linear(projection.shape[1], 8)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(x @ self.projection)))


def test_a_numpy_array_in_module_params_loads_as_an_array(tmp_path):
    """save wrote an array in module_params as a list, and load then built the
    module with a list: 'not a valid sk_meta file', a file save had written
    without a word."""
    projection = RNG.randn(6, 4).astype(np.float32)
    X_s, y_s, X_q, _ = _tasks(1, seed=5)[0]
    clf = MAMLClassifier(module=_Projected, module_params={"projection": projection},
                         n_meta_iter=2, meta_batch_size=2,
                         random_state=0).meta_fit(_tasks()).fit(X_s, y_s)
    path = os.path.join(tmp_path, "model.skm")
    clf.save(path)
    loaded = sk_meta.load(path, module=_Projected)
    saved = loaded.module_params["projection"]
    assert isinstance(saved, np.ndarray) and saved.dtype == np.float32
    np.testing.assert_array_equal(saved, projection)
    np.testing.assert_array_equal(loaded.predict_proba(X_q), clf.predict_proba(X_q))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about
        sk_meta.load(path, module=_Projected)


class _ScaledHead(nn.Module):
    """The output layer, then a learned scale that starts at 1 (or a learned
    shift that starts at 0): the identity until meta-training moves it."""

    def __init__(self, shift=False):
        super().__init__()
        self.hidden = nn.Linear(6, 8)
        self.out = nn.Linear(8, 3)
        self.after = nn.Parameter(torch.zeros(1) if shift else torch.ones(1))
        self.shift = shift

    def forward(self, x):
        out = self.out(torch.relu(self.hidden(x)))
        return out + self.after if self.shift else out * self.after


@pytest.mark.parametrize("shift", [False, True])
def test_a_learned_step_after_the_output_layer_is_refused_before_meta_training(shift):
    """The check that the output layer comes last ran on the starting weights,
    where a learned scale of 1 changes nothing; meta-training moved it to
    1.019, and every fit after it refused the network: the whole
    meta-training was lost. It is refused before the first meta-iteration."""
    clf = MAMLClassifier(module=_ScaledHead, module_params={"shift": shift},
                         n_meta_iter=50, random_state=0)
    with pytest.raises(ValueError, match=r"last nn.Linear layer \(out\) applied "
                                         r"last; _ScaledHead does something after"):
        clf.meta_fit(_tasks())
    assert not hasattr(clf, "meta_params_")
    # the way out the message gives works
    clf.set_params(head_init="meta").meta_fit(_tasks()).fit(*_tasks(1, seed=5)[0][:2])


class _KeepsFeatures(nn.Module):
    """Keeps its last hidden layer as an attribute, to be looked at."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(6, 8)
        self.out = nn.Linear(8, 3)
        self.last_features = None

    def forward(self, x):
        self.last_features = torch.relu(self.hidden(x))
        return self.out(self.last_features)


@pytest.mark.parametrize("cls", [MAMLClassifier, ReptileClassifier])
def test_a_module_that_keeps_an_activation_keeps_its_meta_training(cls, tmp_path):
    """Every meta-iteration ran, then copying the trained module failed on the
    batched tensor its forward pass had left on it (torch's 'Cannot access
    storage of BatchedTensorImpl'): the whole run was lost."""
    clf = cls(module=_KeepsFeatures, n_meta_iter=4, meta_batch_size=2,
              random_state=0).meta_fit(_tasks())
    assert clf.n_meta_iter_ == 4
    reference = cls(module=_KeepsFeatures, n_meta_iter=4, meta_batch_size=1,
                    random_state=0)
    assert reference.meta_fit(_tasks()).n_meta_iter_ == 4
    X_s, y_s, X_q, _ = _tasks(1, seed=5)[0]
    clf.fit(X_s, y_s)
    clf.save(tmp_path / "model.skm")
    loaded = sk_meta.load(tmp_path / "model.skm", module=_KeepsFeatures)
    np.testing.assert_array_equal(loaded.predict_proba(X_q), clf.predict_proba(X_q))


class _OldWeightNorm(nn.Module):
    def __init__(self):
        super().__init__()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch deprecates it
            self.hidden = torch.nn.utils.weight_norm(nn.Linear(6, 8))
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(x)))


class _SparseEmbedding(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4, sparse=True)
        self.out = nn.Linear(24, 3)

    def forward(self, x):
        return self.out(self.embed(x.long().clamp(0, 9)).flatten(1))


@pytest.mark.parametrize("module, message", [
    (_OldWeightNorm, r"_OldWeightNorm cannot be copied \(copy.deepcopy failed: .*\); "
                     r".*use torch.nn.utils.parametrizations.weight_norm"),
    (_SparseEmbedding, r"_SparseEmbedding.embed is an embedding with sparse=True: "
                       r".*build it with sparse=False"),
])
def test_a_network_the_inner_loop_cannot_train_is_refused_before_a_task_is_read(
        module, message):
    """The hook-based weight_norm failed with torch's deepcopy error after two
    tasks of the user's generator were drawn, a sparse embedding with torch's
    'reshape is not implemented for sparse tensors' from inside the inner
    loop; fit, the same."""
    tasks = iter(_tasks(6))
    with pytest.raises(ValueError, match=message):
        MAMLClassifier(module=module, n_meta_iter=2, random_state=0).meta_fit(tasks)
    assert len(list(tasks)) == 6
    X_s, y_s = _tasks(1, seed=5)[0][:2]
    with pytest.raises(ValueError, match=message):
        MAMLClassifier(module=module(), random_state=0).fit(X_s, y_s)


class _BrokenBaseline:
    """A baseline whose fit raises an exception that takes five arguments."""

    def get_params(self, deep=True):
        return {}

    def set_params(self, **params):
        return self

    def fit(self, X, y):
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    def score(self, X, y):
        return 0.0


def test_evaluate_tasks_keeps_a_models_own_error():
    """evaluate_tasks said a model's error again as type(exc)(message), which
    exception classes of other signatures refuse: a baseline's
    UnicodeDecodeError came out as 'TypeError: function takes exactly 5
    arguments (1 given)', and except UnicodeDecodeError no longer caught it."""
    from sk_meta.model_selection import evaluate_tasks

    clf = MAMLClassifier(hidden_layer_sizes=(4,), n_meta_iter=2,
                         random_state=0).meta_fit(_tasks())
    with pytest.raises(UnicodeDecodeError) as caught:
        evaluate_tasks(clf, _tasks(2, seed=3), baselines=[_BrokenBaseline()])
    if hasattr(caught.value, "__notes__"):  # Python 3.11 and newer
        assert caught.value.__notes__ == ["task 0: _BrokenBaseline"]
    # an error that takes one message still says where, as its own type
    with pytest.raises(ValueError, match=r"^task 1: MAMLClassifier: .*"):
        evaluate_tasks(clf, [_tasks(1, seed=3)[0], _tasks(1, shape=(7,))[0]])


def test_meta_training_settings_changed_after_meta_fit_are_said_to_act_in_meta_fit():
    """set_params(meta_lr=...) or n_meta_iter after meta_fit changed nothing in
    fit, silently: a GridSearchCV over them scored every value the same and
    chose the first; head_init='meta' on an init meta-trained with the
    prototype head adapted an output layer that was never trained."""
    from sklearn.base import clone

    clf = MAMLClassifier(hidden_layer_sizes=(4,), n_meta_iter=3,
                         random_state=0).meta_fit(_tasks())
    X_s, y_s = _tasks(1, seed=5)[0][:2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the settings it was trained with
        clone(clf).fit(X_s, y_s)
        clone(clf).set_params(inner_steps=3, inner_lr=0.05).fit(X_s, y_s)
        clone(clf).set_params(head_init="zero").fit(X_s, y_s)  # a head per task
    with pytest.warns(UserWarning, match=r"^n_meta_iter=1000, meta_lr=0.5 differ "
                                         r"from what the init was meta-trained with "
                                         r"\(n_meta_iter=3, meta_lr=0.001\): fit"):
        clone(clf).set_params(n_meta_iter=1000, meta_lr=0.5).fit(X_s, y_s)
    with pytest.warns(UserWarning, match=r"fit adapts the init's output layer, which "
                                         r"meta-training with head_init='prototype' "
                                         r"never trained"):
        clone(clf).set_params(head_init="meta").fit(X_s, y_s)
    # meta_fit again with them: nothing to say
    retrained = clone(clf).set_params(n_meta_iter=4, meta_lr=0.5).meta_fit(_tasks())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        retrained.fit(X_s, y_s)


class _SlowDropout(nn.Module):
    """Dropout, and a forward pass slow enough to be overlapped; counts the
    passes whose mode another call changed while they ran."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(6, 8)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(8, 3)
        self.mode_changes = []

    def forward(self, x):
        mode = self.training
        time.sleep(0.002)
        if self.training != mode:
            self.mode_changes.append(mode)
        return self.out(self.drop(torch.relu(self.hidden(x))))


def test_predict_and_fit_in_threads_keep_their_own_mode():
    """predict switched the shared module to eval mode and back in place, and
    fit to train mode: with threads (a web server, joblib's threading
    backend) a prediction ran with dropout on, 3 to 51 of 160 calls by up to
    0.47 in probability, silently."""
    from sklearn.base import clone

    clf = MAMLClassifier(module=_SlowDropout, n_meta_iter=2, inner_steps=2,
                         random_state=0).meta_fit(_tasks())
    X_s, y_s, X_q, _ = _tasks(1, seed=5)[0]
    clf.fit(X_s, y_s)
    expected = clf.predict_proba(X_q)
    module = clf._fit.module
    results, errors = [], []

    def predict():
        try:
            results.extend(clf.predict_proba(X_q) for _ in range(8))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def fit_a_clone():
        try:
            for _ in range(4):
                clone(clf).fit(X_s, y_s)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=target)
               for target in (predict, predict, fit_a_clone, predict)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert module.mode_changes == []
    assert len(results) == 24
    for result in results:
        np.testing.assert_array_equal(result, expected)


class _RandomFeatures(nn.Module):
    """Fixed random features, kept out of the state dict."""

    def __init__(self):
        super().__init__()
        self.register_buffer("projection", torch.randn(6, 16), persistent=False)
        self.out = nn.Linear(32, 3)

    def forward(self, x):
        z = x @ self.projection
        return self.out(torch.cat([z.sin(), z.cos()], 1))


@pytest.mark.parametrize("meta_fitted", [True, False])
def test_load_rebuilds_buffers_outside_the_state_dict_as_they_were_drawn(
        meta_fitted, tmp_path):
    """load built the network at seed 0, whatever seed it was trained from: a
    buffer with persistent=False (fixed random features) came back another,
    and the loaded estimator's probabilities differed by up to 0.99."""
    X_s, y_s, X_q, _ = _tasks(1, seed=5)[0]
    clf = MAMLClassifier(module=_RandomFeatures, n_meta_iter=2, meta_batch_size=2,
                         inner_steps=3, random_state=7)
    if meta_fitted:
        clf.meta_fit(_tasks())
    clf.fit(X_s, y_s)
    clf.save(tmp_path / "model.skm")
    loaded = sk_meta.load(tmp_path / "model.skm", module=_RandomFeatures)
    torch.testing.assert_close(loaded._fit.module.projection,
                               clf._fit.module.projection, rtol=0, atol=0)
    np.testing.assert_array_equal(loaded.predict_proba(X_q), clf.predict_proba(X_q))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_process_forked_while_a_thread_predicts_can_predict():
    """The per-module lock was inherited held by a process forked while another
    thread was in predict (multiprocessing's fork, a prefork server): the
    child's predict hung, in 10 of 10 forks."""
    import multiprocessing

    X_s, y_s, X_q, _ = _tasks(1, seed=5)[0]
    clf = MAMLClassifier(module=_SlowDropout, inner_steps=1,
                         random_state=0).fit(X_s, y_s)
    stop = threading.Event()

    def busy():
        while not stop.is_set():
            clf.predict_proba(X_q)

    thread = threading.Thread(target=busy, daemon=True)
    thread.start()
    context = multiprocessing.get_context("fork")
    hung = 0
    try:
        for _ in range(3):
            time.sleep(0.003)  # the thread is inside a slow forward pass
            child = context.Process(target=clf.predict, args=(X_q,))
            child.start()
            child.join(20)
            if child.is_alive():
                hung += 1
                child.kill()
                child.join()
            else:
                assert child.exitcode == 0
    finally:
        stop.set()
        thread.join()
    assert hung == 0


class _MixingRate(nn.Module):
    """A parameter with a domain: a rate in (0, 1) under a square root."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(6, 8)
        self.rate = nn.Parameter(torch.tensor(0.9))
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        h = torch.relu(self.hidden(x))
        return self.out(torch.sqrt(1 - self.rate) * h + self.rate * h.tanh())


def test_the_moved_check_keeps_a_parameter_in_its_domain():
    """The check made with the other parameters moved took a rate of 0.9 to
    1.175 and the outputs to NaN: torch's 'atol must be greater than or equal
    to zero, but got -nan' refused a network that works."""
    clf = MAMLClassifier(module=_MixingRate, n_meta_iter=2,
                         random_state=0).meta_fit(_tasks())
    X_s, y_s, X_q, _ = _tasks(1, seed=5)[0]
    assert np.isfinite(clf.fit(X_s, y_s).predict_proba(X_q)).all()


def test_load_rebuilds_a_network_fit_built_at_a_drawn_seed(tmp_path):
    """An estimator never meta-trained with random_state=None was rebuilt at
    seed 0 by load: its random features were others, the probabilities 0.21
    apart. fit's seed is now saved with it."""
    X_s, y_s, X_q, _ = _tasks(1, seed=5)[0]
    clf = MAMLClassifier(module=_RandomFeatures, inner_steps=3).fit(X_s, y_s)
    clf.save(tmp_path / "model.skm")
    loaded = sk_meta.load(tmp_path / "model.skm", module=_RandomFeatures)
    np.testing.assert_array_equal(loaded.predict_proba(X_q), clf.predict_proba(X_q))


def test_save_takes_arrays_of_either_byte_order_in_module_params(tmp_path):
    """A big-endian array (np.load of data written elsewhere) made save fail
    with torch's 'byte order different from the native byte order'."""
    projection = RNG.randn(6, 4).astype(">f4")
    clf = MAMLClassifier(module=_Projected,
                         module_params={"projection": projection.astype(np.float32)},
                         n_meta_iter=2, random_state=0).meta_fit(_tasks())
    clf.set_params(module_params={"projection": projection})
    clf.save(tmp_path / "model.skm")
    loaded = sk_meta.load(tmp_path / "model.skm", module=_Projected)
    np.testing.assert_array_equal(loaded.module_params["projection"], projection)


class _StatusError(ValueError):
    def __init__(self, message, status=500):
        super().__init__(message)
        self.status = status


class _LateStrError(ValueError):
    def __str__(self):
        return f"bad row {self.row}"


@pytest.mark.parametrize("error", [_StatusError("unavailable", status=404),
                                   _LateStrError("x")])
def test_an_error_said_again_keeps_what_it_carries(error):
    """raise_with_context rebuilt an error from its message alone: a status of
    404 came back 500, and an error whose str reads an attribute set after
    it was made came out as an AttributeError, which except ValueError did
    not catch."""
    from sk_meta._errors import raise_with_context

    error.row = 3
    with pytest.raises(ValueError) as caught:
        try:
            raise error
        except ValueError as exc:
            raise_with_context(exc, "task 2: model")
    assert caught.value is error
    assert getattr(error, "status", 404) == 404
