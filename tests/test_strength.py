"""Behaviour that a plausible bug would change while the rest of the suite passed.

Each test pins one promise against an independent computation written with
plain torch (float64 where it helps) through the public API only: the
estimators, ``sk_meta.load`` and ``sk_meta.functional``. A test here fails
when the corresponding bug is put back: a file that runs code on load, FOMAML
silently second order, a thread setting left changed, ``fit`` taking the
wrong number or size of steps, dropout left on at prediction, a failed
``meta_fit`` that keeps part of its work, a checkpoint that resumes without
the optimizer or random state, or one written in place.
"""

import copy
import os
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.base import clone, is_classifier
from torch import nn

import sk_meta
from sk_meta import (
    FOMAMLClassifier,
    FOMAMLRegressor,
    MAMLClassifier,
    MAMLRegressor,
    ReptileClassifier,
    ReptileRegressor,
)
from sk_meta.exceptions import PersistenceWarning

# float32 estimators against float64 references: rounding stays below this,
# and every difference a bug would make is checked to be far above it
ATOL = 2e-5


# -- networks with known weights, and their forward pass written out -----------------

def _seeded_net(n_features, n_hidden, n_outputs, seed):
    """``Linear -> Tanh -> Linear`` with weights drawn from ``seed``."""
    with torch.random.fork_rng():  # nn.Linear's own init draws from the global RNG
        net = nn.Sequential(nn.Linear(n_features, n_hidden), nn.Tanh(),
                            nn.Linear(n_hidden, n_outputs))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.7 * torch.randn(p.shape, generator=gen))
    return net


def _tanh_net(params, X):
    """The network of :func:`_seeded_net`, by hand."""
    hidden = torch.tanh(F.linear(X, params["0.weight"], params["0.bias"]))
    return F.linear(hidden, params["2.weight"], params["2.bias"])


def _float64(params):
    return {k: v.detach().double().clone() for k, v in params.items()}


def _codes(y, support):
    """Class codes of ``y`` in the sorted order of the support labels."""
    return torch.from_numpy(np.searchsorted(np.unique(support), y)).long()


def _task_loss(outputs, y, classification):
    if classification:
        return F.cross_entropy(outputs, y)
    return ((outputs.squeeze(-1) - y) ** 2).mean()


def _regression_tasks(n_tasks, seed, n_support=6, n_query=5):
    rng = np.random.default_rng(seed)
    tasks = []
    for _ in range(n_tasks):
        w = rng.normal(size=2)
        X = rng.normal(size=(n_support + n_query, 2))
        y = np.sin(X @ w) + 0.1 * rng.normal(size=len(X))
        tasks.append((X[:n_support], y[:n_support], X[n_support:], y[n_support:]))
    return tasks


