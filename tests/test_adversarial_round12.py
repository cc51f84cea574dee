"""What the twelfth pass found: a researcher's own modules and the functional
API (a saved instance reloaded from its class, aliased submodules, modules
that change their input in place, misspelled parameter names, TorchScript,
skorch's ``module__`` spelling, a graph break under ``compile``)."""

import copy
import functools
import warnings

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV
from torch import nn

import sk_meta
import sk_meta.functional as F
from sk_meta import MAMLClassifier, ReptileClassifier
from sk_meta.exceptions import PersistenceWarning


def _tasks(n_tasks=4, seed=0):
    rng = np.random.RandomState(seed)
    return [(rng.randn(6, 5).astype(np.float32), np.repeat([0, 1, 2], 2),
             rng.randn(9, 5).astype(np.float32), np.repeat([0, 1, 2], 3))
            for _ in range(n_tasks)]


class _Scaled(nn.Module):
    def __init__(self, scale=1.0):
        super().__init__()
        self.scale = scale  # not a weight: only the constructor sets it
        self.body = nn.Linear(5, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(torch.relu(self.body(x * self.scale)))


def test_load_warns_that_the_class_of_a_saved_instance_takes_its_defaults(tmp_path):
    X, y, X_query, _ = _tasks()[0]
    clf = MAMLClassifier(_Scaled(scale=3.0), n_meta_iter=3, meta_batch_size=4,
                         random_state=0).meta_fit(_tasks()).fit(X, y)
    path = tmp_path / "scaled.skm"
    clf.save(path)
    # the class's default scale replaces 3.0: said, not silent
    with pytest.warns(PersistenceWarning,
                      match=r"instance of .*_Scaled.*module=_Scaled\(\.\.\.\)"):
        from_class = sk_meta.load(path, module=_Scaled)
    assert from_class.module_.scale == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", PersistenceWarning)
        loaded = sk_meta.load(path, module=_Scaled(scale=3.0))
    np.testing.assert_array_equal(loaded.predict_proba(X_query),
                                  clf.predict_proba(X_query))


def test_load_says_to_pass_an_instance_when_the_class_needs_arguments(tmp_path):
    X, y, X_query, _ = _tasks()[0]
    clf = MAMLClassifier(_NeedsWidth(6), n_meta_iter=3, meta_batch_size=4,
                         random_state=0).meta_fit(_tasks()).fit(X, y)
    clf.save(tmp_path / "width.skm")
    with pytest.warns(PersistenceWarning), pytest.raises(
            ValueError, match="instance of .*_NeedsWidth.*pass an instance"):
        sk_meta.load(tmp_path / "width.skm", module=_NeedsWidth)
    loaded = sk_meta.load(tmp_path / "width.skm", module=_NeedsWidth(6))
    np.testing.assert_array_equal(loaded.predict_proba(X_query),
                                  clf.predict_proba(X_query))


def test_load_takes_the_class_of_a_saved_class(tmp_path):
    X, y, X_query, _ = _tasks()[0]
    clf = MAMLClassifier(_Scaled, module_params={"scale": 3.0}, n_meta_iter=3,
                         meta_batch_size=4, random_state=0).meta_fit(_tasks()).fit(X, y)
    clf.save(tmp_path / "scaled.skm")
    loaded = sk_meta.load(tmp_path / "scaled.skm", module=_Scaled)
    np.testing.assert_array_equal(loaded.predict_proba(X_query),
                                  clf.predict_proba(X_query))


class _Aliased(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(5, 8), nn.Linear(8, 3)])
        self.stem = self.layers[0]  # a second name for a layer with weights

    def forward(self, x):
        return self.layers[1](torch.relu(self.stem(x)))


@pytest.mark.parametrize("estimator_class", [MAMLClassifier, ReptileClassifier])
@pytest.mark.parametrize("head_init", ["prototype", "meta"])
def test_a_submodule_under_two_names_is_refused(estimator_class, head_init):
    module = _Aliased()
    before = copy.deepcopy(module.state_dict())
    with pytest.raises(ValueError, match="'layers.0' and 'stem'"):
        estimator_class(module, head_init=head_init, n_meta_iter=3,
                        meta_batch_size=4).meta_fit(_tasks())
    X, y, _, _ = _tasks()[0]
    with pytest.raises(ValueError, match="under two names"):
        estimator_class(module, head_init=head_init).fit(X, y)
    # the user's module is left whole: torch's failure left it unusable
    copy.deepcopy(module)
    for name, value in module.state_dict().items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)


class _NamedTwiceWithoutWeights(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(5, 8), nn.Linear(8, 3)])
        self.act = nn.ReLU()
        self.act_again = self.act  # no weights: functional_call is unharmed

    @property
    def stem(self):  # the remedy the error gives
        return self.layers[0]

    def forward(self, x):
        return self.layers[1](self.act_again(self.stem(x)))


