"""``concat_input``: the default MLP's output layer sees the raw features too.

Checked against hand-written computations: the forward pass, the
prototype head built on ``[X, h(X)]`` and its meta-gradient (float64
autograd unrolled by hand), and the architecture bookkeeping of files.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import sk_meta
from sk_meta import MAMLClassifier, MAMLRegressor, ReptileClassifier
from sk_meta.models import MLP

N_FEATURES, N_HIDDEN, N_WAY = 3, 5, 3
INNER_LR, N_STEPS = 0.4, 2
WEIGHT, BIAS = "layers.1.weight", "layers.1.bias"


def _tasks(n_tasks=2, seed=0):
    rng = np.random.default_rng(seed)
    tasks = []
    for _ in range(n_tasks):
        centres = rng.normal(size=(N_WAY, N_FEATURES))
        y_s = np.repeat(np.arange(N_WAY), 2)
        y_q = np.repeat(np.arange(N_WAY), 3)
        X_s = centres[y_s] + 0.5 * rng.normal(size=(len(y_s), N_FEATURES))
        X_q = centres[y_q] + 0.5 * rng.normal(size=(len(y_q), N_FEATURES))
        tasks.append((X_s.astype(np.float32), y_s, X_q.astype(np.float32), y_q))
    return tasks


def _init():
    torch.manual_seed(0)
    return MLP(N_FEATURES, (N_HIDDEN,), N_WAY, concat_input=True)


def _features(p, X):
    """``[X, relu(W0 X + b0)]``, written out."""
    return torch.cat([X, torch.relu(F.linear(X, p["layers.0.weight"],
                                             p["layers.0.bias"]))], dim=1)


def _logits(p, X):
    return F.linear(_features(p, X), p[WEIGHT], p[BIAS])


def test_the_output_layer_sees_the_inputs_beside_the_last_hidden_layer():
    net = _init()
    assert net.layers[-1].in_features == N_FEATURES + N_HIDDEN
    X = torch.randn(7, N_FEATURES)
    p = dict(net.named_parameters())
    torch.testing.assert_close(net(X), _logits(p, X))
    # the batched forward of meta-training: one parameter set per task
    batched = {k: torch.stack([v, 2 * v]) for k, v in p.items()}
    doubled = {k: 2 * v for k, v in p.items()}
    out = net.forward_batched(batched, torch.stack([X, X]))
    torch.testing.assert_close(out[0], _logits(p, X))
    torch.testing.assert_close(out[1], _logits(doubled, X))
    # without hidden layers there is nothing to concatenate
    assert MLP(N_FEATURES, (), N_WAY, concat_input=True).layers[0].in_features == 3


def test_prototypes_include_the_raw_features():
    """Before any inner step, the adapted model is the nearest-prototype rule
    on ``[X, h(X)]``."""
    X_s, y_s, X_q, _ = _tasks()[0]
    clf = MAMLClassifier(_init(), inner_lr=1e-12, inner_steps=1).fit(X_s, y_s)
    p = {k: v.detach().double() for k, v in _init().named_parameters()}
    support = _features(p, torch.from_numpy(X_s).double())
    centres = torch.stack([support[torch.from_numpy(y_s) == k].mean(0)
                           for k in range(N_WAY)])
    torch.testing.assert_close(clf.params_[WEIGHT].double(), 2 * centres,
                               rtol=1e-5, atol=1e-6)
    query = _features(p, torch.from_numpy(X_q).double())
    nearest = torch.cdist(query, centres).argmin(1).numpy()
    np.testing.assert_array_equal(clf.predict(X_q), nearest)


def test_prototype_meta_gradient_matches_hand_written_autograd():
    tasks = _tasks()
    est = MAMLClassifier(_init(), inner_lr=INNER_LR, inner_steps=N_STEPS,
                         meta_inner_steps=None, meta_batch_size=2, n_meta_iter=1,
                         meta_optimizer="sgd", meta_lr=1.0, random_state=0)
    est.meta_partial_fit(tasks)
    theta = {k: v.detach().double().requires_grad_()
             for k, v in _init().named_parameters()}
    total = 0.0
    for X_s, y_s, X_q, y_q in tasks:
        X_s, X_q = torch.from_numpy(X_s).double(), torch.from_numpy(X_q).double()
        y_s, y_q = torch.from_numpy(y_s), torch.from_numpy(y_q)
        p = {k: v.clone() for k, v in theta.items()}
        support = _features(theta, X_s)
        centres = torch.stack([support[y_s == k].mean(0) for k in range(N_WAY)])
        p[WEIGHT], p[BIAS] = 2 * centres, -(centres**2).sum(1)
        for _ in range(N_STEPS):
            loss = F.cross_entropy(_logits(p, X_s), y_s)
            grads = torch.autograd.grad(loss, list(p.values()), create_graph=True)
            p = {k: v - INNER_LR * g for (k, v), g in zip(p.items(), grads)}
        total = total + F.cross_entropy(_logits(p, X_q), y_q)
    grads = dict(zip(theta, torch.autograd.grad(total / len(tasks),
                                                list(theta.values()),
                                                allow_unused=True)))
    before = dict(_init().named_parameters())
    for name in ("layers.0.weight", "layers.0.bias"):
        step = (before[name].detach() - est.meta_params_[name]).double()
        torch.testing.assert_close(step, grads[name], rtol=2e-4, atol=2e-6)
    # the body's gradient flows through the raw-feature prototypes too: it is
    # not the gradient of the network without them
    assert grads["layers.0.weight"].abs().sum() > 0


@pytest.mark.parametrize("estimator_class", [MAMLClassifier, ReptileClassifier,
                                             MAMLRegressor])
def test_estimators_build_the_default_mlp_with_it(estimator_class):
    tasks = _tasks(4)
    if estimator_class is MAMLRegressor:
        tasks = [(X_s, X_s.sum(1), X_q, X_q.sum(1)) for X_s, _, X_q, _ in tasks]
    est = estimator_class(hidden_layer_sizes=(8,), concat_input=True, n_meta_iter=3,
                          meta_batch_size=2, random_state=0).meta_fit(tasks)
    assert est.module_.layers[-1].in_features == N_FEATURES + 8
    assert est.meta_architecture_["concat_input"] is True
    X_s, y_s, X_q, _ = tasks[0]
    assert est.fit(X_s, y_s).predict(X_q).shape == (len(X_q),)
    plain = estimator_class(hidden_layer_sizes=(8,), n_meta_iter=3, meta_batch_size=2,
                            random_state=0).meta_fit(tasks)
    assert plain.module_.layers[-1].in_features == 8
    assert "concat_input" not in plain.meta_architecture_


def test_changing_it_after_meta_fit_is_refused_and_leaves_the_fit_as_it_was():
    X_s, y_s, X_q, _ = _tasks()[0]
    clf = MAMLClassifier(hidden_layer_sizes=(8,), concat_input=True, n_meta_iter=2,
                         random_state=0).meta_fit(_tasks(4))
    clf.fit(X_s, y_s)
    before = clf.predict_proba(X_q)
    clf.set_params(concat_input=False)
    with pytest.raises(ValueError, match="concat_input: True at meta_fit, now False"):
        clf.fit(X_s, y_s)
    clf.set_params(concat_input=True)
    np.testing.assert_array_equal(clf.predict_proba(X_q), before)


def test_it_is_validated_as_a_boolean():
    with pytest.raises(ValueError, match="concat_input"):
        MAMLClassifier(concat_input="yes").meta_fit(_tasks())


def test_files_without_it_load_as_before(tmp_path):
    """A file written before the option existed has no such parameter and
    an architecture without the key: it loads, fits and predicts as before."""
    tasks = _tasks(4)
    X_s, y_s, X_q, _ = tasks[0]
    clf = MAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=2,
                         random_state=0).meta_fit(tasks)
    path = tmp_path / "old.skmeta"
    clf.save(path)
    state = torch.load(path, weights_only=True)
    assert state["params"].pop("concat_input") is False
    torch.save(state, path)
    loaded = sk_meta.load(path)
    assert loaded.concat_input is False
    np.testing.assert_allclose(loaded.fit(X_s, y_s).predict_proba(X_q),
                               clf.fit(X_s, y_s).predict_proba(X_q), rtol=1e-6)


def test_a_custom_module_with_it_is_refused_clearly():
    # it would be ignored silently: the option belongs to the default MLP
    for module in (MLP(N_FEATURES, (4,), N_WAY), MLP):
        clf = MAMLClassifier(module, module_params=None if module is not MLP else
                             {"n_features": N_FEATURES, "n_outputs": N_WAY},
                             concat_input=True, n_meta_iter=1)
        with pytest.raises(ValueError, match="concat_input=True applies to the "
                                             "default MLP only"):
            clf.meta_fit(_tasks())
        with pytest.raises(ValueError, match="default MLP only"):
            clf.fit(*_tasks()[0][:2])


def test_save_load_and_pickle_keep_it(tmp_path):
    import pickle

    tasks = _tasks(4)
    X_s, y_s, X_q, _ = tasks[0]
    clf = MAMLClassifier(hidden_layer_sizes=(8,), concat_input=True, n_meta_iter=2,
                         random_state=0).meta_fit(tasks)
    expected = clf.fit(X_s, y_s).predict_proba(X_q)
    clf.save(tmp_path / "m.skmeta")
    for copy in (sk_meta.load(tmp_path / "m.skmeta"), pickle.loads(pickle.dumps(clf))):
        assert copy.concat_input is True
        np.testing.assert_allclose(copy.fit(X_s, y_s).predict_proba(X_q), expected,
                                   rtol=1e-6)
