"""What the fifteenth pass found: one-class tasks trained silently after a
first call or with an n_way attribute; a module that writes its input in
one mode, or squeezes the batch axis away, passed the probe; integer
parameters, a module class refusing saved module_params and misuse of the
functional core failed inside torch."""

import io
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

import sk_meta
from sk_meta import FOMAMLClassifier, MAMLClassifier, MAMLRegressor
from sk_meta.functional import (
    adapt,
    batched_forward,
    cross_entropy_loss,
    expand_params,
    find_output_layer,
    prepare_module,
    prototype_head,
)
from sk_meta.tasks import EpisodeSampler

X_DIGITS, Y_DIGITS = load_digits(return_X_y=True)
X_DIGITS = X_DIGITS / 16


def _sampler(n_tasks=None, seed=0):
    return EpisodeSampler(X_DIGITS, Y_DIGITS, 3, 2, 3, classes=range(7),
                          n_tasks=n_tasks, random_state=seed)


def _one_class_tasks(n=4):
    return [(X_DIGITS[Y_DIGITS == c][:3], Y_DIGITS[Y_DIGITS == c][:3],
             X_DIGITS[Y_DIGITS == c][3:6], Y_DIGITS[Y_DIGITS == c][3:6])
            for c in range(n)]


# -- one-class tasks after the network is built ---------------------------------------

def test_one_class_tasks_are_refused_under_a_warm_start():
    """The network was built by an earlier call: the first meta-batch was not
    looked at, and meta-training taught the init to predict code 0."""
    est = FOMAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=2, random_state=0)
    est.meta_fit(_sampler())
    est.set_params(warm_start=True, n_meta_iter=6)
    with pytest.raises(ValueError, match="the tasks of the list have one class each"):
        est.meta_fit(_one_class_tasks())
    assert est.n_meta_iter_ == 2


def test_meta_partial_fit_per_meta_batch_still_equals_meta_fit_on_the_stream():
    """A one-class task in the middle of a stream: meta_fit trains on it,
    so meta_partial_fit's later calls must too (the first pass refused it)."""
    rng = np.random.RandomState(0)

    def task(n_classes):
        y = np.arange(6) % n_classes
        return rng.randn(6, 4), y, rng.randn(6, 4), y

    stream = [task(2), task(2), task(1), task(2)]
    whole = FOMAMLClassifier(hidden_layer_sizes=(8,), meta_batch_size=1,
                             n_meta_iter=4, random_state=0).meta_fit(iter(stream))
    parts = FOMAMLClassifier(hidden_layer_sizes=(8,), meta_batch_size=1,
                             random_state=0)
    for one in stream:
        parts.meta_partial_fit([one])
    assert parts.n_meta_iter_ == whole.n_meta_iter_ == 4
    for name, value in whole.module_.state_dict().items():
        assert torch.equal(parts.module_.state_dict()[name], value)
    with pytest.raises(ValueError, match="the tasks of the list have one class"):
        FOMAMLClassifier(hidden_layer_sizes=(8,)).meta_partial_fit([stream[2]])


class _TasksWithWidth:
    """Tasks that say how many classes they may have (``n_way``)."""

    n_way = 3

    def __init__(self, tasks):
        self.tasks = tasks

    def __iter__(self):
        return iter(self.tasks)


def test_one_class_tasks_are_refused_with_an_n_way_attribute():
    """n_way=3 sized the network, and one-class tasks trained silently."""
    est = MAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=3, random_state=0)
    with pytest.raises(ValueError, match="first meta-batch have one class each"):
        est.meta_fit(_TasksWithWidth(_one_class_tasks()))
    assert not hasattr(est, "n_meta_iter_")


def test_a_list_with_one_task_of_two_classes_is_accepted():
    tasks = _one_class_tasks()
    X_s = np.vstack([tasks[0][0], tasks[1][0]])
    y_s = np.concatenate([tasks[0][1], tasks[1][1]])
    tasks.append((X_s, y_s, X_s, y_s))
    est = FOMAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=2, random_state=0)
    est.meta_fit(tasks)
    assert est.n_meta_iter_ == 2


# -- messages -------------------------------------------------------------------------

def test_a_failed_set_params_names_the_estimator_as_it_stays():
    """The message showed MAMLClassifier(inner_steps=3), which the call undid."""
    from sk_meta.model_selection import MetaGridSearch

    est = MAMLClassifier()
    with pytest.raises(ValueError, match=r"for estimator MAMLClassifier\(\)\."):
        est.set_params(inner_steps=3, misspelled=1)
    assert est.inner_steps == MAMLClassifier().inner_steps
    search = MetaGridSearch(MAMLClassifier(), {"inner_lr": [0.1]})
    with pytest.raises(ValueError, match=r"estimator MetaGridSearch\(estimator="
                                         r"MAMLClassifier\(\),"):
        search.set_params(estimator__inner_steps=3, misspelled=1)
    assert search.estimator.inner_steps == MAMLClassifier().inner_steps


