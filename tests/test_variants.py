"""The MAML variants against independent computations.

ProtoMAML and the zeroing trick (``head_init``), ANIL (``adapt_layers``),
learned inner learning rates (``inner_lr_mode``: MAML++ and Meta-SGD),
MAML++'s multi-step loss and the raw features beside the last hidden layer
(``concat_input``) are checked through the estimators' public API:
one meta-iteration of outer SGD with ``meta_lr=1`` moves the init by minus
the meta-gradient, which is compared with the papers' formulas written out
here task by task with plain float64 autograd (no code shared with
``sk_meta``).
"""

import copy
import functools
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.base import clone

import sk_meta
from sk_meta import (
    FOMAMLClassifier,
    FOMAMLRegressor,
    MAMLClassifier,
    MAMLRegressor,
    ReptileClassifier,
    ReptileRegressor,
)
from sk_meta.exceptions import DivergenceError
from sk_meta.functional import (
    adapt,
    batched_forward,
    cross_entropy_loss,
    expand_params,
    mse_loss,
)
from sk_meta.functional._losses import cross_entropy_of_valid_codes, task_losses
from sk_meta.models import MLP
from sk_meta.tasks import EpisodeSampler

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


def _init(concat_input=False):
    torch.manual_seed(0)
    return MLP(N_FEATURES, (N_HIDDEN,), N_WAY, concat_input=concat_input)


def _features(p, X):
    """The output layer's inputs: ``relu(W0 X + b0)``, after ``X`` when the
    output layer is wider than the hidden layer (``concat_input``)."""
    hidden = torch.relu(F.linear(X, p["layers.0.weight"], p["layers.0.bias"]))
    if p[WEIGHT].shape[1] == N_FEATURES + N_HIDDEN:
        return torch.cat([X, hidden], dim=-1)
    return hidden


def _logits(p, X):
    return F.linear(_features(p, X), p[WEIGHT], p[BIAS])


def _prototype_head(p, X, y):
    features = _features(p, X)
    centres = torch.stack([features[y == k].mean(0) for k in range(N_WAY)])
    return 2 * centres, -(centres**2).sum(1)


def _reference(tasks, *, head=None, adapt=None, rates=None, step_weights=None,
               first_order=False, concat_input=False):
    """Mean meta-loss gradient over tasks, the papers' way, in float64.

    ``head(p, X, y)`` gives each task's starting output layer (None: θ's);
    ``adapt`` names the parameters the inner steps change (None: all);
    ``rates(name, step)`` the inner rate (a tensor in the graph);
    ``step_weights`` MAML++'s per-step query-loss weights; ``concat_input``
    the network of :func:`_init`.
    """
    theta = {k: v.detach().double().requires_grad_() for k, v in
             _init(concat_input).named_parameters()}
    total = 0.0
    for X_s, y_s, X_q, y_q in tasks:
        X_s, X_q = torch.from_numpy(X_s).double(), torch.from_numpy(X_q).double()
        y_s, y_q = torch.from_numpy(y_s), torch.from_numpy(y_q)
        # the inner loop's own variables: its gradients with respect to the
        # body must not flow back through a head computed from θ
        p = {k: v.clone() for k, v in theta.items()}
        if head is not None:
            p[WEIGHT], p[BIAS] = head(theta, X_s, y_s)
        names = list(p) if adapt is None else adapt
        query_losses = []
        for step in range(N_STEPS):
            loss = F.cross_entropy(_logits(p, X_s), y_s)
            grads = torch.autograd.grad(loss, [p[n] for n in names],
                                        create_graph=not first_order,
                                        retain_graph=True)
            for name, g in zip(names, grads):
                if first_order:
                    g = g.detach()
                rate = INNER_LR if rates is None else rates(name, step)
                p[name] = p[name] - rate * g
            query_losses.append(F.cross_entropy(_logits(p, X_q), y_q))
        if step_weights is None:
            total = total + query_losses[-1]
        else:
            total = total + sum(w * q for w, q in zip(step_weights, query_losses))
    return theta, total / len(tasks)


def _one_step(concat_input=False, **params):
    """An estimator after one meta-iteration of outer SGD with rate 1."""
    defaults = dict(inner_lr=INNER_LR, inner_steps=N_STEPS, meta_batch_size=2,
                    n_meta_iter=1, meta_optimizer="sgd", meta_lr=1.0,
                    meta_inner_steps=None, head_init="meta", random_state=0,
                    # the tasks and the step as the reference sees them
                    task_interpolation=0.0, meta_grad_max_norm=None)
    estimator_class = params.pop("estimator_class", MAMLClassifier)
    est = estimator_class(_init(concat_input), **{**defaults, **params})
    return est.meta_partial_fit(_tasks())


def _assert_step_is_minus_gradient(est, theta, loss, ignore=(), also=(),
                                   concat_input=False):
    """Check the init's step; return the gradients with respect to ``also``."""
    all_grads = torch.autograd.grad(loss, [*theta.values(), *also],
                                    allow_unused=True)
    grads = dict(zip(theta, all_grads))
    before = dict(_init(concat_input).named_parameters())
    for name, value in est.meta_params_.items():
        step = (before[name].detach() - value).double()
        expected = grads[name] if grads[name] is not None else torch.zeros_like(step)
        if name in ignore:
            expected = torch.zeros_like(step)
        torch.testing.assert_close(step, expected, rtol=2e-4, atol=2e-6)
    return all_grads[len(theta):]


@pytest.mark.parametrize("first_order", [False, True])
def test_prototype_head_and_its_meta_gradient_match_hand_written_autograd(first_order):
    # prototype_scale=1.0: the paper's head, w_k = 2 c_k, b_k = -||c_k||²
    est = _one_step(head_init="prototype", prototype_scale=1.0,
                    estimator_class=FOMAMLClassifier if first_order else MAMLClassifier)
    theta, loss = _reference(_tasks(), head=_prototype_head, first_order=first_order)
    # the output layer starts from the prototypes: θ's own is not used
    _assert_step_is_minus_gradient(est, theta, loss, ignore=(WEIGHT, BIAS))
    # the body's meta-gradient flows through the prototypes
    body = est.meta_params_["layers.0.weight"]
    assert not torch.equal(body, _init().layers[0].weight)


def test_prototype_head_starts_as_a_nearest_prototype_classifier():
    """Before any inner step, the adapted model is the nearest-prototype rule."""
    X_s, y_s, X_q, y_q = _tasks()[0]
    clf = MAMLClassifier(_init(), head_init="prototype", inner_lr=1e-12,
                         inner_steps=1).fit(X_s, y_s)
    p = {k: v.detach().double() for k, v in _init().named_parameters()}
    support = _features(p, torch.from_numpy(X_s).double())
    query = _features(p, torch.from_numpy(X_q).double())
    centres = torch.stack([support[torch.from_numpy(y_s) == k].mean(0)
                           for k in range(N_WAY)])
    nearest = torch.cdist(query, centres).argmin(1).numpy()
    np.testing.assert_array_equal(clf.predict(X_q), nearest)


def _scaled_prototype_head(scale):
    def head(p, X, y):
        weight, bias = _prototype_head(p, X, y)
        return scale * weight, scale * bias
    return head


@pytest.mark.parametrize("first_order", [False, True])
def test_scaled_prototype_head_and_its_meta_gradient_match_hand_written_autograd(
        first_order):
    est = _one_step(head_init="prototype", prototype_scale=0.3,
                    estimator_class=FOMAMLClassifier if first_order else MAMLClassifier)
    theta, loss = _reference(_tasks(), head=_scaled_prototype_head(0.3),
                             first_order=first_order)
    _assert_step_is_minus_gradient(est, theta, loss, ignore=(WEIGHT, BIAS))
    # the scale changes the meta-gradient: the check above can tell them apart
    _, unscaled = _reference(_tasks(), head=_prototype_head, first_order=first_order)
    assert not torch.isclose(loss, unscaled, rtol=1e-3)


