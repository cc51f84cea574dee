"""What two hostile passes over the scikit-learn side and meta-training found:
each case raised torch's error, warned in torch's words, or went silent."""

import gzip
import pickle
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from torch import nn

import sk_meta
from sk_meta import MAMLClassifier, MAMLRegressor, ReptileClassifier
from sk_meta.model_selection import MetaGridSearch
from sk_meta.tasks import EpisodeSampler


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16, y


def _sampler(digits, **params):
    X, y = digits
    return EpisodeSampler(X, y, n_way=3, k_shot=5, n_query=10, classes=range(7),
                          shuffle_labels=True, random_state=0, **params)


def _new_task(digits):
    X, y = digits
    return EpisodeSampler(X, y, n_way=3, k_shot=5, n_query=10, classes=[7, 8, 9],
                          random_state=1).sample()


def _dropout_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Dropout(0.3),
                         nn.Linear(16, 3))


# -- torch's generator is one per process: threads took each other's draws ------

def test_fits_of_a_dropout_module_in_threads_are_those_run_one_by_one(digits):
    clf = MAMLClassifier(module=_dropout_net(), n_meta_iter=3, meta_batch_size=4,
                         random_state=0).meta_fit(_sampler(digits))
    task = _new_task(digits)

    def probabilities(_):
        return clone(clf).fit(task.X_support, task.y_support).predict_proba(
            task.X_query)

    expected = probabilities(None)
    with ThreadPoolExecutor(4) as pool:
        for got in pool.map(probabilities, range(16)):
            np.testing.assert_array_equal(got, expected)


def test_meta_fits_of_a_dropout_module_in_threads_are_those_run_one_by_one(digits):
    clf = MAMLClassifier(module=_dropout_net(), n_meta_iter=3, meta_batch_size=4,
                         random_state=0)

    def init(_):
        return clone(clf).meta_fit(_sampler(digits)).meta_params_

    expected = init(None)
    with ThreadPoolExecutor(4) as pool:
        for got in pool.map(init, range(6)):
            for name, value in expected.items():
                torch.testing.assert_close(got[name], value, rtol=0, atol=0)


# -- meta_fit(X, y), as fit(X, y) ---------------------------------------------------

@pytest.mark.parametrize("kind", ["ndarray", "DataFrame", "tensor", "labels",
                                  "X.tolist()", "y.tolist()", "list(X)"])
@pytest.mark.parametrize("call", ["meta_fit", "meta_partial_fit", "MetaGridSearch"])
def test_a_table_given_as_tasks_is_named_before_validation_tasks(digits, kind, call):
    X, y = digits
    table = {"ndarray": X, "DataFrame": pd.DataFrame(X), "tensor": torch.tensor(X),
             "labels": y, "X.tolist()": X.tolist(), "y.tolist()": y.tolist(),
             "list(X)": list(X)}[kind]
    estimator = MAMLClassifier(n_meta_iter=2)
    if call == "MetaGridSearch":
        estimator = MetaGridSearch(estimator, {"inner_lr": [0.1]})
        call = "meta_fit"
    with pytest.raises(TypeError, match=r"^tasks must be an iterable of .* not an "
                                        r"array of samples .*EpisodeSampler\(X, y"):
        getattr(estimator, call)(table, y)


# -- read-only arrays (memmaps, joblib's workers) --------------------------------

@pytest.mark.parametrize("Estimator", [MAMLClassifier, MAMLRegressor])
def test_read_only_inputs_are_taken_without_torch_warning(digits, Estimator):
    task = _new_task(digits)
    X = task.X_support.astype(np.float32)
    y = task.y_support.astype(np.float32) if Estimator is MAMLRegressor \
        else task.y_support
    X_query = task.X_query.astype(np.float32)
    for array in (X, y, X_query):
        array.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Estimator(hidden_layer_sizes=(8,), inner_steps=2).fit(X, y).predict(X_query)


