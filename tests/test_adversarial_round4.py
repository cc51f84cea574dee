"""A hostile user's cases, fourth round: refusals that came only after
``meta_fit`` had drawn a meta-batch from the user's iterator.

Each test is one case that once went wrong (its docstring says how).
"""

import functools

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from sk_meta import MAMLClassifier, ReptileRegressor
from sk_meta.tasks import EpisodeSampler, SinusoidTasks


class _NoLinearLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 3))

    def forward(self, X):
        return X @ self.weight


class _Width(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.linear = nn.Linear(4, width)

    def forward(self, X):
        return self.linear(X)


def _counted_tasks():
    rng = np.random.RandomState(0)
    X, y = rng.randn(120, 4), np.arange(120) % 6
    drawn = []

    def tasks():
        for task in EpisodeSampler(X, y, 3, 2, 3, random_state=0):
            drawn.append(task)
            yield task

    return tasks(), drawn


@pytest.mark.parametrize("params, error, message", [
    ({"module": _NoLinearLayer}, ValueError, "has no nn.Linear layer"),
    ({"module": _NoLinearLayer()}, ValueError, "has no nn.Linear layer"),
    ({"module": _NoLinearLayer, "adapt_layers": "head", "head_init": "meta"},
     ValueError, "has no nn.Linear layer"),
    ({"module": _Width, "module_params": {"widht": 3}}, TypeError,
     "unexpected keyword argument 'widht'"),
    ({"module": _Width, "module_params": {"width": -3}}, ValueError,
     r"_Width\(\*\*module_params\) failed"),
])
def test_refusals_that_need_no_task_draw_none(params, error, message):
    """A module class whose constructor fails, and a network without an
    nn.Linear layer under the default prototype head, were refused only
    after the first meta-batch (16 tasks) had been drawn from the user's
    one-shot iterator."""
    tasks, drawn = _counted_tasks()
    with pytest.raises(error, match=message):
        MAMLClassifier(n_meta_iter=2, random_state=0, **params).meta_fit(tasks)
    assert drawn == []


def test_a_network_without_linear_layer_still_meta_trains_where_allowed():
    tasks, drawn = _counted_tasks()
    clf = MAMLClassifier(module=_NoLinearLayer, head_init="meta", n_meta_iter=2,
                         meta_batch_size=2, random_state=0).meta_fit(tasks)
    assert len(drawn) == 4 and clf.n_meta_iter_ == 2
    ReptileRegressor(module=nn.Sequential(nn.Linear(1, 8), nn.Tanh(),
                                          nn.Linear(8, 1)),
                     n_meta_iter=2).meta_fit(SinusoidTasks(k_shot=5, n_query=5))


class _DrawsFromNumpy(nn.Module):
    built = 0

    def __init__(self, width=3):
        super().__init__()
        type(self).built += 1
        self.linear = nn.Linear(4, width)
        with torch.no_grad():  # an init drawn from numpy's global generator
            self.linear.weight.copy_(torch.from_numpy(np.random.randn(width, 4)))

    def forward(self, X):
        return self.linear(X)


def test_a_module_class_is_built_once_per_meta_fit():
    """The check before drawing tasks built the class once more: a
    constructor drawing from numpy's generator gave another init than the
    one it would have given."""
    np.random.seed(0)
    expected = np.random.randn(3, 4)
    np.random.seed(0)
    _DrawsFromNumpy.built = 0
    clf = MAMLClassifier(module=_DrawsFromNumpy, head_init="meta", n_meta_iter=1,
                         meta_lr=1e-12, meta_batch_size=2, random_state=0)
    clf.meta_fit(_counted_tasks()[0])
    assert _DrawsFromNumpy.built == 1
    np.testing.assert_allclose(clf.module_.linear.weight.detach().numpy(), expected,
                               rtol=1e-5, atol=1e-6)
    X, y = _tiny_tasks()[0][:2]
    clf.fit(X, y)
    assert _DrawsFromNumpy.built == 1  # fit adapts the meta-learned copy


def test_mlp_parameters_beside_a_module_are_said_to_be_ignored():
    """hidden_layer_sizes and activation set beside module= were silently
    ignored (module_params beside the default MLP already warned)."""
    tasks = _counted_tasks()[0]
    with pytest.warns(UserWarning, match="hidden_layer_sizes and activation are "
                                         "ignored: they shape the default MLP"):
        MAMLClassifier(module=_Width, module_params={"width": 3},
                       hidden_layer_sizes=(8,), activation="tanh", n_meta_iter=1,
                       meta_batch_size=2).meta_fit(tasks)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # the defaults, also given as a list, say nothing
        MAMLClassifier(module=_Width, module_params={"width": 3},
                       hidden_layer_sizes=[64, 64], n_meta_iter=1,
                       meta_batch_size=2).meta_fit(_counted_tasks()[0])
        MAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=1,
                       meta_batch_size=2).meta_fit(_counted_tasks()[0])


