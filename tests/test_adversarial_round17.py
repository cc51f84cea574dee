"""What the seventeenth pass found."""

import copy
import datetime
import functools
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse
from sklearn.datasets import load_digits
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.utils.checkpoint import checkpoint

import sk_meta
from sk_meta import (
    FOMAMLClassifier,
    FOMAMLRegressor,
    MAMLClassifier,
    MAMLRegressor,
    ReptileClassifier,
    ReptileRegressor,
)
from sk_meta.functional import (
    TaskBatch,
    batched_forward,
    cross_entropy_loss,
    maml_meta_gradient,
    prepare_module,
    reptile_meta_gradient,
)
from sk_meta.model_selection import MetaGridSearch
from sk_meta.pipeline import meta_fit_pipeline
from sk_meta.tasks import EpisodeSampler, Task

RNG = np.random.default_rng(0)
X_SMALL = RNG.normal(size=(60, 4)).astype(np.float32)
Y_SMALL = np.repeat(np.arange(6), 10)


def _small_tasks():
    return EpisodeSampler(X_SMALL, Y_SMALL, n_way=2, k_shot=2, n_query=2,
                          random_state=0)


class _Deep(nn.Module):
    def __init__(self, width=3):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, width), nn.ReLU(),
                                  nn.Linear(width, width), nn.ReLU(),
                                  nn.Linear(width, 2))

    def forward(self, x):
        return self.body(x)


def test_load_with_the_class_of_a_saved_instance_says_the_remedy_first(tmp_path):
    """torch's text listed every mismatched tensor before the remedy."""
    path = tmp_path / "deep.skm"
    MAMLClassifier(_Deep(7), n_meta_iter=2, meta_batch_size=2,
                   random_state=0).meta_fit(_small_tasks()).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError) as info:
            sk_meta.load(path, module=_Deep)
    message = str(info.value)
    assert message.startswith("the saved weights do not fit the module built from "
                              "the class _Deep given here")
    assert "not the class (size mismatch for body.0.weight" in message
    assert message.endswith("(and 4 more such lines))")
    assert "Error(s) in loading" not in message
    # the instance it was saved with loads
    assert sk_meta.load(path, module=_Deep(7)).n_meta_iter_ == 2


# -- parameters functional_call cannot swap ------------------------------------

class _Plain(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 5)
        self.fc = nn.Linear(5, 3)

    def body(self, x):
        return torch.tanh(self.a(x))

    def forward(self, x):
        return self.fc(self.body(x))


class _Checkpointed(_Plain):
    def forward(self, x):
        return self.fc(checkpoint(self.body, x, use_reentrant=False))


class _HeldInADict(_Plain):
    def __init__(self):
        super().__init__()
        self.temperature = nn.Parameter(torch.tensor(1.0))
        self.settings = {"temperature": self.temperature}

    def forward(self, x):
        return self.fc(torch.tanh(self.a(x) * self.settings["temperature"]))


class _DrawsItsOwnNoise(_Plain):
    """Draws from numpy's generator: two runs differ, so nothing is compared."""

    def forward(self, x):
        noise = torch.as_tensor(np.random.normal(size=x.shape[1]), dtype=x.dtype)
        return super().forward(x + 0.01 * noise)


class _Dropout(_Plain):
    def forward(self, x):
        return self.fc(nn.functional.dropout(self.body(x), 0.3, self.training))


def _task():
    rng = np.random.default_rng(1)
    return (rng.normal(size=(9, 4)).astype(np.float32), np.array([0, 1, 2] * 3),
            rng.normal(size=(5, 4)).astype(np.float32))


@pytest.mark.parametrize("estimator", [MAMLClassifier, FOMAMLClassifier,
                                       ReptileClassifier])
