# SPDX-License-Identifier: BSD-3-Clause
"""Float64 agreement of the baselines' MAML meta-gradients."""

from collections.abc import Sequence

import torch

from benchmarks._workloads import TaskArrays, Workload, sinusoid_workload
from benchmarks.baselines._registry import META_STEPS, maml_baselines_for


def meta_gradient(method: str, workload: Workload, batch: Sequence[TaskArrays],
                  first_order: bool = False, *, seed: int = 0,
                  dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    """One meta-batch's MAML meta-gradient by ``method``, as name -> tensor."""
    module = workload.make_module(seed).to(dtype)
    META_STEPS[method](workload, module, first_order)(batch)
    return {name: p.grad.detach().clone() for name, p in module.named_parameters()}


def check_agreement(workload: Workload | None = None, first_order: bool = False,
                    *, methods: Sequence[str] | None = None, task_seed: int = 0,
                    n_tasks: int | None = None, rtol: float = 1e-10,
                    strict: bool = True) -> dict[str, float]:
    """Check in float64 that all methods give the same meta-gradient.

    Returns the max relative difference of each method against ``func_loop``
    (max |g - g_ref| / max |g_ref| over all parameters) and, when ``strict``,
    raises ``AssertionError`` if any exceeds ``rtol``. ``n_tasks`` shrinks the
    meta-batch (float64 convolutions are slow).

    Known failure (torch 2.13): ``func_vmap`` on ``omniglot`` disagrees, by
    ~1e-3 relative, in MAML (not first-order) mode. Finite differences side with
    the loops: vmap's batching rule for the backward of batch_norm (and
    layer_norm) is wrong for second-order gradients (functorch issue #534).
    """
    workload = workload or sinusoid_workload()
    methods = list(methods or maml_baselines_for(workload))
    batch = workload.make_tasks(1, task_seed)[:n_tasks]
    reference = meta_gradient("func_loop", workload, batch, first_order)
    scale = max(g.abs().max().item() for g in reference.values())
    differences = {}
    for method in methods:
        gradients = meta_gradient(method, workload, batch, first_order)
        differences[method] = max(
            (gradients[name] - reference[name]).abs().max().item() / scale
            for name in reference
        )
    failing = {m: d for m, d in differences.items() if not d <= rtol}
    assert not (strict and failing), f"meta-gradients disagree (rtol={rtol}): {failing}"
    return differences