# -- the fourth adversarial pass: custom modules and the functional core ----------

def _tiny_tasks(n=8, regression=False, seed=0):
    rng = np.random.RandomState(seed)

    def targets():
        return rng.randn(6).astype("f") if regression else np.repeat([0, 1], 3)

    return [(rng.randn(6, 4).astype("f"), targets(), rng.randn(6, 4).astype("f"),
             targets()) for _ in range(n)]


TINY = {"n_meta_iter": 3, "meta_batch_size": 2, "inner_steps": 2, "random_state": 0}


@pytest.mark.parametrize("head_init", ["zero", "prototype"])
def test_reptile_anil_with_a_rebuilt_head_is_refused(head_init):
    """Reptile with adapt_layers='head' and a head rebuilt per task moved no
    weight at all (its direction is zero everywhere), silently."""
    from sk_meta import ReptileClassifier

    tasks = iter(_tiny_tasks())
    with pytest.raises(ValueError, match="would meta-train nothing"):
        ReptileClassifier(adapt_layers="head", head_init=head_init,
                          **TINY).meta_fit(tasks)
    assert len(list(tasks)) == 8  # refused before drawing


def test_reptile_anil_with_the_meta_head_trains_the_head_and_fit_takes_any_head():
    from sk_meta import ReptileClassifier

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    clf = ReptileClassifier(net, adapt_layers="head", head_init="meta",
                            **TINY).meta_fit(_tiny_tasks())
    assert not torch.equal(clf.module_[2].weight, net[2].weight)
    X, y = _tiny_tasks()[0][:2]
    clf.set_params(head_init="prototype").fit(X, y)  # fit-time ANIL: allowed
    assert clf.predict(X).shape == (6,)


def test_reptile_meta_gradient_reads_a_generator_of_trainable_names_once():
    """adapt exhausted the generator, then every direction was zero."""
    import functools

    import sk_meta.functional as F

    torch.manual_seed(0)
    net = F.prepare_module(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)))
    params = {n: p.detach() for n, p in net.named_parameters()}
    batch = F.TaskBatch(torch.randn(2, 6, 4), torch.randint(0, 3, (2, 6)),
                        torch.randn(2, 6, 4), torch.randint(0, 3, (2, 6)), 3)
    loss = functools.partial(F.cross_entropy_loss, n_classes=3)
    head = ["2.weight", "2.bias"]
    options = {"loss_fn": loss, "lr": 0.1, "n_steps": 2}
    listed, _ = F.reptile_meta_gradient(F.batched_forward(net), params, batch,
                                        trainable=head, **options)
    generated, _ = F.reptile_meta_gradient(F.batched_forward(net), params, batch,
                                           trainable=(n for n in head), **options)
    assert float(listed["2.weight"].abs().sum()) > 0
    for name in params:
        torch.testing.assert_close(generated[name], listed[name])


