"""N-way K-shot episode sampling from a labelled dataset, and class pools."""

import math
import numbers
import sys
from collections.abc import Iterator, Set, ValuesView
from itertools import count

import numpy as np
from scipy import sparse

from sk_meta._checks import is_int, positive_int_setting
from sk_meta._errors import ignoring_warnings, warn_user
from sk_meta.tasks._task import Task
from sk_meta.tasks._validation import is_missing_label, label_kind

_RANDOM_STATE_TYPES = "None, an int, a numpy Generator or a numpy RandomState"


def _check_random_state_type(random_state):
    """Reject a bad ``random_state`` early, without drawing from it."""
    valid = (
        random_state is None
        or (
            isinstance(random_state, numbers.Integral)
            and not isinstance(random_state, bool)
        )
        or isinstance(random_state, np.random.Generator | np.random.RandomState)
    )
    if not valid:
        raise TypeError(
            f"random_state must be {_RANDOM_STATE_TYPES}, got {random_state!r}."
        )
    if isinstance(random_state, numbers.Integral) and random_state < 0:
        raise ValueError(f"random_state must be non-negative, got {random_state}.")


def _make_generator(random_state):
    """Turn ``random_state`` into a numpy Generator.

    An int or None gives a fresh Generator, so an int replays the same draws
    every time. A Generator is used as it is, and a RandomState seeds a new
    Generator with one draw: both are shared state that advances, as in
    scikit-learn.
    """
    _check_random_state_type(random_state)
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(np.iinfo(np.int64).max))
    return np.random.default_rng(random_state)


def _sample_generator(sampler, random_state):
    """The generator of one ``sample()``: ``random_state`` when given, else
    the sampler's own stream, seeded from its ``random_state`` at the first
    draw (an int makes a script's draws reproducible; each call draws anew).
    Without a seed every draw is fresh, in copies of the sampler too."""
    if random_state is not None or sampler.random_state is None:
        return _make_generator(random_state)
    rng = sampler.__dict__.get("_sample_rng")
    if rng is None:
        rng = sampler._sample_rng = _make_generator(sampler.random_state)
    return rng


def _check_n_tasks(n_tasks):
    if n_tasks is None:
        return None
    n_tasks = positive_int_setting(n_tasks, "n_tasks")
    if n_tasks > sys.maxsize:  # len() could not say it
        raise ValueError(
            f"n_tasks must be at most {sys.maxsize}, got {n_tasks}; use "
            "n_tasks=None for an endless sampler.")
    return n_tasks


def _is_frame(data):
    """Whether ``data`` is a pandas DataFrame or Series (pandas stays optional)."""
    return hasattr(data, "iloc")


def _take_rows(data, rows):
    """Rows of ``data`` as the same kind of object; sparse rows come back dense."""
    if _is_frame(data):
        return data.iloc[rows]
    if sparse.issparse(data):
        return data[rows].toarray()
    return data[rows]


def _check_labels(y, name="y"):
    """Refuse missing labels: np.unique would make NaN a class, and fail on
    None among strings with a bare ``TypeError``."""
    if y.dtype.kind in "fc":
        missing = ~np.isfinite(y)
    elif y.dtype.kind in "mM":
        missing = np.isnat(y)
    elif y.dtype.kind == "O":
        missing = np.array([is_missing_label(v) for v in y.ravel()], dtype=bool)
    else:
        return
    if missing.any():
        where = "row" if name != "classes" else "position"
        raise ValueError(
            f"{name} contains {int(missing.sum())} missing or infinite labels (first "
            f"at {where} {int(np.argmax(missing))})"
            + ("; every row needs a class label." if name == "y" else ".")
        )


