"""torch.compile of the meta-training step: the same weights as eager."""

import numpy as np
import pytest
import torch

import sk_meta._compile
from sk_meta import FOMAMLRegressor, MAMLRegressor, ReptileRegressor
from sk_meta.tasks import SinusoidTasks


@pytest.mark.parametrize("estimator_class",
                         [MAMLRegressor, FOMAMLRegressor, ReptileRegressor])
def test_compiled_meta_training_matches_eager(estimator_class):
    tasks = list(SinusoidTasks(k_shot=5, n_query=5, n_tasks=12, random_state=0))
    params = dict(hidden_layer_sizes=(16, 16), inner_steps=2, meta_batch_size=4,
                  n_meta_iter=3, random_state=0)
    eager = estimator_class(**params).meta_fit(tasks)
    compiled = estimator_class(compile=True, **params)
    with torch._dynamo.config.patch(cache_size_limit=64):
        compiled.meta_fit(tasks)
    for name, value in eager.meta_params_.items():
        torch.testing.assert_close(compiled.meta_params_[name], value, rtol=1e-4,
                                   atol=1e-5)
    np.testing.assert_allclose(compiled.meta_loss_curve_, eager.meta_loss_curve_,
                               rtol=1e-4)


def test_compilation_failure_falls_back_to_eager(monkeypatch):
    def failing_compile(function, mode=None):
        def compiled(*args, **kwargs):
            raise RuntimeError("backend exploded")
        return compiled

    monkeypatch.setattr(sk_meta._compile.torch, "compile", failing_compile)
    tasks = list(SinusoidTasks(n_tasks=8, random_state=0))
    params = dict(hidden_layer_sizes=(8,), meta_batch_size=4, n_meta_iter=2,
                  random_state=0)
    with pytest.warns(UserWarning, match="torch.compile failed for this module "
                                         r"\(RuntimeError: backend exploded\)"):
        fallback = MAMLRegressor(compile=True, **params).meta_fit(tasks)
    eager = MAMLRegressor(**params).meta_fit(tasks)
    for name, value in eager.meta_params_.items():
        assert torch.equal(fallback.meta_params_[name], value)


@pytest.fixture
def compile_counter(monkeypatch):
    """Compile with a counting backend (no code generation): counts graphs."""
    from torch._dynamo.testing import CompileCounter

    counter = CompileCounter()
    real_compile = torch.compile
    monkeypatch.setattr(sk_meta._compile.torch, "compile",
                        lambda function, mode=None: real_compile(function,
                                                                 backend=counter))
    torch._dynamo.reset()
    yield counter
    torch._dynamo.reset()


def test_fixed_shape_episodes_compile_once(compile_counter):
    tasks = SinusoidTasks(k_shot=5, n_query=5, n_tasks=40, random_state=0)
    est = MAMLRegressor(hidden_layer_sizes=(8,), meta_batch_size=4, n_meta_iter=2,
                        compile=True, random_state=0).meta_fit(tasks)
    after_two = compile_counter.frame_count
    assert after_two >= 1
    est.set_params(n_meta_iter=10).meta_fit(tasks)
    assert est.n_meta_iter_ == 10
    assert compile_counter.frame_count == after_two


def test_warm_started_meta_fit_does_not_recompile(compile_counter):
    # training in warm-started chunks (a schedule on meta_lr, periodic
    # evaluation) must not pay for compilation again in every chunk
    tasks = SinusoidTasks(k_shot=5, n_query=5, n_tasks=40, random_state=0)
    module = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.ReLU(),
                                 torch.nn.Linear(8, 1))  # the vmap path
    est = MAMLRegressor(module, meta_batch_size=4, n_meta_iter=2, compile=True,
                        warm_start=True, random_state=0)
    est.meta_fit(tasks)
    compiled_once = compile_counter.frame_count
    assert compiled_once >= 1
    for n_meta_iter, meta_lr in [(4, 1e-3), (6, 5e-4), (8, 2e-4)]:
        est.set_params(n_meta_iter=n_meta_iter, meta_lr=meta_lr).meta_fit(tasks)
    assert est.n_meta_iter_ == 8
    assert compile_counter.frame_count == compiled_once


def test_varying_shapes_stop_recompiling_and_match_eager(compile_counter):
    rng = np.random.default_rng(0)

    def task(k_shot, n_query):
        X = rng.uniform(-5, 5, (k_shot + n_query, 1)).astype(np.float32)
        y = np.sin(X[:, 0] + rng.uniform(0, 3))
        return X[:k_shot], y[:k_shot], X[k_shot:], y[k_shot:]

    # a new support/query size in every meta-batch
    tasks = [task(3 + i // 2, 4 + i // 2) for i in range(24)]
    params = dict(hidden_layer_sizes=(8,), meta_batch_size=2, n_meta_iter=12,
                  random_state=0)
    compiled = MAMLRegressor(compile=True, **params).meta_fit(tasks)
    # the first shape compiles, the second recompiles with dynamic shapes,
    # later shapes reuse that graph
    assert compile_counter.frame_count == 2
    eager = MAMLRegressor(**params).meta_fit(tasks)
    for name, value in eager.meta_params_.items():
        torch.testing.assert_close(compiled.meta_params_[name], value, rtol=1e-5,
                                   atol=1e-6)