def test_activation_checkpointing_is_refused(estimator):
    """The backward pass recomputed the segment with the module's own
    weights: from the second inner step on, fit took its gradients at the
    init (predictions 2.6e-3 off after 5 steps), and meta_fit failed inside
    vmap."""
    X, y, _ = _task()
    module = _Checkpointed()
    with pytest.raises(ValueError, match=r"(?s)'a\.\w+'.*torch\.utils\.checkpoint"):
        estimator(module=module, random_state=0).fit(X, y)
    tasks = EpisodeSampler(X_SMALL, Y_SMALL, n_way=3, k_shot=1, n_query=1,
                           random_state=0)
    with pytest.raises(ValueError, match="torch.utils.checkpoint"):
        estimator(module=module, n_meta_iter=1, meta_batch_size=2,
                  random_state=0).meta_fit(tasks)


def test_a_parameter_reached_through_a_dict_is_refused():
    """functional_call swaps the registered name; the dict kept the module's
    own tensor, so the temperature never moved."""
    X, y, _ = _task()
    with pytest.raises(ValueError, match="parameter 'temperature' other than as "
                                         "registered"):
        MAMLClassifier(module=_HeldInADict(), head_init="meta",
                       random_state=0).fit(X, y)


@pytest.mark.parametrize("module", [_Plain, _Dropout, _DrawsItsOwnNoise],
                         ids=lambda m: m.__name__)
def test_modules_that_compute_through_their_params_still_adapt(module):
    X, y, X_query = _task()
    torch.manual_seed(0)
    net = module()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    # a head split off a module that draws would not repeat its outputs
    head_init = "meta" if module is _DrawsItsOwnNoise else "prototype"
    proba = MAMLClassifier(module=net, head_init=head_init,
                           random_state=0).fit(X, y).predict_proba(X_query)
    assert proba.shape == (5, 3) and np.isfinite(proba).all()
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_functional_meta_loss_refuses_empty_query_sets():
    """A NaN loss and gradients of zero: the outer step did nothing, unsaid."""
    module = prepare_module(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)))
    forward, params = batched_forward(module), dict(module.named_parameters())
    loss_fn = functools.partial(cross_entropy_loss, n_classes=2)
    batch = TaskBatch(torch.randn(2, 5, 3), torch.randint(0, 2, (2, 5)),
                      torch.randn(2, 0, 3), torch.zeros(2, 0, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="the query sets hold no samples"):
        maml_meta_gradient(forward, params, batch, loss_fn=loss_fn, lr=0.1,
                           n_steps=1)
    # Reptile adapts on support and query together: an empty query is no task
    grads, loss = reptile_meta_gradient(forward, params, batch, loss_fn=loss_fn,
                                        lr=0.1, n_steps=1)
    assert torch.isfinite(loss).all() and any(g.abs().sum() > 0 for g in grads.values())


# -- a practitioner's inputs ---------------------------------------------------

def _support(n=6):
    return np.random.default_rng(0).normal(size=(n, 3))


@pytest.mark.parametrize("labels", [
    pd.Series(pd.to_datetime(["2020-01-01", None, "2020-01-03"] * 2)),
    np.array([1, "NaT", 3, 1, "NaT", 3], dtype="timedelta64[s]"),
], ids=["datetime", "timedelta"])
def test_missing_dates_are_missing_labels(labels):
    """NaT became a class of its own in fit, predicted for half the rows;
    meta_fit blamed the query's labels."""
    X = _support()
    with pytest.raises(ValueError, match=r"y holds 2 missing label\(s\)"):
        FOMAMLClassifier(random_state=0).fit(X, labels)
    with pytest.raises(ValueError, match=r"task 0: y_support holds 2 missing"):
        FOMAMLClassifier(n_meta_iter=1, random_state=0).meta_fit(
            [(X, labels, X, labels)])


@pytest.mark.parametrize("targets", [
    pd.Series(pd.date_range("2020-01-01", periods=6)),
    pd.Series(pd.to_timedelta(np.arange(6), unit="ns")),
], ids=["datetime", "timedelta"])
def test_regressors_refuse_time_targets_in_fit_as_in_meta_fit(targets):
    """fit trained on nanosecond counts (or diverged on 1.6e15); meta_fit
    refused them."""
    X = _support()
    with pytest.raises(ValueError, match="y must be numeric, got dtype (datetime|"
                                         "timedelta)64"):
        FOMAMLRegressor(random_state=0).fit(X, targets)
    with pytest.raises(ValueError, match="task 0: y_support must be numeric"):
        FOMAMLRegressor(n_meta_iter=1, random_state=0).meta_fit(
            [(X, targets, X, targets)])


def test_sparse_targets_and_meta_tensors_get_a_message():
    """numpy's "ufunc 'isnan' not supported", and torch's "Cannot copy out
    of meta tensor"."""
    X = _support()
    y = np.arange(6.0)
    with pytest.raises(TypeError, match="y is a sparse matrix, but dense data is "
                                        "required"):
        FOMAMLRegressor(random_state=0).fit(X, sparse.csr_matrix(y[:, None]))
    on_meta = torch.empty(6, 3, device="meta")
    with pytest.raises(TypeError, match="'meta' device holds a shape but no values"):
        FOMAMLRegressor(random_state=0).fit(on_meta, y)
    with pytest.raises(TypeError, match="task 0: X_support is a tensor on the 'meta' "
                                        "device"):
        FOMAMLRegressor(n_meta_iter=1, random_state=0).meta_fit(
            [(on_meta, y, X, y)])


def test_pipeline_refuses_a_module_without_linear_layer_before_reading_tasks():
    """The final step's module was checked only once the stream was read."""
    sampler = EpisodeSampler(X_SMALL, Y_SMALL, n_way=3, k_shot=2, n_query=1,
                             random_state=0)
    tasks = (sampler.sample() for _ in range(5))
    estimator = FOMAMLClassifier(nn.Sequential(nn.Conv1d(1, 1, 1)), n_meta_iter=3)
    with pytest.raises(ValueError, match="has no nn.Linear layer"):
        meta_fit_pipeline(make_pipeline(StandardScaler(), estimator), tasks)
    assert sum(1 for _ in tasks) == 5


def _batch_norm_net():
    return nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))