def test_a_second_name_without_weights_or_through_a_property_works():
    X, y, X_query, y_query = _tasks()[0]
    clf = MAMLClassifier(_NamedTwiceWithoutWeights(), n_meta_iter=3,
                         meta_batch_size=4, random_state=0).meta_fit(_tasks())
    assert clf.fit(X, y).predict_proba(X_query).shape == (9, 3)


@pytest.mark.parametrize("head_init", ["prototype", "meta"])
def test_a_module_changing_its_input_in_place_is_refused(head_init):
    X, y, X_query, _ = _tasks()[0]
    kept = X.copy()
    module = nn.Sequential(nn.ReLU(inplace=True), nn.Linear(5, 3))
    with pytest.raises(ValueError, match="modifies its input in place"):
        MAMLClassifier(module, head_init=head_init, inner_steps=3).fit(X, y)
    np.testing.assert_array_equal(X, kept)  # the probe ran on a copy
    tasks = _tasks()
    kept_tasks = copy.deepcopy(tasks)
    with pytest.raises(ValueError, match="modifies its input in place"):
        MAMLClassifier(module, head_init=head_init, n_meta_iter=3,
                       meta_batch_size=4).meta_fit(tasks)
    for task, kept_task in zip(tasks, kept_tasks):
        for part, kept_part in zip(task, kept_task):
            np.testing.assert_array_equal(part, kept_part)


def test_in_place_operations_after_the_input_work():
    X, y, X_query, _ = _tasks()[0]
    kept = X_query.copy()
    module = nn.Sequential(nn.Linear(5, 8), nn.ReLU(inplace=True), nn.Linear(8, 3))
    clf = MAMLClassifier(module, n_meta_iter=3, meta_batch_size=4,
                         random_state=0).meta_fit(_tasks())
    assert clf.fit(X, y).predict(X_query).shape == (9,)
    np.testing.assert_array_equal(X_query, kept)


def _functional_problem():
    torch.manual_seed(0)
    module = F.prepare_module(nn.Sequential(nn.Linear(5, 8), nn.ReLU(),
                                            nn.Linear(8, 3)))
    n_tasks = 4
    batch = F.TaskBatch(torch.randn(n_tasks, 6, 5),
                        torch.tensor([0, 0, 1, 1, 2, 2]).repeat(n_tasks, 1),
                        torch.randn(n_tasks, 9, 5),
                        torch.tensor([0, 1, 2] * 3).repeat(n_tasks, 1), n_classes=3)
    loss_fn = functools.partial(F.cross_entropy_loss, n_classes=3)
    return module, batch, loss_fn


@pytest.mark.parametrize("strategy", ["auto", "vmap", "loop"])
def test_a_misspelled_parameter_name_is_refused(strategy):
    module, batch, loss_fn = _functional_problem()
    forward = F.batched_forward(module, strategy=strategy)
    params = {name.replace("2.weight", "2.weights"): p.detach().clone().requires_grad_()
              for name, p in module.named_parameters()}
    with pytest.raises(ValueError,
                       match=r"no parameter or buffer of Sequential: '2.weights'"):
        F.maml_meta_gradient(forward, params, batch, loss_fn=loss_fn, lr=0.1,
                             n_steps=2)
    # a subset of the real names stays allowed (the others do not adapt)
    subset = {name: p.detach().clone().requires_grad_()
              for name, p in module.named_parameters() if name.startswith("2.")}
    grads, _ = F.maml_meta_gradient(forward, subset, batch, loss_fn=loss_fn,
                                    lr=0.1, n_steps=2)
    assert set(grads) == {"2.weight", "2.bias"}
    assert all(g.abs().sum() > 0 for g in grads.values())


class _Wide(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.body = nn.Linear(5, width)
        self.head = nn.Linear(width, 3)

    def forward(self, x):
        return self.head(torch.relu(self.body(x)))


class _Plain(_Wide):
    def __init__(self):  # no argument: load builds the class alone
        super().__init__(8)


@pytest.mark.parametrize("head_init", ["prototype", "meta"])
@pytest.mark.parametrize("compiled", ["script", "trace"])
def test_a_torchscript_module_is_refused_clearly(head_init, compiled):
    with warnings.catch_warnings():  # torch deprecates TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        module = (torch.jit.script(_Plain()) if compiled == "script"
                  else torch.jit.trace(_Plain(), torch.randn(2, 5)))
    X, y, _, _ = _tasks()[0]
    with pytest.raises(TypeError, match="TorchScript module.*before torch.jit.script"):
        MAMLClassifier(module, head_init=head_init).fit(X, y)
    # meta_fit too: it named no nn.Linear layer first under the prototype head
    with pytest.raises(TypeError, match="TorchScript module.*before torch.jit.script"):
        MAMLClassifier(module, head_init=head_init, n_meta_iter=1).meta_fit(_tasks())
    with pytest.raises(TypeError, match="TorchScript"):
        F.prepare_module(module)


