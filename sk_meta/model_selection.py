"""Model selection across tasks with scikit-learn's own search tools."""

import numpy as np


def tasks_to_cv(tasks):
    """Turn held-out tasks into ``(X, y, cv)`` for scikit-learn's model selection.

    Each task becomes one split whose training part is the task's support set
    and whose test part is its query set. ``GridSearchCV(estimator, grid,
    cv=cv).fit(X, y)`` then adapts every candidate on each support set and
    scores it on the matching query set: the mean test score is the mean
    post-adaptation query score over the tasks, the quantity that matters
    for choosing ``inner_lr`` or ``inner_steps`` after meta-training.

    Parameters
    ----------
    tasks : iterable of tasks
        ``(X_support, y_support, X_query, y_query)`` tuples or
        :class:`~sk_meta.tasks.Task` (a finite iterable: a list, or a sampler
        with ``n_tasks``). The tasks must not be the meta-training tasks.

    Returns
    -------
    X : ndarray of shape (n_rows, ...)
        All support and query rows, task after task.
    y : ndarray of shape (n_rows,) or (n_rows, n_outputs)
        Their targets.
    cv : list of (ndarray, ndarray)
        One ``(support_rows, query_rows)`` pair of row indices per task.

    Notes
    -----
    ``GridSearchCV`` refits the best candidate on all of ``X`` by default,
    which mixes the tasks' labels: pass ``refit=False`` and set the best
    parameters on your meta-trained estimator yourself.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sk_meta import MAMLClassifier
    >>> from sk_meta.model_selection import tasks_to_cv
    >>> from sk_meta.tasks import EpisodeSampler
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = MAMLClassifier(n_meta_iter=5, random_state=0).meta_fit(
    ...     EpisodeSampler(X / 16, y, 3, 5, 5, classes=range(7), random_state=0))
    >>> held_out = EpisodeSampler(X / 16, y, 3, 5, 5, classes=[7, 8, 9],
    ...                           n_tasks=4, random_state=1)
    >>> X_cv, y_cv, cv = tasks_to_cv(held_out)
    >>> search = GridSearchCV(clf, {"inner_steps": [1, 5]}, cv=cv, refit=False)
    >>> search.fit(X_cv, y_cv).cv_results_["mean_test_score"].shape
    (2,)
    """
    X_parts, y_parts, cv = [], [], []
    n_rows = 0
    for index, task in enumerate(tasks):
        if not isinstance(task, (tuple, list)) or len(task) != 4:
            raise TypeError(
                f"task {index}: expected a 4-tuple (X_support, y_support, X_query, "
                f"y_query), got {type(task).__name__}"
            )
        X_support, y_support, X_query, y_query = (np.asarray(a) for a in task)
        n_support, n_query = len(X_support), len(X_query)
        if len(y_support) != n_support or len(y_query) != n_query:
            raise ValueError(f"task {index}: X and y lengths differ")
        X_parts += [X_support, X_query]
        y_parts += [y_support, y_query]
        support_rows = np.arange(n_rows, n_rows + n_support)
        query_rows = np.arange(n_rows + n_support, n_rows + n_support + n_query)
        cv.append((support_rows, query_rows))
        n_rows += n_support + n_query
    if not cv:
        raise ValueError("tasks is empty")
    return np.concatenate(X_parts), np.concatenate(y_parts), cv