# -- custom modules -------------------------------------------------------------------

X_SMALL = np.random.RandomState(0).randn(12, 4).astype(np.float32)
Y_SMALL = np.repeat([0, 1, 2], 4)


class _InPlaceInOneMode(nn.Module):
    """Doubles its input in place in eval mode (``in_eval``) or in train mode."""

    def __init__(self, in_eval=True):
        super().__init__()
        self.fc, self.in_eval = nn.Linear(4, 3), in_eval

    def forward(self, x):
        if self.training != self.in_eval:
            x.mul_(2)
        return self.fc(x)


@pytest.mark.parametrize("in_eval", [True, False])
def test_a_module_that_writes_its_input_in_one_mode_is_refused(in_eval):
    """The probe ran in the module's mode alone: predict doubled the caller's
    query array at every call (in eval mode), or fit its support set (in
    train mode, given an instance in eval mode)."""
    module = _InPlaceInOneMode(in_eval)
    if not in_eval:
        module.eval()
    X = X_SMALL.copy()
    mode = "eval" if in_eval else "train"
    with pytest.raises(ValueError, match=f"modifies its input in place.*{mode} mode"):
        MAMLClassifier(module=module, head_init="meta", inner_steps=3).fit(X, Y_SMALL)
    np.testing.assert_array_equal(X, X_SMALL)


class _Squeezed(nn.Module):
    def __init__(self, n_outputs=2):
        super().__init__()
        self.fc = nn.Linear(4, n_outputs)

    def forward(self, x):
        return self.fc(x).squeeze()


class _CountsCalls(nn.Module):
    """Counts its training-mode calls in a buffer, and says when it runs in
    eval mode."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        if self.training:
            self.calls += 1
        else:
            warnings.warn("run in eval mode", UserWarning)
        return self.fc(x)


def test_the_extra_probes_leave_no_trace():
    """The probe in the other mode and on one sample ran on the network
    meta-training uses: a spectral norm's power iteration (or a counter) moved
    on, changing results, and the module's eval-mode warning showed."""
    from sk_meta._network import NetworkSpec

    network = NetworkSpec.from_estimator(MAMLClassifier(module=_CountsCalls))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module, width = network.build((4,), 3, 0, X_SMALL)
    assert width == 3
    assert int(module.calls) == 1  # the probe itself, in train mode


@pytest.mark.parametrize("n_outputs", [1, 2, 3])
def test_a_module_that_squeezes_its_batch_axis_is_refused(n_outputs):
    """predict(X[:1]) returned shape (2, 1) for a two-output regressor, or
    failed inside predict_proba with an IndexError."""
    y = (Y_SMALL if n_outputs == 3 else
         np.random.RandomState(0).randn(12, n_outputs).squeeze())
    Estimator = MAMLClassifier if n_outputs == 3 else MAMLRegressor
    est = Estimator(module=_Squeezed, module_params={"n_outputs": n_outputs},
                    head_init="meta", random_state=0)
    with pytest.raises(ValueError, match=r"on one sample \((2|3)?,?\)|on one sample "
                                         r"\(\)"):
        est.fit(X_SMALL, y)


class _IntegerParameter(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.n_calls = nn.Parameter(torch.tensor(0), requires_grad=False)

    def forward(self, x):
        return self.fc(x)


def test_an_integer_parameter_is_named():
    """torch's 'only Tensors of floating point dtype can require gradients'."""
    est = MAMLClassifier(module=_IntegerParameter, head_init="meta", n_meta_iter=2)
    with pytest.raises(TypeError, match="n_calls is a parameter of dtype "
                                        "torch.int64.*register_buffer"):
        est.fit(X_SMALL, Y_SMALL)
    with pytest.raises(TypeError, match="n_calls is a parameter of dtype"):
        est.meta_fit([(X_SMALL, Y_SMALL, X_SMALL, Y_SMALL)])


class _Scaled(nn.Module):
    def __init__(self, scale=1.0):
        super().__init__()
        self.fc, self.scale = nn.Linear(4, 3), scale

    def forward(self, x):
        return self.fc(x) * self.scale


class _Unscaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x)


def test_load_with_a_class_that_refuses_the_module_params_blames_the_class():
    """It said the file was not a valid sk_meta file."""
    buffer = io.BytesIO()
    MAMLClassifier(module=_Scaled, module_params={"scale": 2.0}, head_init="meta",
                   random_state=0).fit(X_SMALL, Y_SMALL).save(buffer)
    buffer.seek(0)
    with pytest.warns(sk_meta.exceptions.PersistenceWarning), \
            pytest.raises(ValueError, match="module class given to load could not be "
                                            r"built with.*\{'scale': 2.0\}") as caught:
        sk_meta.load(buffer, module=_Unscaled)
    assert "not a valid sk_meta file" not in str(caught.value)


