# SPDX-License-Identifier: BSD-3-Clause
"""The baselines by name, and a dispatcher (e.g. for a memory subprocess)."""

from collections.abc import Callable, Sequence

import torch

from benchmarks._workloads import TaskArrays, Workload
from benchmarks.baselines._hand_batched import hand_batched_meta_step, run_hand_batched
from benchmarks.baselines._higher import higher_meta_step, run_higher
from benchmarks.baselines._learn2learn import learn2learn_meta_step, run_learn2learn
from benchmarks.baselines._reptile import run_reptile_loop
from benchmarks.baselines._torch_func import (
    func_loop_meta_step,
    func_vmap_meta_step,
    run_func_loop,
    run_func_vmap,
)

MAML_BASELINES = {
    "learn2learn": run_learn2learn,
    "higher": run_higher,
    "func_loop": run_func_loop,
    "func_vmap": run_func_vmap,
    "hand_batched": run_hand_batched,
}
META_STEPS = {
    "learn2learn": learn2learn_meta_step,
    "higher": higher_meta_step,
    "func_loop": func_loop_meta_step,
    "func_vmap": func_vmap_meta_step,
    "hand_batched": hand_batched_meta_step,
}
REPTILE_BASELINES = {"reptile_loop": run_reptile_loop}


def maml_baselines_for(workload: Workload) -> dict[str, Callable[..., dict]]:
    """The MAML baselines that apply to ``workload`` (hand_batched: MLPs only)."""
    return {name: run for name, run in MAML_BASELINES.items()
            if workload.is_mlp or name != "hand_batched"}


def run_baseline(method: str, workload: Workload, tasks: Sequence[TaskArrays],
                 n_iter: int, first_order: bool = False, *, seed: int = 0,
                 device: torch.device | str = "cpu") -> dict:
    """Dispatch by name, e.g. for ``_harness.peak_rss_in_subprocess``."""
    if method in REPTILE_BASELINES:
        return REPTILE_BASELINES[method](workload, tasks, n_iter, seed=seed,
                                         device=device)
    return MAML_BASELINES[method](workload, tasks, n_iter, first_order, seed=seed,
                                  device=device)