def _one_label_per_row(y):
    """``y`` as a 1-D array of labels (a column of them too)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if y.ndim != 1:  # several columns would be read as one long row of labels
        raise ValueError(f"y must be 1-D class labels, got shape {y.shape}.")
    return y


def _unique_labels(labels, name, **unique_options):
    """``np.unique`` of ``labels``, missing labels and labels of several types
    (which numpy cannot sort) refused, naming ``name``."""
    _check_labels(labels, name)
    try:
        return np.unique(labels, **unique_options)
    except TypeError as exc:
        owner = f"{name}'" if name.endswith("s") else f"{name}'s"
        raise ValueError(f"{owner} labels cannot be sorted: {exc}.") from None


def _rows_of_labels(labels, wanted, *, labels_name, wanted_name):
    """The distinct labels of ``labels`` and the rows of those in ``wanted``.

    Returns ``(all_labels, pool, counts, pool_rows)``: the sorted distinct
    labels, the positions among them of ``wanted`` (every label when None),
    each label's number of rows, and the rows of each label of the pool in
    their order (one sort now, so that a draw only touches the rows it
    returns). Missing, unsortable or unknown labels are refused, naming
    ``labels_name`` and ``wanted_name``.
    """
    all_labels, codes, counts = _unique_labels(
        labels, labels_name, return_inverse=True, return_counts=True)
    if wanted is None:
        pool = np.arange(len(all_labels))
    else:
        if isinstance(wanted, (Set, ValuesView, Iterator)):
            wanted = list(wanted)  # a set, a dict's keys or a generator: its labels
        wanted_array = np.asarray(wanted)
        if (wanted_array.dtype.kind == "U" and wanted_array.ndim == 1
                and not isinstance(wanted, np.ndarray)
                and label_kind(all_labels) == "number"
                and all(isinstance(label, (str, numbers.Number)) for label in wanted)
                and not all(isinstance(label, str) for label in wanted)):
            # numpy writes [1, "2"] as ["1", "2"]: name the labels passed
            # (against string labels, numpy's text is what they are matched as)
            wanted_array = np.asarray(list(wanted), dtype=object)
        if wanted_array.ndim == 0:  # one label
            wanted_array = wanted_array.reshape(1)
        if wanted_array.ndim != 1:
            raise ValueError(
                f"{wanted_name} must be a 1-D list of labels, got shape "
                f"{wanted_array.shape}."
            )
        _check_labels(wanted_array, wanted_name)
        kinds = label_kind(wanted_array), label_kind(all_labels)
        if kinds[0] == "mixed":
            raise ValueError(
                f"{wanted_name} mixes string and number labels "
                f"({_format_labels(wanted_array, 3)}), but {labels_name} holds "
                f"{kinds[1]} labels ({_format_labels(all_labels, 3)}): give them "
                f"as they are in {labels_name}."
            )
        if wanted_array.size and set(kinds) == {"string", "number"}:
            # numpy would compare them as text, and pick another class (an
            # empty list, of float dtype, is no label of either kind)
            raise ValueError(
                f"{wanted_name} holds {kinds[0]} labels "
                f"({_format_labels(wanted_array, 3)}), but {labels_name} holds "
                f"{kinds[1]} labels ({_format_labels(all_labels, 3)}): give them "
                f"as they are in {labels_name}."
            )
        wanted_array = _unique_labels(wanted_array, wanted_name)
        known = np.isin(wanted_array, all_labels)
        if not known.all():
            raise ValueError(
                f"{wanted_name} not found in {labels_name}: "
                f"{_format_labels(wanted_array[~known])}."
            )
        pool = np.searchsorted(all_labels, wanted_array)
    rows = np.split(np.argsort(codes, kind="stable"), np.cumsum(counts)[:-1])
    return all_labels, pool, counts, [rows[code] for code in pool]


def label_repr(label):
    """A label as messages write it: 3 or 'a', not np.int64(3) or np.str_('a')."""
    return repr(label.item() if isinstance(label, np.generic) else label)


def _format_labels(labels, max_shown=10):
    # tolist() gives Python scalars; an object array keeps numpy's
    shown = ", ".join(label_repr(label) for label in labels[:max_shown].tolist())
    if len(labels) > max_shown:
        shown += f", ... ({len(labels) - max_shown} more)"
    return f"[{shown}]"


class _DrawnTasks:
    """Iteration shared by the samplers: ``n_tasks`` draws (None: endless)
    of ``self._draw(rng)``, restarting from ``random_state`` at every
    ``iter()``."""

    def __iter__(self):
        rng = _make_generator(self.random_state)
        draws = count() if self.n_tasks is None else range(self.n_tasks)
        for _ in draws:
            yield self._draw(rng)

    def __len__(self):
        if self.n_tasks is None:
            raise TypeError(
                f"This {type(self).__name__} is endless (n_tasks=None) and has "
                "no len()."
            )
        return self.n_tasks


def _warn_if_reordered(X, y, name="y"):
    """Warn where pandas ``X`` and ``y`` hold the same index labels in another
    order: rows pair by position (as in scikit-learn), and a frame shuffled
    or sorted without its labels would pair rows with other rows' labels."""
    if not (_is_frame(X) and _is_frame(y)):  # a list's .index is a method
        return
    X_index, y_index = X.index, y.index
    if X_index.equals(y_index):
        return
    # the same labels, compared as a set: an index of mixed types does not sort
    if (len(X_index) == len(y_index) and X_index.is_unique and y_index.is_unique
            and bool(X_index.isin(y_index).all())):
        # an index reset on one side after a shuffle of both looks the same,
        # and is paired as meant: the remedy of each case is named
        warn_user(
            f"X and {name} hold the same index labels in another order: their "
            "rows pair by position, as in scikit-learn, so each row of X takes "
            f"the value at its position in {name}, not the one of its own "
            f"index label. If the rows of one were reordered without the "
            f"other, {name}.loc[X.index] realigns them; if they are paired as "
            "meant (an index reset on one side only), reset the other's index "
            "too (reset_index(drop=True))",
            UserWarning)


