# SPDX-License-Identifier: BSD-3-Clause
"""The pretrained MLP's output layer: fit's steps, logistic regression, or
the one the support set prefers.

Where ``ReptileClassifier``'s ``hidden_layer_sizes="auto"`` takes the MLP
pretrained on all meta-training classes, ``fit`` adapts its output layer
alone with 20 steps from a tenth of the class prototypes. At 5 shots a
logistic regression on the same body is ahead on some tables and behind
on others (FIDELITY.md, twenty-sixth run). For each test task this script
fits both heads, and the one that leave one shot out on the support set
prefers: fold j holds out the j-th sample of every class, both heads are
refitted on the rest, and logistic regression is taken where its mean
log-loss on the held-out samples is lower. At 1 shot nothing can be held
out: the steps. Accuracies are paired per task (FIDELITY.md, thirty-third
run). The choice is ``fit``'s own since the thirty-fourth run
(``head_solver="auto"``): the steps here are ``head_solver="steps"``, and
the last column counts the tasks where ``head_solver="choose"`` predicts
the classes this script's choice predicts::

    python -m benchmarks.head_choice --stage test --k-shot 5 \\
        --datasets letter flavia movement_libras marketing vowel omniglot

The body is sk_meta's own pretrained MLP as ``ReptileClassifier().meta_fit``
builds it: (128, 128) on tables with 10 meta-training classes or more (15
until the thirty-fifth run; the thirty-third run's movement_libras had
(64, 64)), and (64, 64), taken as the class folds' pretrained candidate is,
on the others.
"""

import argparse
from unittest import mock

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

import sk_meta.model_selection as model_selection
from benchmarks import fidelity_tabular as tabular
from benchmarks._cli import non_negative_int, positive_int
from benchmarks._harness import set_threads
from benchmarks._stats import mean_ci
from sk_meta import ReptileClassifier
from sk_meta._head_choice import leave_one_shot_out

FITS = ("steps", "logistic", "chosen")


def steps_proba(estimator, X_support, y_support, X):
    return estimator.set_params(head_solver="steps").fit(
        X_support, y_support).predict_proba(X)


def logistic_proba(estimator, X_support, y_support, X):
    # in float64, as head_solver="choose" fits it (lbfgs stops elsewhere on
    # float32 features: up to 0.04 apart in probability)
    head = LogisticRegression(max_iter=1000).fit(
        tabular.hidden_features(estimator.module_, X_support).astype(np.float64),
        y_support)
    return head.predict_proba(
        tabular.hidden_features(estimator.module_, X).astype(np.float64))


def held_out_log_loss(fit_proba, estimator, X_support, y_support, folds):
    """Mean log-loss of ``fit_proba`` on the samples ``folds`` hold out (the
    folds hold out as many samples each: the mean of the folds' means)."""
    classes = np.unique(y_support)
    return float(np.mean([
        log_loss(y_support[held], fit_proba(estimator, X_support[~held],
                                            y_support[~held], X_support[held]),
                 labels=classes)
        for held in folds]))


def score_task(estimator, task):
    """Query accuracy of each fit on ``task``, whether the choice took
    logistic regression, and whether ``head_solver="choose"`` (sk_meta's
    own choice) predicts the classes the choice made here predicts."""
    classes = np.unique(task.y_support)
    accuracy = {}
    for name, fit_proba in (("steps", steps_proba), ("logistic", logistic_proba)):
        proba = fit_proba(estimator, task.X_support, task.y_support, task.X_query)
        accuracy[name] = float(np.mean(classes[proba.argmax(1)] == task.y_query))
    folds = leave_one_shot_out(task.y_support)
    chose_logistic = bool(folds) and (
        held_out_log_loss(logistic_proba, estimator, task.X_support,
                          task.y_support, folds)
        < held_out_log_loss(steps_proba, estimator, task.X_support,
                            task.y_support, folds))
    accuracy["chosen"] = accuracy["logistic" if chose_logistic else "steps"]
    chosen = (logistic_proba if chose_logistic else steps_proba)(
        estimator, task.X_support, task.y_support, task.X_query)
    own = estimator.set_params(head_solver="choose").fit(
        task.X_support, task.y_support).predict_proba(task.X_query)
    return accuracy, chose_logistic, bool(np.all(own.argmax(1) == chosen.argmax(1)))


