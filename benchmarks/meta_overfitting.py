# SPDX-License-Identifier: BSD-3-Clause
"""Meta-overfitting along meta-training: query accuracy, feature scale and
meta-loss after 100, 200, 400, ... meta-iterations, then ``fit`` at other
``inner_lr`` from the last init.

Meta-training continues with ``warm_start=True`` from one checkpoint to the
next, on the task stream, seeds and test tasks that ``fidelity_tabular``
uses for the same data set, split, K and method. With few meta-training
classes the accuracy on new classes can fall while the meta-loss keeps
falling; when the features grow meanwhile and a smaller ``inner_lr`` in
``fit`` recovers the accuracy, the steps overshoot on new classes (the
eleventh run of ``FIDELITY.md``)::

    python -m benchmarks.meta_overfitting --dataset movement_libras --split 2 \\
        --k-shot 5 --method "reptile nobt"

(``reptile nobt``: ``fit`` with plain steps, as in that run; since the
sixteenth run ``reptile`` line-searches them, ``backtracking=True``.)
"""

import argparse

import numpy as np

from benchmarks import fidelity_tabular as ft
from benchmarks._cli import non_negative_int, positive_float, positive_int
from benchmarks._harness import set_threads
from sk_meta.exceptions import DivergenceError


def feature_norm(est, tasks):
    """Mean norm of the features the output layer sees (the default MLP's
    last hidden layer, ``fidelity_tabular.hidden_features``) on the support
    rows."""
    return float(np.mean([np.linalg.norm(ft.hidden_features(est.module_, t.X_support),
                                         axis=1).mean() for t in tasks]))


def query_accuracy(est, tasks):
    """Mean query accuracy after ``fit``; tasks whose ``fit`` diverges score 0."""
    accs = []
    for task in tasks:
        try:
            accs.append(np.mean(est.fit(task.X_support, task.y_support)
                                .predict(task.X_query) == task.y_query))
        except DivergenceError:
            accs.append(0.0)
    return 100 * float(np.mean(accs))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="movement_libras",
                        choices=list(ft.DATASETS))
    parser.add_argument("--split", type=non_negative_int, default=2)
    parser.add_argument("--k-shot", type=positive_int, default=5)
    parser.add_argument("--stage", choices=["pilot", "test"], default="test")
    parser.add_argument("--method", default="reptile",
                        help="a fidelity_tabular method name, e.g. 'maml nomix'")
    parser.add_argument("--checkpoints", type=non_negative_int, nargs="+",
                        default=[100, 200, 400, 600, 800, 1000])
    parser.add_argument("--fit-lrs", type=positive_float, nargs="*",
                        default=[0.003, 0.01, 0.03],
                        help="inner_lr values for fit from the last init")
    parser.add_argument("--n-tasks", type=positive_int, default=60)
    parser.add_argument("--max-time", type=positive_float, default=None,
                        help="seconds per chunk of meta-training (default: none)")
    parser.add_argument("--omniglot-path", default=str(ft.DEFAULT_OMNIGLOT_PATH))
    parser.add_argument("--tabular-dir", default=str(ft.TABULAR_DIR))
    args = parser.parse_args(argv)
    if min(args.checkpoints) < 1 or args.n_tasks < 1:
        parser.error("--checkpoints and --n-tasks take positive integers")
    if any(lr <= 0 for lr in args.fit_lrs):
        parser.error("--fit-lrs take positive learning rates")
    try:
        spec = ft.meta_learner(args.method)
        table = ft.DATASETS[args.dataset](args, args.split)
    except (ValueError, ft.DatasetUnavailable) as exc:
        parser.error(str(exc))
    if spec.pretrained or spec.searched or spec.validated:
        parser.error("pretrained, searched and validated methods are not supported")
    set_threads(1)
    setting = ft.make_setting(table, args.split, args.stage)
    k = args.k_shot
    tasks = ft.test_tasks(setting, k, args.split, 200)[:args.n_tasks]
    meta_tasks = ft.meta_training_tasks(setting, k, args.split, setting.train)
    est = spec.make(setting.n_way, args.split, args.max_time)
    est.set_params(warm_start=True)
    print(f"{args.dataset} split {args.split} {setting.n_way}-way {k}-shot "
          f"{args.method!r}, {len(setting.train)} meta-training classes, "
          f"{len(tasks)} test tasks, fit with inner_lr={est.inner_lr}, "
          f"{est.inner_steps} steps")
    done = 0
    for n in sorted(set(args.checkpoints)):
        est.set_params(n_meta_iter=n).meta_fit(meta_tasks)
        chunk = est.meta_loss_curve_[done:]
        done = len(est.meta_loss_curve_)
        print(f"  {est.n_meta_iter_:5d} meta-iterations: query accuracy "
              f"{query_accuracy(est, tasks):5.1f} %, feature norm "
              f"{feature_norm(est, tasks):6.2f}, meta-loss {np.mean(chunk):.3f}",
              flush=True)
    for lr in args.fit_lrs:
        est.set_params(inner_lr=lr)
        print(f"  fit at inner_lr={lr}: query accuracy "
              f"{query_accuracy(est, tasks):5.1f} %")


if __name__ == "__main__":
    main()