@pytest.mark.parametrize("one_row_first", [True, False])
def test_reptile_refuses_a_one_row_support_with_batch_norm_in_any_order(one_row_first):
    """Reptile trains on support and query together, so a one-row support
    set passed where it came first; fit refuses it."""
    rng = np.random.default_rng(0)
    good = Task(rng.normal(size=(4, 3)), np.array([0, 1, 0, 1]),
                rng.normal(size=(4, 3)), np.array([0, 1, 0, 1]))
    one_row = Task(rng.normal(size=(1, 3)), np.array([0]),
                   rng.normal(size=(2, 3)), np.array([0, 0]))
    tasks = [one_row, good] if one_row_first else [good, one_row]
    # (where the probe meets the one-row task first, it says so with torch's words)
    with pytest.raises(ValueError, match="single sample|1 value per channel"):
        ReptileClassifier(_batch_norm_net(), n_meta_iter=2, meta_batch_size=2,
                          random_state=0).meta_fit(tasks)
    with pytest.raises(ValueError, match="1 value per channel|single sample"):
        ReptileClassifier(_batch_norm_net(), random_state=0).fit(
            one_row.X_support, one_row.y_support)


def test_random_state_refuses_a_bool():
    with pytest.raises(ValueError, match="must be a number, not a bool"):
        MAMLClassifier(random_state=True).fit(_support(2), [0, 1])


def test_validation_scores_are_the_scores_a_user_gets():
    """Accuracies were float32: 2/3 read 0.6666666865."""
    X, y = load_digits(return_X_y=True)
    X = X / 16
    train = EpisodeSampler(X, y, 3, 2, 9, classes=range(7), random_state=0)
    validation = EpisodeSampler(X, y, 3, 2, 9, classes=[7, 8, 9], n_tasks=1,
                                random_state=1)
    clf = MAMLClassifier(n_meta_iter=2, meta_batch_size=2, random_state=0).meta_fit(
        train, validation_tasks=validation)
    task = list(validation)[0]
    score = clf.fit(task.X_support, task.y_support).score(task.X_query, task.y_query)
    assert 0 < score < 1 and clf.validation_scores_[-1] == score