# -- the functional core --------------------------------------------------------------

def _functional_problem():
    torch.manual_seed(0)
    module = prepare_module(nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)))
    params = expand_params({n: p.detach() for n, p in module.named_parameters()}, 2)
    X = torch.randn(2, 6, 4)
    y = torch.randint(0, 3, (2, 6))
    forward = batched_forward(module)

    def loss_fn(outputs, y):
        return cross_entropy_loss(outputs, y, 3)

    return module, forward, params, X, y, loss_fn


def test_functional_adapt_names_what_torch_would_not():
    module, forward, params, X, y, loss_fn = _functional_problem()
    options = {"loss_fn": loss_fn, "lr": 0.1, "n_steps": 2}
    with pytest.raises(ValueError, match=r"lr\['0.weight'\] has shape \(7,\), which "
                                         "does not broadcast"):
        adapt(forward, params, X, y, **{**options, "lr": {n: torch.ones(7)
                                                          for n in params}})
    with pytest.raises(TypeError, match=r"loss_fn must return a scalar tensor.*"
                                        r"shape \(2,\)"):
        adapt(forward, params, X, y, **{**options, "loss_fn": lambda out, t: (
            loss_fn(out, t) * torch.ones(2))})
    with pytest.raises(TypeError, match="loss_fn must return a scalar tensor.*int"):
        adapt(forward, params, X, y, **{**options, "loss_fn": lambda out, t: 1})
    with pytest.raises(TypeError, match=r"params\['0.weight'\] is torch.int64"):
        adapt(forward, {**params, "0.weight": params["0.weight"].long()}, X, y,
              **options)
    with pytest.raises(ValueError, match="X holds no samples"):
        adapt(forward, params, X[:, :0], y[:, :0], **options)
    # a one-number loss of shape (1,) and per-element rates of the right shape run
    adapted, _ = adapt(forward, params, X, y, **{
        **options, "lr": {n: torch.full(p.shape, 0.1) for n, p in params.items()},
        "loss_fn": lambda out, t: loss_fn(out, t).reshape(1), "detach": True})
    reference, _ = adapt(forward, params, X, y, detach=True, **options)
    for name in params:
        torch.testing.assert_close(adapted[name], reference[name])


def test_prototype_head_names_codes_out_of_range():
    """one_hot's 'Class values must be smaller than num_classes'."""
    features, y = torch.randn(2, 6, 5), torch.randint(0, 3, (2, 6))
    with pytest.raises(ValueError, match=r"y must hold class codes in 0 \.\. 2.*"
                                         "from 3 to 5"):
        prototype_head(features, y + 3, 3)
    weight, bias = prototype_head(features, y, 3)
    assert weight.shape == (2, 3, 5) and bias.shape == (2, 3)


def test_find_output_layer_refuses_a_numpy_probe():
    module = prepare_module(nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)))
    with pytest.raises(TypeError, match="probe must be a tensor, got ndarray"):
        find_output_layer(module, "vmap", np.zeros((2, 4), dtype=np.float32))


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_a_scripted_output_layer_is_named():
    """The first nn.Linear was checked as the output layer, and torch's shape
    error quoted; a scripted body with a plain output layer still runs."""
    scripted_head = nn.Sequential(nn.Linear(4, 8), nn.ReLU(),
                                  torch.jit.script(nn.Linear(8, 3)))
    with pytest.raises(ValueError, match="2 is a TorchScript module.*script the "
                                         "body alone"):
        MAMLClassifier(module=scripted_head).fit(X_SMALL, Y_SMALL)
    body = torch.jit.trace(nn.Sequential(nn.Linear(4, 16), nn.ReLU()),
                           torch.randn(2, 4))
    clf = MAMLClassifier(module=nn.Sequential(body, nn.Linear(16, 3)),
                         random_state=0).fit(X_SMALL, Y_SMALL)
    assert clf.score(X_SMALL, Y_SMALL) > 0.5


class _SqueezedOldModule(_Squeezed):
    pass


def test_a_file_of_a_squeezing_module_saved_before_the_check_still_loads():
    """The new probe refused it in load: predictions on several rows, right
    before, became impossible; predict refuses the one-row shape instead."""
    reg = MAMLRegressor(module=_SqueezedOldModule, module_params={"n_outputs": 2},
                        head_init="meta", random_state=0)
    y = np.random.RandomState(0).randn(12, 2)
    # what an older version fitted: the probe's batch-axis check was not there
    from sk_meta import _network

    original = _network._check_one_sample_output
    _network._check_one_sample_output = lambda *args: None
    try:
        reg.fit(X_SMALL, y)
    finally:
        _network._check_one_sample_output = original
    buffer = io.BytesIO()
    reg.save(buffer)
    buffer.seek(0)
    loaded = sk_meta.load(buffer, module=_SqueezedOldModule)
    np.testing.assert_array_equal(loaded.predict(X_SMALL[:3]), reg.predict(X_SMALL[:3]))
    with pytest.raises(ValueError, match=r"outputs of shape \(2,\) on 1 samples"):
        loaded.predict(X_SMALL[:1])