class EpisodeSampler(_DrawnTasks):
    """Iterable of N-way K-shot classification episodes drawn from one dataset.

    Each episode is a :class:`~sk_meta.tasks.Task`: ``n_way`` distinct classes
    chosen at random, ``k_shot`` support rows and ``n_query`` query rows per
    class, all distinct rows. Labels are the original labels of ``y`` (no
    remapping to ``0..n_way-1``), and the rows of the support set and of the
    query set are shuffled, so the class order carries no information.

    Every call to ``iter()`` starts again from ``random_state``: with an int,
    each iteration yields the same episodes.

    Parameters
    ----------
    X : array-like of shape (n_samples, ...)
        Inputs, tabular ``(n_samples, n_features)`` or images such as
        ``(n_samples, 1, 28, 28)``. A numpy array, a pandas DataFrame or a
        scipy sparse matrix is kept by reference, not copied; other
        array-likes are converted once with ``numpy.asarray``. Episodes
        hold rows of the same kind as ``X``: DataFrame rows stay DataFrames
        (with their column names and index), so a pipeline sees the feature
        names it was fitted with. The rows of a sparse matrix are returned
        dense, since meta-training and ``fit`` need dense data.
    y : array-like of shape (n_samples,)
        Class labels of any type (ints, strings, ...). A pandas Series is
        kept, and episodes hold Series of its rows (unless
        ``shuffle_labels``, whose new labels are numpy arrays).
    n_way : int
        Number of classes per episode, 2 or more.
    k_shot : int
        Number of support rows per class.
    n_query : int
        Number of query rows per class; at least 1.
    classes : array-like, default=None
        Labels to draw episodes from, for example the meta-training pool of
        :func:`split_classes`. None means every class in ``y``. A generator,
        or a dict's keys or values, is read once and kept as a list.
    n_tasks : int, default=None
        Number of episodes per iteration. None means an endless iterator.
    random_state : int, numpy Generator, numpy RandomState or None, default=None
        Seed of the episode stream. An int replays the same episodes on every
        ``iter()``; None draws fresh ones each time; a Generator or RandomState
        is shared and advances, so successive iterations differ.
    shuffle_labels : bool, default=False
        Return labels ``0 .. n_way - 1`` assigned to the episode's classes in
        a random order, instead of the original labels. This is how the MAML
        and Reptile papers build meta-training episodes: a class lands on a
        different output of the network in each task, so the init cannot
        memorise classes and must learn to adapt. Use it for meta-training
        when there are few classes.

    Attributes
    ----------
    X : ndarray, DataFrame or sparse matrix of shape (n_samples, ...)
        The inputs episodes are indexed from.
    y : ndarray or Series of shape (n_samples,)
        The labels.
    class_labels : ndarray of shape (n_classes,)
        Sorted labels that episodes are drawn from.
    n_classes : int
        Number of such labels.

    Raises
    ------
    ValueError
        At construction, when no episode can be drawn: more ways than
        eligible classes, a class with fewer than ``k_shot + n_query`` rows,
        labels in ``classes`` missing from ``y``, non-positive sizes, or
        ``X`` and ``y`` of different lengths.

    See Also
    --------
    split_classes : Split the labels into meta-train, validation and test pools.
    class_splits : Several random splits of the labels, for few-class data.
    sk_meta.tasks.SinusoidTasks : Regression tasks of the MAML paper.

    Notes
    -----
    Row indices of each class are computed once at construction. An episode
    then costs one draw of ``n_way`` classes and one draw without replacement
    per chosen class (``numpy.random.Generator.choice``), independent of
    the number of classes in the pool.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sk_meta.tasks import EpisodeSampler
    >>> X, y = load_digits(return_X_y=True)
    >>> sampler = EpisodeSampler(X, y, n_way=5, k_shot=1, n_query=15,
    ...                          n_tasks=100, random_state=0)
    >>> task = next(iter(sampler))
    >>> task.X_support.shape, task.X_query.shape, len(sampler)
    ((5, 64), (75, 64), 100)
    """

    def __init__(
        self,
        X,
        y,
        n_way,
        k_shot,
        n_query,
        *,
        classes=None,
        n_tasks=None,
        random_state=None,
        shuffle_labels=False,
    ):
        if sparse.issparse(X):
            X = X.tocsr()  # COO cannot be indexed by rows; CSR is returned as is
        elif not (isinstance(X, np.ndarray) or _is_frame(X)):
            X = np.asarray(X)
        labels = y
        y = np.asarray(y)
        if X.ndim < 1:
            raise ValueError("X must have a first axis of samples, got a scalar.")
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D, got an array of shape {y.shape}.")
        if X.shape[0] != y.shape[0]:
            raise ValueError(
                f"X and y must have the same length, got {X.shape[0]} rows in X "
                f"and {y.shape[0]} labels in y."
            )
        _warn_if_reordered(X, labels)
        self.X = X
        self.y = labels if _is_frame(labels) else y
        self.n_way = positive_int_setting(n_way, "n_way")
        if self.n_way < 2:
            raise ValueError("n_way=1: a task of one class has nothing to tell "
                             "apart (its loss is 0); n_way must be 2 or more")
        self.k_shot = positive_int_setting(k_shot, "k_shot")
        self.n_query = positive_int_setting(n_query, "n_query")
        if isinstance(classes, (Iterator, ValuesView)) or (
                isinstance(classes, Set) and not isinstance(classes, (set, frozenset))):
            # read once, kept as read: a generator would be spent, and a dict's
            # keys or values could not be pickled (a search's workers take it)
            classes = list(classes)
        self.classes = classes
        self.n_tasks = _check_n_tasks(n_tasks)
        _check_random_state_type(random_state)
        self.random_state = random_state
        if not (isinstance(shuffle_labels, (bool, np.bool_))  # "no" is truthy
                or (isinstance(shuffle_labels, numbers.Integral)
                    and shuffle_labels in (0, 1))):
            raise TypeError(
                f"shuffle_labels must be True or False, got {shuffle_labels!r}.")
        self.shuffle_labels = bool(shuffle_labels)

        all_labels, pool, counts, self._pool_rows = _rows_of_labels(
            y, classes, labels_name="y", wanted_name="classes")
        self.class_labels = all_labels[pool]
        self.n_classes = len(pool)

        if self.n_way > self.n_classes:
            raise ValueError(
                f"n_way={self.n_way} is more than the {self.n_classes} eligible "
                "classes."
            )
        rows_needed = self.k_shot + self.n_query
        too_small = pool[counts[pool] < rows_needed]
        if len(too_small):
            details = ", ".join(
                f"class {label!r} has {n_rows} rows"
                for label, n_rows in zip(
                    all_labels[too_small[:10]].tolist(),
                    counts[too_small[:10]].tolist(),
                )
            )
            raise ValueError(
                f"Each class needs k_shot + n_query = {rows_needed} rows, but "
                f"{details}" + (" (and more)" if len(too_small) > 10 else "") + "."
            )


    def sample(self, random_state=None):
        """Draw one episode.

        Parameters
        ----------
        random_state : int, numpy Generator, numpy RandomState or None, \
default=None
            Randomness of this one draw; a Generator advances. None draws
            from the sampler's own stream, seeded from its ``random_state``
            at the first call: with an int, a script's first ``sample()`` is
            always the same episode, and each call gives a new one (a copy
            or pickle of the sampler goes on with the same stream); with a
            Generator or RandomState, from that shared generator; with
            None, a fresh draw.

        Returns
        -------
        task : Task
            ``X_support`` of shape ``(n_way * k_shot, ...)``, ``y_support`` of
            shape ``(n_way * k_shot,)``, ``X_query`` of shape
            ``(n_way * n_query, ...)`` and ``y_query`` of shape
            ``(n_way * n_query,)``.
        """
        return self._draw(_sample_generator(self, random_state))

    def _draw(self, rng):
        rows_per_class = self.k_shot + self.n_query
        chosen = rng.choice(self.n_classes, self.n_way, replace=False)
        chosen_rows = [self._pool_rows[code] for code in chosen.tolist()]
        rows = np.concatenate(
            [
                class_rows[rng.choice(len(class_rows), rows_per_class, replace=False)]
                for class_rows in chosen_rows
            ]
        ).reshape(self.n_way, rows_per_class)
        # Without these shuffles the rows would come grouped by class.
        support_order = rng.permutation(self.n_way * self.k_shot)
        query_order = rng.permutation(self.n_way * self.n_query)
        support = rows[:, : self.k_shot].ravel()[support_order]
        query = rows[:, self.k_shot :].ravel()[query_order]
        X_support, X_query = _take_rows(self.X, support), _take_rows(self.X, query)
        if not self.shuffle_labels:
            return Task(X_support, _take_rows(self.y, support), X_query,
                        _take_rows(self.y, query))
        # the classes were chosen in a random order: their position is the label
        y_support = np.repeat(np.arange(self.n_way), self.k_shot)[support_order]
        y_query = np.repeat(np.arange(self.n_way), self.n_query)[query_order]
        return Task(X_support, y_support, X_query, y_query)

    def _labelled_rows(self):
        """The inputs and own labels of the rows of its classes."""
        rows = np.sort(np.concatenate(self._pool_rows))
        return _take_rows(self.X, rows), _take_rows(self.y, rows)

    def _with_transformed_inputs(self, transform):
        """A sampler that draws the same episodes, with ``transform`` applied
        once to the rows of its classes instead of to every episode's rows;
        None if ``transform`` returns None."""
        X_rows, y_rows = self._labelled_rows()
        X = transform(X_rows)
        if X is None:
            return None
        # the transformed rows pair with their labels by position, as this
        # sampler's did, whatever index the transform gave them: the user's
        # sampler was checked for reordered indexes when it was built
        with ignoring_warnings():
            return EpisodeSampler(
                X, y_rows,
                self.n_way, self.k_shot, self.n_query, classes=self.class_labels,
                n_tasks=self.n_tasks, random_state=self.random_state,
                shuffle_labels=self.shuffle_labels)

    def __repr__(self):
        return (
            # the rows of the classes drawn from, not the whole table's
            f"{type(self).__name__}(<{sum(map(len, self._pool_rows))} samples, "
            f"{self.n_classes} classes>, n_way={self.n_way}, k_shot={self.k_shot}, "
            f"n_query={self.n_query}, n_tasks={self.n_tasks}, "
            f"random_state={self.random_state!r}, "
            f"shuffle_labels={self.shuffle_labels})"
        )