def pretrained_reptile(setting, k_shot, split, many_classes):
    """``ReptileClassifier()`` meta-fitted on the split's meta-training
    classes, its default network the pretrained MLP whatever their number."""
    sizes = model_selection.AUTO_MANY_CLASSES_SIZES if many_classes else (64, 64)
    with (mock.patch.object(model_selection, "AUTO_PRETRAINED_MANY_CLASSES", 2),
          mock.patch.object(model_selection, "AUTO_MANY_CLASSES_SIZES", sizes)):
        estimator = ReptileClassifier(random_state=split, max_time=60,
                                      head_solver="steps").meta_fit(
            tabular.meta_training_tasks(setting, k_shot, split, setting.train))
    assert estimator.n_meta_iter_ == 0 and estimator.pretrained_
    return estimator


def run(args):
    rows = []
    for dataset in args.datasets:
        for split in args.splits:
            table = tabular.DATASETS[dataset](args, split)
            setting = tabular.make_setting(table, split, args.stage)
            # the table's network, as its test classes' row gets it (the pilot
            # stage holds out a few more classes)
            many_classes = (len(table.classes) - table.n_test
                            >= model_selection.AUTO_PRETRAINED_MANY_CLASSES)
            for k_shot in args.k_shot:
                estimator = pretrained_reptile(setting, k_shot, split, many_classes)
                for task in tabular.test_tasks(setting, k_shot, split,
                                               args.n_test_tasks):
                    accuracy, chose_logistic, same = score_task(estimator, task)
                    rows.append({"dataset": dataset, "split": split, "k_shot": k_shot,
                                 "chose_logistic": chose_logistic,
                                 "sk_meta_agrees": same, **accuracy})
                print(f"{dataset} split {split} {k_shot}-shot done", flush=True)
    return rows


def report(rows):
    print(f"{'data set':16s} {'shots':>5s} {'steps':>6s} {'logistic (Δ)':>17s} "
          f"{'chosen (Δ)':>17s} {'logistic chosen':>16s} {'sk_meta agrees':>15s}")
    for dataset, k_shot in dict.fromkeys((r["dataset"], r["k_shot"]) for r in rows):
        mine = [r for r in rows if r["dataset"] == dataset and r["k_shot"] == k_shot]
        accuracy = {name: 100 * np.array([r[name] for r in mine]) for name in FITS}
        cells = []
        for name in ("logistic", "chosen"):
            gain, half = mean_ci(accuracy[name] - accuracy["steps"])
            cells.append(f"{accuracy[name].mean():5.1f} ({gain:+.1f} ± {half:.1f})")
        share = np.mean([r["chose_logistic"] for r in mine])
        agrees = np.mean([r["sk_meta_agrees"] for r in mine])
        print(f"{dataset:16s} {k_shot:5d} {accuracy['steps'].mean():6.1f} "
              f"{cells[0]:>17s} {cells[1]:>17s} {share:15.0%} {agrees:14.0%}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=["pilot", "test"], default="test",
                        help="pilot: validation classes; test: the test classes")
    parser.add_argument("--datasets", nargs="+", choices=list(tabular.DATASETS),
                        default=["letter", "flavia", "movement_libras", "marketing",
                                 "vowel"])
    parser.add_argument("--splits", type=non_negative_int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--k-shot", type=positive_int, nargs="+", default=[5])
    parser.add_argument("--n-test-tasks", type=positive_int, default=200)
    parser.add_argument("--omniglot-path", default=str(tabular.DEFAULT_OMNIGLOT_PATH))
    parser.add_argument("--tabular-dir", default=str(tabular.TABULAR_DIR))
    args = parser.parse_args(argv)
    set_threads(1)
    report(run(args))


if __name__ == "__main__":
    main()