def test_scaled_prototype_head_starts_from_scaled_prototype_logits():
    """Before any inner step, the probabilities are a softmax of
    ``-prototype_scale * ||f - c_k||²``."""
    X_s, y_s, X_q, _ = _tasks()[0]
    p = {k: v.detach().double() for k, v in _init().named_parameters()}
    support = _features(p, torch.from_numpy(X_s).double())
    query = _features(p, torch.from_numpy(X_q).double())
    centres = torch.stack([support[torch.from_numpy(y_s) == k].mean(0)
                           for k in range(N_WAY)])
    for scale in (1.0, 0.1, 4.0):
        clf = MAMLClassifier(_init(), head_init="prototype", inner_lr=1e-12,
                             inner_steps=1, prototype_scale=scale).fit(X_s, y_s)
        expected = torch.softmax(-scale * torch.cdist(query, centres).square(), 1)
        np.testing.assert_allclose(clf.predict_proba(X_q), expected.numpy(),
                                   rtol=1e-4, atol=1e-6)


def test_prototype_scale_survives_clone_pickle_and_save(tmp_path):
    tasks = _tasks(4)
    X_s, y_s, X_q, _ = tasks[0]
    clf = MAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=2, prototype_scale=0.2,
                         random_state=0).meta_fit(tasks)
    expected = clf.fit(X_s, y_s).predict_proba(X_q)
    clf.save(tmp_path / "scaled.skmeta")
    for other in (sk_meta.load(tmp_path / "scaled.skmeta"),
                  pickle.loads(pickle.dumps(clf))):
        assert other.prototype_scale == 0.2
        np.testing.assert_allclose(other.fit(X_s, y_s).predict_proba(X_q), expected,
                                   rtol=1e-6)
    assert clone(clf).prototype_scale == 0.2
    # and it is used: the same init at scale 1 predicts otherwise
    unscaled = clf.set_params(prototype_scale=1.0).fit(X_s, y_s).predict_proba(X_q)
    assert not np.allclose(unscaled, expected, atol=1e-3)


def test_a_divergence_from_a_large_prototype_scale_names_it():
    X_s, y_s, X_q, _ = _tasks()[0]
    clf = MAMLClassifier(_init(), head_init="prototype", inner_steps=2).fit(X_s, y_s)
    before = clf.predict_proba(X_q)
    clf.set_params(prototype_scale=1e30)
    with pytest.raises(DivergenceError, match=r"prototype_scale \(now 1e\+30\)"):
        clf.fit(X_s, y_s)
    np.testing.assert_array_equal(clf.set_params(prototype_scale=1.0)
                                  .predict_proba(X_q), before)


def test_a_meta_training_divergence_from_a_large_prototype_scale_names_it():
    clf = MAMLClassifier(_init(), n_meta_iter=2,
                         meta_batch_size=2, inner_steps=2, inner_lr=1e-8,
                         meta_lr=1e-8, prototype_scale=1e20, random_state=0)
    with pytest.raises(DivergenceError,
                       match=r"lower meta_lr or inner_lr, or prototype_scale "
                             r"\(now 1e\+20\)\."):
        clf.meta_fit(_tasks())
    with pytest.raises(DivergenceError, match=r"lower meta_lr or inner_lr\.$"):
        clf.set_params(prototype_scale=1.0, meta_lr=1e30).meta_fit(_tasks())


@pytest.mark.parametrize("value", [0, -0.5, "small", None])
def test_prototype_scale_must_be_a_positive_number(value):
    with pytest.raises(ValueError, match="prototype_scale"):
        MAMLClassifier(prototype_scale=value).meta_fit(_tasks())


def test_zero_head_equals_a_hand_zeroed_output_layer():
    est = _one_step(head_init="zero")

    def zeros(theta, X, y):
        return (torch.zeros_like(theta[WEIGHT]).requires_grad_(),
                torch.zeros_like(theta[BIAS]).requires_grad_())

    theta, loss = _reference(_tasks(), head=zeros)
    _assert_step_is_minus_gradient(est, theta, loss, ignore=(WEIGHT, BIAS))


def test_zero_head_makes_predictions_invariant_to_the_label_order():
    X_s, y_s, X_q, _ = _tasks()[0]
    est = MAMLClassifier(_init(), head_init="zero", inner_steps=3)
    relabel = np.array([2, 0, 1])
    original = est.fit(X_s, y_s).predict(X_q)
    permuted = est.fit(X_s, relabel[y_s]).predict(X_q)
    np.testing.assert_array_equal(relabel[original], permuted)


def test_anil_equals_maml_with_the_body_frozen_in_the_inner_loop():
    est = _one_step(adapt_layers="head")
    theta, loss = _reference(_tasks(), adapt=[WEIGHT, BIAS])
    _assert_step_is_minus_gradient(est, theta, loss)


def test_anil_fit_changes_only_the_output_layer():
    X_s, y_s, _, _ = _tasks()[0]
    clf = MAMLClassifier(_init(), adapt_layers="head", inner_steps=3).fit(X_s, y_s)
    init = dict(_init().named_parameters())
    for name, value in clf.params_.items():
        same = torch.equal(value, init[name].detach())
        assert same == (name not in (WEIGHT, BIAS)), name


@pytest.mark.parametrize("mode", ["per_parameter", "per_layer_step"])
def test_learned_inner_rates_match_an_unrolled_loop(mode):
    est = _one_step(inner_lr_mode=mode)
    shapes = {k: v.shape for k, v in _init().named_parameters()}
    start = {name: torch.full(shapes[name] if mode == "per_parameter" else (N_STEPS,),
                              INNER_LR, dtype=torch.float64, requires_grad=True)
             for name in shapes}

    def rates(name, step):
        return start[name] if mode == "per_parameter" else start[name][step]

    theta, loss = _reference(_tasks(), rates=rates)
    rate_grads = _assert_step_is_minus_gradient(est, theta, loss,
                                                also=list(start.values()))
    for (name, rate), grad in zip(start.items(), rate_grads):
        torch.testing.assert_close(est.inner_lrs_[name].double(),
                                   (rate - grad).detach(), rtol=2e-4, atol=2e-6)


@pytest.mark.parametrize("factor", [0.25, 2.0], ids=["clipped", "under the bound"])
@pytest.mark.parametrize("mode", ["fixed", "per_parameter"])
def test_meta_grad_max_norm_scales_the_meta_gradient_down_to_it(mode, factor):
    """The outer step is the hand-written meta-gradient, init and learned
    rates together, scaled down to norm ``meta_grad_max_norm`` when longer."""
    shapes = {k: v.shape for k, v in _init().named_parameters()}
    start = {name: torch.full(shapes[name], INNER_LR, dtype=torch.float64,
                              requires_grad=True) for name in shapes}
    learned = mode != "fixed"
    theta, loss = _reference(_tasks(), rates=(lambda name, step: start[name])
                             if learned else None)
    variables = [*theta.values(), *(start.values() if learned else ())]
    grads = torch.autograd.grad(loss, variables)
    norm = torch.sqrt(sum((g**2).sum() for g in grads))
    max_norm = factor * float(norm)
    est = _one_step(inner_lr_mode=mode, meta_grad_max_norm=max_norm)
    scale = min(1.0, max_norm / float(norm))
    before = dict(_init().named_parameters())
    for name, grad in zip(theta, grads):
        step = (before[name].detach() - est.meta_params_[name]).double()
        torch.testing.assert_close(step, scale * grad, rtol=2e-4, atol=2e-6)
    for name, grad in zip(start, grads[len(theta):]):
        torch.testing.assert_close(est.inner_lrs_[name].double(),
                                   (start[name] - scale * grad).detach(),
                                   rtol=2e-4, atol=2e-6)


def test_meta_grad_max_norm_bounds_reptiles_outer_step():
    tasks = _tasks()
    params = dict(meta_batch_size=2, n_meta_iter=1, meta_optimizer="sgd", meta_lr=1.0,
                  inner_steps=N_STEPS, random_state=0)
    before = {k: v.detach() for k, v in _init().named_parameters()}
    free = ReptileClassifier(_init(), meta_grad_max_norm=None,
                             **params).meta_partial_fit(tasks)
    steps = {k: before[k] - v for k, v in free.meta_params_.items()}
    norm = float(torch.sqrt(sum((s**2).sum() for s in steps.values())))
    bounded = ReptileClassifier(_init(), meta_grad_max_norm=norm / 3,
                                **params).meta_partial_fit(tasks)
    for name, step in steps.items():
        torch.testing.assert_close(before[name] - bounded.meta_params_[name],
                                   step / 3, rtol=1e-4, atol=1e-6)