def _resolve_size(size, name, n_classes, *, round_up=False):
    """Turn an int count or a float fraction into a number of classes.

    A fraction is rounded down, or up with ``round_up``.
    """
    if is_int(size):
        if size < 0:
            raise ValueError(f"{name} must be non-negative, got {size}.")
        return int(size)
    if isinstance(size, numbers.Real) and not isinstance(size, bool):
        if not 0.0 <= size < 1.0:
            raise ValueError(
                f"{name} as a fraction must be in [0, 1), got {size}; pass an int "
                "for a number of classes."
            )
        return int((np.ceil if round_up else np.floor)(size * n_classes))
    raise ValueError(
        f"{name} must be an int (number of classes) or a float (fraction), "
        f"got {size!r}."
    )


def split_classes(y, *, train_size, val_size=0, test_size=None, random_state=None):
    """Split the distinct labels of ``y`` into meta-train, validation and test pools.

    Few-shot evaluation needs classes never seen during meta-training; pass the
    pools as ``classes`` to :class:`EpisodeSampler`.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Labels, or directly the class labels; duplicates are ignored.
    train_size : int or float
        Number of meta-training classes, or their fraction of all classes
        (rounded down). Must give at least one class.
    val_size : int or float, default=0
        Number or fraction (rounded down) of meta-validation classes.
    test_size : int, float or None, default=None
        Number or fraction (rounded up) of meta-test classes. None means all
        the classes left over.
    random_state : int, numpy Generator, numpy RandomState or None, default=None
        Seed of the shuffle; an int gives the same split every time.

    Returns
    -------
    train_classes : ndarray of shape (n_train,)
        Sorted meta-training labels.
    val_classes : ndarray of shape (n_val,)
        Sorted meta-validation labels.
    test_classes : ndarray of shape (n_test,)
        Sorted meta-test labels. The three pools are disjoint.

    Raises
    ------
    ValueError
        When a size is invalid or the sizes add up to more classes than ``y``
        has.

    See Also
    --------
    EpisodeSampler : Draws episodes from one pool of classes.
    class_splits : Several such splits, to report results across them.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_meta.tasks import split_classes
    >>> y = np.repeat(np.arange(10), 3)
    >>> train, val, test = split_classes(y, train_size=6, val_size=2, random_state=0)
    >>> len(train), len(val), len(test)
    (6, 2, 2)
    """
    classes = _unique_labels(_one_label_per_row(y), "y")
    n_classes = len(classes)
    n_train = _resolve_size(train_size, "train_size", n_classes)
    n_val = _resolve_size(val_size, "val_size", n_classes)
    if n_train < 1:
        raise ValueError(
            f"train_size={train_size!r} gives no meta-training class out of "
            f"{n_classes}."
        )
    if test_size is None:
        n_test = n_classes - n_train - n_val
    else:
        # Round the test pool up, the others down, as train_test_split does.
        n_test = _resolve_size(test_size, "test_size", n_classes, round_up=True)
    if n_test < 0 or n_train + n_val + n_test > n_classes:
        raise ValueError(
            f"train_size={train_size!r}, val_size={val_size!r} and "
            f"test_size={test_size!r} ask for {n_train} + {n_val} + "
            f"{max(n_test, 0)} classes, but y has only {n_classes} distinct classes."
        )
    shuffled = classes[_make_generator(random_state).permutation(n_classes)]
    pools = np.split(shuffled[: n_train + n_val + n_test], [n_train, n_train + n_val])
    return tuple(np.sort(pool) for pool in pools)