def test_predict_names_the_sample_shape_of_an_nd_module(digits):
    class Conv(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.out = nn.Linear(144, 3)

        def forward(self, x):
            return self.out(torch.relu(self.conv(x)).flatten(1))

    task = _new_task(digits)
    clf = MAMLClassifier(module=Conv, inner_steps=1, random_state=0).fit(
        task.X_support.reshape(-1, 1, 8, 8), task.y_support)
    with pytest.raises(ValueError, match=r"X has 64 features, but MAMLClassifier "
                                         r"was fitted on samples of shape \(1, 8, 8\)"):
        clf.predict(task.X_query)


# -- sk_meta.load of a file save did not write --------------------------------------

@pytest.mark.parametrize("write", ["pickle", "joblib", "gzip", "zlib", "bz2", "xz",
                                   "lzma"])
def test_load_of_a_pickle_says_which_loader_reads_it(tmp_path, write):
    clf = MAMLClassifier(hidden_layer_sizes=(4,), inner_steps=1).fit(
        np.eye(4), [0, 1, 0, 1])
    path = tmp_path / "model"
    if write == "pickle":
        path.write_bytes(pickle.dumps(clf))
    elif write == "joblib":
        joblib.dump(clf, path)
    else:
        joblib.dump(clf, path, compress=(write, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's warning about the protocol
        with pytest.raises(ValueError, match="not a valid sk_meta file: it is (a "
                                             "pickle|compressed).*joblib.load"):
            sk_meta.load(path)


def test_load_of_other_bytes_says_what_save_writes(tmp_path):
    path = tmp_path / "model"
    path.write_bytes(gzip.compress(b"x")[:2] + b"not gzip")  # starts as gzip does
    with pytest.raises(ValueError, match="compressed"):
        sk_meta.load(path)
    path.write_bytes(b"hello, world")
    with pytest.raises(ValueError, match="save writes a zip archive.*b'hell'"):
        sk_meta.load(path)


# -- set_params(module=...) after meta_fit ------------------------------------------

def _linear_net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))


def test_a_module_of_other_weights_after_meta_fit_warns_at_fit(digits, tmp_path):
    clf = MAMLClassifier(module=_linear_net(0), n_meta_iter=2, meta_batch_size=4,
                         random_state=0).meta_fit(_sampler(digits))
    task = _new_task(digits)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same weights: no warning
        clf.fit(task.X_support, task.y_support)
        clone(clf).fit(task.X_support, task.y_support)
        pickle.loads(pickle.dumps(clf)).fit(task.X_support, task.y_support)
        clf.save(tmp_path / "model.skm")
        # the module load is given is taken as the one meta-trained from
        sk_meta.load(tmp_path / "model.skm", module=_linear_net(1)).fit(
            task.X_support, task.y_support)
    before = clf.predict_proba(task.X_query)
    clf.set_params(module=_linear_net(1))
    with pytest.warns(UserWarning, match=r"module \(Sequential\) holds other "
                                         "weights than the one the init was"):
        clf.fit(task.X_support, task.y_support)
    # it adapts from the meta-learned init, as the warning says
    np.testing.assert_array_equal(clf.predict_proba(task.X_query), before)


# -- what fit refuses, meta_fit refuses ---------------------------------------------

def test_an_np_matrix_in_a_task_is_refused_as_fit_refuses_it():
    X, y = np.random.default_rng(0).normal(size=(6, 3)), np.array([0, 1] * 3)
    with pytest.raises(TypeError, match="np.matrix"):
        MAMLClassifier(hidden_layer_sizes=(4,)).fit(np.asmatrix(X), y)
    with pytest.raises(TypeError, match="task 1: X_query is an np.matrix"):
        MAMLClassifier(n_meta_iter=1, hidden_layer_sizes=(4,)).meta_fit(
            [(X, y, X, y), (X, y, np.asmatrix(X), y)])


# -- modules through which no gradient flows ----------------------------------------

class _Detached(nn.Module):
    def __init__(self):
        super().__init__()
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        return self.out(x).detach()


class _NoGrad(_Detached):
    def forward(self, x):
        with torch.no_grad():
            return self.out(x)


class _IntegerOutputs(_Detached):
    def forward(self, x):
        return self.out(x).argmax(1, keepdim=True).expand(-1, 2)


class _FrozenBody(nn.Module):  # what still works: a body under no_grad
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        with torch.no_grad():
            hidden = torch.relu(self.body(x))
        return self.out(hidden)


@pytest.mark.parametrize("module, message", [
    (_Detached, "do not depend on its parameters"),
    (_NoGrad, "do not depend on its parameters"),
    (_IntegerOutputs, "must return floating-point outputs .* torch.int64"),
])
@pytest.mark.parametrize("Estimator", [MAMLClassifier, ReptileClassifier])
@pytest.mark.parametrize("call", ["meta_fit", "fit"])
def test_a_module_no_gradient_flows_through_is_refused(module, message, Estimator,
                                                       call):
    X = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    y = np.array([0, 1] * 4)
    clf = Estimator(module=module(), head_init="meta", n_meta_iter=1,
                    inner_steps=1)
    with pytest.raises(ValueError, match=message):
        clf.meta_fit([(X, y, X, y)]) if call == "meta_fit" else clf.fit(X, y)


def test_a_module_with_a_body_under_no_grad_still_adapts():
    X = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    y = np.array([0, 1] * 4)
    clf = MAMLClassifier(module=_FrozenBody(), head_init="meta", n_meta_iter=2,
                         inner_steps=1, random_state=0).meta_fit([(X, y, X, y)])
    assert clf.fit(X, y).score(X, y) >= 0.5


# -- small refusals ---------------------------------------------------------------

def test_cpu_0_is_the_cpu():
    X, y = np.eye(4, dtype=np.float32), np.array([0, 1, 0, 1])
    clf = MAMLClassifier(device="cpu:0", hidden_layer_sizes=(4,), inner_steps=1,
                         random_state=0).fit(X, y)
    reference = MAMLClassifier(hidden_layer_sizes=(4,), inner_steps=1,
                               random_state=0).fit(X, y)
    np.testing.assert_array_equal(clf.predict_proba(X), reference.predict_proba(X))


@pytest.mark.parametrize("n_way", ["x", 2.5, True, 0])
def test_an_n_way_attribute_that_is_not_a_count_is_refused(n_way):
    X, y = np.eye(4, dtype=np.float32), np.array([0, 1, 0, 1])

    class Tasks:
        def __len__(self):
            return 3

        def __getitem__(self, index):
            return X, y, X, y

    tasks = Tasks()
    tasks.n_way = n_way
    with pytest.raises(TypeError, match="tasks.n_way must be a positive int"):
        MAMLClassifier(n_meta_iter=1, hidden_layer_sizes=(4,)).meta_fit(tasks)


# -- second pass, over the fixes above ------------------------------------------------

def _blobs(counts, seed=0, n_features=5):
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.full(n, label) for label, n in enumerate(counts)])
    X = rng.normal(size=(len(y), n_features)) + y[:, None]
    return X.astype(np.float32), y


