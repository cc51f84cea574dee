# SPDX-License-Identifier: BSD-3-Clause
"""sk_meta's estimators on the benchmark workloads, through the public API.

* ``sk_meta_module_like``: sk_meta's own network (``MLP`` with its batched
  forward pass, or ``Conv4``) holding the baselines' seeded initial weights, so
  sk_meta and the baselines start from the same point.
* ``make_sk_estimator``: a MAML, FOMAML or Reptile estimator with a
  workload's hyperparameters.
* ``time_sk_meta``: meta-training with ``meta_partial_fit`` on numpy tasks,
  timed by wall clock, one-off setup excluded.
"""

import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

import sk_meta
from benchmarks._harness import synchronize
from benchmarks._workloads import Workload
from sk_meta.models import MLP, Conv4


def _copy_parameters(source: nn.Module, target: nn.Module) -> None:
    source_params = list(source.parameters())
    target_params = list(target.parameters())
    shapes = [tuple(p.shape) for p in source_params]
    if shapes != [tuple(p.shape) for p in target_params]:
        raise ValueError(f"parameter shapes differ: {shapes} vs "
                         f"{[tuple(p.shape) for p in target_params]}")
    with torch.no_grad():
        for s, t in zip(source_params, target_params):
            t.copy_(s)


def sk_meta_module_like(workload: Workload, seed: int = 0) -> nn.Module:
    """sk_meta's network for ``workload``, holding the baseline's initial weights.

    MLP workloads get ``sk_meta.models.MLP`` (the default network of the
    estimators, with its hand-batched ``forward_batched``); conv workloads get
    ``sk_meta.models.Conv4``. Parameters are copied in order from
    ``workload.make_module(seed)``, so every method starts from the same init.
    """
    reference = workload.make_module(seed)
    layers = list(reference.children())
    if workload.is_mlp:
        linears = [m for m in layers if isinstance(m, nn.Linear)]
        module = MLP(linears[0].in_features,
                     tuple(m.out_features for m in linears[:-1]),
                     linears[-1].out_features)
    else:
        convs = [m for m in layers if isinstance(m, nn.Conv2d)]
        linear = [m for m in layers if isinstance(m, nn.Linear)][-1]
        module = Conv4(in_channels=convs[0].in_channels,
                       n_outputs=linear.out_features,
                       n_filters=convs[0].out_channels)
    _copy_parameters(reference, module)
    return module


def make_sk_estimator(workload: Workload, algorithm: str = "maml", *,
                      module: nn.Module | None = None,
                      device: torch.device | str = "cpu", n_threads: int = 1,
                      seed: int = 0, **params):
    """An sk_meta estimator with the workload's hyperparameters.

    ``module`` defaults to ``sk_meta_module_like(workload, seed)``. Reptile uses
    the workload's outer optimizer (Adam, as the ``reptile_loop`` baseline).
    Extra ``params`` (e.g. ``tasks_per_chunk``) go to the estimator.
    """
    hp = workload.hyperparams
    classification = hp["loss"] == "cross_entropy"
    kind = "Classifier" if classification else "Regressor"
    prefix = {"maml": "MAML", "fomaml": "FOMAML", "reptile": "Reptile"}[algorithm]
    estimator_class = getattr(sk_meta, prefix + kind)
    if module is None:
        module = sk_meta_module_like(workload, seed)
    # the same work as the baselines: plain MAML/Reptile (a meta-learned output
    # layer, the workload's steps in meta-training and in fit), whatever the
    # classifiers' defaults are
    kwargs = {
        "module": module,
        "head_init": "meta",
        "meta_inner_steps": None,
        "task_interpolation": 0.0,
        "meta_grad_max_norm": None,
        "backtracking": False,
        "inner_lr": hp["inner_lr"],
        "inner_steps": hp["inner_steps"],
        "meta_batch_size": hp["meta_batch_size"],
        "meta_lr": hp["meta_lr"],
        "meta_optimizer": hp["meta_optimizer"],
        "n_threads": n_threads,
        "device": str(device),
        "random_state": seed,
    }
    kwargs.update(params)
    return estimator_class(**kwargs)


def time_sk_meta(make_estimator: Callable[[], object], tasks: Sequence,
                 n_iter: int, batch_size: int,
                 device: torch.device | str = "cpu") -> dict:
    """Meta-train through the public API and time it by wall clock.

    The first meta-batch goes through an untimed ``meta_partial_fit`` (it builds
    the network, the optimizer and the batched forward pass: one-off setup, as
    the baselines build their module outside their timer). Meta-batches
    ``1 .. n_iter - 1`` then go through one timed ``meta_partial_fit``: one
    pass, in order, exactly the tasks the baselines see. Numpy validation,
    stacking and the host-to-device copies are inside the timer.

    Returns ``it_per_s`` and ``final_loss`` (mean query loss of the last
    meta-batch, as the baselines report it) plus ``loss_curve``.
    """
    if n_iter < 2:
        raise ValueError("time_sk_meta needs n_iter >= 2 (one untimed warm-up)")
    if len(tasks) < n_iter * batch_size:
        raise ValueError(f"{n_iter} iterations need {n_iter * batch_size} tasks, "
                         f"got {len(tasks)}")
    estimator = make_estimator()
    estimator.meta_partial_fit(tasks[:batch_size])
    synchronize(device)
    start = time.perf_counter()
    estimator.meta_partial_fit(tasks[batch_size:n_iter * batch_size])
    synchronize(device)
    elapsed = time.perf_counter() - start
    curve = list(estimator.meta_loss_curve_)
    if len(curve) != n_iter:
        raise RuntimeError(f"expected {n_iter} meta-iterations, sk_meta ran "
                           f"{len(curve)}")
    return {"it_per_s": (n_iter - 1) / elapsed, "final_loss": curve[-1],
            "loss_curve": curve}