# parameters whose default changed, and the value older models were trained with
@pytest.mark.parametrize("estimator_class, name, old_value", [
    (MAMLClassifier, "head_init", "meta"),
    (MAMLClassifier, "meta_grad_max_norm", None),
    (ReptileClassifier, "meta_grad_max_norm", None),
    (ReptileClassifier, "backtracking", False),
    (MAMLClassifier, "prototype_scale", 1.0),
    (MAMLClassifier, "task_interpolation", 0.0)])
def test_files_and_pickles_without_a_parameter_keep_its_old_behaviour(
        tmp_path, estimator_class, name, old_value):
    """Written before a parameter whose default changed existed, a model was
    meta-trained (and adapted) the old way: a file or pickle without it loads
    with the old value (a warm start continues the same way); with it, the
    value it has."""
    clf = estimator_class(hidden_layer_sizes=(8,), n_meta_iter=2, meta_batch_size=2,
                          random_state=0).meta_fit(_tasks(4))
    default = clf.get_params()[name]
    assert default != old_value
    path = tmp_path / "old.skmeta"
    clf.save(path)
    state = torch.load(path, weights_only=True)
    assert state["params"].pop(name) == default
    torch.save(state, path)
    assert sk_meta.load(path).get_params()[name] == old_value
    old = copy.deepcopy(clf)
    del old.__dict__[name]
    assert pickle.loads(pickle.dumps(old)).get_params()[name] == old_value
    assert pickle.loads(pickle.dumps(clf)).get_params()[name] == default
    clf.save(path)
    assert sk_meta.load(path).get_params()[name] == default


@pytest.mark.parametrize("value", [0, -1.0, "1"])
def test_meta_grad_max_norm_must_be_a_positive_number(value):
    for estimator in (MAMLClassifier(meta_grad_max_norm=value),
                      ReptileClassifier(meta_grad_max_norm=value)):
        with pytest.raises(ValueError, match="'meta_grad_max_norm' parameter"):
            estimator.meta_fit(_tasks())


def test_multi_step_loss_weights_every_step_at_the_start():
    est = _one_step(multi_step_loss=True)
    # at the first meta-iteration MAML++'s weights are uniform
    theta, loss = _reference(_tasks(), step_weights=[1 / N_STEPS] * N_STEPS)
    _assert_step_is_minus_gradient(est, theta, loss)


def test_multi_step_loss_once_annealed_is_plain_maml():
    """After the first tenth of training only the last step's query loss
    counts (MAML++), so the meta-step is plain MAML's from the same init."""
    est = _one_step(multi_step_loss=True)
    after_first = copy.deepcopy(est.module_)
    est.meta_partial_fit(_tasks())  # progress 1/1: annealed
    plain = MAMLClassifier(after_first, inner_lr=INNER_LR, inner_steps=N_STEPS,
                           meta_inner_steps=None, meta_batch_size=2, n_meta_iter=1,
                           meta_optimizer="sgd", meta_lr=1.0, head_init="meta",
                           task_interpolation=0.0, meta_grad_max_norm=None,
                           random_state=0).meta_partial_fit(_tasks())
    for name, value in est.meta_params_.items():
        torch.testing.assert_close(value, plain.meta_params_[name])


def test_multi_step_loss_weights_follow_maml_plus_plus():
    from sk_meta._inner_loop import multi_step_weights

    def maml_plus_plus(n_steps, epoch, n_epochs):  # its own code, transcribed
        weights = np.ones(n_steps) * (1.0 / n_steps)
        decay = 1.0 / n_steps / n_epochs
        floor = 0.03 / n_steps
        for i in range(n_steps - 1):
            weights[i] = np.maximum(weights[i] - epoch * decay, floor)
        weights[-1] = np.minimum(weights[-1] + epoch * (n_steps - 1) * decay,
                                 1.0 - (n_steps - 1) * floor)
        return weights

    for epoch in range(10):
        np.testing.assert_allclose(multi_step_weights(5, epoch / 100).numpy(),
                                   maml_plus_plus(5, epoch, 10), rtol=1e-6)
    np.testing.assert_array_equal(multi_step_weights(5, 0.5).numpy(),
                                  [0, 0, 0, 0, 1])


def test_variants_combine():
    est = _one_step(head_init="prototype", prototype_scale=1.0, adapt_layers="head",
                    inner_lr_mode="per_parameter", multi_step_loss=True)
    shapes = {k: v.shape for k, v in _init().named_parameters()}
    start = {name: torch.full(shapes[name], INNER_LR, dtype=torch.float64,
                              requires_grad=True) for name in (WEIGHT, BIAS)}
    theta, loss = _reference(_tasks(), head=_prototype_head, adapt=[WEIGHT, BIAS],
                             rates=lambda name, step: start[name],
                             step_weights=[1 / N_STEPS] * N_STEPS)
    _assert_step_is_minus_gradient(est, theta, loss, ignore=(WEIGHT, BIAS))
    assert set(est.inner_lrs_) == {WEIGHT, BIAS}


# -- learned rates in fit, clone, pickle and save --------------------------------------

def _gaussian_tasks():
    """3-way 2-shot tasks of six Gaussian classes in four features."""
    return EpisodeSampler(
        np.random.default_rng(0).normal(size=(90, 4)), np.repeat(np.arange(6), 15),
        n_way=3, k_shot=2, n_query=3, random_state=0)


def _with_learned_rates(mode="per_parameter"):
    digits_like = _gaussian_tasks()
    return MAMLClassifier(hidden_layer_sizes=(6,), inner_lr_mode=mode,
                          head_init="meta", meta_lr=0.05, n_meta_iter=3, random_state=0
                          ).meta_fit(digits_like), digits_like.sample(0)


def _support_loss(p, X, y):
    logits = F.linear(torch.relu(F.linear(X, p["layers.0.weight"], p["layers.0.bias"])),
                      p[WEIGHT], p[BIAS])
    return F.cross_entropy(logits[:, :3], y)


def _fit_by_hand(clf, task, fixed=False, n_learned=None):
    """``clf.inner_steps`` steps in float64 with the learned rates: step ``t``
    of the ``meta_inner_steps`` meta-training ones takes its rate as learned,
    a later step the last rate floored at zero (``fixed``: ``inner_lr`` at
    every step; ``n_learned``: the meta-training steps when they are not
    ``meta_inner_steps``). Returns the parameters and the support loss before
    each step."""
    n_learned = n_learned or clf.meta_inner_steps
    p = {k: v.detach().clone().double().requires_grad_()
         for k, v in clf.meta_params_.items()}
    X = torch.from_numpy(task.X_support).double()
    y = torch.from_numpy(np.searchsorted(clf.classes_, task.y_support))
    losses = []
    for step in range(clf.inner_steps):
        loss = _support_loss(p, X, y)
        losses.append(float(loss.detach()))
        grads = torch.autograd.grad(loss, list(p.values()))
        rates = {name: torch.tensor(clf.inner_lr, dtype=torch.float64)
                 for name in p} if fixed else {}
        for name, rate in ({} if fixed else clf.inner_lrs_).items():
            rate = rate.double()
            if clf.inner_lr_mode == "per_layer_step":
                rate = rate[min(step, len(rate) - 1)]
            rates[name] = rate if step < n_learned else rate.clamp_min(0)
        p = {k: (v - rates[k] * g).detach().requires_grad_()
             for (k, v), g in zip(p.items(), grads)}
    return p, losses


@pytest.mark.parametrize("mode", ["per_parameter", "per_layer_step"])
def test_fit_uses_the_learned_rates(mode):
    clf, task = _with_learned_rates(mode)
    assert clf.inner_steps > clf.meta_inner_steps  # the defaults: 20 and 5
    clf.fit(task.X_support, task.y_support)
    expected, _ = _fit_by_hand(clf, task)
    for name, value in clf.params_.items():
        torch.testing.assert_close(value.double(), expected[name].detach(), rtol=1e-4,
                                   atol=1e-6)