def test_a_task_s_meta_gradient_does_not_depend_on_its_batch_mates():
    # task A: balanced support, imbalanced query; task B: imbalanced support.
    # Its query loss was weighted only when B shared its meta-batch
    A = (*_blobs((3, 3, 3)), *_blobs((5, 1, 1), seed=1))
    B = (*_blobs((4, 3, 2), seed=2), *_blobs((5, 1, 1), seed=3))
    params = dict(hidden_layer_sizes=(8,), meta_inner_steps=1, n_meta_iter=1,
                  meta_optimizer="sgd", meta_lr=0.1, meta_grad_max_norm=None,
                  task_interpolation=0.0, random_state=0)

    def step(tasks):  # one SGD step from the same init: θ - lr * mean gradient
        return MAMLClassifier(**params, meta_batch_size=len(tasks)).meta_fit(
            tasks).meta_params_

    together, alone_a, alone_b = step([A, B]), step([A]), step([B])
    for name in together:
        torch.testing.assert_close(together[name],
                                   (alone_a[name] + alone_b[name]) / 2,
                                   rtol=1e-4, atol=1e-7)


class _ExtraState(nn.Module):
    def __init__(self):
        super().__init__()
        self.out = nn.Linear(5, 3)

    def forward(self, x):
        return self.out(x)

    def get_extra_state(self):
        return {"version": 1}

    def set_extra_state(self, state):
        pass


class _GradOnlyInTraining(_ExtraState):
    def forward(self, x):
        with torch.set_grad_enabled(self.training):
            return self.out(x)


@pytest.mark.parametrize("module", [_ExtraState, _GradOnlyInTraining])
def test_modules_the_new_checks_once_refused_still_meta_train(module):
    X, y = _blobs((4, 4, 4))
    clf = MAMLClassifier(module=module(), head_init="meta", n_meta_iter=2,
                         inner_steps=2, random_state=0).meta_fit([(X, y, X, y)])
    assert clf.n_meta_iter_ == 2
    assert clf.fit(X, y).predict_proba(X).shape == (12, 3)


def test_sk_meta_s_mlp_does_not_wait_for_another_thread_s_seeded_section():
    from sk_meta.functional._rng import _GLOBAL_RNG_LOCK

    X, y = _blobs((4, 4, 4))
    clf = MAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=2, random_state=0,
                         task_interpolation=0.0).meta_fit([(X, y, X, y)])
    expected = clf.fit(X, y).predict_proba(X)
    done = threading.Event()
    with _GLOBAL_RNG_LOCK:  # another thread's meta-training of a dropout module
        worker = threading.Thread(target=lambda: (clf.fit(X, y), done.set()))
        worker.start()
        assert done.wait(timeout=60), "fit waited for the lock"
    worker.join()
    np.testing.assert_array_equal(clf.predict_proba(X), expected)


