"""The algorithms against independent computations, in float64.

The references below are written from the papers' formulas with plain
autograd, one task at a time, sharing no code with ``sk_meta.functional``.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sk_meta import MAMLRegressor, ReptileRegressor
from sk_meta.functional import (
    TaskBatch,
    adapt,
    batched_forward,
    cross_entropy_loss,
    expand_params,
    maml_meta_gradient,
    maml_meta_loss,
    mse_loss,
    prepare_module,
    reptile_meta_gradient,
)
from sk_meta.models import MLP

N_TASKS, N_SUPPORT, N_QUERY, N_FEATURES = 4, 6, 5, 3


def _mlp_reference_forward(params, X):
    """The MLP written directly with F.linear (one task, no batching)."""
    h = F.linear(X, params["layers.0.weight"], params["layers.0.bias"])
    h = torch.tanh(h)
    h = F.linear(h, params["layers.1.weight"], params["layers.1.bias"])
    h = torch.tanh(h)
    return F.linear(h, params["layers.2.weight"], params["layers.2.bias"])


@pytest.fixture
def regression_setup():
    torch.manual_seed(0)
    module = MLP(N_FEATURES, (7, 5), 1, activation="tanh").double()
    params = {k: v.detach().clone() for k, v in module.named_parameters()}
    gen = torch.Generator().manual_seed(1)
    batch = TaskBatch(
        torch.randn(N_TASKS, N_SUPPORT, N_FEATURES, generator=gen, dtype=torch.float64),
        torch.randn(N_TASKS, N_SUPPORT, generator=gen, dtype=torch.float64),
        torch.randn(N_TASKS, N_QUERY, N_FEATURES, generator=gen, dtype=torch.float64),
        torch.randn(N_TASKS, N_QUERY, generator=gen, dtype=torch.float64),
    )
    return module, params, batch


def _reference_maml_gradient(params, batch, lr, n_steps, first_order):
    """Mean over tasks of ∇θ L_query(θ'), θ' unrolled by hand per task."""
    theta = {k: v.clone().requires_grad_() for k, v in params.items()}
    total = 0.0
    for i in range(batch.n_tasks):
        task_params = dict(theta)
        for _ in range(n_steps):
            out = _mlp_reference_forward(task_params, batch.X_support[i]).squeeze(-1)
            loss = ((out - batch.y_support[i]) ** 2).mean()
            grads = torch.autograd.grad(
                loss, list(task_params.values()), create_graph=not first_order
            )
            if first_order:
                grads = [g.detach() for g in grads]
            task_params = {
                k: p - lr * g for (k, p), g in zip(task_params.items(), grads)
            }
        out = _mlp_reference_forward(task_params, batch.X_query[i]).squeeze(-1)
        total = total + ((out - batch.y_query[i]) ** 2).mean()
    mean_loss = total / batch.n_tasks
    grads = torch.autograd.grad(mean_loss, list(theta.values()))
    return dict(zip(theta, grads)), mean_loss.detach()


@pytest.mark.parametrize("n_steps", [1, 3])
def test_maml_meta_gradient_matches_hand_unrolled_autograd(regression_setup, n_steps):
    module, params, batch = regression_setup
    grads, loss = maml_meta_gradient(
        module.forward_batched, params, batch, loss_fn=mse_loss, lr=0.1,
        n_steps=n_steps,
    )
    expected, expected_loss = _reference_maml_gradient(
        params, batch, lr=0.1, n_steps=n_steps, first_order=False
    )
    torch.testing.assert_close(loss / N_TASKS, expected_loss, rtol=1e-12, atol=1e-12)
    for name in params:
        torch.testing.assert_close(
            grads[name] / N_TASKS, expected[name], rtol=1e-10, atol=1e-12
        )


def test_fomaml_gradient_matches_detached_inner_gradients(regression_setup):
    module, params, batch = regression_setup
    grads, _ = maml_meta_gradient(
        module.forward_batched, params, batch, loss_fn=mse_loss, lr=0.1, n_steps=3,
        first_order=True,
    )
    expected, _ = _reference_maml_gradient(
        params, batch, lr=0.1, n_steps=3, first_order=True
    )
    second_order, _ = _reference_maml_gradient(
        params, batch, lr=0.1, n_steps=3, first_order=False
    )
    for name in params:
        torch.testing.assert_close(
            grads[name] / N_TASKS, expected[name], rtol=1e-10, atol=1e-12
        )
    # the second-order term is not negligible here, so the test can tell them apart
    difference = sum((expected[k] - second_order[k]).abs().max() for k in params)
    assert difference > 1e-4


def test_maml_meta_gradient_matches_finite_differences(regression_setup):
    module, params, batch = regression_setup
    grads, _ = maml_meta_gradient(
        module.forward_batched, params, batch, loss_fn=mse_loss, lr=0.1, n_steps=2
    )

    def meta_loss(p):
        return maml_meta_loss(
            module.forward_batched, p, batch, loss_fn=mse_loss, lr=0.1, n_steps=2
        ).item()

    gen = torch.Generator().manual_seed(3)
    eps = 1e-6
    for _ in range(3):
        direction = {
            k: torch.randn(v.shape, generator=gen, dtype=v.dtype)
            for k, v in params.items()
        }
        plus = {k: params[k] + eps * direction[k] for k in params}
        minus = {k: params[k] - eps * direction[k] for k in params}
        numeric = (meta_loss(plus) - meta_loss(minus)) / (2 * eps)
        analytic = sum((grads[k] * direction[k]).sum() for k in params).item()
        assert numeric == pytest.approx(analytic, rel=1e-6, abs=1e-8)


def test_reptile_gradient_matches_the_formula(regression_setup):
    module, params, batch = regression_setup
    lr, n_steps = 0.05, 3
    grads, _ = reptile_meta_gradient(
        module.forward_batched, params, batch, loss_fn=mse_loss, lr=lr,
        n_steps=n_steps,
    )
    for i in range(N_TASKS):
        X = torch.cat([batch.X_support[i], batch.X_query[i]])
        y = torch.cat([batch.y_support[i], batch.y_query[i]])
        phi = {k: v.clone().requires_grad_() for k, v in params.items()}
        for _ in range(n_steps):
            loss = ((_mlp_reference_forward(phi, X).squeeze(-1) - y) ** 2).mean()
            step = torch.autograd.grad(loss, list(phi.values()))
            phi = {
                k: (p - lr * g).detach().requires_grad_()
                for (k, p), g in zip(phi.items(), step)
            }
        for k in params:
            grads[k] = grads[k] - (params[k] - phi[k].detach())
    for k in params:  # Σᵢ (θ - φᵢ) minus each (θ - φᵢ) leaves zero
        torch.testing.assert_close(
            grads[k], torch.zeros_like(grads[k]), rtol=0, atol=1e-12
        )


def test_one_reptile_meta_iteration_is_theta_plus_epsilon_times_mean_shift():
    rng = np.random.default_rng(0)
    tasks = [
        (rng.normal(size=(5, 2)), rng.normal(size=5), rng.normal(size=(4, 2)),
         rng.normal(size=4))
        for _ in range(3)
    ]
    epsilon, inner_lr, n_steps = 0.3, 0.05, 2
    torch.manual_seed(0)
    init = MLP(2, (4,), 1)  # the init before the update: known weights
    reptile = ReptileRegressor(
        init, inner_lr=inner_lr, inner_steps=n_steps,
        meta_lr=epsilon, meta_batch_size=3, n_meta_iter=1, random_state=0,
    )
    reptile.meta_partial_fit(tasks)
    theta = {k: v.detach().double() for k, v in init.named_parameters()}
    phis = []
    for X_s, y_s, X_q, y_q in tasks:
        X = torch.from_numpy(np.concatenate([X_s, X_q]))
        y = torch.from_numpy(np.concatenate([y_s, y_q]))
        phi = {k: v.clone().requires_grad_() for k, v in theta.items()}
        for _ in range(n_steps):
            out = F.linear(torch.relu(F.linear(X, phi["layers.0.weight"],
                                               phi["layers.0.bias"])),
                           phi["layers.1.weight"], phi["layers.1.bias"])
            loss = ((out.squeeze(-1) - y) ** 2).mean()
            step = torch.autograd.grad(loss, list(phi.values()))
            phi = {k: (p - inner_lr * g).detach().requires_grad_()
                   for (k, p), g in zip(phi.items(), step)}
        phis.append(phi)
    for name, value in reptile.meta_params_.items():
        mean_phi = sum(phi[name] for phi in phis) / len(phis)
        expected = theta[name] + epsilon * (mean_phi.detach() - theta[name])
        torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=1e-6)


def test_adapt_sgd_matches_torch_optim_sgd(regression_setup):
    module, params, batch = regression_setup
    adapted, _ = adapt(
        module.forward_batched, expand_params(params, N_TASKS), batch.X_support,
        batch.y_support, loss_fn=mse_loss, lr=0.1, n_steps=4, detach=True,
    )
    for i in range(N_TASKS):
        reference = MLP(N_FEATURES, (7, 5), 1, activation="tanh").double()
        reference.load_state_dict(params)
        optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
        for _ in range(4):
            optimizer.zero_grad()
            out = reference(batch.X_support[i]).squeeze(-1)
            ((out - batch.y_support[i]) ** 2).mean().backward()
            optimizer.step()
        for name, p in reference.named_parameters():
            torch.testing.assert_close(adapted[name][i], p.detach(), rtol=1e-10,
                                       atol=1e-12)


def test_adapt_adam_matches_torch_optim_adam_with_beta1_zero(regression_setup):
    module, params, batch = regression_setup
    adapted, _ = adapt(
        module.forward_batched, expand_params(params, N_TASKS), batch.X_support,
        batch.y_support, loss_fn=mse_loss, lr=0.01, n_steps=5, detach=True,
        optimizer="adam",
    )
    for i in range(N_TASKS):
        reference = MLP(N_FEATURES, (7, 5), 1, activation="tanh").double()
        reference.load_state_dict(params)
        optimizer = torch.optim.Adam(reference.parameters(), lr=0.01,
                                     betas=(0.0, 0.999), eps=1e-8)
        for _ in range(5):
            optimizer.zero_grad()
            out = reference(batch.X_support[i]).squeeze(-1)
            ((out - batch.y_support[i]) ** 2).mean().backward()
            optimizer.step()
        for name, p in reference.named_parameters():
            torch.testing.assert_close(adapted[name][i], p.detach(), rtol=1e-9,
                                       atol=1e-11)


@pytest.mark.parametrize("options, error, message", [
    ({"trainable": set()}, ValueError, "trainable is empty"),
    ({"trainable": {"layers.0.weight", "layer.0.wieght"}}, ValueError,
     "params lacks: \\['layer.0.wieght'\\]"),
    ({"trainable": "layers.0.weight"}, TypeError, "not one string"),
    ({"lr": {"layers.0.weight": 0.1}}, ValueError, "no rate for .*layers.0.bias"),
    ({"lr": lambda step: {"layers.0.weight": 0.1}}, ValueError, "no rate for"),
    ({"lr": "0.1"}, TypeError, "lr must be a float.*got str"),
    ({"lr": lambda step: None}, TypeError, "got NoneType at step 0"),
    ({"n_steps": 2.0}, TypeError, "n_steps must be an int"),
    ({"n_steps": True}, TypeError, "n_steps must be an int"),
    ({"n_steps": -1}, ValueError, "at least 0, got -1"),
    ({"optimizer": "rmsprop"}, ValueError, "optimizer must be one of"),
    ({"n_tasks_of_X": N_TASKS - 1}, ValueError, "same number of tasks"),
])
def test_adapt_refuses_misuse_naming_the_argument(regression_setup, options, error,
                                                   message):
    module, params, batch = regression_setup
    n_tasks = options.pop("n_tasks_of_X", N_TASKS)
    arguments = {"loss_fn": mse_loss, "lr": 0.1, "n_steps": 2, "detach": True,
                 **options}
    with pytest.raises(error, match=message):
        adapt(module.forward_batched, expand_params(params, N_TASKS),
              batch.X_support[:n_tasks], batch.y_support[:n_tasks], **arguments)


def test_adapt_leaves_the_targets_to_the_callers_loss(regression_setup):
    """The argument checks refused a semi-supervised loss (fewer targets than
    inputs) and targets given as a tuple, which only loss_fn reads."""
    module, params, batch = regression_setup

    def semi_supervised(outputs, y):
        return mse_loss(outputs[:, :3], y) + 0.1 * outputs[:, 3:].var(1).sum()

    def weighted(outputs, y):
        targets, weights = y
        return (((outputs.squeeze(-1) - targets) ** 2) * weights).mean(1).sum()

    start = expand_params(params, N_TASKS)
    for loss_fn, y in ((semi_supervised, batch.y_support[:, :3]),
                       (weighted, (batch.y_support, torch.ones_like(batch.y_support)))):
        adapted, loss = adapt(module.forward_batched, start, batch.X_support, y,
                              loss_fn=loss_fn, lr=0.1, n_steps=torch.tensor(2),
                              detach=True,
                              trainable=(name for name in params))  # a generator
        assert torch.isfinite(loss)
        assert not torch.equal(adapted["layers.2.bias"], start["layers.2.bias"])


def test_adapt_accepts_numpy_step_counts_and_a_subset_of_trainable_names(
        regression_setup):
    module, params, batch = regression_setup
    head = {"layers.2.weight", "layers.2.bias"}
    adapted, _ = adapt(module.forward_batched, expand_params(params, N_TASKS),
                       batch.X_support, batch.y_support, loss_fn=mse_loss,
                       lr=dict.fromkeys(head, 0.1), n_steps=np.int64(2),
                       detach=True, trainable=head)
    for name, p in adapted.items():
        changed = not torch.equal(p[0], params[name])
        assert changed == (name in head), name


class _SmallConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.norm = nn.BatchNorm2d(3)
        self.head = nn.Linear(3 * 4 * 4, 3)

    def forward(self, X):
        h = F.max_pool2d(torch.relu(self.norm(self.conv(X))), 2)
        return self.head(h.flatten(1))


def test_vmap_loop_and_native_forward_give_the_same_meta_gradient():
    torch.manual_seed(0)
    module = prepare_module(_SmallConvNet()).double()
    params = {k: v.detach().clone() for k, v in module.named_parameters()}
    gen = torch.Generator().manual_seed(0)
    # jittered continuous inputs: no max-pool ties, so both paths pick the same max
    batch = TaskBatch(
        torch.randn(5, 6, 1, 8, 8, generator=gen, dtype=torch.float64),
        torch.randint(0, 3, (5, 6), generator=gen),
        torch.randn(5, 4, 1, 8, 8, generator=gen, dtype=torch.float64),
        torch.randint(0, 3, (5, 4), generator=gen),
        n_classes=3,
    )

    def loss_fn(out, y):
        return cross_entropy_loss(out, y, 3)

    results = {}
    for strategy in ("vmap", "loop"):
        forward = batched_forward(module, {}, strategy)
        results[strategy] = maml_meta_gradient(
            forward, params, batch, loss_fn=loss_fn, lr=0.3, n_steps=2
        )[0]
    for name in params:
        torch.testing.assert_close(results["vmap"][name], results["loop"][name],
                                   rtol=1e-9, atol=1e-11)

    mlp = MLP(4, (6,), 3).double()
    mlp_params = {k: v.detach().clone() for k, v in mlp.named_parameters()}
    flat = TaskBatch(batch.X_support.reshape(5, 6, 64)[..., :4], batch.y_support,
                     batch.X_query.reshape(5, 4, 64)[..., :4], batch.y_query, 3)
    native = maml_meta_gradient(batched_forward(mlp, {}, "native"), mlp_params,
                                flat, loss_fn=loss_fn, lr=0.3, n_steps=2)[0]
    looped = maml_meta_gradient(batched_forward(mlp, {}, "loop"), mlp_params,
                                flat, loss_fn=loss_fn, lr=0.3, n_steps=2)[0]
    for name in mlp_params:
        torch.testing.assert_close(native[name], looped[name], rtol=1e-10,
                                   atol=1e-12)


def _sinusoid_like_tasks(n_tasks, seed, n_support=(5, 5)):
    rng = np.random.default_rng(seed)
    tasks = []
    for i in range(n_tasks):
        n = n_support[i % len(n_support)]
        amplitude = rng.uniform(0.5, 2)
        X_s, X_q = rng.uniform(-3, 3, (n, 1)), rng.uniform(-3, 3, (7, 1))
        tasks.append((X_s, amplitude * np.sin(X_s[:, 0]), X_q,
                      amplitude * np.sin(X_q[:, 0])))
    return tasks


def test_chunked_meta_batches_equal_the_whole_meta_batch():
    tasks = _sinusoid_like_tasks(8, seed=0)
    params = dict(hidden_layer_sizes=(8, 8), inner_steps=2, meta_batch_size=8,
                  n_meta_iter=3, random_state=0)
    whole = MAMLRegressor(**params).meta_partial_fit(tasks)
    chunked = MAMLRegressor(tasks_per_chunk=3, **params).meta_partial_fit(tasks)
    for name, value in whole.meta_params_.items():
        torch.testing.assert_close(chunked.meta_params_[name], value, rtol=1e-5,
                                   atol=1e-6)


def test_tasks_of_different_shapes_in_one_meta_batch_are_each_counted_once():
    # support sizes 4 and 6 alternate: two groups in each meta-batch
    tasks = _sinusoid_like_tasks(6, seed=1, n_support=(4, 6))
    torch.manual_seed(0)
    module = MLP(1, (8,), 1)
    mixed = MAMLRegressor(module, meta_batch_size=6, inner_steps=1,
                          inner_lr=0.1, meta_optimizer="sgd", meta_lr=0.1,
                          random_state=0)
    mixed.meta_partial_fit(tasks)
    # the same update, one task per meta-batch, gradients averaged by hand
    theta = {k: v.detach().clone() for k, v in module.named_parameters()}
    total = {k: torch.zeros_like(v) for k, v in theta.items()}
    for X_s, y_s, X_q, y_q in tasks:
        batch = TaskBatch(*(torch.tensor(a[None], dtype=torch.float32)
                            for a in (X_s, y_s, X_q, y_q)))
        grads, _ = maml_meta_gradient(module.forward_batched, theta, batch,
                                      loss_fn=mse_loss, lr=0.1, n_steps=1)
        total = {k: total[k] + grads[k] for k in total}
    for name, value in mixed.meta_params_.items():
        expected = theta[name] - 0.1 * total[name] / len(tasks)
        torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)


class _NormNet(nn.Module):
    def __init__(self, norm):
        super().__init__()
        self.linear = nn.Linear(4, 6)
        self.norm = norm
        self.head = nn.Linear(6, 3)

    def forward(self, X):
        return self.head(torch.relu(self.norm(self.linear(X))))


@pytest.mark.parametrize("norm", [nn.BatchNorm1d(6), nn.LayerNorm(6)],
                         ids=["batch_norm", "layer_norm"])
def test_second_order_gradient_through_normalization_layers_under_vmap(norm):
    """Non-regression: ``torch.func.grad`` inside ``vmap`` gets the second-order
    gradient of batch_norm/layer_norm wrong (functorch issue 534); sk_meta
    differentiates outside ``vmap`` and must agree with finite differences."""
    module = prepare_module(_NormNet(norm)).double()
    params = {k: v.detach().clone() for k, v in module.named_parameters()}
    gen = torch.Generator().manual_seed(0)
    batch = TaskBatch(
        torch.randn(3, 8, 4, generator=gen, dtype=torch.float64),
        torch.randint(0, 3, (3, 8), generator=gen),
        torch.randn(3, 5, 4, generator=gen, dtype=torch.float64),
        torch.randint(0, 3, (3, 5), generator=gen),
        n_classes=3,
    )

    def loss_fn(out, y):
        return cross_entropy_loss(out, y, 3)

    forward = batched_forward(module, {}, "vmap")
    grads, _ = maml_meta_gradient(forward, params, batch, loss_fn=loss_fn, lr=0.5,
                                  n_steps=1)

    def meta_loss(p):
        return maml_meta_loss(forward, p, batch, loss_fn=loss_fn, lr=0.5,
                              n_steps=1).item()

    eps = 1e-6
    for _ in range(2):
        direction = {k: torch.randn(v.shape, generator=gen, dtype=v.dtype)
                     for k, v in params.items()}
        numeric = (meta_loss({k: params[k] + eps * direction[k] for k in params})
                   - meta_loss({k: params[k] - eps * direction[k] for k in params})
                   ) / (2 * eps)
        analytic = sum((grads[k] * direction[k]).sum() for k in params).item()
        assert numeric == pytest.approx(analytic, rel=1e-6, abs=1e-8)


def test_auto_chunking_splits_conv_meta_batches_on_the_cpu_only():
    from sk_meta import MAMLClassifier
    from sk_meta._inner_loop import InnerLoop, InnerLoopSettings
    from sk_meta.models import Conv4

    rng = np.random.default_rng(0)
    # query sets of 20 images of 32x32: the first conv's output is
    # 20 x 64 x 32 x 32 floats (5 MiB), above half the 8 MiB chunk budget
    tasks = [(rng.random((3, 1, 32, 32), dtype=np.float32), np.arange(3),
              rng.random((20, 1, 32, 32), dtype=np.float32), np.arange(20) % 3)
             for _ in range(4)]
    module_params = {"n_outputs": 3, "n_filters": 64, "image_size": 32}
    settings = InnerLoopSettings(algorithm="maml", classification=True, lr=0.1,
                                 steps=1, meta_steps=1)
    cpu = torch.device("cpu")
    conv_loop = InnerLoop(settings, prepare_module(Conv4(**module_params)),
                          device=cpu, probe=torch.from_numpy(tasks[0][0]))
    conv_loop.resolve_chunk_size(torch.from_numpy(tasks[0][2]))
    assert conv_loop.strategy == "vmap" and conv_loop.chunk_size == 1
    mlp_loop = InnerLoop(settings, prepare_module(MLP(8, (4,), 3)), device=cpu,
                         probe=torch.zeros(3, 8))
    mlp_loop.resolve_chunk_size(torch.zeros(20, 8))
    assert mlp_loop.chunk_size is None
    # chunks of one task give the meta-gradient of the whole meta-batch
    # (SGD: Adam's first step is lr * sign(gradient), which rounding can flip)
    conv = MAMLClassifier(Conv4, module_params=module_params, meta_batch_size=4,
                          n_meta_iter=1, meta_optimizer="sgd", random_state=0)
    conv.meta_fit(tasks)
    whole = MAMLClassifier(Conv4, module_params=module_params, meta_batch_size=4,
                           n_meta_iter=1, meta_optimizer="sgd", tasks_per_chunk=None,
                           random_state=0).meta_fit(tasks)
    for name, value in whole.meta_params_.items():
        torch.testing.assert_close(conv.meta_params_[name], value, rtol=1e-4,
                                   atol=1e-6)


def test_conv4_matches_the_papers_block_order_in_value_and_meta_gradient():
    # Conv4 pools before its ReLU; the papers' blocks apply ReLU first. The two
    # orders must give the same outputs and the same second-order gradients.
    import copy

    from sk_meta.models import Conv4

    torch.manual_seed(0)
    conv4 = prepare_module(Conv4(n_outputs=3, n_filters=4).double())
    layers = list(conv4.features)
    for i in [i for i, layer in enumerate(layers) if isinstance(layer, nn.MaxPool2d)]:
        layers[i], layers[i + 1] = layers[i + 1], layers[i]
    paper_order = copy.deepcopy(conv4)
    paper_order.features = nn.Sequential(*layers)  # same parameter names
    assert [type(m).__name__ for m in paper_order.features[:4]] == [
        "Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"]
    X = torch.randn(6, 1, 28, 28, dtype=torch.float64)
    y = torch.arange(6) % 3
    params = {name: p.detach().requires_grad_() for name, p in conv4.named_parameters()}

    def meta_gradient(module):
        def forward(p, X):
            return torch.func.functional_call(module, p, (X,))

        loss = F.cross_entropy(forward(params, X[:3]), y[:3])
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        adapted = {name: p - 0.4 * g for (name, p), g in zip(params.items(), grads)}
        query_loss = F.cross_entropy(forward(adapted, X[3:]), y[3:])
        return torch.autograd.grad(query_loss, list(params.values()))

    torch.testing.assert_close(conv4(X), paper_order(X), rtol=0, atol=0)
    for ours, theirs in zip(meta_gradient(conv4), meta_gradient(paper_order)):
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def test_conv4_with_strided_convolutions_is_the_maml_papers_omniglot_network():
    """Conv4's docstring called its max-pooling network the papers' Omniglot
    network, which downsamples with stride-2 convolutions and averages the
    last 2x2 map (cbfinn/maml, max_pool=False). downsample="stride" is that
    network: the same outputs and meta-gradients as one written by hand."""
    from sk_meta.models import Conv4

    torch.manual_seed(0)
    conv4 = prepare_module(
        Conv4(n_outputs=3, n_filters=4, downsample="stride").double())
    assert not any(isinstance(m, nn.MaxPool2d) for m in conv4.modules())

    def by_hand(params, X):
        h = X
        for i in range(4):
            conv, norm = 3 * i, 3 * i + 1
            h = F.conv2d(h, params[f"features.{conv}.weight"],
                         params[f"features.{conv}.bias"], stride=2, padding=1)
            h = F.batch_norm(h, None, None, params[f"features.{norm}.weight"],
                             params[f"features.{norm}.bias"], training=True)
            h = F.relu(h)
        assert h.shape[-2:] == (2, 2)  # 28 -> 14 -> 7 -> 4 -> 2
        return F.linear(h.mean(dim=(2, 3)), params["classifier.weight"],
                        params["classifier.bias"])

    X = torch.randn(6, 1, 28, 28, dtype=torch.float64)
    y = torch.arange(6) % 3
    params = {name: p.detach().requires_grad_() for name, p in conv4.named_parameters()}

    def meta_gradient(forward):
        loss = F.cross_entropy(forward(params, X[:3]), y[:3])
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        adapted = {name: p - 0.4 * g for (name, p), g in zip(params.items(), grads)}
        query_loss = F.cross_entropy(forward(adapted, X[3:]), y[3:])
        return torch.autograd.grad(query_loss, list(params.values()))

    def ours(p, X):
        return torch.func.functional_call(conv4, p, (X,))

    torch.testing.assert_close(ours(params, X), by_hand(params, X), rtol=1e-12,
                               atol=1e-12)
    for a, b in zip(meta_gradient(ours), meta_gradient(by_hand), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="downsample must be 'maxpool' or 'stride'"):
        Conv4(downsample="avg")