@pytest.mark.parametrize("mode", ["per_parameter", "per_layer_step"])
def test_steps_beyond_meta_training_never_ascend_on_negative_learned_rates(mode):
    """Meta-training may drive learned rates below zero (the init then uses
    steps that ascend the support loss); ``fit``'s extra steps floor them."""
    clf, task = _with_learned_rates(mode)
    clf._meta.inner_lrs = {name: -0.5 * rate.abs() - 0.01
                           for name, rate in clf.inner_lrs_.items()}
    for inner_steps in (clf.meta_inner_steps, clf.meta_inner_steps + 15):
        clf.set_params(inner_steps=inner_steps).fit(task.X_support, task.y_support)
        expected, losses = _fit_by_hand(clf, task)
        for name, value in clf.params_.items():
            torch.testing.assert_close(value.double(), expected[name].detach(),
                                       rtol=1e-4, atol=1e-6)
    # the meta-training steps ascend as learned; the later ones change nothing
    assert losses[clf.meta_inner_steps - 1] > losses[0]
    assert losses[-1] == pytest.approx(losses[clf.meta_inner_steps], rel=1e-9)


def test_steps_beyond_meta_training_keep_descending_on_positive_learned_rates():
    clf, task = _with_learned_rates("per_layer_step")
    clf._meta.inner_lrs = {name: rate.abs() for name, rate in clf.inner_lrs_.items()}
    clf.set_params(inner_steps=clf.meta_inner_steps + 15).fit(task.X_support,
                                                              task.y_support)
    expected, losses = _fit_by_hand(clf, task)
    for name, value in clf.params_.items():
        torch.testing.assert_close(value.double(), expected[name].detach(), rtol=1e-4,
                                   atol=1e-6)
    assert losses[-1] < losses[clf.meta_inner_steps]


@pytest.mark.parametrize("mode", ["per_parameter", "per_layer_step"])
def test_fixed_mode_after_learned_rates_adapts_with_inner_lr_alone(mode):
    clf, task = _with_learned_rates(mode)
    clf.set_params(inner_lr_mode="fixed").fit(task.X_support, task.y_support)
    expected, _ = _fit_by_hand(clf, task, fixed=True)
    for name, value in clf.params_.items():
        torch.testing.assert_close(value.double(), expected[name].detach(), rtol=1e-4,
                                   atol=1e-6)


def _state(clf, task):
    return (clf.n_meta_iter_, {k: v.clone() for k, v in clf.inner_lrs_.items()},
            clf.predict_proba(task.X_query))


@pytest.mark.parametrize("learned, changed, message", [
    ({"inner_lr_mode": "per_parameter"}, {"inner_lr_mode": "per_layer_step"},
     "learned with inner_lr_mode='per_parameter'"),
    ({"inner_lr_mode": "per_layer_step"}, {"inner_lr_mode": "per_parameter"},
     "learned with inner_lr_mode='per_layer_step'"),
    ({"inner_lr_mode": "per_layer_step", "adapt_layers": "head"},
     {"adapt_layers": "all"}, "'layers.0.weight', which has no learned rate"),
    ({"inner_lr_mode": "per_parameter", "adapt_layers": "head"},
     {"adapt_layers": "all"}, "'layers.0.weight', which has no learned rate"),
])
def test_rates_learned_for_other_settings_are_refused_and_keep_the_fit(
        learned, changed, message):
    clf, task = _with_learned_rates(learned["inner_lr_mode"])
    if "adapt_layers" in learned:
        clf = clone(clf).set_params(**learned).meta_fit(
            [task] * 3).fit(task.X_support, task.y_support)
    else:
        clf.fit(task.X_support, task.y_support)
    before = _state(clf, task)
    clf.set_params(**changed)
    with pytest.raises(ValueError, match=message):
        clf.fit(task.X_support, task.y_support)
    with pytest.raises(ValueError, match=message):
        clf.set_params(warm_start=True, n_meta_iter=5).meta_fit([task] * 3)
    clf.set_params(**{k: learned.get(k, v) for k, v in changed.items()})
    after = _state(clf, task)
    assert after[0] == before[0]
    for name, rate in before[1].items():
        assert torch.equal(after[1][name], rate)
    np.testing.assert_array_equal(after[2], before[2])


@pytest.mark.parametrize("mode, changed, message", [
    ("per_layer_step", {"inner_lr_mode": "fixed"}, "meta-trained with learned rates"),
    ("per_parameter", {"inner_lr_mode": "fixed"}, "meta-trained with learned rates"),
    ("fixed", {"inner_lr_mode": "per_layer_step"}, "meta-trained with fixed rates"),
    ("per_layer_step", {"meta_inner_steps": 8}, "take 8 inner steps .* learned for 5"),
])
@pytest.mark.parametrize("more", [3, 0], ids=["more iterations", "budget spent"])
def test_meta_training_cannot_continue_with_other_rates(mode, changed, message, more):
    # refused also by a call with no iteration left to run, as the next
    # call that trains would be
    clf, task = _with_learned_rates(mode)
    n_meta_iter = clf.n_meta_iter_
    clf.set_params(warm_start=True, n_meta_iter=n_meta_iter + more, **changed)
    with pytest.raises(ValueError, match=message):
        clf.meta_fit([task] * 3)
    assert clf.n_meta_iter_ == n_meta_iter
    clf.fit(task.X_support, task.y_support)  # fit takes the changed setting


def test_per_parameter_steps_beyond_meta_training_floor_with_meta_inner_steps_none():
    # meta_inner_steps=None: meta-training took inner_steps (2) steps; a
    # larger inner_steps at fit must not move where the floor starts
    clf, task = _with_learned_rates("per_parameter")
    clf = clone(clf).set_params(meta_inner_steps=None, inner_steps=2).meta_fit(
        [task] * 3)
    clf._meta.inner_lrs = {name: -0.5 * rate.abs() - 0.01
                           for name, rate in clf.inner_lrs_.items()}
    clf.set_params(inner_steps=12).fit(task.X_support, task.y_support)
    expected, losses = _fit_by_hand(clf, task, n_learned=2)
    for name, value in clf.params_.items():
        torch.testing.assert_close(value.double(), expected[name].detach(), rtol=1e-4,
                                   atol=1e-6)
    assert losses[-1] == pytest.approx(losses[2], rel=1e-9)


def test_a_refused_warm_start_draws_no_task_from_an_iterator():
    clf, task = _with_learned_rates("per_layer_step")
    tasks = iter([task] * 40)
    clf.set_params(warm_start=True, n_meta_iter=5, inner_lr_mode="per_parameter")
    with pytest.raises(ValueError, match="learned with inner_lr_mode"):
        clf.meta_fit(tasks)
    assert len(list(tasks)) == 40


def test_a_changed_inner_lr_scales_learned_rates_in_continued_meta_training():
    template = _with_learned_rates()[0]  # only for its settings
    tasks = [t for _, t in zip(range(6), _gaussian_tasks())]
    clf = clone(template).set_params(inner_steps=5, validation_interval=1).meta_fit(
        tasks, validation_tasks=tasks)
    clf.set_params(inner_lr=clf.inner_lr * 4, warm_start=True, n_meta_iter=4).meta_fit(
        tasks, validation_tasks=tasks)
    # validation after the last meta-iteration adapts as fit does from the init
    by_fit = np.mean([clf.fit(t.X_support, t.y_support).score(t.X_query, t.y_query)
                      for t in tasks])
    assert clf.validation_scores_[-1] == pytest.approx(by_fit)


