"""The task record shared by samplers, validation and the estimators."""

from typing import Any, NamedTuple


class Task(NamedTuple):
    """One few-shot task: a support set to adapt on and a query set to score on.

    A plain 4-tuple ``(X_support, y_support, X_query, y_query)`` is accepted
    wherever a ``Task`` is; the named fields only make code easier to read.

    Parameters
    ----------
    X_support : array-like of shape (n_support, ...)
        Inputs the model adapts on.
    y_support : array-like of shape (n_support,) or (n_support, n_outputs)
        Targets of the support set.
    X_query : array-like of shape (n_query, ...)
        Inputs the adapted model is evaluated on.
    y_query : array-like of shape (n_query,) or (n_query, n_outputs)
        Targets of the query set.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_meta.tasks import Task
    >>> task = Task(np.zeros((2, 3)), np.array([0, 1]),
    ...             np.ones((4, 3)), np.array([0, 1, 1, 0]))
    >>> task.X_query.shape
    (4, 3)
    """

    X_support: Any
    y_support: Any
    X_query: Any
    y_query: Any
