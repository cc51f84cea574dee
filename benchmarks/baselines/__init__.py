# SPDX-License-Identifier: BSD-3-Clause
"""The meta-training loops sk_meta is timed against.

Every baseline trains on the workloads of ``benchmarks._workloads``: the same
numpy tasks, in the same order, from the same seeded initialisation as sk_meta.
``run_<method>(workload, tasks, n_iter, first_order=False, *, seed=0,
device="cpu")`` times its own loop and returns ``it_per_s`` and ``final_loss``.

* ``learn2learn``: ``l2l.algorithms.MAML``, clone/adapt per task (its README way).
* ``higher``: ``higher.innerloop_ctx`` with a differentiable SGD inner optimizer.
* ``func_loop``: ``torch.func.functional_call`` + ``torch.func.grad``, task by task.
* ``func_vmap``: the same per-task loss, ``torch.func.vmap``-ed over the meta-batch.
* ``hand_batched``: MLPs only, all tasks at once with ``torch.baddbmm``.
* ``reptile_loop`` (separate, first-order by nature): learn2learn-style Reptile.

A new MAML baseline is a ``<name>_meta_step(workload, module, first_order)``
(see ``_loop.MetaStep``) and a ``run_<name>`` that passes it to
``_loop.train``, registered in ``_registry``.

``python -m benchmarks.baselines --check`` verifies that the MAML
meta-gradients of all methods agree in float64, and ``--quick`` is a
one-minute speed sanity run. learn2learn and higher are installed by
``benchmarks/install_baselines.sh``; they are imported only when used.
"""

from benchmarks.baselines._agreement import check_agreement, meta_gradient
from benchmarks.baselines._hand_batched import run_hand_batched
from benchmarks.baselines._higher import run_higher
from benchmarks.baselines._learn2learn import run_learn2learn
from benchmarks.baselines._registry import (
    MAML_BASELINES,
    META_STEPS,
    REPTILE_BASELINES,
    maml_baselines_for,
    run_baseline,
)
from benchmarks.baselines._reptile import run_reptile_loop
from benchmarks.baselines._torch_func import run_func_loop, run_func_vmap

__all__ = [
    "MAML_BASELINES",
    "META_STEPS",
    "REPTILE_BASELINES",
    "check_agreement",
    "maml_baselines_for",
    "meta_gradient",
    "run_baseline",
    "run_func_loop",
    "run_func_vmap",
    "run_hand_batched",
    "run_higher",
    "run_learn2learn",
    "run_reptile_loop",
]
