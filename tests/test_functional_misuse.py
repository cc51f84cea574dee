"""Misuse of the functional core (``sk_meta.functional``) that once ran on
silently or failed deep inside torch.

Each test is one case that once went wrong (its docstring says how).
"""

import numpy as np
import pytest
import torch
from torch import nn

from sk_meta.functional import (
    adapt,
    batched_forward,
    choose_strategy,
    expand_params,
    linear_head,
    mse_loss,
    outputs_beside_support,
    prepare_module,
    prototype_head,
)


def _linear():
    torch.manual_seed(0)
    module = prepare_module(nn.Linear(3, 2))
    params = {name: p.detach() for name, p in module.named_parameters()}
    return module, params


def test_params_holding_some_parameters_adapt_those_alone():
    """As with functional_call, the parameters params leaves out run at the
    module's values: adapting the head's params alone equals adapting the
    whole dict with trainable= the head (a refusal of this, once added,
    broke that use)."""
    module, params = _linear()
    X, y = torch.randn(2, 5, 3), torch.randn(2, 5, 2)
    for strategy in ("vmap", "loop"):
        forward = batched_forward(module, strategy=strategy)
        options = {"loss_fn": mse_loss, "lr": 0.1, "n_steps": 2, "detach": True}
        alone, loss_alone = adapt(forward, expand_params({"bias": params["bias"]}, 2),
                                  X, y, **options)
        whole, loss_whole = adapt(forward, expand_params(params, 2), X, y,
                                  trainable=["bias"], **options)
        assert sorted(alone) == ["bias"]
        torch.testing.assert_close(alone["bias"], whole["bias"])
        torch.testing.assert_close(loss_alone, loss_whole)


def test_native_strategy_needs_forward_batched():
    """strategy='native' on a module without forward_batched raised a bare
    AttributeError from the first call."""
    module, _ = _linear()
    with pytest.raises(ValueError, match="forward_batched"):
        batched_forward(module, strategy="native")
    with pytest.raises(ValueError, match="unknown strategy 'fast'"):
        batched_forward(module, strategy="fast")


def test_choose_strategy_raises_the_modules_own_error():
    """Any RuntimeError under vmap was read as "vmap cannot batch this
    module": inputs of the wrong shape chose the slow loop, and the error
    came later, from the first step."""
    module, _ = _linear()
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        choose_strategy(module, probe=torch.randn(4, 7))
    assert choose_strategy(module, probe=torch.randn(4, 3)) == "vmap"


def test_choose_strategy_still_picks_the_loop_for_what_vmap_cannot_batch():
    class Unbatchable(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 2)

        def forward(self, X):
            out = self.linear(X)
            if out.sum() > -1e30:  # data-dependent control flow: vmap refuses it
                return out
            return -out

    module = prepare_module(Unbatchable())
    assert choose_strategy(module, probe=torch.randn(4, 3)) == "loop"


def test_outputs_beside_support_on_no_query_rows_and_bad_row_counts():
    """An empty query set raised torch.cat's "expected a non-empty list";
    rows_per_call=0 raised from Tensor.split."""
    module, params = _linear()
    X_support = torch.randn(4, 3)
    outputs = outputs_beside_support(module, {}, params, X_support, torch.empty(0, 3))
    assert outputs.shape == (0, 2)
    with pytest.raises(ValueError, match="rows_per_call must be at least 1"):
        outputs_beside_support(module, {}, params, X_support, torch.randn(2, 3),
                               rows_per_call=0)
    with pytest.raises(ValueError, match="sample shape of X_support"):
        outputs_beside_support(module, {}, params, X_support, torch.randn(2, 5))


def test_adapt_refuses_inputs_that_are_not_a_tensor():
    """A numpy array failed on ``X.dim()`` with an AttributeError."""
    module, params = _linear()
    X, y = torch.randn(2, 5, 3), torch.randn(2, 5, 2)
    with pytest.raises(TypeError, match="X must be a tensor, got ndarray"):
        adapt(batched_forward(module), expand_params(params, 2), X.numpy(), y,
              loss_fn=mse_loss, lr=0.1, n_steps=1)