@pytest.mark.parametrize("classes", [
    lambda: iter(range(7)), lambda: (c for c in range(7)),
    lambda: dict.fromkeys(range(7)).keys(),
    lambda: {str(c): c for c in range(7)}.values(),
], ids=["iterator", "generator", "keys", "values"])
def test_sampler_keeps_one_shot_classes_as_read(classes):
    """A generator was stored spent, and a dict's keys or values could not be
    pickled (a search's workers take the sampler)."""
    X, y = load_digits(return_X_y=True)
    sampler = EpisodeSampler(X, y, 3, 2, 3, classes=classes(), random_state=0)
    assert sampler.classes == list(range(7))
    copy = pickle.loads(pickle.dumps(sampler))
    assert set(copy.sample().y_support) <= set(range(7))
    rebuilt = EpisodeSampler(X, y, 3, 2, 3, classes=sampler.classes, random_state=0)
    np.testing.assert_array_equal(rebuilt.sample().X_query, sampler.sample().X_query)


# -- the eighteenth pass: holes in the checks above ----------------------------

class _ConvBatchNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.out = nn.Linear(4 * 4 * 4, 1)

    def forward(self, x):
        h = torch.relu(self.norm(self.conv(x.view(-1, 1, 4, 4))))
        return self.out(h.flatten(1)).squeeze(-1)


@pytest.mark.parametrize("estimator", [MAMLRegressor, FOMAMLRegressor,
                                       ReptileRegressor])
def test_one_row_support_is_taken_where_batch_norm_takes_it(estimator):
    """A convolution's map gives BatchNorm2d many values per channel on one
    sample: fit takes it, and meta_fit had been made to refuse it."""
    rng = np.random.default_rng(0)
    tasks = [(rng.normal(size=(1, 16)), rng.normal(size=1),
              rng.normal(size=(4, 16)), rng.normal(size=4)) for _ in range(3)]
    estimator(module=_ConvBatchNorm(), random_state=0).fit(*tasks[0][:2])
    fitted = estimator(module=_ConvBatchNorm(), n_meta_iter=2, meta_batch_size=2,
                       random_state=0).meta_fit(tasks)
    assert fitted.n_meta_iter_ == 2


class _InAClosure(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 3)
        weight = self.a.weight
        self.linear = lambda x: nn.functional.linear(x, weight)

    def forward(self, x):
        return self.linear(x) + self.a.bias