class _Sized(_Wide):
    def __init__(self, hidden=8):  # the argument as skorch would spell it
        super().__init__(hidden)


def test_skorch_spelling_of_module_arguments_is_named():
    clf = MAMLClassifier(_Sized)
    with pytest.raises(ValueError,
                       match="pass module_params__hidden, not module__hidden"):
        clf.set_params(module__hidden=16)
    assert clf.module_params is None  # nothing was set
    X = np.random.RandomState(0).randn(12, 5).astype(np.float32)
    y = np.repeat([0, 1, 2], 4)
    search = GridSearchCV(MAMLClassifier(_Sized, inner_steps=1),
                          {"module__hidden": [4, 16]}, cv=2, error_score="raise")
    with pytest.raises(ValueError, match="module_params__hidden"):
        search.fit(X, y)
    assert clf.set_params(module_params__hidden=16).module_params == {"hidden": 16}


def test_compiled_meta_training_of_a_classifier_has_no_graph_break():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    # balanced class weights (the default) with unbalanced support sets: the
    # weighted loss, decided outside the compiled function
    rng = np.random.RandomState(0)
    tasks = [(rng.randn(6, 5).astype(np.float32), np.array([0, 0, 0, 0, 1, 2]),
              rng.randn(9, 5).astype(np.float32), np.repeat([0, 1, 2], 3))
             for _ in range(4)] + _tasks(seed=1)
    compiled = MAMLClassifier(hidden_layer_sizes=(8,), compile=True, n_meta_iter=4,
                              meta_batch_size=4, random_state=0).meta_fit(tasks)
    assert not counters["graph_break"], dict(counters["graph_break"])
    eager = MAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=4, meta_batch_size=4,
                           random_state=0).meta_fit(tasks)
    X, y, X_query, _ = tasks[0]
    np.testing.assert_allclose(compiled.fit(X, y).predict_proba(X_query),
                               eager.fit(X, y).predict_proba(X_query), atol=1e-5)


def test_cross_entropy_loss_takes_integer_codes_of_any_width():
    logits = torch.randn(2, 4, 3)
    y = torch.tensor([[0, 1, 2, 0], [1, 1, 2, 0]])
    expected = F.cross_entropy_loss(logits, y, 3)
    for dtype in (torch.int32, torch.int16, torch.uint8):
        assert F.cross_entropy_loss(logits, y.to(dtype), 3) == expected
    for dtype in (torch.float32, torch.bool):
        with pytest.raises(TypeError, match="integer class codes"):
            F.cross_entropy_loss(logits, y.to(dtype), 3)


class _Frequencies(nn.Module):  # buffers alone: the same for every task
    def __init__(self):
        super().__init__()
        self.register_buffer("freq", torch.linspace(0.5, 1.5, 8), persistent=False)

    def forward(self, h):
        return h * self.freq


class _SharedTable(nn.Module):
    def __init__(self):
        super().__init__()
        shared = _Frequencies()
        self.inp = nn.Linear(5, 8)
        self.first, self.second = shared, shared
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(torch.relu(self.second(self.first(self.inp(x)))))


@pytest.mark.parametrize("estimator_class", [MAMLClassifier, ReptileClassifier])
def test_a_submodule_of_buffers_alone_may_have_two_names(estimator_class):
    X, y, X_query, _ = _tasks()[0]
    torch.manual_seed(0)
    clf = estimator_class(_SharedTable(), n_meta_iter=3, meta_batch_size=2,
                          random_state=0).meta_fit(_tasks())
    assert np.isfinite(clf.fit(X, y).predict_proba(X_query)).all()


def test_a_parametrized_tensor_s_name_is_taken():
    torch.manual_seed(0)
    module = F.prepare_module(nn.Sequential(
        nn.utils.parametrizations.weight_norm(nn.Linear(5, 3))))
    weight, X = torch.randn(3, 5), torch.randn(4, 5)
    for strategy in ("loop", "auto"):
        out = F.batched_forward(module, strategy=strategy)({"0.weight": weight[None]},
                                                           X[None])
        torch.testing.assert_close(out[0], X @ weight.T + module[0].bias)
    with pytest.raises(ValueError, match="'0.weights'"):
        F.batched_forward(module, strategy="loop")({"0.weights": weight[None]},
                                                   X[None])