class _Scales(torch.nn.Module):
    """Only 1-D parameters: the rates' shapes cannot tell the two modes apart."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.full((4,), 0.5))
        self.bias = torch.nn.Parameter(torch.zeros(4))

    def forward(self, X):
        return X * self.weight + self.bias


def test_the_learned_mode_is_recorded_where_shapes_cannot_tell_it(tmp_path):
    digits_like = _gaussian_tasks()
    clf = MAMLClassifier(module=_Scales(), inner_lr_mode="per_layer_step",
                         meta_inner_steps=4, head_init="meta", n_meta_iter=3,
                         random_state=0).meta_fit(digits_like)
    task = digits_like.sample(0)
    clf.save(tmp_path / "scales.pt")
    loaded = sk_meta.load(tmp_path / "scales.pt", module=_Scales())
    for copy_ in (clf, pickle.loads(pickle.dumps(clf)), loaded):
        copy_.set_params(inner_lr_mode="per_parameter")
        with pytest.raises(ValueError,
                           match="learned with inner_lr_mode='per_layer_step'"):
            copy_.fit(task.X_support, task.y_support)


class _Tempered(torch.nn.Module):
    """A scalar parameter first: its per-parameter rate has no dimension."""

    def __init__(self):
        super().__init__()
        self.temperature = torch.nn.Parameter(torch.tensor(1.0))
        self.linear = torch.nn.Linear(4, 3)

    def forward(self, X):
        return self.linear(X) * self.temperature


@pytest.mark.parametrize("mode", ["per_parameter", "per_layer_step"])
def test_learned_rates_of_a_scalar_parameter_are_used(mode):
    tasks = _gaussian_tasks()
    clf = MAMLClassifier(module=_Tempered, inner_lr_mode=mode, head_init="meta",
                         meta_inner_steps=2, inner_steps=4, n_meta_iter=3,
                         random_state=0).meta_fit(tasks)
    clf.set_params(warm_start=True, n_meta_iter=5).meta_fit(tasks)
    task = tasks.sample(0)
    clf.fit(task.X_support, task.y_support)
    by_hand = copy.deepcopy(clf)
    by_hand._meta.inner_lrs = {k: torch.zeros_like(v)
                               for k, v in clf.inner_lrs_.items()}
    by_hand.fit(task.X_support, task.y_support)
    # with zero rates nothing moves; with the learned ones the scalar does
    init = dict(clf.module_.named_parameters())["temperature"].detach()
    torch.testing.assert_close(by_hand.params_["temperature"], init)
    assert not torch.equal(clf.params_["temperature"], init)


def test_inner_lr_scales_the_learned_rates_at_fit():
    clf, task = _with_learned_rates()
    halved = {k: v / 2 for k, v in clf.inner_lrs_.items()}
    by_scale = clone(clf).set_params(inner_lr=clf.inner_lr / 2).fit(
        task.X_support, task.y_support)
    by_hand = copy.deepcopy(clf)
    by_hand._meta.inner_lrs = halved
    by_hand.fit(task.X_support, task.y_support)
    for name, value in by_scale.params_.items():
        torch.testing.assert_close(value, by_hand.params_[name])


def test_learned_rates_survive_clone_pickle_and_save(tmp_path):
    clf, task = _with_learned_rates()
    assert not all(torch.all(r == clf.inner_lr) for r in clf.inner_lrs_.values())
    expected = clf.fit(task.X_support, task.y_support).predict_proba(task.X_query)
    path = tmp_path / "rates.pt"
    clf.save(path)
    for copy_ in (clone(clf), pickle.loads(pickle.dumps(clf)), sk_meta.load(path)):
        for name, rate in clf.inner_lrs_.items():
            assert torch.equal(copy_.inner_lrs_[name], rate)
        np.testing.assert_allclose(
            copy_.fit(task.X_support, task.y_support).predict_proba(task.X_query),
            expected, rtol=1e-6)


def test_learned_rates_resume_exactly():
    clf, _ = _with_learned_rates()
    tasks = _gaussian_tasks()
    at_once = clone(clf).set_params(n_meta_iter=6)
    at_once.__dict__.pop("_meta")
    at_once.meta_fit(tasks)
    clf.set_params(n_meta_iter=6, warm_start=True).meta_fit(tasks)
    for name, rate in at_once.inner_lrs_.items():
        assert torch.equal(clf.inner_lrs_[name], rate)


# -- combinations that make no sense are refused ---------------------------------------

@pytest.mark.parametrize("estimator_class, params, message", [
    (MAMLRegressor, {"head_init": "zero"}, "head_init='zero' is for classifiers"),
    (ReptileRegressor, {"head_init": "prototype"}, "is for classifiers"),
    (ReptileClassifier, {"inner_lr_mode": "per_parameter"},
     "Reptile does not compute"),
    (ReptileClassifier, {"multi_step_loss": True}, "Reptile has no query loss"),
    (MAMLClassifier, {"head_init": "zero", "prototype_scale": 0.5},
     "prototype_scale=0.5 scales"),
    (ReptileClassifier, {"head_init": "meta", "prototype_scale": 2.0},
     "with head_init='meta' it would do nothing"),
    (FOMAMLRegressor, {"prototype_scale": 0.5}, "prototype_scale=0.5"),
])
def test_meaningless_combinations_are_refused(estimator_class, params, message):
    tasks = _tasks() if estimator_class._is_classifier(None) else [
        (X_s, y_s.astype(np.float32), X_q, y_q.astype(np.float32))
        for X_s, y_s, X_q, y_q in _tasks()]
    with pytest.raises(ValueError, match=message):
        estimator_class(**params).meta_fit(tasks)
    with pytest.raises(ValueError, match=message):
        estimator_class(**params).fit(tasks[0][0], tasks[0][1])


class _NoFinalLinear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(N_FEATURES, N_WAY)

    def forward(self, X):
        return torch.tanh(self.linear(X))  # something after the last linear layer


def test_a_module_whose_output_is_not_its_last_linear_layer_is_refused():
    with pytest.raises(ValueError, match="need the network's output to be its "
                                         "last nn.Linear layer"):
        MAMLClassifier(_NoFinalLinear, head_init="zero").meta_fit(_tasks())
    # with the default head the message says what the user did not choose
    with pytest.raises(ValueError, match=r"head_init='prototype' \(the classifiers' "
                                         r"default\).*pass head_init='meta'"):
        MAMLClassifier(_NoFinalLinear).meta_fit(_tasks())
    # and that setting works
    MAMLClassifier(_NoFinalLinear, head_init="meta", n_meta_iter=1).meta_fit(_tasks())


def test_a_single_linear_layer_takes_the_prototype_head_on_its_inputs():
    """A module that is one nn.Linear (logistic regression): the prototypes
    are class means of the inputs themselves."""
    linear = torch.nn.Linear(N_FEATURES, N_WAY)
    clf = MAMLClassifier(linear, inner_lr=1e-9, inner_steps=1, n_meta_iter=1,
                         prototype_scale=1.0, random_state=0).meta_fit(_tasks())
    X, y = _tasks()[0][:2]
    clf.fit(X, y)
    means = np.stack([X[y == k].mean(0) for k in range(N_WAY)])
    nearest = ((X[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert (clf.predict(X) == nearest).all()
    torch.testing.assert_close(clf.params_["weight"].double(),
                               torch.from_numpy(2 * means).double(), atol=1e-5,
                               rtol=1e-5)


def test_reptile_with_the_prototype_head_learns_the_body():
    est = ReptileClassifier(_init(), head_init="prototype", inner_steps=2,
                            meta_lr=0.5, meta_batch_size=2, n_meta_iter=1)
    est.meta_partial_fit(_tasks())
    init = dict(_init().named_parameters())
    assert not torch.equal(est.meta_params_["layers.0.weight"],
                           init["layers.0.weight"].detach())
    # the output layer starts from the prototypes: θ's own does not move
    assert torch.equal(est.meta_params_[WEIGHT], init[WEIGHT].detach())


# -- concat_input: the output layer sees the raw features too -----------------
def test_the_output_layer_sees_the_inputs_beside_the_last_hidden_layer():
    net = _init(concat_input=True)
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
    clf = MAMLClassifier(_init(concat_input=True), inner_lr=1e-12,
                         inner_steps=1, prototype_scale=1.0).fit(X_s, y_s)
    p = {k: v.detach().double() for k, v in _init(concat_input=True).named_parameters()}
    support = _features(p, torch.from_numpy(X_s).double())
    centres = torch.stack([support[torch.from_numpy(y_s) == k].mean(0)
                           for k in range(N_WAY)])
    torch.testing.assert_close(clf.params_[WEIGHT].double(), 2 * centres,
                               rtol=1e-5, atol=1e-6)
    query = _features(p, torch.from_numpy(X_q).double())
    nearest = torch.cdist(query, centres).argmin(1).numpy()
    np.testing.assert_array_equal(clf.predict(X_q), nearest)


def test_concat_input_prototype_meta_gradient_matches_hand_written_autograd():
    est = _one_step(concat_input=True, head_init="prototype", prototype_scale=1.0)
    theta, loss = _reference(_tasks(), head=_prototype_head, concat_input=True)
    _assert_step_is_minus_gradient(est, theta, loss, ignore=(WEIGHT, BIAS),
                                   concat_input=True)
    # the body's meta-gradient flows through the raw-feature prototypes too
    body = est.meta_params_["layers.0.weight"]
    assert not torch.equal(body, _init(concat_input=True).layers[0].weight)


@pytest.mark.parametrize("estimator_class", [MAMLClassifier, ReptileClassifier,
                                             MAMLRegressor])
def test_estimators_build_the_default_mlp_with_concat_input(estimator_class):
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


def test_changing_concat_input_after_meta_fit_is_refused_and_keeps_the_fit():
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


def test_concat_input_is_validated_as_a_boolean():
    with pytest.raises(ValueError, match="concat_input"):
        MAMLClassifier(concat_input="yes").meta_fit(_tasks())


@pytest.mark.parametrize("name, value", [("concat_input", False),
                                         ("prototype_scale", 1.0)])
def test_files_without_a_newer_parameter_load_as_before(tmp_path, name, value):
    """A file written before the option existed has no such parameter (and,
    for concat_input, an architecture without the key): it loads with the
    behaviour it was written with, and fits and predicts as before."""
    tasks = _tasks(4)
    X_s, y_s, X_q, _ = tasks[0]
    clf = MAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=2, random_state=0,
                         **{name: value}).meta_fit(tasks)
    path = tmp_path / "old.skmeta"
    clf.save(path)
    state = torch.load(path, weights_only=True)
    saved = state["params"].pop(name)
    assert type(saved) is type(value) and saved == value
    torch.save(state, path)
    loaded = sk_meta.load(path)
    assert type(loaded.get_params()[name]) is type(value)
    assert loaded.get_params()[name] == value
    np.testing.assert_allclose(loaded.fit(X_s, y_s).predict_proba(X_q),
                               clf.fit(X_s, y_s).predict_proba(X_q), rtol=1e-6)


def test_concat_input_with_a_custom_module_is_refused_clearly():
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


def test_save_load_and_pickle_keep_concat_input(tmp_path):
    tasks = _tasks(4)
    X_s, y_s, X_q, _ = tasks[0]
    clf = MAMLClassifier(hidden_layer_sizes=(8,), concat_input=True, n_meta_iter=2,
                         random_state=0).meta_fit(tasks)
    expected = clf.fit(X_s, y_s).predict_proba(X_q)
    clf.save(tmp_path / "m.skmeta")
    for copied in (sk_meta.load(tmp_path / "m.skmeta"),
                   pickle.loads(pickle.dumps(clf))):
        assert copied.concat_input is True
        np.testing.assert_allclose(copied.fit(X_s, y_s).predict_proba(X_q),
                                   expected, rtol=1e-6)


# -- prototype_scale="auto": 0.3 with the prototype head, nothing with others ----
def test_auto_prototype_scale_is_point_three_with_the_prototype_head():
    tasks = _tasks(4)
    X_s, y_s, X_q, _ = tasks[0]
    probas = {}
    for scale in ("auto", 0.3, 1.0):
        clf = MAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=3, meta_batch_size=2,
                             prototype_scale=scale, random_state=0).meta_fit(tasks)
        probas[scale] = clf.fit(X_s, y_s).predict_proba(X_q)
    np.testing.assert_array_equal(probas["auto"], probas[0.3])
    assert not np.allclose(probas["auto"], probas[1.0], atol=1e-3)


@pytest.mark.parametrize("estimator_class, head_init", [
    (MAMLClassifier, "zero"), (FOMAMLClassifier, "meta"), (ReptileClassifier, "zero"),
    (MAMLRegressor, "meta")])
def test_auto_prototype_scale_scales_nothing_with_another_head(estimator_class,
                                                               head_init):
    """Changing head_init alone works (no error about a scale the user never
    set) and gives what an explicit 1.0 gives."""
    tasks = _tasks(4)
    if estimator_class is MAMLRegressor:
        tasks = [(X_s, X_s.sum(1), X_q, X_q.sum(1)) for X_s, _, X_q, _ in tasks]
    X_s, y_s, X_q, _ = tasks[0]
    outputs = []
    for scale in ("auto", 1.0):
        est = estimator_class(hidden_layer_sizes=(8,), head_init=head_init,
                              n_meta_iter=3, meta_batch_size=2, prototype_scale=scale,
                              random_state=0).meta_fit(tasks)
        outputs.append(est.fit(X_s, y_s).predict(X_q))
    np.testing.assert_array_equal(*outputs)


def test_early_stopping_without_validation_tasks_is_refused_with_the_budget_spent():
    clf, task = _with_learned_rates("fixed")
    clf.set_params(warm_start=True, early_stopping=True)  # n_meta_iter_ reached
    with pytest.raises(ValueError, match="early_stopping=True needs validation"):
        clf.meta_fit([task] * 3)


# -- backtracking ---------------------------------------------------------------------

def _line_search(start, X, y, lr, n_steps):
    """``n_steps`` gradient steps in float64, each halved (at most 10 times)
    while it would raise the loss and skipped if it still does; also returns
    how many halvings there were."""
    p = {k: v.detach().double() for k, v in start.items()}
    X, y = torch.from_numpy(X).double(), torch.from_numpy(y)
    halvings = 0
    for _ in range(n_steps):
        p = {k: v.requires_grad_() for k, v in p.items()}
        loss = F.cross_entropy(_logits(p, X), y)
        grads = dict(zip(p, torch.autograd.grad(loss, list(p.values()))))
        with torch.no_grad():
            for halving in range(11):
                rate = lr / 2**halving
                stepped = {k: v - rate * grads[k] for k, v in p.items()}
                if F.cross_entropy(_logits(stepped, X), y) <= loss:
                    break
                halvings += 1
            else:
                stepped = p
        p = {k: v.detach() for k, v in stepped.items()}
    return p, halvings


def _fitted_support_loss(est, X, y):
    return _support_loss({k: v.double() for k, v in est.params_.items()},
                         torch.from_numpy(X).double(), torch.from_numpy(y)).item()


@pytest.mark.parametrize("lr", [30.0, 0.05], ids=["overshooting", "descending"])
def test_backtracking_fit_matches_a_hand_written_line_search(lr):
    est = _one_step()
    X, y, _, _ = _tasks(1, seed=5)[0]
    expected, halvings = _line_search(est.meta_params_, X, y, lr, 4)
    est.set_params(inner_lr=lr, inner_steps=4, backtracking=True).fit(X, y)
    for name, value in est.params_.items():
        torch.testing.assert_close(torch.as_tensor(value).double(), expected[name],
                                   rtol=1e-4, atol=1e-5)
    plain = copy.deepcopy(est).set_params(backtracking=False).fit(X, y)
    if lr > 1:  # the steps were halved, and plain steps would raise the loss
        assert halvings > 0
        assert _fitted_support_loss(plain, X, y) > _fitted_support_loss(est, X, y) + 0.1
    else:  # plain steps that lower the loss are taken as they are
        assert halvings == 0
        for name, value in est.params_.items():
            torch.testing.assert_close(value, plain.params_[name])


def _overshooting_batch(n_tasks):
    """Tasks of :func:`_tasks` stacked, the second with inputs 20 times
    larger (steps at rate 1.0 overshoot on it alone), and the init's
    parameters."""
    tasks = _tasks(n_tasks, seed=3)
    X = torch.stack([torch.from_numpy(t[0]) for t in tasks])
    y = torch.stack([torch.from_numpy(t[1]) for t in tasks])
    X[1] *= 20
    return tasks, X, y, {k: p.detach() for k, p in _init().named_parameters()}


def _adapted(params, X, y, loss_fn, backtracking=True):
    """``params`` after 3 steps at rate 1.0 on each task of ``(X, y)``."""
    return adapt(batched_forward(_init()), expand_params(params, X.shape[0]), X, y,
                 loss_fn=loss_fn, lr=1.0, n_steps=3, detach=True,
                 backtracking=backtracking)[0]


def test_backtracking_halves_each_tasks_step_on_its_own_loss():
    """Tasks adapted together are line-searched one by one: a batch of two
    tasks, one whose steps overshoot, ends where each task alone does."""
    loss_fn = functools.partial(cross_entropy_loss, n_classes=N_WAY)
    tasks, X, y, params = _overshooting_batch(2)
    together = _adapted(params, X, y, loss_fn)
    for i in range(2):
        alone = _adapted(params, X[i:i + 1], y[i:i + 1], loss_fn)
        reference, halvings = _line_search(params, tasks[i][0] * (20 if i else 1),
                                           tasks[i][1], 1.0, 3)
        assert (halvings > 0) == (i == 1)
        for name in params:
            torch.testing.assert_close(together[name][i], alone[name][0])
            torch.testing.assert_close(together[name][i].double(), reference[name],
                                       rtol=1e-4, atol=1e-5)


def _loss_options(n_tasks, n_samples):
    """sk_meta's losses as the estimators and users bind them, by name."""
    weights = torch.rand(n_tasks, n_samples, generator=torch.Generator().manual_seed(1))
    return {
        "cross-entropy": functools.partial(cross_entropy_loss, n_classes=N_WAY),
        "balanced, valid codes": functools.partial(
            cross_entropy_of_valid_codes, n_classes=N_WAY, balanced=True),
        "sample_weight": functools.partial(cross_entropy_loss, n_classes=N_WAY,
                                           balanced=True, sample_weight=weights),
        "squared error": mse_loss,
    }