class _ScaledByAHook(nn.Module):
    """The hook reads the parameter of the module it closes over: a copy's
    hook reads the original's."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.scale = nn.Parameter(torch.ones(3))
        self.a.register_forward_hook(lambda module, inputs, out: out * self.scale)

    def forward(self, x):
        return self.a(x)


class _Reentrant(nn.Module):
    def __init__(self, first):
        super().__init__()
        self.a, self.b, self.out = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 3)
        self.first = first

    def forward(self, x):
        if self.first:  # inputs without a gradient: the segment gets none
            h = checkpoint(lambda z: torch.tanh(self.a(z)), x, use_reentrant=True)
        else:
            h = checkpoint(lambda z: torch.tanh(self.b(z)), torch.tanh(self.a(x)),
                           use_reentrant=True)
        return self.out(h)


class _FusedInEval(nn.Module):
    """Caches a weight when switched to eval mode (RepVGG's fused branches)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 3), nn.Linear(4, 3)
        self.fused = None

    def train(self, mode=True):
        super().train(mode)
        self.fused = None if mode else (self.a.weight + self.b.weight).detach()
        return self

    def forward(self, x):
        if self.fused is not None:
            return nn.functional.linear(x, self.fused)
        return self.a(x) + nn.functional.linear(x, self.b.weight)


@pytest.mark.parametrize("module, message", [
    (_InAClosure, r"parameter 'a\.weight', held in a closure"),
    (_ScaledByAHook, r"parameter 'scale', held in a closure"),
    (lambda: _Reentrant(True), "checkpoints a segment that gets no gradient"),
    (lambda: _Reentrant(False), "fails when its backward pass recomputes a segment"),
    (_FusedInEval, "other outputs in eval mode"),
], ids=["closure", "hook", "reentrant-first", "reentrant-later", "fused-in-eval"])
def test_parameters_functional_call_cannot_swap_are_refused(module, message):
    """Each went through: the closure's and the hook's parameters never
    trained, the reentrant checkpoint trained nothing in its segment or
    failed with torch's advice, and the fused weight predicted unadapted
    (0.22 off)."""
    X, y, _ = _task()
    with pytest.raises(ValueError, match=message):
        MAMLClassifier(module=module(), head_init="meta", random_state=0).fit(X, y)


def test_meta_grid_search_refuses_a_bool_random_state():
    search = MetaGridSearch(MAMLClassifier(n_meta_iter=1), {"inner_lr": [0.1]},
                            random_state=True)
    with pytest.raises(TypeError, match="random_state must be .*not a bool"):
        search.meta_fit(_small_tasks())


@pytest.mark.parametrize("targets", [
    lambda: pd.Series(pd.date_range("2020-01-01", periods=6, tz="UTC")),
    lambda: [datetime.datetime(2020, 1, day) for day in range(1, 7)],
], ids=["time-zone", "python-datetimes"])
def test_regressors_refuse_dates_of_every_kind(targets):
    X = _support()
    with pytest.raises(ValueError, match="y must be numeric, got"):
        FOMAMLRegressor(random_state=0).fit(X, targets())
    fitted = FOMAMLRegressor(random_state=0).fit(X, np.arange(6.0))
    with pytest.raises(ValueError, match="y must be numeric, got"):
        fitted.score(X, targets())


def test_missing_dates_with_a_time_zone_are_missing_labels():
    labels = pd.Series(pd.to_datetime(["2020-01-01", None, "2020-01-03"] * 2,
                                      utc=True))
    with pytest.raises(ValueError, match=r"y holds 2 missing label\(s\) \(NaT\)"):
        FOMAMLClassifier(random_state=0).fit(_support(), labels)


def test_load_names_renamed_layers_in_a_plain_value_error(tmp_path):
    path = tmp_path / "deep.skm"
    MAMLClassifier(_Deep(7), n_meta_iter=2, meta_batch_size=2,
                   random_state=0).meta_fit(_small_tasks()).save(path)

    class _Renamed(_Deep):
        def __init__(self):
            super().__init__(7)
            self.layers = self.body
            del self.body

        def forward(self, x):
            return self.layers(x)

    with pytest.raises(ValueError) as info:
        sk_meta.load(path, module=_Renamed())
    assert type(info.value) is ValueError
    assert "Missing key(s) in state_dict: \"layers.0.weight\"" in str(info.value)
    assert "Unexpected key(s) in state_dict: \"body.0.weight\"" in str(info.value)


# -- the nineteenth pass --------------------------------------------------------

class _CheckpointedThenNormalized(nn.Module):
    def __init__(self, final):
        super().__init__()
        self.a, self.b, self.out = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 3)
        self.final = final

    def forward(self, x):
        h = checkpoint(self.b, torch.tanh(self.a(x)), use_reentrant=False)
        return self.final(self.out(torch.tanh(h)))


@pytest.mark.parametrize("final", [
    lambda z: nn.functional.layer_norm(z, z.shape[-1:]),
    lambda z: z.softmax(-1),
], ids=["layer-norm", "softmax"])
def test_checkpointing_is_refused_under_outputs_of_constant_sum(final):
    """The gradients of the outputs' sum are zero there: the comparison saw
    nothing, and fit's predictions were 0.046 off."""
    X, y, _ = _task()
    with pytest.raises(ValueError, match="torch.utils.checkpoint"):
        MAMLClassifier(module=_CheckpointedThenNormalized(final), head_init="meta",
                       random_state=0).fit(X, y)


