"""Attention modules in all three algorithms, and the FT-Transformer.

Fused attention kernels have no double backward: second-order MAML through
``nn.MultiheadAttention`` or ``F.scaled_dot_product_attention`` needs the
math kernel, which the functional core selects around every forward pass.
"""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from sk_meta import (
    FOMAMLClassifier,
    MAMLClassifier,
    MAMLRegressor,
    ReptileClassifier,
)
from sk_meta.functional import (
    TaskBatch,
    _attention,
    batched_forward,
    cross_entropy_loss,
    expand_params,
    maml_meta_gradient,
    maml_meta_loss,
    mse_loss,
    outputs_beside_support,
    prepare_module,
)
from sk_meta.models import MLP, FTTransformer
from sk_meta.tasks import EpisodeSampler, SinusoidTasks

CLASSIFIERS = [MAMLClassifier, FOMAMLClassifier, ReptileClassifier]
N_FEATURES = 8


class _EncoderNet(nn.Module):
    """One ``nn.TransformerEncoderLayer`` over one token per feature."""

    def __init__(self, n_features=N_FEATURES, n_outputs=3, d_model=8):
        super().__init__()
        self.embed = nn.Linear(1, d_model)
        self.position = nn.Parameter(torch.zeros(n_features, d_model))
        self.encoder = nn.TransformerEncoderLayer(
            d_model, nhead=2, dim_feedforward=16, dropout=0.0, batch_first=True
        )
        self.head = nn.Linear(d_model, n_outputs)

    def forward(self, X):
        tokens = self.embed(X.unsqueeze(-1)) + self.position
        return self.head(self.encoder(tokens).mean(1))


class _AttentionBatchNormNet(nn.Module):
    """Self-attention followed by BatchNorm: predictions run beside the support."""

    def __init__(self, n_features=N_FEATURES, n_outputs=3, d_model=8):
        super().__init__()
        self.embed = nn.Linear(1, d_model)
        self.attention = nn.MultiheadAttention(d_model, 2, batch_first=True)
        self.norm = nn.BatchNorm1d(d_model)
        self.head = nn.Linear(d_model, n_outputs)

    def forward(self, X):
        tokens = self.embed(X.unsqueeze(-1))
        mixed, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        return self.head(torch.relu(self.norm(mixed.mean(1))))


def _tiny_ft(n_outputs=3):
    return dict(n_features=N_FEATURES, n_outputs=n_outputs, d_token=8, n_blocks=1,
                n_heads=2)


MODULES = {
    "encoder_layer": (_EncoderNet, {}),
    "ft_transformer": (FTTransformer, _tiny_ft()),
}


def _digit_tasks():
    X, y = load_digits(return_X_y=True)
    X = (X[:, 4::8] / 16).astype(np.float32)  # 8 of the 64 pixels
    train = EpisodeSampler(X, y, n_way=3, k_shot=2, n_query=3, classes=range(7),
                           random_state=0)
    valid = list(EpisodeSampler(X, y, n_way=3, k_shot=2, n_query=3,
                                classes=range(7, 10), n_tasks=2, random_state=1))
    return train, valid


def _sdpa_flags():
    return (torch.backends.cuda.flash_sdp_enabled(),
            torch.backends.cuda.mem_efficient_sdp_enabled(),
            torch.backends.cuda.math_sdp_enabled())


@pytest.mark.parametrize("module_name", MODULES)
@pytest.mark.parametrize("estimator_class", CLASSIFIERS)
def test_attention_classifiers_meta_fit_fit_and_predict(estimator_class, module_name):
    module, module_params = MODULES[module_name]
    train, valid = _digit_tasks()
    flags = _sdpa_flags()
    clf = estimator_class(module, module_params=module_params, inner_steps=2,
                          meta_batch_size=2, n_meta_iter=2, validation_interval=1,
                          random_state=0)
    clf.meta_fit(train, validation_tasks=valid)
    # meta-batches of two tasks go through torch.func.vmap
    assert clf._meta.training_state.forward_strategy == "vmap"
    assert len(clf.meta_loss_curve_) == 2
    assert np.isfinite(clf.meta_loss_curve_).all()
    assert len(clf.validation_scores_) == 2
    task = valid[0]
    clf.fit(task.X_support, task.y_support)
    proba = clf.predict_proba(task.X_query)
    assert proba.shape == (9, 3)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-6)
    assert set(clf.predict(task.X_query)) <= set(task.y_support)
    assert _sdpa_flags() == flags  # the kernel choice is restored