@pytest.mark.parametrize("name", ["cross-entropy", "balanced, valid codes",
                                  "sample_weight", "squared error"])
def test_task_losses_are_each_tasks_loss_and_sum_to_the_loss(name):
    generator = torch.Generator().manual_seed(0)
    outputs = torch.randn(4, 7, N_WAY + 1, dtype=torch.float64, generator=generator)
    y = torch.randint(0, N_WAY, (4, 7), generator=generator)
    y[0] = 0  # one task of one class: balanced weights that are not all 1
    loss_fn = _loss_options(4, 7)[name]
    if name == "squared error":
        y = torch.randn(4, 7, N_WAY + 1, dtype=torch.float64, generator=generator)
    each = task_losses(loss_fn, outputs, y)
    assert each.shape == (4,)
    torch.testing.assert_close(each.sum(), loss_fn(outputs, y))
    func = getattr(loss_fn, "func", loss_fn)
    for i in range(4):
        options = {k: v[i:i + 1] if k == "sample_weight" else v
                   for k, v in getattr(loss_fn, "keywords", {}).items()}
        torch.testing.assert_close(each[i], func(outputs[i:i + 1], y[i:i + 1],
                                                 **options))
    # another function, one bound by position, or a partial whose call may
    # differ: the caller slices it
    assert task_losses(lambda o, t: o.sum(), outputs, y) is None
    assert task_losses(functools.partial(cross_entropy_loss, outputs[:1]),
                       outputs, y) is None

    class Penalized(functools.partial):
        def __call__(self, outputs, y):
            return super().__call__(outputs, y) + outputs.square().sum()

    assert task_losses(Penalized(cross_entropy_loss, n_classes=N_WAY),
                       outputs, y) is None


