# SPDX-License-Identifier: BSD-3-Clause
"""Support sets with more samples of one class than of the others.

Samplers draw balanced support sets; a user's new task often is not. For
each class split of digits (7 meta-training classes, 3 new ones), MAML's
defaults are meta-trained once, then adapted to support sets of the new
classes with the given counts per class, with ``class_weight="balanced"``
(the default) and ``None`` (the papers' plain mean), beside logistic
regression on the same support set. Query sets hold 4 times each class's
support count (the same proportions); accuracies are paired per task::

    python -m benchmarks.imbalanced_support --splits 0 1 2 --n-tasks 30
"""

import argparse

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from benchmarks._cli import non_negative_int, positive_int
from benchmarks._harness import set_threads
from benchmarks._stats import mean_ci
from sk_meta import MAMLClassifier
from sk_meta.tasks import EpisodeSampler, split_classes

COUNTS = ((5, 5, 5), (10, 5, 5), (20, 5, 5), (5, 2, 2))


def tasks_of(X, y, classes, counts, n_tasks, rng):
    """``n_tasks`` support and query index sets of ``classes`` with ``counts``."""
    for _ in range(n_tasks):
        support, query = [], []
        for label, count in zip(classes, counts):
            rows = rng.permutation(np.flatnonzero(y == label))
            support += list(rows[:count])
            query += list(rows[count:count + 4 * count])
        yield np.array(support), np.array(query)


def run(splits, n_tasks, n_meta_iter):
    X, y = load_digits(return_X_y=True)
    X = X / 16
    rows = []
    for split in splits:
        train, _, new = split_classes(y, train_size=7, val_size=0, random_state=split)
        sampler = EpisodeSampler(X, y, n_way=3, k_shot=5, n_query=10, classes=train,
                                 shuffle_labels=True, random_state=split)
        clf = MAMLClassifier(n_meta_iter=n_meta_iter, random_state=split)
        clf.meta_fit(sampler)
        for counts in COUNTS:
            rng = np.random.default_rng([split, *counts])
            for support, query in tasks_of(X, y, new, counts, n_tasks, rng):
                row = {"split": split, "counts": counts}
                for weight in ("balanced", None):
                    clf.set_params(class_weight=weight).fit(X[support], y[support])
                    row[weight] = clf.score(X[query], y[query])
                row["logreg"] = LogisticRegression().fit(
                    X[support], y[support]).score(X[query], y[query])
                rows.append(row)
    return rows


def report(rows):
    print(f"{'support counts':16s} {'None':>7s} {'balanced':>9s} "
          f"{'balanced - None':>18s} {'logreg':>7s}")
    for counts in COUNTS:
        mine = [r for r in rows if r["counts"] == counts]
        plain = np.array([r[None] for r in mine]) * 100
        balanced = np.array([r["balanced"] for r in mine]) * 100
        logreg = np.array([r["logreg"] for r in mine]) * 100
        gain, half = mean_ci(balanced - plain)
        print(f"{str(counts):16s} {plain.mean():7.1f} {balanced.mean():9.1f} "
              f"{gain:+8.1f} ± {half:4.1f}     {logreg.mean():7.1f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=non_negative_int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-tasks", type=positive_int, default=30)
    parser.add_argument("--n-meta-iter", type=positive_int, default=300)
    args = parser.parse_args(argv)
    set_threads(1)
    report(run(args.splits, args.n_tasks, args.n_meta_iter))


if __name__ == "__main__":
    main()