_TEACHER = nn.Linear(4, 4)  # another module's parameters, not the student's


class _Student(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.out = nn.Linear(4, 8), nn.Linear(8, 3)

    def forward(self, x):
        return self.out(torch.tanh(self.a(x + 0.1 * _TEACHER(x))))


def test_a_parameter_of_another_module_is_not_refused():
    """A frozen teacher outside the module, its requires_grad left True:
    refused as if it were the module's own by the closure check."""
    X, y, X_query = _task()
    torch.manual_seed(0)
    student = _Student()
    proba = MAMLClassifier(module=student, random_state=0).fit(X, y).predict_proba(
        X_query)
    _TEACHER.requires_grad_(False)
    try:
        frozen = MAMLClassifier(module=student, random_state=0).fit(
            X, y).predict_proba(X_query)
    finally:
        _TEACHER.requires_grad_(True)
    np.testing.assert_array_equal(proba, frozen)


def test_a_gradient_hook_on_a_parameter_is_refused():
    """The hook never ran: a weight it froze adapted as any other."""
    X, y, _ = _task()
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    net[0].weight.register_hook(torch.zeros_like)
    with pytest.raises(ValueError, match=r"0\.weight has a gradient hook"):
        MAMLClassifier(module=net, random_state=0).fit(X, y)


def test_meta_fit_of_a_convolution_with_dropout_leaves_the_global_generator():
    """Sizing the chunks of a convolutional network drew its dropout masks
    from the caller's generator."""
    rng = np.random.default_rng(0)
    tasks = [(rng.normal(size=(6, 1, 8, 8)).astype(np.float32), np.arange(6) % 3,
              rng.normal(size=(6, 1, 8, 8)).astype(np.float32), np.arange(6) % 3)
             for _ in range(4)]
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Dropout(0.2), nn.Flatten(),
                        nn.Linear(144, 3))
    state = torch.get_rng_state()
    MAMLClassifier(module=net, n_meta_iter=1, meta_batch_size=2,
                   random_state=0).meta_fit(tasks)
    assert torch.equal(state, torch.get_rng_state())