class _NoiseWithGraph(nn.Module):
    """Draws only where a graph is built: no probe under no_grad sees it."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(5, 8)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        hidden = torch.relu(self.hidden(x))
        if self.training and torch.is_grad_enabled():
            hidden = hidden + 0.5 * torch.randn_like(hidden)
        return self.out(hidden)


@pytest.mark.parametrize("Estimator", [MAMLClassifier, ReptileClassifier])
def test_a_module_that_draws_unseen_is_seeded_and_leaves_the_user_s_generator(
        Estimator):
    X, y = _blobs((4, 4, 4))
    results = []
    for user_seed in (1, 2):
        torch.manual_seed(user_seed)
        clf = Estimator(module=_NoiseWithGraph, n_meta_iter=2, inner_steps=3,
                        random_state=0).meta_fit([(X, y, X, y)])
        results.append(clf.fit(X, y).predict_proba(X))
        after = torch.rand(1)
        torch.manual_seed(user_seed)  # the user's generator, untouched
        assert torch.equal(after, torch.rand(1))
    np.testing.assert_array_equal(results[0], results[1])


def test_a_sequence_of_generated_tasks_is_read_up_to_its_length():
    from collections.abc import Sequence

    X, y = _blobs((3, 3))

    class Generated(Sequence):
        def __init__(self):
            self.reads = 0

        def __len__(self):
            return 8

        def __getitem__(self, index):  # never an IndexError
            self.reads += 1
            return X, y, X, y

    tasks = Generated()
    MAMLClassifier(hidden_layer_sizes=(4,), n_meta_iter=1, meta_batch_size=2,
                   random_state=0).meta_fit(tasks)
    assert tasks.reads == 8 + 2  # the check, then one meta-batch


@pytest.mark.parametrize("kind", ["dataset with dtype and shape", "object array",
                                  "Series of tasks"])
def test_containers_of_tasks_are_not_taken_for_tables(kind):
    X, y = _blobs((3, 3))
    tasks = [(X, y, X, y)] * 3
    if kind == "dataset with dtype and shape":
        class Dataset(torch.utils.data.Dataset):
            dtype, shape = torch.float32, (3, 4)

            def __len__(self):
                return 3

            def __getitem__(self, index):
                return tasks[index]

        container = Dataset()
    elif kind == "object array":
        container = np.empty(3, dtype=object)
        container[:] = tasks
    else:
        container = pd.Series(tasks)
    clf = MAMLClassifier(hidden_layer_sizes=(4,), n_meta_iter=1, random_state=0)
    assert clf.meta_fit(container).n_meta_iter_ == 1


def test_the_balanced_loss_takes_small_integer_labels_and_keeps_the_dtype():
    from sk_meta.functional import cross_entropy_loss

    logits = torch.randn(2, 6, 3, dtype=torch.float64)
    y = torch.tensor([[0, 0, 0, 0, 1, 2], [0, 1, 1, 1, 1, 2]])
    expected = cross_entropy_loss(logits, y, 3, balanced=True)
    assert expected.dtype == torch.float64
    torch.testing.assert_close(
        cross_entropy_loss(logits, y.to(torch.uint8), 3, balanced=True), expected)
    with pytest.raises(TypeError, match="balanced must be a bool"):
        cross_entropy_loss(logits, y, 3, balanced="yes")


@pytest.mark.parametrize("change", ["in place", ".data", "numpy view"])
def test_weights_changed_in_place_after_meta_fit_warn_at_fit(change):
    X, y = _blobs((4, 4, 4))
    module = _ExtraState()
    clf = MAMLClassifier(module=module, head_init="meta", n_meta_iter=1,
                         inner_steps=1, random_state=0).meta_fit([(X, y, X, y)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.fit(X, y)  # the same weights: no warning
    if change == "in place":
        with torch.no_grad():
            module.out.weight.add_(1.0)
    elif change == ".data":  # no version counter moves
        module.out.weight.data.mul_(2.0)
    else:
        module.out.bias.detach().numpy()[0] += 1.0
    with pytest.warns(UserWarning, match="holds other weights"):
        clf.fit(X, y)


class _Settings:  # no __repr__: its text holds its address, new at every copy
    pass


class _ExtraObject(_ExtraState):
    def __init__(self):
        super().__init__()
        self.settings = _Settings()

    def get_extra_state(self):
        return self.settings

    def set_extra_state(self, state):
        self.settings = state


def test_a_copied_module_with_an_extra_state_object_does_not_warn():
    X, y = _blobs((4, 4, 4))
    clf = MAMLClassifier(module=_ExtraObject(), head_init="meta", n_meta_iter=1,
                         inner_steps=1, random_state=0).meta_fit([(X, y, X, y)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pickle.loads(pickle.dumps(clf)).fit(X, y)
        clone(clf).fit(X, y)


class _SparseBuffer(_ExtraState):
    def __init__(self):
        super().__init__()
        self.register_buffer("mask", torch.eye(3).to_sparse())


def test_a_module_with_a_sparse_buffer_keeps_its_meta_training():
    # the record's digest of the module failed after the last meta-iteration
    X, y = _blobs((4, 4, 4))
    clf = MAMLClassifier(module=_SparseBuffer(), head_init="meta", n_meta_iter=2,
                         inner_steps=1, random_state=0).meta_fit([(X, y, X, y)])
    assert clf.n_meta_iter_ == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.fit(X, y)
