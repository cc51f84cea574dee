"""Task interpolation: new meta-training tasks from pairs of drawn ones (MLTI)."""

import numpy as np

# lambda ~ Beta(2, 2), as in MLTI's released code: mostly between 0.2 and 0.8,
# so an interpolated class lies between its two source classes
_ALPHA = 2.0


def _mix_rows(out, X, y, X_other, y_other, lam, class_map, center, rng):
    """Write into ``out`` the rows of ``X`` mixed with rows of the partner's
    mapped classes (``out`` starts as a copy of ``X``)."""
    # lam * x + (1 - lam) * x' of two independent rows has lam^2 + (1 - lam)^2
    # times their variance (0.6 on average): rescaled about the mean, the
    # mixed rows spread as real ones do. Unscaled, MAML tunes the init's
    # curvature to the narrower mixed inputs, and adapting it to real tasks
    # at the same inner_lr overshoots.
    scale = np.float32(1.0 / np.sqrt(lam ** 2 + (1 - lam) ** 2))
    for code, partner_code in enumerate(class_map):
        rows = np.flatnonzero(y == code)
        partner_rows = np.flatnonzero(y_other == partner_code)
        if len(rows) == 0 or len(partner_rows) == 0:
            continue
        picked = rng.choice(partner_rows, len(rows),
                            replace=len(partner_rows) < len(rows))
        mixed = lam * X[rows] + (1 - lam) * X_other[picked]
        out[rows] = center + scale * (mixed - center)


def interpolate_tasks(stacked, probability, rng):
    """Replace some classification tasks by interpolations with another task.

    Each task is replaced with probability ``probability`` (MLTI, Yao et al.,
    ICLR 2022, cross-task interpolation for non-label-sharing tasks): a
    partner task is drawn from the same stack (a stack of one task is its
    own partner), its classes are matched to the task's in a random order,
    and every support and query row of class
    ``k`` becomes ``lam * x + (1 - lam) * x'`` with ``x'`` a row of the
    matched class of the partner and one ``lam ~ Beta(2, 2)`` per task. The
    labels stay those of the task: each interpolated class is a new class,
    lying between two real ones, so meta-training sees more distinct tasks
    than the classes alone give.

    The mixed rows are then rescaled about ``m``, the mean of all rows of
    the stack: ``m + (lam * x + (1 - lam) * x' - m) / sqrt(lam**2 + (1 -
    lam)**2)``, so that they spread as much as real rows (a mix of two
    independent rows has ``lam**2 + (1 - lam)**2`` times their variance).
    MLTI mixes without rescaling; with second-order MAML that made the init
    fit the narrower mixed inputs and adapt unstably to real tasks.

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
    parts = ((stacked.X_support, stacked.y_support), (stacked.X_query, stacked.y_query))
    mixed = [X.copy() for X, _ in parts]
    n_rows = stacked.X_support[0].shape[0] + stacked.X_query[0].shape[0]
    total = (stacked.X_support.sum(axis=(0, 1), dtype=np.float64)
             + stacked.X_query.sum(axis=(0, 1), dtype=np.float64))
    center = (total / (n_tasks * n_rows)).astype(stacked.X_support.dtype)
    for task in chosen.tolist():
        # another task of the stack when there is one
        partner = (task + rng.integers(1, n_tasks)) % n_tasks if n_tasks > 1 else task
        lam = np.float32(rng.beta(_ALPHA, _ALPHA))
        class_map = rng.permutation(stacked.n_classes)
        for out, (X, y) in zip(mixed, parts):  # support, then query
            _mix_rows(out[task], X[task], y[task], X[partner], y[partner], lam,
                      class_map, center, rng)
    return stacked._replace(X_support=mixed[0], X_query=mixed[1])