class _CastsToFloat64(nn.Module):
    """float64 parameters; float32 in and out (a legitimate module)."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(4, 8).double()
        self.out = nn.Linear(8, 3).double()

    def forward(self, X):
        return self.out(torch.relu(self.hidden(X.double()))).float()


def _six_class_tasks():
    from sk_meta.tasks import EpisodeSampler

    rng = np.random.RandomState(0)
    X, y = rng.randn(120, 4), np.arange(120) % 6
    return X, y, EpisodeSampler(X, y, 3, 2, 3, random_state=0)


def test_a_float64_module_gets_a_named_error_or_works():
    """With float64 parameters, the default prototype head raised torch's
    "mat1 and mat2 must have the same dtype" from find_output_layer; a
    plain float64 module failed with no word of the dtype."""
    from sk_meta import MAMLClassifier

    X, y, tasks = _six_class_tasks()
    # the head split cannot run this module: the error says what to use
    with pytest.raises(ValueError, match="head_init='meta'"):
        MAMLClassifier(module=_CastsToFloat64, n_meta_iter=2,
                       random_state=0).meta_fit(tasks)
    # which works: the module casts its own inputs
    clf = MAMLClassifier(module=_CastsToFloat64, head_init="meta", n_meta_iter=2,
                         random_state=0).meta_fit(tasks)
    support = np.isin(y, [0, 1, 2])
    assert clf.fit(X[support][:9], y[support][:9]).predict(X[:4]).shape == (4,)
    with pytest.raises(ValueError, match=r"has torch.float64 parameters: convert "
                                         r"it to float32, with module.float\(\)"):
        MAMLClassifier(module=nn.Linear(4, 3).double(), head_init="meta",
                       n_meta_iter=2).meta_fit(tasks)


@pytest.mark.parametrize("call, error, message", [
    (lambda: prototype_head(torch.randn(2, 6, 4), torch.zeros(2, 6).long(), 0),
     ValueError, "n_outputs must be at least 1"),
    (lambda: prototype_head(torch.randn(2, 6, 4), torch.zeros(2, 5).long(), 3),
     ValueError, "y of shape \\(B, n_samples\\)"),
    (lambda: prototype_head(torch.randn(6, 4), torch.zeros(6).long(), 3),
     ValueError, "features of shape \\(B, n_samples, n_features\\)"),
    (lambda: prototype_head(torch.randn(2, 6, 4), torch.zeros(2, 6), 3),
     TypeError, "int64"),
    (lambda: linear_head(torch.randn(2, 3, 4), torch.randn(2, 3), torch.randn(2, 6, 5)),
     ValueError, "same number of tasks and of features"),
    (lambda: linear_head(torch.randn(2, 3, 4), torch.randn(3), torch.randn(2, 6, 4)),
     ValueError, "bias must have shape \\(2, 3\\)"),
    (lambda: linear_head(torch.randn(3, 4), None, torch.randn(6, 4)),
     ValueError, "batch of tasks"),
])
def test_heads_name_a_bad_argument(call, error, message):
    """They failed inside torch (one_hot's "Class values must be smaller
    than num_classes", baddbmm's shape errors) or, with float labels,
    one_hot's "one_hot is only applicable to index tensor"."""
    with pytest.raises(error, match=message):
        call()


def test_heads_still_compute_what_they_did():
    features = torch.randn(2, 6, 4, dtype=torch.float64)
    y = torch.tensor([[0, 1, 2, 0, 1, 2], [2, 2, 1, 1, 0, 0]])
    weight, bias = prototype_head(features, y, 3, scale=0.5)
    for task in range(2):
        for k in range(3):
            centre = features[task][y[task] == k].mean(0)
            torch.testing.assert_close(weight[task, k], centre)  # 2 * 0.5 * c_k
            torch.testing.assert_close(bias[task, k], -0.5 * centre.square().sum())
    outputs = linear_head(weight, bias, features)
    torch.testing.assert_close(outputs, features @ weight.transpose(1, 2)
                               + bias.unsqueeze(1))


@pytest.mark.parametrize("lr", [
    torch.tensor(float("nan")), {"weight": torch.tensor(float("inf")), "bias": 0.1},
], ids=["tensor", "dict of tensors"])
def test_adapt_refuses_a_constant_tensor_rate_that_is_not_finite(lr):
    """A NaN or infinite rate given as a CPU tensor ran every step to NaN
    weights; floats were already refused."""
    module, params = _linear()
    X, y = torch.randn(2, 5, 3), torch.randn(2, 5, 2)
    with pytest.raises(ValueError, match="must be finite"):
        adapt(batched_forward(module), expand_params(params, 2), X, y,
              loss_fn=mse_loss, lr=lr, n_steps=2)
    # a finite tensor rate still gives what the float gives
    as_tensor, _ = adapt(batched_forward(module), expand_params(params, 2), X, y,
                         loss_fn=mse_loss, lr=torch.tensor(0.1), n_steps=2)
    as_float, _ = adapt(batched_forward(module), expand_params(params, 2), X, y,
                        loss_fn=mse_loss, lr=0.1, n_steps=2)
    torch.testing.assert_close(as_tensor, as_float)


def test_batched_forward_auto_falls_back_to_the_loop_for_an_rnn():
    """batched_forward(module) ("auto", no probe) assumed vmap, so a GRU
    failed with torch's "Batching rule not implemented for aten::gru.input",
    though the docs say RNNs run task by task."""
    from sk_meta.functional import batched_forward, expand_params, prepare_module

    class LastStep(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = torch.nn.GRU(3, 5, batch_first=True)
            self.head = torch.nn.Linear(5, 2)

        def forward(self, X):
            return self.head(self.gru(X)[0][:, -1])

    torch.manual_seed(0)
    module = prepare_module(LastStep())
    params = expand_params({k: p.detach() for k, p in module.named_parameters()}, 3)
    X = torch.randn(3, 4, 6, 3)
    auto = batched_forward(module)(params, X)
    loop = batched_forward(module, strategy="loop")(params, X)
    torch.testing.assert_close(auto, loop, rtol=0, atol=0)


def test_maml_meta_gradient_takes_the_meta_losss_options():
    """maml_meta_gradient had no trainable/step_weights/task_params/functional
    options, which maml_meta_loss has: ANIL or MAML++ in one's own loop
    needed maml_meta_loss and autograd by hand. With them, the gradient is
    that of maml_meta_loss with the same options."""
    import functools

    from sk_meta.functional import (
        TaskBatch,
        batched_forward,
        cross_entropy_loss,
        maml_meta_gradient,
        maml_meta_loss,
        prepare_module,
    )

    torch.manual_seed(0)
    module = prepare_module(torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double())
    forward = batched_forward(module)
    params = {k: p.detach().clone().requires_grad_()
              for k, p in module.named_parameters()}
    y = torch.arange(6).remainder(3).expand(2, 6)
    batch = TaskBatch(torch.randn(2, 6, 4, dtype=torch.float64), y,
                      torch.randn(2, 6, 4, dtype=torch.float64), y, n_classes=3)
    loss_fn = functools.partial(cross_entropy_loss, n_classes=3)
    options = dict(trainable={"2.weight", "2.bias"},
                   step_weights=torch.tensor([0.2, 0.8]))
    grads, _ = maml_meta_gradient(forward, params, batch, loss_fn=loss_fn, lr=0.3,
                                  n_steps=2, **options)
    loss = maml_meta_loss(forward, params, batch, loss_fn=loss_fn, lr=0.3, n_steps=2,
                          **options)
    expected = torch.autograd.grad(loss, list(params.values()))
    for name, value in zip(params, expected, strict=True):
        torch.testing.assert_close(grads[name], value, rtol=1e-12, atol=1e-14)
    plain, _ = maml_meta_gradient(forward, params, batch, loss_fn=loss_fn, lr=0.3,
                                  n_steps=2)
    assert not torch.allclose(plain["0.weight"], grads["0.weight"])


def test_the_auto_fallback_to_the_loop_needs_the_loop_to_run():
    """A first call that failed for the module's own reason (inputs of the
    wrong width) switched the "auto" forward to the loop for good: every
    later call ran task by task, about 9 times slower, with no message."""
    from sk_meta.functional import batched_forward, expand_params, prepare_module

    module = prepare_module(torch.nn.Linear(3, 2))
    forward = batched_forward(module)
    params = expand_params({k: p.detach() for k, p in module.named_parameters()}, 4)
    with pytest.raises(RuntimeError):
        forward(params, torch.randn(4, 5, 4))  # 4 features, not 3
    calls = []
    original = torch.func.functional_call

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    import sk_meta.functional._forward as forward_module

    forward_module.functional_call, saved = counting, forward_module.functional_call
    try:
        forward(params, torch.randn(4, 5, 3))
        forward(params, torch.randn(4, 5, 3))
    finally:
        forward_module.functional_call = saved
    # vmap: one traced call per forward (plus the first call's trial), not 4
    assert len(calls) <= 3


def test_task_params_with_params_that_do_not_require_grad_are_refused():
    """maml_meta_gradient replaced such params by new leaves that task_params
    did not depend on: an all-zero gradient, silently."""
    import functools

    from sk_meta.functional import (
        TaskBatch,
        batched_forward,
        cross_entropy_loss,
        expand_params,
        maml_meta_gradient,
        prepare_module,
    )

    module = prepare_module(torch.nn.Linear(4, 3))
    params = {k: p.detach() for k, p in module.named_parameters()}
    y = torch.arange(6).remainder(3).expand(2, 6)
    batch = TaskBatch(torch.randn(2, 6, 4), y, torch.randn(2, 6, 4), y, n_classes=3)
    with pytest.raises(ValueError, match="some params do not require grad"):
        maml_meta_gradient(batched_forward(module), params, batch,
                           loss_fn=functools.partial(cross_entropy_loss, n_classes=3),
                           lr=0.1, n_steps=1, task_params=expand_params(params, 2))


def _mlp_batch(n_tasks=2, n_samples=6):
    from sk_meta.models import MLP

    torch.manual_seed(0)
    module = MLP(4, (8,), 3)
    params = {name: p.detach() for name, p in module.named_parameters()}
    X, y = torch.randn(n_tasks, n_samples, 4), torch.arange(n_samples).repeat(
        n_tasks, 1) % 3
    return module, params, X, y


def test_cross_entropy_loss_names_class_codes_out_of_range():
    """Codes outside 0 .. n_classes - 1 reached torch's "Target 3 is out of
    bounds" (a device-side assert on a GPU) from cross_entropy_loss, adapt
    and maml_meta_loss."""
    from functools import partial

    from sk_meta.functional import TaskBatch, cross_entropy_loss, maml_meta_loss

    module, params, X, y = _mlp_batch()
    logits = torch.randn(2, 6, 3)
    for codes, found in ((y + 1, "from 1 to 3"), (y - 1, "from -1 to 1")):
        for balanced in (False, True):
            with pytest.raises(ValueError, match=f"0 .. 2 \\(n_classes=3\\); found "
                                                 f"codes {found}"):
                cross_entropy_loss(logits, codes, 3, balanced=balanced)
    loss = partial(cross_entropy_loss, n_classes=3)
    forward = batched_forward(module)
    with pytest.raises(ValueError, match="found codes from 3 to 5"):
        adapt(forward, expand_params(params, 2), X, y + 3, loss_fn=loss, lr=0.1,
              n_steps=1)
    with pytest.raises(ValueError, match="found codes from 1 to 3"):
        maml_meta_loss(forward, params, TaskBatch(X, y, X, y + 1, 3), loss_fn=loss,
                       lr=0.1, n_steps=1)
    # codes in range: the sum over tasks of torch's per-task mean
    expected = sum(torch.nn.functional.cross_entropy(logits[i], y[i]) for i in range(2))
    torch.testing.assert_close(cross_entropy_loss(logits, y, 3), expected)
    torch.testing.assert_close(cross_entropy_loss(logits, y.int(), 3), expected)


def test_float64_inputs_to_a_float32_module_get_a_named_error():
    """torch.from_numpy gives float64: adapt, maml_meta_loss,
    reptile_meta_gradient and adapt_and_predict failed with torch's "Input
    dtypes must be the same, got: input float, batch1: double", naming
    neither the inputs nor the parameters."""
    from functools import partial

    from sk_meta.functional import (
        TaskBatch,
        adapt_and_predict,
        cross_entropy_loss,
        maml_meta_loss,
        reptile_meta_gradient,
    )

    module, params, X, y = _mlp_batch()
    loss = partial(cross_entropy_loss, n_classes=3)
    forward = batched_forward(module)
    options = {"loss_fn": loss, "lr": 0.1, "n_steps": 1}
    named = "the inputs X are torch.float64 but the parameters are torch.float32"
    batch = TaskBatch(X.double(), y, X.double(), y, 3)
    for call in (
        lambda: adapt(forward, expand_params(params, 2), X.double(), y, **options),
        lambda: maml_meta_loss(forward, params, batch, **options),
        lambda: reptile_meta_gradient(forward, params, batch, **options),
        lambda: adapt_and_predict(forward, expand_params(params, 2), X.double(), y,
                                  X.double(), **options),
    ):
        with pytest.raises(TypeError, match=named) as caught:
            call()
        assert isinstance(caught.value.__cause__, RuntimeError)  # torch's, kept
    # the query alone in float64: named as the query
    with pytest.raises(TypeError, match="the inputs batch.X_query are torch.float64"):
        maml_meta_loss(forward, params, TaskBatch(X, y, X.double(), y, 3), **options)
    with pytest.raises(TypeError, match="the inputs X_query are torch.float64"):
        adapt_and_predict(forward, expand_params(params, 2), X, y, X.double(),
                          **options)
    # integer inputs to a float module, too
    with pytest.raises(TypeError, match="the inputs X are torch.int64 but the "
                                        "parameters are torch.float32"):
        adapt(forward, expand_params(params, 2), X.long(), y, **options)


def test_a_dtype_error_that_is_not_the_inputs_keeps_torchs_message():
    """The dtype error of a loss or of the targets was blamed on X (a
    float64 X the module casts itself), with advice that did not help."""
    torch.manual_seed(0)
    params = {"w": torch.randn(2, 3, 2), "b": torch.zeros(2, 2)}

    def casting_forward(p, X):
        return torch.bmm(X.float(), p["w"]) + p["b"][:, None]

    X = torch.randn(2, 4, 3, dtype=torch.float64)
    soft_targets = torch.softmax(torch.randn(2, 4, 2, dtype=torch.float64), -1)

    def loss(outputs, y):
        return torch.bmm(outputs, y.transpose(1, 2)).sum()

    with pytest.raises(RuntimeError, match="dtype|scalar type") as caught:
        adapt(casting_forward, params, X, soft_targets, loss_fn=loss, lr=0.1,
              n_steps=1)
    assert not isinstance(caught.value, TypeError)
    # with targets of the parameters' dtype it runs
    adapt(casting_forward, params, X, soft_targets.float(), loss_fn=loss, lr=0.1,
          n_steps=1)


def test_functional_losses_and_meta_losses_keep_their_torch_func_uses():
    """The range check of cross_entropy_loss read the codes back, which
    vmap cannot: per-task gradients (vmap of grad) failed; support and query
    of two integer dtypes (token codes) were refused although they run."""
    from functools import partial

    from sk_meta.functional import TaskBatch, cross_entropy_loss, maml_meta_loss

    torch.manual_seed(0)
    weights = {"w": torch.randn(5, 4), "b": torch.zeros(4)}

    def forward(p, X):  # shared (5, 4) or per-task (B, 5, 4) weights
        bias = p["b"][:, None] if p["b"].dim() == 2 else p["b"]
        return X @ p["w"] + bias

    X, y = torch.randn(3, 4, 5), torch.randint(0, 4, (3, 4))

    def task_loss(p, X, y):
        return cross_entropy_loss(forward(p, X[None]), y[None], 4)

    per_task = torch.func.vmap(torch.func.grad(task_loss), in_dims=(None, 0, 0))(
        weights, X, y)
    for i in range(3):
        one = torch.func.grad(task_loss)(weights, X[i], y[i])
        torch.testing.assert_close(per_task["w"][i], one["w"])
    torch.func.vmap(lambda p, X, y: adapt(
        forward, {k: v[None] for k, v in p.items()}, X[None], y[None], lr=0.1,
        n_steps=2, functional=True, loss_fn=partial(cross_entropy_loss, n_classes=4)
    )[1], in_dims=(None, 0, 0))(weights, X, y)
    # token codes of two integer dtypes
    torch.manual_seed(0)
    embedding = nn.Sequential(nn.Embedding(10, 3), nn.Flatten(), nn.Linear(6, 2))
    params = {k: v.detach().clone() for k, v in embedding.named_parameters()}
    tokens, labels = torch.randint(0, 10, (2, 4, 2)), torch.randint(0, 2, (2, 4))
    loss = maml_meta_loss(batched_forward(embedding), params,
                          TaskBatch(tokens, labels, tokens.int(), labels, 2),
                          loss_fn=partial(cross_entropy_loss, n_classes=2), lr=0.1,
                          n_steps=1)
    assert torch.isfinite(loss)


def test_a_module_that_casts_its_inputs_still_adapts_in_the_functional_api():
    """The named dtype error is raised only after torch fails: float32 inputs
    to a module of float64 parameters that casts them itself (a legitimate
    module) adapt as before, and match the same steps on float64 inputs."""
    module = prepare_module(_CastsToFloat64())
    params = {name: p.detach() for name, p in module.named_parameters()}
    torch.manual_seed(0)
    X, y = torch.randn(2, 6, 4), torch.randn(2, 6, 3)
    forward = batched_forward(module, strategy="loop")
    options = {"loss_fn": mse_loss, "lr": 0.1, "n_steps": 2, "detach": True}
    from_float32, _ = adapt(forward, expand_params(params, 2), X, y, **options)
    from_float64, _ = adapt(forward, expand_params(params, 2), X.double(), y, **options)
    for name in params:
        assert from_float32[name].dtype == torch.float64
        torch.testing.assert_close(from_float32[name], from_float64[name])


def test_a_rate_tensor_of_another_dtype_is_refused_not_promoted():
    """A float64 per-parameter rate turned float32 parameters into float64
    after one step (torch's type promotion), without a word; a float32 rate,
    a 0-dim float64 rate and a plain float keep them float32."""
    from functools import partial

    from sk_meta.functional import cross_entropy_loss

    torch.manual_seed(0)
    module = prepare_module(nn.Linear(4, 3))
    params = expand_params({n: p.detach() for n, p in module.named_parameters()}, 2)
    X, y = torch.randn(2, 6, 4), torch.randint(0, 3, (2, 6))
    options = {"loss_fn": partial(cross_entropy_loss, n_classes=3), "n_steps": 2}
    forward = batched_forward(module)
    for lr in (0.1, torch.tensor(0.1, dtype=torch.float64),
               {n: torch.full(p.shape[1:], 0.1) for n, p in params.items()}):
        adapted, _ = adapt(forward, params, X, y, lr=lr, **options)
        assert all(p.dtype == torch.float32 for p in adapted.values())
    float64_rates = {n: torch.full(p.shape[1:], 0.1, dtype=torch.float64)
                     for n, p in params.items()}
    for extra in ({}, {"detach": True}, {"create_graph": True}, {"functional": True}):
        with pytest.raises(TypeError, match=r"lr\['weight'\] is a float64 tensor: a "
                                            r"step would turn params\['weight'\] from "
                                            "float32 into float64"):
            adapt(forward, params, X, y, lr=float64_rates, **options, **extra)
    with pytest.raises(TypeError, match=r"lr\['weight'\] is a float64 tensor"):
        adapt(forward, params, X, y, lr=lambda step: float64_rates, **options)


def test_a_one_element_rate_tensor_steps_as_its_number_does():
    """A rate of shape (1,), as the dtype refusal's advice may produce, went
    to torch._foreach_add as its alpha and failed inside torch with
    detach=True (and under backtracking)."""
    from functools import partial

    from sk_meta.functional import cross_entropy_loss

    torch.manual_seed(0)
    module = prepare_module(nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)))
    params = expand_params({n: p.detach() for n, p in module.named_parameters()}, 2)
    X, y = torch.randn(2, 6, 5), torch.randint(0, 3, (2, 6))
    options = {"loss_fn": partial(cross_entropy_loss, n_classes=3), "n_steps": 2,
               "detach": True}
    for extra in ({}, {"backtracking": True}):
        adapted, _ = adapt(batched_forward(module), params, X, y,
                           lr=torch.tensor([0.1]), **options, **extra)
        expected, _ = adapt(batched_forward(module), params, X, y, lr=0.1, **options,
                            **extra)
        for name in params:
            torch.testing.assert_close(adapted[name], expected[name])