def test_functional_adapt_takes_complex_params_and_refuses_growing_rates():
    module, forward, params, X, y, loss_fn = _functional_problem()
    with pytest.raises(ValueError, match=r"lr\['0.weight'\] has shape \(3, 1, 5, 4\)"):
        adapt(forward, params, X, y, loss_fn=loss_fn, n_steps=1,
              lr={n: torch.full((3, 1, *p.shape[1:]), 0.1) for n, p in params.items()})
    # per-task rates of shape (B, 1, 1) broadcast without growing the parameter
    adapt(forward, params, X, y, loss_fn=loss_fn, n_steps=1,
          lr={n: torch.full((2,) + (1,) * (p.dim() - 1), 0.1)
              for n, p in params.items()})
    # a complex parameter the forward ignores: adapted (by a zero gradient)
    extra = {**params, "extra": torch.ones(2, 3, dtype=torch.complex64)}

    def forward_ignoring_extra(p, X):
        return forward({n: v for n, v in p.items() if n != "extra"}, X)

    adapted, _ = adapt(forward_ignoring_extra, extra, X, y, loss_fn=loss_fn, lr=0.1,
                       n_steps=1)
    assert adapted["extra"].dtype == torch.complex64


def test_a_one_number_loss_of_shape_one_runs_under_functional_too():
    """torch.func.grad wants a 0-d loss: 'Expected f(*args) to return a scalar
    Tensor, got tensor with 1 dims'."""
    module, forward, params, X, y, loss_fn = _functional_problem()
    options = {"lr": 0.1, "n_steps": 2, "functional": True}
    adapted, loss = adapt(forward, params, X, y, **options,
                          loss_fn=lambda out, t: loss_fn(out, t).reshape(1))
    reference, reference_loss = adapt(forward, params, X, y, loss_fn=loss_fn, **options)
    for name in params:
        torch.testing.assert_close(adapted[name], reference[name])
    torch.testing.assert_close(loss, reference_loss)


# -- pass AA ---------------------------------------------------------------------------

def test_a_warm_start_that_continues_an_iterator_is_not_checked_for_one_class():
    """Its first meta-batch is a later meta-batch of the stream: refusing it
    (and consuming it) broke the continuation that equals one meta_fit."""
    rng = np.random.RandomState(0)

    def task(n_classes):
        y = np.arange(6) % n_classes
        return rng.randn(6, 4), y, rng.randn(6, 4), y

    stream = [task(2), task(2), task(1), task(2)]
    options = {"hidden_layer_sizes": (8,), "meta_batch_size": 1, "random_state": 0}
    whole = FOMAMLClassifier(n_meta_iter=4, **options).meta_fit(iter(stream))
    halves = FOMAMLClassifier(n_meta_iter=2, **options)
    remaining = iter(stream)
    halves.meta_fit(remaining)
    halves.set_params(warm_start=True, n_meta_iter=4).meta_fit(remaining)
    assert halves.n_meta_iter_ == 4
    for name, value in whole.module_.state_dict().items():
        assert torch.equal(halves.module_.state_dict()[name], value)


class _WritesThroughData(nn.Module):
    """Writes its input through .data, which no version counter sees."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x.data.mul_(2)
        return self.fc(x)


def test_fit_and_predict_never_hand_the_callers_arrays_to_the_module():
    X_support, X_query = X_SMALL.copy(), X_SMALL[:5].copy()
    clf = MAMLClassifier(module=_WritesThroughData, head_init="meta", inner_steps=2,
                         random_state=0).fit(X_support, Y_SMALL)
    clf.predict_proba(X_query)
    np.testing.assert_array_equal(X_support, X_SMALL)
    np.testing.assert_array_equal(X_query, X_SMALL[:5])


def test_functional_adam_refuses_complex_params():
    """Its second moment (g * g) is not |g|² for complex gradients: wrong steps."""
    module, forward, params, X, y, loss_fn = _functional_problem()
    extra = {**params, "extra": torch.ones(2, 3, dtype=torch.complex64)}
    with pytest.raises(ValueError, match="optimizer='adam' takes real parameters"):
        adapt(lambda p, X: forward({n: v for n, v in p.items() if n != "extra"}, X),
              extra, X, y, loss_fn=loss_fn, lr=0.1, n_steps=1, detach=True,
              optimizer="adam")
