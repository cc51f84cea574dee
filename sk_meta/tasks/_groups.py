"""Tasks made of the rows of one group each: a store, a patient, a site."""

import numpy as np
from scipy import sparse

from sk_meta._checks import positive_int_setting
from sk_meta.tasks._samplers import (
    _check_n_tasks,
    _check_random_state_type,
    _DrawnTasks,
    _format_labels,
    _is_frame,
    _rows_of_labels,
    _sample_generator,
    _take_rows,
    _warn_if_reordered,
)
from sk_meta.tasks._task import Task


class GroupTaskSampler(_DrawnTasks):
    """Iterable of tasks, each drawn from the rows of one group.

    Where the rows of a table come in groups that each make a task (the
    daily sales of one store, the measurements of one patient, the yields
    of one field), each task here is one group chosen at random, with
    ``k_shot`` of its rows as the support set and ``n_query`` others as the
    query set. It is the source of tasks for the regressors on such a table
    (:class:`EpisodeSampler` draws classification episodes); hold groups out
    for testing with :func:`split_classes` on the group labels.

    Every call to ``iter()`` starts again from ``random_state``: with an int,
    each iteration yields the same tasks.

    Parameters
    ----------
    X : array-like of shape (n_samples, ...)
        Inputs. A numpy array, a pandas DataFrame or a scipy sparse matrix
        is kept by reference; tasks hold rows of the same kind (sparse rows
        come back dense).
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Targets (or labels); a pandas Series or DataFrame is kept, and tasks
        hold its rows.
    groups : array-like of shape (n_samples,)
        The group of each row, as for scikit-learn's ``GroupKFold``.
    k_shot : int
        Number of support rows per task.
    n_query : int
        Number of query rows per task, none of them in the support set.
    group_labels : array-like, default=None
        Groups to draw tasks from, for example the meta-training pool of
        ``split_classes(groups, ...)``. None means every group.
    n_tasks : int, default=None
        Number of tasks per iteration. None means an endless iterator.
    random_state : int, numpy Generator, numpy RandomState or None, default=None
        Seed of the task stream, as for :class:`EpisodeSampler`.

    Attributes
    ----------
    group_labels_drawn : ndarray of shape (n_groups,)
        Sorted labels of the groups that tasks are drawn from.
    n_groups : int
        Number of such groups.

    Raises
    ------
    ValueError
        At construction, when a group to draw from has fewer than
        ``k_shot + n_query`` rows, labels in ``group_labels`` are missing
        from ``groups``, a size is not positive, or ``X``, ``y`` and
        ``groups`` have different lengths.

    See Also
    --------
    EpisodeSampler : N-way K-shot classification episodes.
    split_classes : Split labels (here, group labels) into pools.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_meta.tasks import GroupTaskSampler
    >>> rng = np.random.default_rng(0)
    >>> stores = np.repeat(np.arange(20), 30)             # 20 stores, 30 days
    >>> price = rng.uniform(-1, 1, (600, 1))
    >>> sales = rng.normal(0, 1, 20)[stores] - price[:, 0]  # a level per store
    >>> tasks = GroupTaskSampler(price, sales, stores, k_shot=5, n_query=20,
    ...                          n_tasks=100, random_state=0)
    >>> task = next(iter(tasks))
    >>> task.X_support.shape, task.X_query.shape, len(tasks)
    ((5, 1), (20, 1), 100)
    """

    def __init__(self, X, y, groups, k_shot, n_query, *, group_labels=None,
                 n_tasks=None, random_state=None):
        if sparse.issparse(X):
            X = X.tocsr()  # rows can be taken from CSR
        elif not (isinstance(X, np.ndarray) or _is_frame(X)):
            X = np.asarray(X)
        if not (isinstance(y, np.ndarray) or _is_frame(y)):
            y = np.asarray(y)
        group_of_row = np.asarray(groups)
        if X.ndim < 1:
            raise ValueError("X must have a first axis of samples, got a scalar.")
        if y.ndim not in (1, 2):
            raise ValueError(
                f"y must be of shape (n_samples,) or (n_samples, n_outputs), got "
                f"an array of shape {y.shape}.")
        if group_of_row.ndim != 1:
            raise ValueError(
                f"groups must be 1-D, got an array of shape {group_of_row.shape}.")
        if not X.shape[0] == y.shape[0] == group_of_row.shape[0]:
            raise ValueError(
                f"X, y and groups must have the same length, got {X.shape[0]}, "
                f"{y.shape[0]} and {group_of_row.shape[0]} rows.")
        _warn_if_reordered(X, y)
        _warn_if_reordered(X, groups, "groups")
        self.X = X
        self.y = y
        self.groups = groups
        self.k_shot = positive_int_setting(k_shot, "k_shot")
        self.n_query = positive_int_setting(n_query, "n_query")
        self.group_labels = group_labels
        self.n_tasks = _check_n_tasks(n_tasks)
        _check_random_state_type(random_state)
        self.random_state = random_state

        all_groups, pool, counts, self._pool_rows = _rows_of_labels(
            group_of_row, group_labels, labels_name="groups",
            wanted_name="group_labels")
        if len(pool) == 0:
            raise ValueError("group_labels is empty: no group to draw tasks from.")
        rows_needed = self.k_shot + self.n_query
        too_small = pool[counts[pool] < rows_needed]
        if len(too_small):
            raise ValueError(
                f"Each group needs k_shot + n_query = {rows_needed} rows, but "
                f"{len(too_small)} of the {len(pool)} groups have fewer (the "
                f"groups {_format_labels(all_groups[too_small])}); lower k_shot "
                "or n_query, or leave them out with group_labels.")
        self.group_labels_drawn = all_groups[pool]
        self.n_groups = len(pool)

    def sample(self, random_state=None):
        """Draw one task.

        Parameters
        ----------
        random_state : int, numpy Generator, numpy RandomState or None, \
default=None
            Randomness of this one draw; a Generator advances. None draws
            from the sampler's own stream, seeded from its ``random_state``
            at the first call, as :meth:`EpisodeSampler.sample` does.

        Returns
        -------
        task : Task
            ``k_shot`` support rows and ``n_query`` query rows of one group.
        """
        return self._draw(_sample_generator(self, random_state))

    def _draw(self, rng):
        group_rows = self._pool_rows[int(rng.integers(self.n_groups))]
        rows = group_rows[rng.choice(len(group_rows), self.k_shot + self.n_query,
                                     replace=False)]
        support, query = rows[:self.k_shot], rows[self.k_shot:]
        return Task(_take_rows(self.X, support), _take_rows(self.y, support),
                    _take_rows(self.X, query), _take_rows(self.y, query))

    def __repr__(self):
        return (
            # the rows of the groups drawn from, not the whole table's
            f"{type(self).__name__}(<{sum(map(len, self._pool_rows))} samples, "
            f"{self.n_groups} groups>, k_shot={self.k_shot}, n_query={self.n_query}, "
            f"n_tasks={self.n_tasks}, random_state={self.random_state!r})"
        )
