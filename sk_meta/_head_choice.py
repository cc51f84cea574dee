"""``head_solver="choose"``: per task, the output layer that adapts alone
is either the inner steps' or a logistic regression on the body's features,
whichever leave one shot out on the support set prefers by log-loss.

The steps stop after ``inner_steps`` from the head's start; a logistic
regression fits the same layer to convergence. On the pretrained MLP at 5
shots the regression is ahead on some tables and behind on others, and the
per-task choice kept most of its gains and few of its losses (FIDELITY.md,
thirty-third run).
"""

import numpy as np
from sklearn.linear_model import LogisticRegression

# scikit-learn's defaults (C=1.0, lbfgs), with room to converge on
# separable support sets: the setting measured
LOGISTIC_MAX_ITER = 1000
# each fold refits both heads: up to 5 folds (the 5 shots measured), so
# that a support set of 100 samples per class costs what one of 5 does
MAX_FOLDS = 5


def leave_one_shot_out(y, sample_weight=None):
    """Rows each fold holds out, as boolean masks: fold ``j`` holds out the
    ``j``-th sample of every class, as many folds as the smallest class has
    samples, up to ``MAX_FOLDS``. None where a class has a single sample
    (nothing can be held out without losing it) and for fewer than two
    classes (a regression needs two). With ``sample_weight``, none where a
    class has no weight, and no fold that leaves a class none on the rows it
    keeps (the regression would not see that class) or that holds out rows
    of no weight only (they score nothing)."""
    y = np.asarray(y)
    labels, counts = np.unique(y, return_counts=True)
    if len(labels) < 2 or counts.min() < 2:
        return []
    members = [y == label for label in labels]
    rank = np.zeros(len(y), dtype=int)
    for rows in members:
        rank[rows] = np.arange(rows.sum())
    folds = [rank == j for j in range(min(counts.min(), MAX_FOLDS))]
    if sample_weight is None:
        return folds
    weighed = np.asarray(sample_weight) > 0
    if not all(weighed[rows].any() for rows in members):
        return []
    return [held for held in folds if (weighed & held).any()
            and all((weighed & ~held)[rows].any() for rows in members)]


def logistic_head(features, y, n_classes, *, class_weight=None, sample_weight=None):
    """A multinomial logistic regression on ``features`` (float64 arrays) as
    an output layer's ``(weight, bias)`` for ``n_classes`` outputs: its
    softmax gives the regression's probabilities. ``y`` holds class codes,
    every one of ``range(n_classes)`` present. The weights count as in
    ``fit``'s loss, a weighted mean: only their ratios (rescaled to a mean
    of 1, as if there were none when they are equal; the penalty is
    scikit-learn's). ``class_weight="balanced"`` weighs the classes as that
    loss does: each class's sum of weights counts alike (scikit-learn's
    "balanced" counts rows, the same without weights)."""
    weights = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight)
    weights = weights * (len(y) / weights.sum())
    if class_weight == "balanced":
        totals = np.bincount(y, weights=weights, minlength=n_classes)
        weights = weights * (weights.sum() / (n_classes * totals))[y]
    model = LogisticRegression(max_iter=LOGISTIC_MAX_ITER)
    model.fit(features, y, sample_weight=weights)
    if n_classes == 2:
        # one logit for class 1: softmax([0, z]) is its sigmoid
        weight = np.vstack([np.zeros_like(model.coef_), model.coef_])
        bias = np.concatenate([[0.0], model.intercept_])
        return weight, bias
    return model.coef_, model.intercept_
