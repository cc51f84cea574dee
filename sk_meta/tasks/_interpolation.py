"""Task interpolation: new meta-training tasks from pairs of drawn ones (MLTI)."""

import numpy as np

from sk_meta.tasks._validation import StackedTasks

# lambda ~ Beta(2, 2), as in MLTI's released code: mostly between 0.2 and 0.8,
# so an interpolated class lies between its two source classes
_ALPHA = 2.0


def _mix_rows(X, y, X_other, y_other, lam, class_map, rng):
    """Rows of ``X`` mixed with rows of the partner's mapped classes."""
    mixed = X.copy()
    for code, partner_code in enumerate(class_map):
        rows = np.flatnonzero(y == code)
        partner_rows = np.flatnonzero(y_other == partner_code)
        if len(rows) == 0 or len(partner_rows) == 0:
            continue
        picked = rng.choice(partner_rows, len(rows),
                            replace=len(partner_rows) < len(rows))
        mixed[rows] = lam * X[rows] + (1 - lam) * X_other[picked]
    return mixed


def interpolate_tasks(stacked, probability, rng):
    """Replace some classification tasks by interpolations with another task.

    Each task is replaced with probability ``probability`` (MLTI, Yao et al.,
    ICLR 2022, cross-task interpolation for non-label-sharing tasks): a
    partner task is drawn from the same stack, its classes are matched to
    the task's in a random order, and every support and query row of class
    ``k`` becomes ``lam * x + (1 - lam) * x'`` with ``x'`` a row of the
    matched class of the partner and one ``lam ~ Beta(2, 2)`` per task. The
    labels stay those of the task: each interpolated class is a new class,
    lying between two real ones, so meta-training sees more distinct tasks
    than the classes alone give.

    Parameters
    ----------
    stacked : StackedTasks
        Classification tasks of equal shapes, labels coded ``0 .. k - 1``.
    probability : float
        Chance that a task is replaced, in [0, 1].
    rng : numpy.random.Generator

    Returns
    -------
    StackedTasks
        New arrays where a task was replaced (the input is not modified).
    """
    n_tasks = len(stacked.X_support)
    chosen = np.flatnonzero(rng.random(n_tasks) < probability)
    if len(chosen) == 0:
        return stacked
    X_support, X_query = stacked.X_support.copy(), stacked.X_query.copy()
    for task in chosen.tolist():
        # another task of the stack when there is one
        partner = (task + rng.integers(1, n_tasks)) % n_tasks if n_tasks > 1 else task
        lam = np.float32(rng.beta(_ALPHA, _ALPHA))
        class_map = rng.permutation(stacked.n_classes)
        X_support[task] = _mix_rows(
            stacked.X_support[task], stacked.y_support[task],
            stacked.X_support[partner], stacked.y_support[partner], lam, class_map, rng)
        X_query[task] = _mix_rows(
            stacked.X_query[task], stacked.y_query[task],
            stacked.X_query[partner], stacked.y_query[partner], lam, class_map, rng)
    return StackedTasks(X_support, stacked.y_support, X_query, stacked.y_query,
                        n_classes=stacked.n_classes, indices=stacked.indices)
