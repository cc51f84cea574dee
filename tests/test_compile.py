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