@pytest.mark.parametrize("n_classes, error", [(-1, ValueError), (0, ValueError),
                                              (None, TypeError), (3.0, TypeError)])
def test_cross_entropy_loss_checks_n_classes(n_classes, error):
    """n_classes=-1 silently dropped the last output; 0 and None raised from
    inside torch."""
    from sk_meta.functional import cross_entropy_loss

    with pytest.raises(error, match="n_classes"):
        cross_entropy_loss(torch.randn(2, 3, 4), torch.zeros(2, 3).long(), n_classes)


class _Centered(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.full((4,), 0.5))
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))

    def forward(self, X):
        return self.net(X - self.mean)


class _TiedBody(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.b.weight = self.a.weight
        self.out = nn.Linear(4, 2)

    def forward(self, X):
        return self.out(torch.relu(self.b(torch.relu(self.a(X)))))


@pytest.mark.parametrize("module_class", [_Centered, _TiedBody])
def test_a_fit_only_estimator_saves_buffers_and_tied_weights(module_class, tmp_path):
    """save() without meta_fit wrote the parameters only: load() refused the
    file (missing buffer, missing alias of a tied weight)."""
    import sk_meta

    torch.manual_seed(0)
    X, y, X_query, _ = _tiny_tasks()[0]
    clf = MAMLClassifier(module_class(), inner_steps=2, random_state=0).fit(X, y)
    clf.save(tmp_path / "fit_only.skm")
    loaded = sk_meta.load(tmp_path / "fit_only.skm", module=module_class())
    np.testing.assert_array_equal(loaded.predict_proba(X_query),
                                  clf.predict_proba(X_query))


class _WithModuleParams(nn.Module):
    def __init__(self, backbone=None, class_weights=None):
        super().__init__()
        self.body = backbone if backbone is not None else nn.Linear(4, 8)
        self.out = nn.Linear(8, 2)

    def forward(self, X):
        return self.out(torch.relu(self.body(X)))


@pytest.mark.parametrize("module_params", [
    {"backbone": nn.Linear(4, 8)}, {"class_weights": np.ones(2)},
    {"class_weights": torch.ones(2)}, {"class_weights": [np.ones(2), (1, 2)]},
], ids=["module", "array", "tensor", "nested"])
def test_a_clone_fits_when_module_params_hold_arrays_or_modules(module_params):
    """clone deep-copies module_params; the architecture check compared them
    with ==, so the clone's fit said the architecture had changed (and
    cross_val_score, GridSearchCV failed)."""
    from sklearn.base import clone

    X, y = _tiny_tasks()[0][:2]
    clf = MAMLClassifier(_WithModuleParams, module_params=module_params,
                         **TINY).meta_fit(_tiny_tasks())
    clone(clf).fit(X, y)
    # a real change is still one
    changed = clone(clf)
    if "backbone" in module_params:
        with torch.no_grad():
            changed.module_params["backbone"].weight.add_(1.0)
    else:
        changed.set_params(module_params={"class_weights": np.zeros(2)})
    with pytest.raises(ValueError, match="architecture changed"):
        changed.fit(X, y)


def test_a_lazy_module_instance_meta_trains():
    """meta_fit ran every meta-iteration, then failed reading the shape of
    the user's uninitialized LazyLinear: the run was lost."""
    net = nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.LazyLinear(2))
    clf = MAMLClassifier(net, head_init="meta", **TINY).meta_fit(_tiny_tasks())
    X, y, X_query, _ = _tiny_tasks()[0]
    assert clf.fit(X, y).predict(X_query).shape == (6,)
    assert torch.nn.parameter.is_lazy(net[0].weight)  # the user's stays as it was


class _TwoLayers(nn.Module):
    """4 features, a hidden layer of 8, an output layer; the variants below
    change what forward returns."""

    def __init__(self, n_outputs=2):
        super().__init__()
        self.hidden = nn.Linear(4, 8)
        self.out = nn.Linear(8, n_outputs)

    def forward(self, X):
        return self.out(torch.relu(self.hidden(X)))