@pytest.mark.parametrize("name", ["cross-entropy", "balanced, valid codes",
                                  "sample_weight"])
def test_backtracking_compares_each_tasks_loss_whatever_loss_binds(name):
    """A batch line-searched together ends where each task does alone, with
    sample weights of every task bound to the loss too."""
    _, X, y, params = _overshooting_batch(3)
    loss_fn = _loss_options(3, X.shape[1])[name]
    together = _adapted(params, X, y, loss_fn)
    plain = _adapted(params, X, y, loss_fn, backtracking=False)
    for i in range(3):
        alone_fn = loss_fn
        if name == "sample_weight":
            alone_fn = functools.partial(
                loss_fn, sample_weight=loss_fn.keywords["sample_weight"][i:i + 1])
        alone = _adapted(params, X[i:i + 1], y[i:i + 1], alone_fn)
        for key in params:
            torch.testing.assert_close(together[key][i], alone[key][0])
    # the line search acted on task 1 alone
    assert not torch.allclose(together[WEIGHT][1], plain[WEIGHT][1])
    torch.testing.assert_close(together[WEIGHT][0], plain[WEIGHT][0])


def test_backtracking_in_a_batch_calls_another_loss_on_each_task_with_its_graph():
    """A loss of the user's that differentiates the outputs itself (a
    gradient penalty) is line-searched in a batch as each task alone."""
    _, X, y, params = _overshooting_batch(2)

    def penalized(outputs, y):
        loss = cross_entropy_loss(outputs, y, N_WAY)
        (slope,) = torch.autograd.grad(loss, outputs, create_graph=True)
        return loss + slope.square().sum()

    together = _adapted(params, X, y, penalized)
    for i in range(2):
        alone = _adapted(params, X[i:i + 1], y[i:i + 1], penalized)
        for key in params:
            torch.testing.assert_close(together[key][i], alone[key][0])


def test_backtracking_is_refused_where_the_steps_are_differentiated():
    module = _init()
    start = expand_params(dict(module.named_parameters()), 1)
    X, y = torch.randn(1, 6, N_FEATURES), torch.zeros(1, 6, dtype=torch.long)
    with pytest.raises(ValueError, match="backtracking is only available with "
                                         "detach=True"):
        adapt(batched_forward(module), start, X, y,
              loss_fn=functools.partial(cross_entropy_loss, n_classes=N_WAY),
              lr=0.1, n_steps=1, backtracking=True)


@pytest.mark.filterwarnings("ignore::sk_meta.exceptions.FeatureScaleWarning")
def test_backtracking_still_reports_a_divergence():
    """A step to a non-finite loss is divergence, not a step to shorten."""
    X, y, _, _ = _tasks(1)[0]
    est = MAMLClassifier(hidden_layer_sizes=(8,), backtracking=True, random_state=0)
    est.fit(X, y)
    before = est.predict_proba(X)
    with pytest.raises(DivergenceError, match="adaptation diverged"):
        est.set_params(inner_lr=1e30).fit(X * 1e30, y)
    np.testing.assert_array_equal(est.predict_proba(X), before)


@pytest.mark.parametrize("value", ["yes", 1.5, None])
def test_backtracking_must_be_a_boolean(value):
    X, y, _, _ = _tasks(1)[0]
    for estimator in (MAMLClassifier(backtracking=value),
                      ReptileClassifier(backtracking=value)):
        with pytest.raises(ValueError, match="'backtracking' parameter"):
            estimator.fit(X, y)


def test_validation_scores_adapt_with_backtracking_as_fit_does():
    tasks = [(10 * Xs, ys, 10 * Xq, yq) for Xs, ys, Xq, yq in _tasks(12, seed=7)]
    train, validation = tasks[:8], tasks[8:]

    def meta_fitted(backtracking):
        return MAMLClassifier(hidden_layer_sizes=(8,), inner_lr=1.0, inner_steps=4,
                              meta_inner_steps=1, meta_batch_size=4, n_meta_iter=4,
                              validation_interval=4, backtracking=backtracking,
                              random_state=0).meta_fit(train,
                                                       validation_tasks=validation)

    searched, plain = meta_fitted(True), meta_fitted(False)
    for clf in (searched, plain):
        expected = np.mean([copy.deepcopy(clf).fit(Xs, ys).score(Xq, yq)
                            for Xs, ys, Xq, yq in validation])
        assert clf.validation_scores_[-1] == pytest.approx(expected, abs=1e-6)
    # the same init (meta-training takes plain steps either way), other scores
    for name, value in searched.meta_params_.items():
        torch.testing.assert_close(value, plain.meta_params_[name])
    assert searched.validation_scores_[-1] != plain.validation_scores_[-1]