def test_maml_regressor_with_an_ft_transformer():
    tasks = SinusoidTasks(k_shot=5, n_query=5, random_state=0)
    reg = MAMLRegressor(FTTransformer, module_params=dict(n_features=1, d_token=8,
                                                          n_blocks=1, n_heads=2),
                        inner_steps=2, meta_batch_size=3, n_meta_iter=3,
                        random_state=0)
    reg.meta_fit(tasks)
    assert np.isfinite(reg.meta_loss_curve_).all()
    task = tasks.sample(0)
    assert reg.fit(task.X_support, task.y_support).predict(task.X_query).shape == (5,)


class _RecurrentAttentionNet(nn.Module):
    """A GRU (which vmap cannot batch) feeding self-attention."""

    def __init__(self, n_outputs=3, hidden=8):
        super().__init__()
        self.rnn = nn.GRU(1, hidden, batch_first=True)
        self.attention = nn.MultiheadAttention(hidden, 2, batch_first=True)
        self.head = nn.Linear(hidden, n_outputs)

    def forward(self, X):
        states, _ = self.rnn(X.unsqueeze(-1))
        mixed, _ = self.attention(states, states, states, need_weights=False)
        return self.head(mixed.mean(1))


def test_second_order_maml_with_attention_on_the_loop_path():
    train, valid = _digit_tasks()
    clf = MAMLClassifier(_RecurrentAttentionNet, inner_steps=1, meta_batch_size=2,
                         n_meta_iter=2, validation_interval=1, random_state=0)
    clf.meta_fit(train, validation_tasks=valid)
    assert clf._meta.training_state.forward_strategy == "loop"
    assert np.isfinite(clf.meta_loss_curve_).all()
    task = valid[0]
    assert clf.fit(task.X_support, task.y_support).predict(task.X_query).shape == (9,)


def test_the_users_attention_module_is_not_modified():
    train, _ = _digit_tasks()
    module = _EncoderNet()
    module.eval()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    clf = MAMLClassifier(module, inner_steps=1, meta_batch_size=2, n_meta_iter=2,
                         head_init="meta", random_state=0).meta_fit(train)
    task = train.sample(5)
    clf.fit(task.X_support, task.y_support).predict(task.X_query)
    assert not module.training
    for name, value in module.state_dict().items():
        assert torch.equal(value, before[name])
    assert not torch.equal(clf.meta_params_["head.weight"], before["head.weight"])


class _DefaultAttentionNet(nn.Module):
    """nn.MultiheadAttention with its default ``need_weights=True``."""

    def __init__(self, n_features=N_FEATURES, n_outputs=3, d_model=8):
        super().__init__()
        self.embed = nn.Linear(1, d_model)
        self.attention = nn.MultiheadAttention(d_model, 2, batch_first=True)
        self.head = nn.Linear(d_model, n_outputs)

    def forward(self, X):
        tokens = self.embed(X.unsqueeze(-1))
        return self.head(self.attention(tokens, tokens, tokens)[0].mean(1))


@pytest.mark.parametrize("make_module, strategy, computes_attention", [
    (lambda: MLP(N_FEATURES, (8,), 3), "native", False),
    (lambda: nn.Sequential(nn.Linear(N_FEATURES, 8), nn.ReLU(), nn.Linear(8, 3)),
     "vmap", False),
    # FTTransformer calls F.scaled_dot_product_attention itself
    (lambda: FTTransformer(**_tiny_ft()), "vmap", True),
    (_EncoderNet, "loop", True),
    (_DefaultAttentionNet, "vmap", True),
], ids=["mlp", "sequential", "ft_transformer", "encoder_layer", "need_weights"])
def test_the_kernel_is_selected_only_for_modules_computing_attention(
        monkeypatch, make_module, strategy, computes_attention):
    # selecting it costs time on every forward pass of a small network
    entered = []
    real = _attention.math_attention

    def counting():
        entered.append(True)
        return real()

    monkeypatch.setattr(_attention, "math_attention", counting)
    module = prepare_module(make_module())
    params = expand_params(dict(module.named_parameters()), 2)
    forward = batched_forward(module, {}, strategy)
    for _ in range(4):
        forward(params, torch.randn(2, 5, N_FEATURES))
    # the first call finds out whether the module computes attention
    assert len(entered) == (4 if computes_attention else 1)


# -- the second-order meta-gradient against an independent computation -----------

def _reference_attention(q, k, v):
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    return weights @ v