class _OneOutputAsColumn(_TwoLayers):
    def __init__(self):
        super().__init__(n_outputs=1)


class _OneOutputAsVector(_OneOutputAsColumn):
    def forward(self, X):
        return super().forward(X).squeeze(-1)


def test_regressor_anil_takes_a_module_returning_a_vector():
    """adapt_layers='head' refused an (n,) output ("does something after
    it"), which the regressors accept elsewhere; it now trains as the same
    network returning an (n, 1) column."""
    from sk_meta import MAMLRegressor

    tasks = _tiny_tasks(regression=True)
    X, y, X_query, _ = tasks[0]
    predictions = []
    for module_class in (_OneOutputAsVector, _OneOutputAsColumn):
        torch.manual_seed(0)
        clf = MAMLRegressor(module_class(), adapt_layers="head", **TINY)
        predictions.append(clf.meta_fit(tasks).fit(X, y).predict(X_query))
    assert predictions[0].shape == (6,)
    np.testing.assert_allclose(predictions[0], predictions[1].ravel(), rtol=1e-5,
                               atol=1e-6)


class _NoParameters(nn.Module):
    def forward(self, X):
        return X[:, :2] * 1.0


class _BiasFree(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(4, 8, bias=False)
        self.out = nn.Linear(8, 2, bias=False)

    def forward(self, X):
        return self.out(torch.relu(self.hidden(X)))


@pytest.mark.parametrize("params, message", [
    ({"module": _NoParameters(), "head_init": "meta"}, "has no parameters"),
    ({"module": _NoParameters, "head_init": "meta"}, "has no parameters"),
    ({"module": _BiasFree()}, "needs an output layer with a bias"),
])
def test_modules_refused_before_any_task_is_drawn(params, message):
    """A module without parameters failed with "optimizer got an empty
    parameter list" (and fit with torch's "inputs argument to grad() cannot
    be empty"); bias-free layers under the prototype head were refused after
    a meta-batch had been drawn."""
    tasks = iter(_tiny_tasks())
    with pytest.raises(ValueError, match=message):
        MAMLClassifier(**TINY, **params).meta_fit(tasks)
    assert len(list(tasks)) == 8
    if "no parameters" in message:
        X, y = _tiny_tasks()[0][:2]
        with pytest.raises(ValueError, match=message):
            MAMLClassifier(**TINY, **params).fit(X, y)


def test_adapt_refuses_empty_params():
    from sk_meta.functional import adapt, mse_loss

    with pytest.raises(ValueError, match="params is empty"):
        adapt(lambda params, X: X, {}, torch.randn(2, 3, 1), torch.randn(2, 3),
              loss_fn=mse_loss, lr=0.1, n_steps=1)


class _TiedHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.out = nn.Linear(4, 4)
        self.out.weight = self.a.weight

    def forward(self, X):
        return self.out(torch.relu(self.a(X)))


def test_a_tied_output_layer_is_refused_for_what_it_is():
    """It was said to be "computed (a parametrization such as weight_norm)"."""
    with pytest.raises(ValueError, match="shares it with a.weight"):
        MAMLClassifier(_TiedHead(), **TINY).meta_fit(_tiny_tasks())


class _ReturnsTuple(_TwoLayers):
    def __init__(self):
        super().__init__(n_outputs=3)

    def forward(self, X):
        features = torch.relu(self.hidden(X))
        return self.out(features), features


def test_functional_helpers_refuse_a_module_returning_a_tuple():
    """outputs_beside_support took [-1] of the tuple (the hidden features of
    every row) and returned them as outputs; the others raised AttributeError."""
    import sk_meta.functional as F

    module = F.prepare_module(_ReturnsTuple())
    params = {n: p.detach() for n, p in module.named_parameters()}
    support, query = torch.randn(6, 4), torch.randn(2, 4)
    for call in (lambda: F.outputs_beside_support(module, {}, params, support, query),
                 lambda: F.outputs_beside_support(module, {}, params, support,
                                                  query[:0]),
                 lambda: F.find_output_layer(module, "vmap", support),
                 lambda: F.mse_loss(module(support), torch.randn(6)),
                 lambda: F.cross_entropy_loss(module(support), torch.zeros(1, 6).long(),
                                              3)):
        with pytest.raises(TypeError, match="must return one tensor"):
            call()


class _BatchedReadsSelf(_TwoLayers):
    def forward_batched(self, params, X):  # out.bias read from self, not params
        hidden = torch.relu(torch.baddbmm(params["hidden.bias"].unsqueeze(1), X,
                                          params["hidden.weight"].mT))
        return hidden @ params["out.weight"].mT + self.out.bias


class _BatchedReturnsTuple(_BatchedReadsSelf):
    def forward_batched(self, params, X):
        return torch.func.vmap(
            lambda p, x: torch.func.functional_call(self, p, (x,)))(params, X), None


class _BatchedRight(_BatchedReadsSelf):
    def forward_batched(self, params, X):
        hidden = torch.relu(torch.baddbmm(params["hidden.bias"].unsqueeze(1), X,
                                          params["hidden.weight"].mT))
        return torch.baddbmm(params["out.bias"].unsqueeze(1), hidden,
                             params["out.weight"].mT)


@pytest.mark.parametrize("module_class, error, message", [
    (_BatchedReadsSelf, ValueError, "must read every parameter from params"),
    (_BatchedReturnsTuple, TypeError, "forward_batched must return one tensor"),
])
def test_a_wrong_forward_batched_is_refused(module_class, error, message):
    """A forward_batched reading out.bias from the module left it out of
    meta-training and fit, silently; one returning a tuple failed inside the
    loss with an AttributeError."""
    with pytest.raises(error, match=message):
        MAMLClassifier(module_class(), head_init="meta", **TINY).meta_fit(
            _tiny_tasks())
    X, y = _tiny_tasks()[0][:2]
    with pytest.raises(error, match=message):
        MAMLClassifier(module_class(), head_init="meta", **TINY).fit(X, y)


def test_a_right_forward_batched_is_used_and_trains_every_parameter():
    torch.manual_seed(0)
    net = _BatchedRight()
    clf = MAMLClassifier(net, head_init="meta", meta_lr=0.1,
                         **TINY).meta_fit(_tiny_tasks())
    assert not torch.equal(clf.module_.out.bias, net.out.bias)


class _Tokens(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(10, 4)
        self.out = nn.Linear(16, 2)

    def forward(self, X):
        return self.out(self.embedding(X.long()).flatten(1))


def test_task_interpolation_on_token_ids_names_the_cause():
    """Mixed rows fell outside the vocabulary: a bare IndexError from
    nn.Embedding in the middle of meta-training."""
    rng = np.random.RandomState(0)
    tasks = [(rng.randint(0, 10, (6, 4)), np.repeat([0, 1], 3),
              rng.randint(0, 10, (6, 4)), np.repeat([0, 1], 3)) for _ in range(8)]
    MAMLClassifier(_Tokens(), task_interpolation=0.0, **TINY).meta_fit(tasks)
    with pytest.raises(ValueError, match="needs task_interpolation=0.0"):
        MAMLClassifier(_Tokens(), task_interpolation=1.0, **TINY).meta_fit(tasks)


class _BatchedWithView(_BatchedRight):
    def forward_batched(self, params, X):
        n_tasks, n_samples, n_features = X.shape
        flat = X.view(n_tasks * n_samples, n_features)  # needs a contiguous X
        return super().forward_batched(params, flat.view(n_tasks, n_samples,
                                                         n_features))


def test_the_forward_batched_check_feeds_contiguous_inputs():
    """The check fed an expanded (non-contiguous) probe: a correct
    forward_batched calling X.view(...) was refused with torch's error."""
    X, y, X_query, _ = _tiny_tasks()[0]
    torch.manual_seed(0)
    viewed = MAMLClassifier(_BatchedWithView(), head_init="meta", **TINY).fit(X, y)
    torch.manual_seed(0)
    plain = MAMLClassifier(_BatchedRight(), head_init="meta", **TINY).fit(X, y)
    np.testing.assert_allclose(viewed.predict_proba(X_query),
                               plain.predict_proba(X_query), rtol=1e-5, atol=1e-6)


class _LoopOnlyWithDropout(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(4, 8)
        self.dropout = nn.Dropout(0.5)
        self.out = nn.Linear(8, 2)

    def forward(self, X):
        if X.sum() < -1e30:  # data-dependent control flow: vmap stops here
            X = -X
        return self.out(self.dropout(torch.relu(self.hidden(X))))


def test_choosing_the_loop_leaves_the_global_generator_alone():
    """choose_strategy's trial of the loop ran dropout on torch's global
    generator: the user's next torch.rand() changed after fit."""
    from sk_meta.functional import choose_strategy, prepare_module

    module = prepare_module(_LoopOnlyWithDropout())
    probe = torch.randn(6, 4)
    before = torch.get_rng_state()
    assert choose_strategy(module, probe=probe) == "loop"
    assert torch.equal(torch.get_rng_state(), before)


def test_fits_share_the_default_mlp_without_changing_it():
    """fit uses sk_meta's MLP as it is (no copy): the meta-learned init,
    its mode and every later fit stay as they would be with a private copy."""
    import pickle

    from sklearn.base import clone

    tasks = _tiny_tasks(n=10)
    clf = MAMLClassifier(**TINY).meta_fit(tasks[:6])
    init = {k: v.clone() for k, v in clf.module_.state_dict().items()}
    mode = clf.module_.training
    first = clf.fit(*tasks[6][:2]).predict_proba(tasks[6][2])
    second = clf.fit(*tasks[7][:2]).predict_proba(tasks[7][2])
    assert clf.module_.training == mode
    for name, value in clf.module_.state_dict().items():
        assert torch.equal(value, init[name])
    fresh = pickle.loads(pickle.dumps(clf))  # its own copy of the init
    np.testing.assert_array_equal(fresh.fit(*tasks[6][:2]).predict_proba(tasks[6][2]),
                                  first)
    np.testing.assert_array_equal(clone(clf).fit(*tasks[7][:2]).predict_proba(
        tasks[7][2]), second)


# -- the fifth pass: the new checks themselves --------------------------------------

class _Activated(nn.Module):
    def __init__(self, activation=None, extra=None):
        super().__init__()
        self.hidden = nn.Linear(4, 8)
        self.activation = activation if activation is not None else nn.ReLU()
        self.out = nn.Linear(8, 2)

    def forward(self, X):
        return self.out(self.activation(self.hidden(X)))


@pytest.mark.parametrize("changed", [nn.Tanh(), nn.LeakyReLU(0.5), nn.Dropout(0.3)],
                         ids=["Tanh", "LeakyReLU slope", "Dropout rate"])
def test_a_module_in_module_params_changed_in_its_settings_is_a_change(changed):
    """Modules were compared by type and state only: a stateless layer
    swapped or reconfigured after meta_fit was accepted, and fit ran the old
    network."""
    first = nn.LeakyReLU(0.01) if isinstance(changed, nn.LeakyReLU) else (
        nn.Dropout(0.1) if isinstance(changed, nn.Dropout) else nn.ReLU())
    X, y = _tiny_tasks()[0][:2]
    clf = MAMLClassifier(_Activated, module_params={"activation": first},
                         head_init="meta", **TINY).meta_fit(_tiny_tasks())
    clf.set_params(module_params={"activation": changed})
    with pytest.raises(ValueError, match="architecture changed"):
        clf.fit(X, y)


@pytest.mark.parametrize("extra", [
    functools.partial(torch.nn.functional.leaky_relu, negative_slope=0.1),
    pd.Series([1.0, 2.0]),
    np.random.RandomState(0), float("nan"), torch.tensor([float("nan"), 1.0]),
    torch.eye(2).to_sparse(),
], ids=["partial", "Series", "RandomState", "nan", "nan tensor", "sparse tensor"])
def test_clones_and_pickles_fit_with_odd_values_in_module_params(extra):
    """Values whose == gives no single True (NaN, a Series, a partial, a
    RandomState) made a clone's or an unpickled copy's fit say that the
    architecture had changed; a sparse tensor raised torch's error."""
    import pickle

    from sklearn.base import clone

    X, y = _tiny_tasks()[0][:2]
    clf = MAMLClassifier(_Activated, module_params={"extra": extra},
                         head_init="meta", **TINY).meta_fit(_tiny_tasks())
    expected = clf.fit(X, y).predict_proba(X)
    for copy_of in (clone, lambda est: pickle.loads(pickle.dumps(est))):
        np.testing.assert_array_equal(copy_of(clf).fit(X, y).predict_proba(X),
                                      expected)


class _TiedHeadFirst(nn.Module):
    def __init__(self):
        super().__init__()
        self.out = nn.Linear(8, 8)  # registered before the layer it shares with
        self.a = nn.Linear(4, 8)
        self.b = nn.Linear(8, 8)
        self.b.weight = self.out.weight

    def forward(self, X):
        return self.out(torch.relu(self.b(torch.relu(self.a(X)))))


def test_a_tied_output_layer_is_refused_whatever_the_registration_order():
    """Registered first, the output layer's tie went unseen: the body layer
    sharing its weight was silently never meta-trained."""
    with pytest.raises(ValueError, match="shares it with b.weight"):
        MAMLClassifier(_TiedHeadFirst(), **TINY).meta_fit(_tiny_tasks())


class _NoisyInputs(_BatchedRight):
    def forward(self, X):
        return super().forward(X + 0.01 * torch.randn_like(X))

    def forward_batched(self, params, X):
        return super().forward_batched(params, X + 0.01 * torch.randn_like(X))


def test_the_forward_batched_check_takes_a_module_that_draws_noise():
    """Two unseeded passes were compared: a correct module adding input
    noise was refused as reading a parameter from itself."""
    X, y, X_query, _ = _tiny_tasks()[0]
    clf = MAMLClassifier(_NoisyInputs(), head_init="meta", **TINY).fit(X, y)
    assert clf.predict(X_query).shape == (6,)


def test_only_an_interpolated_meta_batch_blames_task_interpolation():
    """With task_interpolation on, any IndexError was blamed on it, also one
    raised by the user's own data in a meta-batch with no mixed task."""
    rng = np.random.RandomState(0)
    labels = np.repeat([0, 1], 3)
    tasks = [(rng.randint(0, 10, (6, 4)), labels, rng.randint(0, 10, (6, 4)), labels)
             for _ in range(4)]
    tasks[2][2][0, 0] = 12  # a token outside the vocabulary, in the user's data
    with pytest.raises(IndexError):
        MAMLClassifier(_Tokens(), task_interpolation=1e-12, n_meta_iter=3,
                       meta_batch_size=4, random_state=0).meta_fit(tasks)


def test_fit_with_dropout_leaves_the_users_generator_alone():
    """The output probe and the strategy trial ran dropout on torch's global
    generator: the user's next torch.rand() changed after fit."""
    X, y = _tiny_tasks()[0][:2]
    for head_init in ("meta", "prototype"):
        torch.manual_seed(0)
        module = _LoopOnlyWithDropout()
        expected = torch.rand(3)
        torch.manual_seed(0)
        module = _LoopOnlyWithDropout()
        MAMLClassifier(module, head_init=head_init, inner_steps=2,
                       random_state=0).fit(X, y)
        assert torch.equal(torch.rand(3), expected)


def test_the_functional_helpers_refuse_arrays_for_tensors():
    from sk_meta.functional import (
        choose_strategy,
        outputs_beside_support,
        prepare_module,
    )

    module = prepare_module(nn.Linear(4, 2))
    params = {n: p.detach() for n, p in module.named_parameters()}
    with pytest.raises(TypeError, match="X_query must be a tensor"):
        outputs_beside_support(module, {}, params, torch.randn(3, 4), np.zeros((2, 4)))
    with pytest.raises(TypeError, match="probe must be a tensor"):
        choose_strategy(module, probe=np.zeros((2, 4)))


def test_lazy_layers_are_initialized_from_random_state():
    """A lazy layer of a module instance was initialized from torch's global
    generator at each fit: the same random_state gave another model after
    any other draw (and the next fit another init)."""
    X, y, X_query, _ = _tiny_tasks()[0]
    net = nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.Linear(8, 2))
    clf = MAMLClassifier(net, head_init="meta", inner_steps=2, random_state=0)
    torch.manual_seed(1)
    first = clf.fit(X, y).predict_proba(X_query)
    torch.manual_seed(2)
    np.testing.assert_array_equal(clf.fit(X, y).predict_proba(X_query), first)
    np.testing.assert_array_equal(clf.fit(X, y).predict_proba(X_query), first)


class _OneOutputReshaped(_OneOutputAsColumn):
    def __init__(self, how):
        super().__init__()
        self.how = how

    def forward(self, X):
        out = super().forward(X)
        return {"view": out.view(-1), "flatten": out.flatten(),
                "index": out[:, 0]}[self.how]


@pytest.mark.parametrize("how", ["view", "flatten", "index"])
def test_regressor_anil_takes_any_reshape_of_one_output(how):
    """Only .squeeze(-1) was taken: without the output layer, .view(-1),
    .flatten() or [:, 0] reshaped the features themselves, and the split
    was refused ("the features before it have shape (80,)"). The features
    are now read as the layer's input."""
    from sk_meta import MAMLRegressor

    tasks = _tiny_tasks(regression=True)
    X, y, X_query, _ = tasks[0]
    predictions = []
    for module in (_OneOutputReshaped(how), _OneOutputAsColumn()):
        torch.manual_seed(0)
        module.load_state_dict(_OneOutputAsColumn().state_dict())
        clf = MAMLRegressor(module, adapt_layers="head", **TINY)
        predictions.append(clf.meta_fit(tasks).fit(X, y).predict(X_query))
    np.testing.assert_array_equal(predictions[0], predictions[1].ravel())


def test_an_operation_after_the_output_layer_is_still_refused():
    class Doubled(_OneOutputAsColumn):
        def forward(self, X):
            return 2 * super().forward(X)

    from sk_meta import MAMLRegressor

    with pytest.raises(ValueError, match="does something after it"):
        MAMLRegressor(Doubled(), adapt_layers="head", **TINY).meta_fit(
            _tiny_tasks(regression=True))


def test_fit_on_another_device_leaves_the_shared_mlp_where_it_was(monkeypatch):
    """The check that let fit use sk_meta's MLP without a copy called
    on_device, which moves a module in place: fit on another device than
    the meta-learned init's moved the init itself there."""
    import sk_meta._fitting as fitting

    tasks = _tiny_tasks(n=8)
    clf = MAMLClassifier(**TINY).meta_fit(tasks[:6])
    monkeypatch.setattr(fitting, "resolve_device", lambda device: torch.device("meta"))
    with pytest.raises(Exception):  # meta tensors hold no values to adapt with
        clf.fit(*tasks[6][:2])
    assert all(p.device.type == "cpu" for p in clf.module_.parameters())