class _NeedsWidth(_Wide):
    def __init__(self, width):  # no default: the class alone cannot be built
        super().__init__(width)


def test_load_blames_the_class_only_for_what_the_class_does(tmp_path):
    tasks = _tasks()
    X, y, X_query, _ = tasks[0]
    # a class without arguments: nothing of the instance's could differ
    MAMLClassifier(_Plain(), n_meta_iter=2, meta_batch_size=2,
                   random_state=0).meta_fit(tasks).save(tmp_path / "plain.skm")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PersistenceWarning)
        sk_meta.load(tmp_path / "plain.skm", module=_Plain).fit(X, y)
    # a class whose defaults build other shapes: said with the remedy
    MAMLClassifier(_Wide(6), n_meta_iter=2, meta_batch_size=2,
                   random_state=0).meta_fit(tasks).save(tmp_path / "wide.skm")
    with pytest.warns(PersistenceWarning), pytest.raises(
            ValueError, match="(?s)do not fit the module.*instance of .*_Wide.*not the "
                              "class"):
        sk_meta.load(tmp_path / "wide.skm", module=_Wide)
    # a damaged file is the file's fault, whatever module is passed
    state = torch.load(tmp_path / "plain.skm", weights_only=True)
    del state["meta"]["input_shape"]
    torch.save(state, tmp_path / "damaged.skm")
    with pytest.raises(ValueError, match="is not a valid sk_meta file: KeyError"):
        sk_meta.load(tmp_path / "damaged.skm", module=_Plain)
    with pytest.warns(PersistenceWarning), pytest.raises(
            ValueError, match="is not a valid sk_meta file: KeyError"):
        sk_meta.load(tmp_path / "damaged.skm", module=_Wide)


class _Configured(nn.Module):
    def __init__(self, config=None):
        super().__init__()
        width = {} if config is None else config
        self.body = nn.Linear(5, width["width"])  # a KeyError without a config
        self.head = nn.Linear(width["width"], 3)

    def forward(self, x):
        return self.head(torch.relu(self.body(x)))


def test_load_names_the_class_whatever_its_constructor_raises(tmp_path):
    X, y, X_query, _ = _tasks()[0]
    clf = MAMLClassifier(_Configured({"width": 4}), n_meta_iter=2, meta_batch_size=2,
                         random_state=0).meta_fit(_tasks()).fit(X, y)
    clf.save(tmp_path / "configured.skm")
    torch.manual_seed(5)
    expected_draw = torch.rand(1)
    torch.manual_seed(5)
    with pytest.warns(PersistenceWarning), pytest.raises(
            ValueError, match=r"cannot be built without arguments \(KeyError"):
        sk_meta.load(tmp_path / "configured.skm", module=_Configured)
    assert torch.rand(1) == expected_draw  # building it drew nothing of yours
    loaded = sk_meta.load(tmp_path / "configured.skm",
                          module=_Configured({"width": 4}))
    np.testing.assert_array_equal(loaded.predict_proba(X_query),
                                  clf.predict_proba(X_query))


def test_a_task_batch_of_mismatched_tensors_is_named():
    module, batch, loss_fn = _functional_problem()
    forward = F.batched_forward(module)
    params = {name: p.detach().clone().requires_grad_()
              for name, p in module.named_parameters()}
    fewer_queries = batch._replace(X_query=batch.X_query[:3], y_query=batch.y_query[:3])
    short_labels = batch._replace(y_support=batch.y_support[:, :5])
    for bad in (fewer_queries, short_labels):
        with pytest.raises(ValueError, match="one number of tasks B and X of as "
                                             "many samples as y"):
            F.maml_meta_gradient(forward, params, bad, loss_fn=loss_fn, lr=0.1,
                                 n_steps=1)
        with pytest.raises(ValueError, match="one number of tasks B"):
            F.reptile_meta_gradient(forward, params, bad, loss_fn=loss_fn, lr=0.1,
                                    n_steps=1)


def test_load_says_to_pass_the_class_saved_with_module_params(tmp_path):
    X, y, X_query, _ = _tasks()[0]
    clf = MAMLClassifier(_Wide, module_params={"width": 6}, n_meta_iter=2,
                         meta_batch_size=2, random_state=0).meta_fit(_tasks()).fit(X, y)
    clf.save(tmp_path / "wide.skm")
    with pytest.raises(ValueError, match=r"module_params \{'width': 6\}.*pass the "
                                         r"class, load\(path, module=_Wide\)"):
        sk_meta.load(tmp_path / "wide.skm", module=_Wide(6))
    loaded = sk_meta.load(tmp_path / "wide.skm", module=_Wide)
    np.testing.assert_array_equal(loaded.predict_proba(X_query),
                                  clf.predict_proba(X_query))