def class_splits(y, n_splits=10, *, train_size, val_size=0, test_size=None,
                 random_state=None):
    """Several random splits of the labels of ``y`` into class pools.

    With few classes (a table of 10 to 15 classes), a single split into
    meta-training and meta-test classes decides much of the result: some
    classes are easy to tell apart, others are not. Repeating the whole
    experiment (meta-training, evaluation, baselines) over several random
    class splits and reporting the mean and the spread across splits gives a
    result that does not hang on one split.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Labels, or directly the class labels; duplicates are ignored.
    n_splits : int, default=10
        Number of splits. They are distinct: a ``ValueError`` says so when
        the classes allow fewer distinct splits.
    train_size : int or float
        Number of meta-training classes per split, or their fraction of all
        classes (rounded down).
    val_size : int or float, default=0
        Number or fraction (rounded down) of meta-validation classes per
        split. With few classes, leave it at 0 and keep the hyperparameters
        fixed, or tune them on an inner split of the meta-training classes.
    test_size : int, float or None, default=None
        Number or fraction (rounded up) of meta-test classes per split. None
        means all the classes left over.
    random_state : int, numpy Generator, numpy RandomState or None, default=None
        Seed of the splits; an int gives the same splits every time.

    Returns
    -------
    splits : list of tuple of ndarray
        ``n_splits`` triples ``(train_classes, val_classes, test_classes)``
        of sorted, disjoint labels, as :func:`split_classes` returns them.

    Raises
    ------
    ValueError
        When a size is invalid, the sizes add up to more classes than ``y``
        has, or the classes allow fewer than ``n_splits`` distinct splits.

    See Also
    --------
    split_classes : One such split.
    sk_meta.model_selection.evaluate_tasks : Scores on the tasks of one split.

    Notes
    -----
    The protocol the user guide recommends for tables with few classes:
    for each split, meta-train on tasks of its training classes, then score
    the meta-learned model and a support-only baseline (a logistic
    regression fitted on each support set) on the same tasks of its test
    classes. Report the mean over splits of each model's mean score, the
    standard deviation across splits, and the mean of the per-split
    difference to the baseline, which is less noisy than either score
    because both models see the same classes and tasks.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_meta.tasks import class_splits
    >>> y = np.repeat(np.arange(12), 20)
    >>> splits = class_splits(y, n_splits=5, train_size=7, random_state=0)
    >>> len(splits)
    5
    >>> [(len(train), len(val), len(test)) for train, val, test in splits][:2]
    [(7, 0, 5), (7, 0, 5)]
    """
    n_splits = positive_int_setting(n_splits, "n_splits")
    classes = _unique_labels(_one_label_per_row(y), "y")
    # the sizes are checked by the first split, before anything is counted
    first = split_classes(classes, train_size=train_size, val_size=val_size,
                          test_size=test_size, random_state=0)
    sizes = [len(pool) for pool in first]
    n_left = len(classes)
    n_distinct = 1
    for size in sizes:
        n_distinct *= math.comb(n_left, size)
        n_left -= size
    if n_splits > n_distinct:
        raise ValueError(
            f"n_splits={n_splits}, but {len(classes)} classes split into "
            f"{sizes[0]} + {sizes[1]} + {sizes[2]} allow only {n_distinct} "
            "distinct splits."
        )
    rng = _make_generator(random_state)
    splits, seen = [], set()
    while len(splits) < n_splits:
        split = split_classes(classes, train_size=sizes[0], val_size=sizes[1],
                              test_size=sizes[2], random_state=rng)
        key = tuple(tuple(pool.tolist()) for pool in split)
        if key not in seen:  # few classes: the same split can come up twice
            seen.add(key)
            splits.append(split)
    return splits