class _LayersInAPlainList(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = [nn.Linear(4, 8)]  # not an nn.ModuleList: not registered
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        return self.out(torch.tanh(self.layers[0](x)))


def test_a_layer_in_a_plain_list_is_refused_with_the_fix():
    """Its parameters are not the module's: never adapted nor meta-trained
    (accepted when the closure check was narrowed to the module's own)."""
    X, y, _ = _task()
    with pytest.raises(ValueError, match=r"'layers\[0\]\.weight', which a plain list"
                                         r".*nn\.ModuleList"):
        MAMLClassifier(module=_LayersInAPlainList(), random_state=0).fit(X, y)


# -- the twentieth pass -------------------------------------------------------

class _Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.out = nn.Linear(4, 8), nn.Linear(8, 3)

    def forward(self, x):
        return self.out(torch.relu(self.a(x)))


def test_a_compiled_module_is_taken_as_before():
    """torch.compile's module cannot be asked its truth value: the check
    failed on `original or ...` with a TypeError."""
    X, y, X_query = _task()
    torch.manual_seed(0)
    plain = _Small()
    compiled = torch.compile(copy.deepcopy(plain), backend="eager")
    expected = MAMLClassifier(module=plain, random_state=0).fit(X, y).predict_proba(
        X_query)
    got = MAMLClassifier(module=compiled, random_state=0).fit(X, y).predict_proba(
        X_query)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


class _SharedOnCopy(nn.Linear):
    def __deepcopy__(self, memo):
        return self


def test_the_check_never_moves_weights_a_copy_shares_with_the_user():
    X, y, _ = _task()
    body = _SharedOnCopy(4, 8).requires_grad_(False)
    before = body.weight.detach().clone()
    net = nn.Sequential(body, nn.ReLU(), nn.Linear(8, 3))
    MAMLClassifier(module=net, adapt_layers="head", random_state=0).fit(X, y)
    assert torch.equal(body.weight, before) and not body.weight.requires_grad


def test_a_module_backward_hook_is_refused():
    """fit ran it, meta-training's vmapped tasks did not."""
    X, y, _ = _task()
    net = _Small()
    net.out.register_full_backward_hook(
        lambda module, grad_in, grad_out: (torch.zeros_like(grad_in[0]),))
    with pytest.raises(ValueError, match="'out' has a backward hook"):
        MAMLClassifier(module=net, random_state=0).fit(X, y)


class _WideHalf(nn.Module):
    """72,000 float16 outputs: a pattern counted in float16 overflowed."""

    def __init__(self):
        super().__init__()
        self.a, self.out = nn.Linear(4, 8), nn.Linear(8, 6000)

    def forward(self, x):
        h = checkpoint(lambda z: torch.tanh(self.a(z)), x, use_reentrant=False)
        return self.out(h).half()


def test_checkpointing_under_wide_half_precision_outputs_is_refused():
    X, y, _ = _task()
    with pytest.raises(ValueError, match="torch.utils.checkpoint"):
        MAMLClassifier(module=_WideHalf(), head_init="meta", random_state=0).fit(
            np.concatenate([X] * 2), np.concatenate([y] * 2))


# -- the twenty-first pass ----------------------------------------------------

class _Queue(nn.Module):
    """A buffer that grows in forward (a MoCo-style queue)."""

    def __init__(self):
        super().__init__()
        self.a, self.out = nn.Linear(4, 8), nn.Linear(8, 3)
        self.register_buffer("queue", torch.zeros(0, 8))

    def forward(self, x):
        h = torch.relu(self.a(x))
        if self.training:
            self.queue = torch.cat([self.queue, h.detach()])[-32:]
        return self.out(h)


class _KeepsItsLogits(nn.Module):
    """A buffer that is the outputs themselves."""

    def __init__(self, checkpointed=False):
        super().__init__()
        self.a, self.out = nn.Linear(4, 8), nn.Linear(8, 3)
        self.checkpointed = checkpointed
        self.register_buffer("last", torch.zeros(1, 3))

    def forward(self, x):
        if self.checkpointed:
            h = checkpoint(lambda z: torch.tanh(self.a(z)), x, use_reentrant=False)
        else:
            h = torch.tanh(self.a(x))
        out = self.out(h)
        self.last = out.detach()
        return out


class _TeacherBesideAHook(nn.Module):
    """A trainable teacher outside the module, and a hook closing over self."""

    def __init__(self):
        super().__init__()
        self.a, self.out = nn.Linear(4, 8), nn.Linear(8, 3)
        self.a.register_forward_hook(
            lambda module, inputs, out: setattr(self, "norm", float(out.norm())))
        self.act = lambda h: torch.tanh(h * self.out.weight.new_ones(()))

    def forward(self, x):
        return self.out(self.act(self.a(x + 0.1 * _TEACHER(x))))


@pytest.mark.parametrize("module", [_Queue, _KeepsItsLogits, _TeacherBesideAHook],
                         ids=["queue", "kept-logits", "teacher-and-hook"])
def test_legitimate_modules_are_taken_by_the_last_check(module):
    """The reused copy's buffers were restored by writing into them: a
    queue's new shape raised torch's error, and logits kept as a buffer were
    overwritten, refused in eval mode; a hook closing over the module was
    blamed for a teacher's weights."""
    X, y, X_query = _task()
    proba = MAMLClassifier(module=module(), random_state=0).fit(X, y).predict_proba(
        X_query)
    assert proba.shape == (5, 3) and np.isfinite(proba).all()


def test_checkpointing_is_refused_when_the_outputs_are_kept_as_a_buffer():
    """Restoring the buffer overwrote the outputs compared: accepted."""
    X, y, _ = _task()
    with pytest.raises(ValueError, match="torch.utils.checkpoint"):
        MAMLClassifier(module=_KeepsItsLogits(checkpointed=True), head_init="meta",
                       random_state=0).fit(X, y)
