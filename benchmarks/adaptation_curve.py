# SPDX-License-Identifier: BSD-3-Clause
"""How adaptation goes step by step: support loss and query accuracy after
1, 5, 10, 20, 40 and 80 steps of ``fit``, from one meta-learned init.

The init is meta-trained exactly as ``fidelity_tabular`` does for the same
data set, split, K and method (same tasks, seeds and time budget); the test
tasks are the first ``--n-tasks`` of that benchmark's. A support loss that
rises between steps means the steps overshoot (``inner_lr`` too large for
the curvature the init has on these tasks)::

    python -m benchmarks.adaptation_curve --dataset flavia --split 2 --k-shot 5
"""

import argparse

import numpy as np

from benchmarks import fidelity_tabular as ft
from benchmarks._cli import non_negative_int, positive_float, positive_int
from benchmarks._harness import set_threads
from sk_meta.exceptions import DivergenceError

STEPS = (1, 5, 10, 20, 40, 80)


def support_loss(est, task):
    """Cross-entropy of the adapted estimator on its own support set."""
    proba = est.predict_proba(task.X_support)
    codes = np.searchsorted(est.classes_, task.y_support)
    return float(-np.log(np.clip(proba[np.arange(len(codes)), codes], 1e-30, 1)).mean())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="flavia", choices=list(ft.DATASETS))
    parser.add_argument("--split", type=non_negative_int, default=0)
    parser.add_argument("--k-shot", type=positive_int, default=5)
    parser.add_argument("--stage", choices=["pilot", "test"], default="test")
    parser.add_argument("--method", default="maml",
                        help="a fidelity_tabular method name, e.g. 'maml nomix'")
    parser.add_argument("--n-tasks", type=positive_int, default=60)
    parser.add_argument("--max-time", type=positive_float, default=60.0)
    parser.add_argument("--clip", type=positive_float, default=None)
    parser.add_argument("--omniglot-path", default=str(ft.DEFAULT_OMNIGLOT_PATH))
    parser.add_argument("--tabular-dir", default=str(ft.TABULAR_DIR))
    args = parser.parse_args(argv)
    set_threads(1)
    try:
        spec = ft.meta_learner(args.method)
    except ValueError as exc:
        parser.error(str(exc))
    if spec.pretrained or spec.searched or spec.validated:
        parser.error("pretrained, searched and validated methods are not supported")
    setting = ft.make_setting(ft.DATASETS[args.dataset](args, args.split), args.split,
                              args.stage, args.clip)
    k = args.k_shot
    # the first of the benchmark's 200 test tasks
    tasks = ft.test_tasks(setting, k, args.split, 200)[:args.n_tasks]
    meta_tasks = ft.meta_training_tasks(setting, k, args.split, setting.train)
    est = spec.make(setting.n_way, args.split, args.max_time).meta_fit(meta_tasks)
    print(f"{args.dataset} split {args.split} {setting.n_way}-way {k}-shot "
          f"{args.method!r} (clip {args.clip}): {est.n_meta_iter_} meta-iterations")
    for steps in STEPS:
        est.set_params(inner_steps=steps)
        losses, accs, diverged = [], [], 0
        for task in tasks:
            try:
                est.fit(task.X_support, task.y_support)
            except DivergenceError:
                diverged += 1
                continue
            losses.append(support_loss(est, task))
            accs.append(np.mean(est.predict(task.X_query) == task.y_query))
        print(f"  {steps:3d} steps: query accuracy {100 * np.mean(accs):5.1f} %, "
              f"support loss mean {np.mean(losses):.3f} (max {np.max(losses):.2f})"
              + (f", {diverged} tasks diverged" if diverged else ""))


if __name__ == "__main__":
    main()