def _reference_ft_forward(params, X, n_heads):
    """A one-block FT-Transformer from the paper's formulas, attention by hand."""
    def layer_norm(x, name):
        return F.layer_norm(x, x.shape[-1:], params[f"{name}.weight"],
                            params[f"{name}.bias"])

    def linear(x, name):
        return F.linear(x, params[f"{name}.weight"], params[f"{name}.bias"])

    tokens = X.unsqueeze(-1) * params["tokenizer.weight"] + params["tokenizer.bias"]
    cls = params["cls_token"].expand(len(X), 1, -1)
    h = torch.cat([cls, tokens], dim=1)
    n, t, d = h.shape
    q, k, v = (z.reshape(n, t, n_heads, d // n_heads).transpose(1, 2)
               for z in linear(h, "blocks.0.attention.qkv").split(d, dim=-1))
    mixed = _reference_attention(q, k, v).transpose(1, 2).reshape(n, t, d)
    h = h + linear(mixed, "blocks.0.attention.out")
    a, b = linear(layer_norm(h, "blocks.0.ffn_norm"), "blocks.0.ffn_in").chunk(2, -1)
    h = h + linear(a * torch.relu(b), "blocks.0.ffn_out")
    return linear(torch.relu(layer_norm(h[:, 0], "head_norm")), "head")


@pytest.fixture
def attention_setup():
    torch.manual_seed(0)
    module = FTTransformer(n_features=3, n_outputs=2, d_token=4, n_blocks=1,
                           n_heads=2).double()
    params = {k: v.detach().clone() for k, v in module.named_parameters()}
    gen = torch.Generator().manual_seed(1)
    batch = TaskBatch(
        torch.randn(3, 5, 3, generator=gen, dtype=torch.float64),
        torch.randint(0, 2, (3, 5), generator=gen),
        torch.randn(3, 4, 3, generator=gen, dtype=torch.float64),
        torch.randint(0, 2, (3, 4), generator=gen),
        n_classes=2,
    )
    return module, params, batch


def _loss(out, y):
    return cross_entropy_loss(out, y, 2)


def test_second_order_maml_gradient_through_attention_matches_by_hand(
        attention_setup):
    module, params, batch = attention_setup
    lr, n_steps = 0.5, 2
    grads, loss = maml_meta_gradient(batched_forward(module, {}, "vmap"), params,
                                     batch, loss_fn=_loss, lr=lr, n_steps=n_steps)
    theta = {k: v.clone().requires_grad_() for k, v in params.items()}
    total = 0.0
    for i in range(batch.n_tasks):
        task_params = dict(theta)
        for _ in range(n_steps):
            out = _reference_ft_forward(task_params, batch.X_support[i], n_heads=2)
            step = torch.autograd.grad(F.cross_entropy(out, batch.y_support[i]),
                                       list(task_params.values()), create_graph=True)
            task_params = {k: p - lr * g
                           for (k, p), g in zip(task_params.items(), step)}
        out = _reference_ft_forward(task_params, batch.X_query[i], n_heads=2)
        total = total + F.cross_entropy(out, batch.y_query[i])
    expected = dict(zip(theta, torch.autograd.grad(total, list(theta.values()))))
    torch.testing.assert_close(loss, total.detach(), rtol=1e-12, atol=1e-12)
    for name in params:
        torch.testing.assert_close(grads[name], expected[name], rtol=1e-9,
                                   atol=1e-11)
    # the second-order term is not negligible here, so the check can tell
    first_order, _ = maml_meta_gradient(batched_forward(module, {}, "vmap"), params,
                                        batch, loss_fn=_loss, lr=lr,
                                        n_steps=n_steps, first_order=True)
    assert sum((first_order[k] - expected[k]).abs().max() for k in params) > 1e-4


def test_encoder_layer_maml_gradient_matches_finite_differences():
    torch.manual_seed(0)
    module = _EncoderNet(n_features=3, n_outputs=1, d_model=4).double()
    params = {k: v.detach().clone() for k, v in module.named_parameters()}
    gen = torch.Generator().manual_seed(2)
    batch = TaskBatch(*(torch.randn(2, n, *shape, generator=gen, dtype=torch.float64)
                        for n, shape in [(5, (3,)), (5, ()), (4, (3,)), (4, ())]))
    forward = batched_forward(module, {}, "vmap")
    grads, _ = maml_meta_gradient(forward, params, batch, loss_fn=mse_loss, lr=0.3,
                                  n_steps=1)

    def meta_loss(p):
        return maml_meta_loss(forward, p, batch, loss_fn=mse_loss, lr=0.3,
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


@pytest.mark.parametrize("first_order", [False, True])
def test_vmap_and_loop_paths_give_the_same_meta_gradient(attention_setup,
                                                         first_order):
    module, params, batch = attention_setup
    results = [
        maml_meta_gradient(batched_forward(module, {}, strategy), params, batch,
                           loss_fn=_loss, lr=0.5, n_steps=2,
                           first_order=first_order)[0]
        for strategy in ("vmap", "loop")
    ]
    for name in params:
        torch.testing.assert_close(results[0][name], results[1][name], rtol=1e-9,
                                   atol=1e-11)


def test_predictions_beside_the_support_set_batch_the_attention():
    # vmap batches the math kernel; the CPU's fused kernel would go through
    # vmap's slow fallback, one query row at a time, with a warning
    torch.manual_seed(0)
    module = prepare_module(_AttentionBatchNormNet()).eval()
    params = dict(module.named_parameters())
    X_support = torch.randn(6, N_FEATURES)
    X_query = torch.randn(4, N_FEATURES)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("error", message=".*batching rule.*")
        out = outputs_beside_support(module, {}, params, X_support, X_query)
        alone = [outputs_beside_support(module, {}, params, X_support, x[None])
                 for x in X_query]
    torch.testing.assert_close(out, torch.cat(alone))


def test_non_transductive_predictions_with_attention_and_batch_norm():
    train, valid = _digit_tasks()
    clf = MAMLClassifier(_AttentionBatchNormNet, inner_steps=1, meta_batch_size=2,
                         n_meta_iter=2, transductive=False, random_state=0)
    clf.meta_fit(train)
    task = valid[0]
    clf.fit(task.X_support, task.y_support)
    proba = clf.predict_proba(task.X_query)
    # row-independent: each row alone gets the same probabilities
    np.testing.assert_allclose(clf.predict_proba(task.X_query[:1]), proba[:1],
                               rtol=1e-5, atol=1e-6)


# -- the FT-Transformer itself ----------------------------------------------------

def test_ft_transformer_has_a_token_per_feature_and_a_cls_token():
    net = FTTransformer(n_features=5, n_outputs=3, d_token=8, n_blocks=2, n_heads=2)
    assert net.tokenizer.weight.shape == net.tokenizer.bias.shape == (5, 8)
    assert net.cls_token.shape == (8,)
    assert len(net.blocks) == 2
    # the first block reads the tokenizer's output directly (as in the paper)
    assert isinstance(net.blocks[0].attention_norm, nn.Identity)
    assert isinstance(net.blocks[1].attention_norm, nn.LayerNorm)
    X = torch.randn(4, 5, requires_grad=True)
    out = net(X)
    assert out.shape == (4, 3)
    # every feature reaches the [CLS] token through attention
    (grad,) = torch.autograd.grad(out.sum(), X)
    assert (grad.abs() > 0).all()


def test_ft_transformer_rows_are_independent():
    net = FTTransformer(n_features=4, n_outputs=2).eval()
    X = torch.randn(6, 4)
    with torch.no_grad():
        torch.testing.assert_close(net(X)[:2], net(X[:2]))


@pytest.mark.parametrize("params, message", [
    (dict(d_token=10, n_heads=4), "multiple of n_heads"),
    (dict(n_blocks=0), "n_blocks must be a positive integer"),
    (dict(n_heads=2.0), "n_heads must be a positive integer"),
    (dict(attention_dropout=1.0), r"attention_dropout must be in \[0, 1\)"),
    (dict(ffn_factor=0), "ffn_factor must be positive"),
])
def test_ft_transformer_rejects_bad_arguments(params, message):
    with pytest.raises(ValueError, match=message):
        FTTransformer(n_features=3, **params)


def test_ft_transformer_rejects_inputs_of_another_width():
    with pytest.raises(ValueError, match=r"shape \(n_samples, 3\), got \(2, 4\)"):
        FTTransformer(n_features=3)(torch.zeros(2, 4))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_second_order_maml_with_attention_on_cuda():
    # the fused CUDA kernels (flash, memory-efficient, cuDNN) have no double
    # backward either
    train, valid = _digit_tasks()
    clf = MAMLClassifier(FTTransformer, module_params=_tiny_ft(), inner_steps=2,
                         meta_batch_size=2, n_meta_iter=2, device="cuda",
                         random_state=0)
    clf.meta_fit(train)
    assert np.isfinite(clf.meta_loss_curve_).all()
    task = valid[0]
    assert clf.fit(task.X_support, task.y_support).predict(task.X_query).shape == (9,)