@pytest.mark.parametrize("backtracking", [True, False])
def test_reptile_meta_training_takes_plain_steps_whatever_backtracking(backtracking):
    """Reptile's meta-training keeps the paper's plain inner steps, at a
    rate where ``fit``'s line search would halve them: one outer step is
    the init plus ``meta_lr`` times the mean of the plainly adapted ones."""
    tasks = _tasks(2, seed=11)
    est = ReptileClassifier(_init(), inner_lr=30.0, meta_inner_steps=2,
                            meta_batch_size=2, n_meta_iter=1, meta_lr=0.5,
                            head_init="meta", random_state=0, meta_grad_max_norm=None,
                            backtracking=backtracking).meta_partial_fit(tasks)
    theta = {k: v.detach().double() for k, v in _init().named_parameters()}
    phis = []
    for Xs, ys, Xq, yq in tasks:
        X = torch.from_numpy(np.concatenate([Xs, Xq])).double()
        y = torch.from_numpy(np.concatenate([ys, yq]))
        assert _line_search(theta, X.numpy(), y.numpy(), 30.0, 2)[1] > 0
        phi = dict(theta)
        for _ in range(2):
            phi = {k: v.requires_grad_() for k, v in phi.items()}
            grads = torch.autograd.grad(F.cross_entropy(_logits(phi, X), y),
                                        list(phi.values()))
            phi = {k: (v - 30.0 * g).detach() for (k, v), g in zip(phi.items(), grads)}
        phis.append(phi)
    for name, value in est.meta_params_.items():
        expected = theta[name] + 0.5 * (sum(p[name] for p in phis) / 2 - theta[name])
        torch.testing.assert_close(value.double(), expected, rtol=1e-4, atol=1e-5)


def test_reptile_classifiers_clipped_outer_step_holds_where_the_unclipped_diverges():
    """Inputs so far apart that the inner steps overshoot: unclipped,
    their overshoots feed the init until meta-training diverges; with
    ``ReptileClassifier``'s default ``meta_grad_max_norm=1.0`` it meta-trains
    an init that ``fit`` adapts (movement_libras's class folds diverged so
    before that default)."""
    assert ReptileClassifier().meta_grad_max_norm == 1.0
    assert ReptileRegressor().meta_grad_max_norm is None
    rng = np.random.default_rng(0)
    tasks = []
    for _ in range(40):
        centres = 30 * rng.normal(size=(3, 4))
        y = np.repeat(np.arange(3), 5)
        tasks.append(tuple(part for _ in range(2) for part in (
            (centres[y] + rng.normal(size=(15, 4))).astype(np.float32), y)))
    params = dict(hidden_layer_sizes=(16,), inner_lr=1.0, n_meta_iter=20,
                  meta_batch_size=4, random_state=0)
    with pytest.raises(DivergenceError, match="meta-training diverged"):
        ReptileClassifier(meta_grad_max_norm=None, **params).meta_fit(tasks)
    est = ReptileClassifier(**params).meta_fit(tasks)
    assert est.n_meta_iter_ == 20
    assert np.isfinite(est.meta_loss_curve_).all()
    X_s, y_s, X_q, y_q = tasks[0]
    assert est.fit(X_s, y_s).score(X_q, y_q) > 0.9


# rates at which plain steps raise the support loss and stay finite
@pytest.mark.parametrize("estimator_class, params, lr", [
    (MAMLClassifier, {}, 3.0),
    (MAMLClassifier, {"adapt_layers": "head"}, 1.0),
    (MAMLClassifier, {"inner_lr_mode": "per_parameter"}, 3.0),
    (ReptileClassifier, {"inner_optimizer": "adam"}, 3.0),
    (MAMLRegressor, {}, 0.03),
], ids=["prototype head", "ANIL", "learned rates", "Reptile's Adam", "regressor"])
def test_backtracking_never_raises_the_support_loss(estimator_class, params, lr):
    """Each step of ``fit`` lowers the support loss or leaves it, whatever the
    variant, where plain steps at the same rate raise it."""
    rng = np.random.default_rng(0)
    X = (8 * rng.normal(size=(12, N_FEATURES))).astype(np.float32)
    if estimator_class is MAMLRegressor:
        y = X @ rng.normal(size=N_FEATURES).astype(np.float32)
    else:
        y = np.arange(12) % N_WAY
    train = [(X, y, X, y)] * 2
    est = estimator_class(hidden_layer_sizes=(16,), inner_steps=1, meta_batch_size=2,
                          n_meta_iter=1, random_state=0, **params).meta_fit(train)

    def support_losses(backtracking):
        losses = []
        for steps in range(1, 6):
            fitted = copy.deepcopy(est).set_params(
                inner_lr=lr, inner_steps=steps, backtracking=backtracking).fit(X, y)
            if estimator_class is MAMLRegressor:
                losses.append(np.mean((fitted.predict(X) - y) ** 2))
            else:
                proba = fitted.predict_proba(X)
                losses.append(-np.mean(np.log(proba[np.arange(len(y)), y] + 1e-12)))
        return np.array(losses)

    assert np.all(np.diff(support_losses(True)) <= 1e-5)
    assert np.any(np.diff(support_losses(False)) > 1e-3)


def test_backtracking_takes_learned_rates_in_a_graph_as_values():
    module = _init()
    params = {k: p.detach() for k, p in module.named_parameters()}
    X_s, y_s, _, _ = _tasks(1)[0]
    X, y = torch.from_numpy(X_s)[None], torch.from_numpy(y_s)[None]
    rates = {k: torch.full_like(p, 30.0, requires_grad=True) for k, p in params.items()}
    adapted, _ = adapt(batched_forward(module), expand_params(params, 1), X, y,
                       loss_fn=functools.partial(cross_entropy_loss, n_classes=N_WAY),
                       lr=rates, n_steps=3, detach=True, backtracking=True)
    expected, halvings = _line_search(params, X_s, y_s, 30.0, 3)
    assert halvings > 0
    for name, value in adapted.items():
        assert not value.requires_grad
        torch.testing.assert_close(value[0].double(), expected[name], rtol=1e-4,
                                   atol=1e-5)


def test_backtracking_with_dropout_compares_trials_under_the_steps_own_noise():
    """Each step draws its dropout masks once, as a plain step does, and its
    trials are compared under them: where no step needs halving, the line
    search ends where plain steps do (fresh masks for every trial would
    reject steps that lower the loss, at random)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 8)).astype(np.float32)
    y = np.arange(30) % 3

    def adapted(backtracking):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
                                  torch.nn.Dropout(0.5), torch.nn.Linear(16, 3))
        est = ReptileClassifier(net, head_init="meta", inner_lr=1e-3, inner_steps=20,
                                backtracking=backtracking, random_state=0)
        return est.fit(X, y).params_

    line_searched, plain = adapted(True), adapted(False)
    for name, value in plain.items():
        torch.testing.assert_close(line_searched[name], value)


@pytest.mark.parametrize("estimator_class", [ReptileRegressor, MAMLRegressor])
@pytest.mark.parametrize("backtracking", [True, False])
def test_a_last_step_to_a_non_finite_loss_raises(estimator_class, backtracking):
    # one step to finite parameters whose outputs overflow the squared error:
    # the loss before that step is finite, the predictions are garbage
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 3)).astype(np.float32)
    y = X @ rng.normal(size=3).astype(np.float32)
    estimator = estimator_class(hidden_layer_sizes=(8,), inner_steps=1,
                                inner_lr=1e12, backtracking=backtracking,
                                random_state=0)
    with pytest.raises(DivergenceError, match="adaptation diverged"):
        estimator.fit(X, y)
    # a rate that keeps the loss finite still fits
    estimator.set_params(inner_lr=1e-3).fit(X, y)
    assert np.isfinite(estimator.predict(X)).all()