def _classification_tasks(n_tasks, seed, labels=(7, 2, 5), per_class=3):
    """Tasks with arbitrary integer labels (codes follow their sorted order)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    tasks = []
    for _ in range(n_tasks):
        centers = rng.normal(scale=1.5, size=(len(labels), 2))

        def draw(n, centers=centers):
            codes = np.repeat(np.arange(len(labels)), n)
            rng.shuffle(codes)
            return centers[codes] + rng.normal(size=(len(codes), 2)), labels[codes]

        tasks.append((*draw(per_class), *draw(per_class)))
    return tasks


def _to_torch(task, classification):
    X_s, y_s, X_q, y_q = task
    if classification:
        return (torch.from_numpy(X_s), _codes(y_s, y_s), torch.from_numpy(X_q),
                _codes(y_q, y_s))
    return tuple(torch.from_numpy(np.asarray(a, dtype=np.float64)) for a in task)


# -- loading an untrusted file runs no code ------------------------------------------

class _Payload:
    """Unpickling it runs ``exec``: it creates ``marker`` (as an attacker's code)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def _trojaned(path, marker, where):
    """Put a payload in the sk_meta file at ``path`` (a model a stranger shares)."""
    state = torch.load(path, weights_only=True)
    if where == "params":
        state["params"]["verbose"] = _Payload(marker)
    elif where == "weights":
        state["meta"]["module_state"]["0.weight"] = _Payload(marker)
    else:  # the whole file
        state = _Payload(marker)
    torch.save(state, path)


@pytest.mark.parametrize("where", ["params", "weights", "whole-file"])
@pytest.mark.parametrize("written_by", ["save", "checkpoint"])
def test_load_refuses_a_file_holding_code_and_runs_none_of_it(tmp_path, where,
                                                              written_by):
    tasks = _regression_tasks(4, seed=0)
    path = tmp_path / "shared.pt"
    reg = MAMLRegressor(_seeded_net(2, 4, 1, seed=0), n_meta_iter=1,
                        meta_batch_size=2, random_state=0)
    if written_by == "save":
        reg.meta_fit(tasks).save(path)
    else:
        reg.set_params(checkpoint_path=path).meta_fit(tasks)
    marker = tmp_path / "code-ran"
    _trojaned(path, marker, where)
    with pytest.raises(ValueError, match="not a valid sk_meta file"):
        sk_meta.load(path, module=reg.module)
    assert not marker.exists()
    # the payload is live: loading the file without sk_meta's care runs it
    torch.load(path, weights_only=False)
    assert marker.exists()


# -- FOMAML is first order at the estimator level ------------------------------------

def _reference_meta_gradient(theta, tasks, *, lr, n_steps, first_order,
                             classification):
    """Mean over tasks of the MAML meta-gradient, unrolled by hand per task."""
    theta = {k: v.clone().requires_grad_() for k, v in theta.items()}
    total = 0.0
    for task in tasks:
        X_s, y_s, X_q, y_q = _to_torch(task, classification)
        phi = dict(theta)
        for _ in range(n_steps):
            loss = _task_loss(_tanh_net(phi, X_s), y_s, classification)
            grads = torch.autograd.grad(loss, list(phi.values()),
                                        create_graph=not first_order)
            phi = {k: p - lr * g for (k, p), g in zip(phi.items(), grads)}
        total = total + _task_loss(_tanh_net(phi, X_q), y_q, classification)
    grads = torch.autograd.grad(total / len(tasks), list(theta.values()))
    return dict(zip(theta, grads))


@pytest.mark.parametrize("estimator_class, first_order", [
    (FOMAMLRegressor, True), (MAMLRegressor, False),
    (FOMAMLClassifier, True), (MAMLClassifier, False),
])
@pytest.mark.parametrize("inner_steps, meta_inner_steps", [(2, None), (4, 1)])
def test_one_meta_iteration_steps_along_the_meta_gradient_of_its_order(
        estimator_class, first_order, inner_steps, meta_inner_steps):
    classification = is_classifier(estimator_class())
    if classification:
        tasks = _classification_tasks(3, seed=1)
        net = _seeded_net(2, 8, 3, seed=2)
    else:
        tasks = _regression_tasks(3, seed=1)
        net = _seeded_net(2, 8, 1, seed=2)
    theta = _float64(dict(net.named_parameters()))
    meta_lr, inner_lr = 0.5, 0.4
    est = estimator_class(
        net, inner_lr=inner_lr, inner_steps=inner_steps,
        meta_inner_steps=meta_inner_steps, meta_optimizer="sgd", meta_lr=meta_lr,
        meta_batch_size=len(tasks), n_meta_iter=1, head_init="meta", random_state=0,
        # the tasks as drawn and the step unclipped, as the reference sees them
        task_interpolation=0.0, meta_grad_max_norm=None,
    ).meta_fit(tasks)
    n_steps = meta_inner_steps or inner_steps
    gradients = {
        order: _reference_meta_gradient(
            theta, tasks, lr=inner_lr, n_steps=n_steps, first_order=order,
            classification=classification)
        for order in (True, False)
    }
    for name in theta:
        step = est.meta_params_[name].double() - theta[name]
        torch.testing.assert_close(step, -meta_lr * gradients[first_order][name],
                                   rtol=0, atol=ATOL)
    # the two orders are far apart here, so the test tells them apart
    gap = max((meta_lr * (gradients[True][k] - gradients[False][k])).abs().max()
              for k in theta)
    assert gap > 100 * ATOL
    # the user's module is the init, untouched
    for name, value in net.named_parameters():
        assert torch.equal(value.detach().double(), theta[name])


# -- the torch thread setting is restored --------------------------------------------

_THREADS_SEEN = []


class _ThreadRecorder(nn.Module):
    """Records the torch thread count its forward pass runs with."""

    fail = False

    def __init__(self):
        super().__init__()
        self.net = _seeded_net(2, 4, 1, seed=3)

    def forward(self, X):
        _THREADS_SEEN.append(torch.get_num_threads())
        if _ThreadRecorder.fail:
            raise RuntimeError("forward failed")
        return self.net(X)


@pytest.mark.parametrize("n_threads, outer", [(1, 3), (2, 1), (None, 2)])
def test_thread_setting_is_applied_and_restored_even_after_an_error(n_threads,
                                                                    outer):
    tasks = _regression_tasks(4, seed=4)
    X_s, y_s, X_q, y_q = tasks[0]
    reg = MAMLRegressor(_ThreadRecorder, n_threads=n_threads, inner_steps=2,
                        meta_batch_size=2, n_meta_iter=2, random_state=0)
    inside = outer if n_threads is None else n_threads
    calls = {
        "meta_fit": lambda: reg.meta_fit(tasks),
        "fit": lambda: reg.fit(X_s, y_s),
        "predict": lambda: reg.predict(X_q),
        "score": lambda: reg.score(X_q, y_q),
        "fit from scratch": lambda: MAMLRegressor(
            _ThreadRecorder, n_threads=n_threads, inner_steps=2).fit(X_s, y_s),
    }
    original = torch.get_num_threads()
    torch.set_num_threads(outer)
    try:
        assert torch.get_num_threads() == outer
        for name, call in calls.items():
            _THREADS_SEEN.clear()
            call()
            assert _THREADS_SEEN and set(_THREADS_SEEN) == {inside}, name
            assert torch.get_num_threads() == outer, name
        _ThreadRecorder.fail = True
        for name, call in calls.items():
            if name == "score":
                continue  # the same path as predict
            _THREADS_SEEN.clear()
            with pytest.raises((RuntimeError, ValueError), match="forward failed"):
                call()
            assert _THREADS_SEEN, name  # the error came from inside the computation
            assert torch.get_num_threads() == outer, name
    finally:
        _ThreadRecorder.fail = False
        torch.set_num_threads(original)


# -- fit is exactly inner_steps SGD steps at inner_lr --------------------------------

def _sgd_reference(net, X, y, *, lr, n_steps, classification):
    """``n_steps`` of torch.optim.SGD on a float64 copy of ``net``."""
    reference = copy.deepcopy(net).double()
    optimizer = torch.optim.SGD(reference.parameters(), lr=lr)
    for _ in range(n_steps):
        optimizer.zero_grad()
        _task_loss(reference(X), y, classification).backward()
        optimizer.step()
    return _float64(dict(reference.named_parameters()))


def _max_difference(a, b):
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.parametrize("estimator_class", [
    MAMLRegressor, FOMAMLRegressor, ReptileRegressor,
    MAMLClassifier, ReptileClassifier,
])
def test_fit_takes_exactly_inner_steps_sgd_steps_at_inner_lr(estimator_class):
    classification = is_classifier(estimator_class())
    if classification:
        # string labels, and a network with more outputs than the task has
        # classes: the loss and the probabilities use the first three outputs
        task = _classification_tasks(1, seed=5, labels=("b", "c", "a"),
                                     per_class=4)[0]
        net = _seeded_net(2, 8, 5, seed=6)
    else:
        task = _regression_tasks(1, seed=5)[0]
        net = _seeded_net(2, 8, 1, seed=6)
    X_s, y_s, X_q, _ = _to_torch(task, classification)
    lr, n_steps = 0.037, 3
    est = estimator_class(net, inner_lr=lr, inner_steps=n_steps, head_init="meta",
                          random_state=0)
    est.fit(task[0], task[1])

    def reference(lr=lr, n_steps=n_steps):
        n_out = 3 if classification else None
        sliced = _Sliced(net, n_out)
        return _sgd_reference(sliced, X_s, y_s, lr=lr, n_steps=n_steps,
                              classification=classification)

    expected = {k.removeprefix("net."): v for k, v in reference().items()}
    assert set(est.params_) == set(expected)
    for name, value in est.params_.items():
        torch.testing.assert_close(value.double(), expected[name], rtol=0, atol=ATOL)
    # one step more or less, or another step size, is far outside the tolerance
    for other in (reference(n_steps=n_steps + 1), reference(n_steps=n_steps - 1),
                  reference(lr=0.1)):
        other = {k.removeprefix("net."): v for k, v in other.items()}
        assert _max_difference(other, expected) > 100 * ATOL
    outputs = _tanh_net(expected, X_q)
    if classification:
        proba = outputs[:, :3].softmax(-1).numpy()
        np.testing.assert_allclose(est.predict_proba(task[2]), proba, atol=ATOL)
        np.testing.assert_array_equal(est.classes_, ["a", "b", "c"])
        np.testing.assert_array_equal(est.predict(task[2]),
                                      est.classes_[proba.argmax(1)])
    else:
        np.testing.assert_allclose(est.predict(task[2]), outputs[:, 0].numpy(),
                                   atol=ATOL)


class _Sliced(nn.Module):
    """``net`` restricted to its first ``n_outputs`` outputs (all if None)."""

    def __init__(self, net, n_outputs):
        super().__init__()
        self.net = net
        self.n_outputs = n_outputs

    def forward(self, X):
        out = self.net(X)
        return out if self.n_outputs is None else out[:, : self.n_outputs]


def test_fit_of_the_default_mlp_after_meta_fit_starts_from_the_meta_learned_init():
    tasks = _classification_tasks(8, seed=7, labels=(0, 1, 2, 3))
    clf = MAMLClassifier(hidden_layer_sizes=(6,), inner_steps=2, meta_batch_size=4,
                         head_init="meta", n_meta_iter=2, random_state=0
                         ).meta_fit(tasks)
    assert clf.meta_n_outputs_ == 4
    init = _float64(clf.meta_params_)
    task = _classification_tasks(1, seed=8, labels=(30, 10, 20), per_class=4)[0]
    lr, n_steps = 0.23, 4
    clf.set_params(inner_lr=lr, inner_steps=n_steps).fit(task[0], task[1])
    X_s, y_s, X_q, _ = _to_torch(task, True)

    def mlp(params, X):  # the default MLP: Linear -> ReLU -> Linear
        hidden = torch.relu(F.linear(X, params["layers.0.weight"],
                                     params["layers.0.bias"]))
        return F.linear(hidden, params["layers.1.weight"], params["layers.1.bias"])

    params = {k: v.clone().requires_grad_() for k, v in init.items()}
    for _ in range(n_steps):
        loss = F.cross_entropy(mlp(params, X_s)[:, :3], y_s)
        grads = torch.autograd.grad(loss, list(params.values()))
        params = {k: (p - lr * g).detach().requires_grad_()
                  for (k, p), g in zip(params.items(), grads)}
    for name, value in clf.params_.items():
        torch.testing.assert_close(value.double(), params[name].detach(), rtol=0,
                                   atol=ATOL)
    proba = mlp(params, X_q)[:, :3].softmax(-1).detach().numpy()
    np.testing.assert_allclose(clf.predict_proba(task[2]), proba, atol=ATOL)
    # the adapted network is not the init
    assert _max_difference(_float64(clf.params_), init) > 100 * ATOL


# -- dropout: off at prediction, seeded at fit ---------------------------------------

class _DropoutNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = _seeded_net(2, 16, 1, seed=9)
        self.dropout = nn.Dropout(0.5)

    def forward(self, X):
        hidden = self.dropout(self.net[1](self.net[0](X)))
        return self.net[2](hidden)


def test_predict_runs_without_dropout_and_fit_is_seeded():
    X_s, y_s, X_q, _ = _regression_tasks(1, seed=10, n_query=20)[0]
    reg = MAMLRegressor(_DropoutNet, inner_lr=0.05, inner_steps=3, random_state=0)
    reg.fit(X_s, y_s)
    params = {k.removeprefix("net."): v.double() for k, v in reg.params_.items()}
    expected = _tanh_net(params, torch.from_numpy(X_q))[:, 0].numpy()
    np.testing.assert_allclose(reg.predict(X_q), expected, atol=ATOL)
    np.testing.assert_array_equal(reg.predict(X_q), reg.predict(X_q))
    again = clone(reg).fit(X_s, y_s)
    for name, value in reg.params_.items():
        assert torch.equal(value, again.params_[name])


# -- validation adapts as fit does ---------------------------------------------------

def test_validation_adapts_with_inner_steps_as_fit_does_not_meta_inner_steps():
    train = _regression_tasks(8, seed=15)
    valid = _regression_tasks(4, seed=16)
    reg = MAMLRegressor(hidden_layer_sizes=(8,), inner_lr=0.1, inner_steps=6,
                        meta_inner_steps=1, meta_batch_size=4, n_meta_iter=4,
                        validation_interval=2, random_state=0)
    reg.meta_fit(train, validation_tasks=valid)

    def after_fit(inner_steps):
        est = clone(reg).set_params(inner_steps=inner_steps)
        losses, scores = [], []
        for X_s, y_s, X_q, y_q in valid:
            est.fit(X_s, y_s)
            losses.append(np.mean((est.predict(X_q) - y_q) ** 2))
            scores.append(est.score(X_q, y_q))
        return np.mean(losses), np.mean(scores)

    loss, score = after_fit(6)
    assert reg.validation_scores_[-1] == pytest.approx(score, abs=1e-5)
    assert reg.history_[-1]["valid_loss"] == pytest.approx(loss, rel=1e-5)
    # one step (meta_inner_steps) gives clearly different numbers
    assert abs(after_fit(1)[1] - score) > 1e-2


# -- a failed meta_fit keeps nothing of its work -------------------------------------

class _FailingList(list):
    """Tasks whose ``at``-th access raises ``error`` (a crash, or Ctrl-C)."""

    def __init__(self, tasks, at, error):
        super().__init__(tasks)
        self.accesses, self.at, self.error = 0, at, error

    def __getitem__(self, index):
        self.accesses += 1
        if self.accesses == self.at:
            raise self.error
        return super().__getitem__(index)


@pytest.mark.parametrize("method", ["meta_fit", "meta_partial_fit"])
@pytest.mark.parametrize("failure", ["bad-task", "crash", "warning-as-error"])
def test_a_failed_meta_fit_leaves_a_fitted_estimator_exactly_as_it_was(method,
                                                                       failure):
    tasks = _classification_tasks(12, seed=11)
    clf = MAMLClassifier(hidden_layer_sizes=(8,), meta_batch_size=4, n_meta_iter=3,
                         random_state=0).meta_fit(tasks[:8])
    clf.fit(tasks[0][0], tasks[0][1])
    proba = clf.predict_proba(tasks[0][2])
    before = dict(clf.__dict__)
    weights = _float64(clf.meta_params_)
    if failure == "bad-task":
        bad = list(tasks)
        bad[9] = (bad[9][0] * np.nan, *bad[9][1:])
        new_tasks, error, match = bad, ValueError, "task 9"
    elif failure == "crash":  # in the third meta-batch
        new_tasks = _FailingList(tasks, 10, RuntimeError("power failure"))
        error, match = RuntimeError, "power failure"
    else:
        # Ctrl-C in the third meta-iteration: the progress is kept, then the
        # warning that says so is raised as an error (python -W error)
        new_tasks = _FailingList(tasks, 10, KeyboardInterrupt())
        error, match = UserWarning, r"interrupted after \d+ meta-iterations"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        with pytest.raises(error, match=match):
            getattr(clf, method)(new_tasks)
    assert clf.__dict__.keys() == before.keys()
    for name, value in clf.__dict__.items():
        assert value is before[name], name
    for name, value in clf.meta_params_.items():
        assert torch.equal(value.double(), weights[name])
    np.testing.assert_array_equal(clf.predict_proba(tasks[0][2]), proba)


# -- checkpoints resume exactly, and are never half written --------------------------

class _DropoutClassifierNet(nn.Module):
    """Dropout makes meta-training draw from torch's random state."""

    def __init__(self):
        super().__init__()
        self.net = _seeded_net(2, 12, 3, seed=12)
        self.dropout = nn.Dropout(0.2)

    def forward(self, X):
        return self.net[2](self.dropout(self.net[1](self.net[0](X))))


def _resumable(**params):
    # Adam: resuming without its moments gives different steps
    defaults = dict(inner_steps=2, meta_batch_size=4, n_meta_iter=8, random_state=0)
    return MAMLClassifier(_DropoutClassifierNet, **{**defaults, **params})


def _load_quietly(path, **kwargs):
    with warnings.catch_warnings():
        # a loaded file does not restore checkpoint_path, and says so
        warnings.simplefilter("ignore", UserWarning)
        return sk_meta.load(path, **kwargs)


def test_a_checkpoint_resumes_bit_identically_in_process(tmp_path):
    # 10 tasks in meta-batches of 4: the list is reshuffled mid-batch, so the
    # position in the stream matters too
    tasks = _classification_tasks(10, seed=13)
    uninterrupted = _resumable().meta_fit(tasks)
    path = tmp_path / "run.pt"
    crashing = _FailingList(tasks, 22, RuntimeError("power failure"))
    clf = _resumable(checkpoint_path=path, checkpoint_every=2)
    with pytest.raises(RuntimeError, match="power failure"):
        clf.meta_fit(crashing)  # in the sixth meta-iteration
    resumed = _load_quietly(path, module=_DropoutClassifierNet)
    assert resumed.n_meta_iter_ == 4
    resumed.set_params(warm_start=True).meta_fit(tasks)
    assert resumed.n_meta_iter_ == 8
    assert resumed.meta_loss_curve_ == uninterrupted.meta_loss_curve_
    for name, value in uninterrupted.meta_params_.items():
        assert torch.equal(resumed.meta_params_[name], value), name
    # the same through save: four, saved, loaded, then four more
    half = _resumable(n_meta_iter=4).meta_fit(tasks)
    half.save(tmp_path / "half.pt")
    loaded = _load_quietly(tmp_path / "half.pt", module=_DropoutClassifierNet)
    loaded.set_params(warm_start=True, n_meta_iter=8).meta_fit(tasks)
    for name, value in uninterrupted.meta_params_.items():
        assert torch.equal(loaded.meta_params_[name], value), name


def test_a_checkpoint_that_fails_while_writing_leaves_the_previous_one(
        tmp_path, monkeypatch):
    tasks = _classification_tasks(8, seed=14)
    path = tmp_path / "run.pt"
    _resumable(n_meta_iter=2, checkpoint_path=path).meta_fit(tasks)
    before = path.read_bytes()

    def failing_save(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)):
            with open(f, "wb") as opened:
                opened.write(b"half a file")
        else:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    # the run goes on, and the estimator keeps it: a checkpoint is a copy
    with pytest.warns(PersistenceWarning, match="checkpoint not written .*disk full"):
        run = _resumable(n_meta_iter=4, checkpoint_path=path,
                         checkpoint_every=1).meta_fit(tasks)
    monkeypatch.undo()
    assert run.n_meta_iter_ == 4
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["run.pt"]
    assert _load_quietly(path, module=_DropoutClassifierNet).n_meta_iter_ == 2
