"""Validation of few-shot tasks and stacking of tasks that share shapes.

Everything here is numpy (no torch). The checks that depend only on shapes
and dtypes run once per distinct signature; what depends on values
(finiteness, labels) runs on the stacked arrays or per task where it must,
so validation stays a small fraction of meta-training time. What ``fit``
refuses for a support set, these checks refuse for a task, with the task's
index in the message.
"""

import numbers
from collections import Counter
from typing import NamedTuple

import numpy as np
from scipy import sparse

from sk_meta._errors import raise_with_context, warn_user

_FIELDS = ("X_support", "y_support", "X_query", "y_query")
_NUMERIC_KINDS = "biuf"
_TIME_KINDS = ("m", "M")  # timedelta64, datetime64 (tz-aware ones too)


class StackedTasks(NamedTuple):
    """Validated tasks of equal shapes, stacked along a leading task axis.

    For classification ``y_support``/``y_query`` hold int64 class codes
    ``0 .. n_classes - 1`` (each task's labels in sorted order); for
    regression they are float32 targets. ``indices`` are the tasks' indices,
    for error messages.
    """

    X_support: np.ndarray
    y_support: np.ndarray
    X_query: np.ndarray
    y_query: np.ndarray
    n_classes: int | None
    indices: tuple


def _describe(obj):
    shape = getattr(obj, "shape", None)
    if shape is not None:
        return f"{type(obj).__name__} of shape {tuple(shape)}"
    if isinstance(obj, (tuple, list)):
        return f"{type(obj).__name__} of length {len(obj)}"
    return type(obj).__name__


def _unpack(task, index):
    if not isinstance(task, (tuple, list)) or len(task) != 4:
        hint = ""
        if hasattr(task, "shape"):
            kind = getattr(getattr(task, "dtype", None), "kind", "")
            four_objects = tuple(task.shape) == (4,) and kind == "O"
            hint = (" (a row of an object array: pass each task as a tuple, "
                    "tuple(row))" if four_objects else
                    " (pass an iterable of tasks, not a single task)")
        raise TypeError(
            f"task {index}: expected a 4-tuple (X_support, y_support, X_query, "
            f"y_query), got {_describe(task)}{hint}"
        )
    return tuple(
        a if type(a) is np.ndarray else _as_array(a, index, field)
        for a, field in zip(task, _FIELDS)
    )


def _as_array(value, index, field):
    if isinstance(value, np.matrix):  # as fit (scikit-learn's check_array) refuses it
        raise TypeError(
            f"task {index}: {field} is an np.matrix, which is not supported (as "
            "in fit); convert it with np.asarray"
        )
    if sparse.issparse(value):
        raise TypeError(
            f"task {index}: {field} is a sparse matrix, but dense data is required "
            "(as in fit); use .toarray()"
        )
    if type(value).__module__.split(".")[0] == "torch" and hasattr(value, "detach"):
        # a tensor, perhaps requiring grad or on a GPU: its values, as fit takes them
        if getattr(value, "is_meta", False):
            raise TypeError(
                f"task {index}: {field} is a tensor on the 'meta' device, which "
                "holds a shape but no values; pass one with data (as in fit)")
        return value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(
            f"task {index}: {field} cannot be read as an array: {exc}"
        ) from None
    if field[0] == "X" and array.dtype.kind in "OmM" and hasattr(value, "to_numpy"):
        # a DataFrame with datetime columns reads as objects, which to_numpy
        # would turn into nanoseconds since 1970
        try:
            check_no_datetimes(value, field)
        except ValueError as exc:
            raise ValueError(f"task {index}: {exc}") from None
        if array.dtype == object:
            # pandas' nullable dtypes (Float64, Int64) read as objects; fit
            # reads them as numbers (missing values as NaN, refused later)
            try:
                array = value.to_numpy(dtype=np.float64, na_value=np.nan)
            except (TypeError, ValueError, OverflowError) as exc:
                raise ValueError(
                    f"task {index}: {not_numeric(value, field, exc)}"
                ) from None
    return array


def non_numeric_columns(frame):
    """The columns of ``frame`` (a DataFrame, or another pandas object) that
    do not convert to numbers, each as ``'name' (dtype)``."""
    dtypes = getattr(frame, "dtypes", None)
    columns = []
    if hasattr(dtypes, "items"):
        for position, (name, dtype) in enumerate(dtypes.items()):
            if getattr(dtype, "kind", None) in tuple(_NUMERIC_KINDS):
                continue
            try:
                frame.iloc[:, position].to_numpy(dtype=np.float64, na_value=np.nan)
            except (TypeError, ValueError, OverflowError):
                columns.append(f"{name!r} ({dtype})")
    return columns


def not_numeric(frame, field, exc, columns=None):
    """Why ``frame`` is not numeric: the columns that are not numbers, with
    their dtypes (``columns``, when already found)."""
    if columns is None:
        columns = non_numeric_columns(frame)
    if not columns:
        return f"{field} must be numeric, got dtype object ({exc})"
    return (
        f"{field} must be numeric, but its column(s) {', '.join(columns)} hold "
        "values that are not numbers; encode them first, for example with a "
        "OneHotEncoder (in a ColumnTransformer) in a Pipeline meta-fitted by "
        "sk_meta.pipeline.meta_fit_pipeline"
    )


def _object_to_float(array, index, field):
    """An object or string array's values as float64, as ``fit`` reads them
    (numbers, and strings of numbers, as scikit-learn reads them)."""
    try:
        return array.astype(np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        error = exc
    # pandas' NA stops numpy's conversion; it is a missing value, as None
    missing = missing_mask(array)
    if missing.any():
        try:
            return np.where(missing, np.nan, array).astype(np.float64)
        except (TypeError, ValueError, OverflowError) as exc:
            error = exc
    raise ValueError(
        f"task {index}: {field} must be numeric, got dtype {array.dtype} "
        f"holding a value that is not a number ({error})"
    )


def check_label_values(y, name="y", prefix=""):
    """Refuse class labels held as objects that are missing (None, NaN) or
    numbers: ``fit`` and ``meta_fit`` refuse them alike, with the fix.

    scikit-learn reads numbers with dtype object as an unknown label type,
    and a None among strings stops numpy's sort with a TypeError. Strings
    in an object array are labels as usual.
    """
    values = np.asarray(y).ravel()
    if values.dtype.kind in _TIME_KINDS:
        # NaT, numpy's missing date: np.unique would make it a class
        check_no_missing_labels(values[np.isnat(values)], name, prefix)
    if values.dtype.kind != "O" or not len(values):
        return
    check_no_missing_labels(values, name, prefix)
    collection = next((value for value in values if isinstance(
        value, (tuple, list, set, frozenset, dict)) or (
            isinstance(value, np.ndarray) and value.ndim)), None)
    if collection is not None:
        # scikit-learn reads sequences as the legacy multi-label format, and
        # sets as an unknown label type: fit refuses both
        raise ValueError(
            f"{prefix}{name} holds labels that are collections "
            f"({collection!r}, a {type(collection).__name__}); each sample's class "
            "label must be one integer or string (for multi-label targets, "
            "one estimator per label)"
        )
    if label_kind(values) == "mixed":
        raise ValueError(
            f"{prefix}{name} mixes strings and other labels "
            f"({values[:5].tolist()}); use one type of label"
        )
    if all(isinstance(value, numbers.Number) for value in values):
        raise ValueError(
            f"{prefix}Unknown label type: {name} holds numbers with dtype object "
            f"({values[:3].tolist()}...); class labels must be integers or "
            "strings: convert them, for example with y.astype(int)"
        )


def check_no_missing_labels(values, name="y", prefix=""):
    """Refuse missing labels (``is_missing_label``) held as objects."""
    missing = [value for value in values.ravel() if is_missing_label(value)]
    if missing:
        raise ValueError(
            f"{prefix}{name} holds {len(missing)} missing label(s) ({missing[0]!r}); "
            "drop those rows or give them a class"
        )


def check_finite_targets(values, name="y", prefix=""):
    """Refuse NaN or infinity in numeric targets or labels (objects:
    ``check_no_missing_labels``)."""
    if values.dtype.kind in "fc" and not np.isfinite(values).all():
        raise ValueError(f"{prefix}{name} contains NaN or infinity")


def is_missing_target(value):
    """None, NaN of any float type, or pandas' NA (without importing pandas)."""
    if value is None or type(value).__name__ in ("NAType", "NaTType"):
        return True
    return isinstance(value, (float, np.floating)) and bool(np.isnan(value))


def missing_mask(values):
    """Where the array ``values`` holds a missing target
    (``is_missing_target``): NaN in a float array; None, NaN or pandas' NA
    in an object one."""
    if values.dtype.kind in "fc":
        return np.isnan(values)
    if values.dtype.kind == "O":
        return np.fromiter(map(is_missing_target, values.ravel()), bool,
                           count=values.size).reshape(values.shape)
    return np.zeros(values.shape, bool)


def missing_error(name, what):
    """The error for ``name`` holding missing values, as ``fit`` and
    ``meta_fit`` both say it (``what``: "target" or "value")."""
    return ValueError(f"{name} contains NaN or None: a missing {what}")


def describe_columns(positions, feature_names=None, max_shown=5):
    """"column(s) 'a', 'b'" by name where a DataFrame gave them, else
    "feature(s) 0, 3" by position."""
    if feature_names is not None:
        shown = ", ".join(repr(str(feature_names[p])) for p in positions[:max_shown])
        kind = "column(s)"
    else:
        shown = ", ".join(str(int(p)) for p in positions[:max_shown])
        kind = "feature(s)"
    return f"{kind} {shown}{', ...' if len(positions) > max_shown else ''}"


def is_missing_label(value):
    """A missing target (``is_missing_target``), infinity or NaT: no label."""
    if is_missing_target(value):
        return True
    if isinstance(value, (float, np.floating)):
        return bool(np.isinf(value))
    return isinstance(value, (np.datetime64, np.timedelta64)) and bool(np.isnat(value))


def check_no_datetimes(X, name="X"):
    """Refuse datetime and timedelta data: a DataFrame's columns or an array.

    numpy reads them as counts of nanoseconds (or days...), which a network
    cannot learn from; ``fit`` and ``meta_fit`` refuse them alike.
    """
    dtypes = getattr(X, "dtypes", None)
    if hasattr(dtypes, "items") and hasattr(X, "columns"):
        columns = [f"{column!r} ({dtype})" for column, dtype in dtypes.items()
                   if getattr(dtype, "kind", None) in _TIME_KINDS]
        if columns:
            raise ValueError(
                f"{name} has datetime or timedelta column(s) {', '.join(columns)}: "
                "they are not numeric features; convert them first (for example "
                "to elapsed days, or to the day of the week)"
            )
    elif getattr(getattr(X, "dtype", None), "kind", None) in _TIME_KINDS:
        raise ValueError(
            f"{name} has dtype {X.dtype}: datetimes and timedeltas are not numeric "
            "features; convert them first (for example to elapsed days)"
        )


# integers beyond this are not all exact in float32, the networks' input type
FLOAT32_EXACT_INTEGERS = 2**24


def integers_lost_in_float32(X):
    """Whether ``X`` (an array, a DataFrame or nested lists) holds integer
    features that float32 cannot tell apart: ids into an embedding would
    collide."""
    if sparse.issparse(X):
        return False
    select = getattr(X, "select_dtypes", None)
    if select is not None and hasattr(X, "columns"):
        integers = select(include="integer")  # one pass, nullable ones too
        values = integers.to_numpy(dtype=np.float64, na_value=np.nan)
        values = values[~np.isnan(values)]
        # ints held as objects, or as the categories of a categorical column
        # (by position, not select_dtypes(include="object"): pandas 3 warns
        # that it takes its text columns in too)
        held = X.iloc[:, [position for position, dtype in enumerate(X.dtypes)
                          if getattr(dtype, "name", "") in ("object", "category")]]
        return _beyond_float32(values) or (
            held.size > 0 and _objects_beyond_float32(held.to_numpy(dtype=object)))
    if not hasattr(X, "dtype"):  # lists
        try:
            X = np.asarray(X)
        except (TypeError, ValueError):  # ragged: refused where X is read
            return False
    kind = X.dtype.kind
    if kind in ("i", "u"):
        return _beyond_float32(np.asarray(X))
    return kind == "O" and _objects_beyond_float32(X)


def _beyond_float32(values):
    return bool(values.size) and bool(values.max() > FLOAT32_EXACT_INTEGERS
                                      or values.min() < -FLOAT32_EXACT_INTEGERS)


def _objects_beyond_float32(values):
    return any(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
               and abs(int(v)) > FLOAT32_EXACT_INTEGERS
               for v in np.asarray(values, dtype=object).ravel())


def warn_integers_lost_in_float32(name):
    from sklearn.exceptions import DataConversionWarning

    warn_user(
        f"{name} holds integers beyond 2**24, which float32 (the network's input "
        "type) cannot all tell apart: neighbouring ids of an embedding would "
        "collide. Map them to a smaller range (for example with "
        "sklearn.preprocessing.OrdinalEncoder)", DataConversionWarning)


def feature_names(X):
    """The column names of a DataFrame-like ``X`` when they are all strings.

    Mixed string and other names, and repeated names, are refused, as
    scikit-learn's ``fit`` refuses them.
    """
    columns = getattr(X, "columns", None)
    if columns is None:
        return None
    names = list(columns)
    are_strings = {isinstance(name, str) for name in names}
    if are_strings == {True, False}:
        kinds = sorted({type(name).__name__ for name in names})
        raise TypeError(
            "feature names must all be strings or none of them (as scikit-learn "
            f"requires); got column names of types {kinds}: convert them with "
            "X.columns = X.columns.astype(str)"
        )
    if not names or are_strings == {False}:
        return None
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        raise ValueError(f"feature names must be unique; repeated: {repeated}")
    return names


def names_in_short(names, limit=5):
    """At most ``limit`` names of a list, and how many there are in all: a
    table of hundreds of columns stays a readable message."""
    names = list(names)
    if len(names) <= limit:
        return repr(names)
    shown = ", ".join(map(repr, names[:limit]))
    return f"[{shown}, ...] ({len(names)} names)"


def feature_names_difference(expected, got, unexpected_label="not seen in "
                             "meta-training"):
    """What differs between two lists of feature names, as scikit-learn says
    it: names not expected, names missing, or the same names in another
    order (where they first differ)."""
    expected, got = list(expected), list(got)
    expected_set, got_set = set(expected), set(got)
    unexpected = [name for name in got if name not in expected_set]
    missing = [name for name in expected if name not in got_set]
    if unexpected or missing:
        parts = [f"names {label}: {names_in_short(names)}" for label, names in
                 ((unexpected_label, unexpected), ("missing", missing)) if names]
        return "; ".join(parts)
    column = next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b), None)
    if column is None:  # one list repeats names of the other
        return f"{len(got)} names where there were {len(expected)}"
    return (f"the same names in another order (column {column} is "
            f"{got[column]!r} where {expected[column]!r} was)")


class TaskChecker:
    """Checks tasks one by one and remembers what all tasks must share.

    Parameters
    ----------
    classification : bool
        Whether targets are class labels (1-D, any type) or numeric targets.
    input_shape : tuple of int, optional
        Per-sample shape of X every task must have (known after a previous
        meta-training); otherwise taken from the first task.
    y_shape : tuple of int, optional
        Per-sample shape of the regression targets (``()`` for 1-D ``y``).
        Targets of per-sample shape ``()`` and ``(1,)`` are one output, as
        in ``fit``: they are reshaped to this one (else to the first seen).

    Numbers held as objects (X; regression targets) are read as float, and
    column vectors of class labels as 1-D (with scikit-learn's
    DataConversionWarning, once), as ``fit`` reads them.
    """

    def __init__(self, *, classification, input_shape=None, y_shape=None,
                 feature_names=None):
        self.classification = classification
        self.input_shape = input_shape
        self.y_shape = None if y_shape is None else tuple(y_shape)
        self.feature_names = feature_names
        self._input_shape_source = "the estimator was meta-trained on"
        self._feature_names_source = "the estimator was meta-trained with"
        # signature -> (group key, conversions the task's arrays need)
        self._valid_signatures = {}
        self._warned_column_labels = False
        self._unnamed_source = None  # the first task without feature names
        self._warned_mixed_names = False
        self._warned_integers = False

    def _check_feature_names(self, task, index):
        named = {}
        for X, part in ((task[0], "support"), (task[2], "query")):
            try:
                named[part] = feature_names(X)
            except (TypeError, ValueError) as exc:
                raise_with_context(exc, f"task {index}: X_{part}")
        if (named["support"] is None) != (named["query"] is None):
            # as predict warns of X without the names fit saw
            unnamed, other = (("support", "query") if named["support"] is None
                              else ("query", "support"))
            self._warn_mixed_names(
                f"task {index}: X_{unnamed} has no feature names, but X_{other} "
                f"has {names_in_short(named[other])}: its columns are taken to be "
                "in that order")
        for part, names in named.items():
            if names is None:
                continue
            if self.feature_names is None and self._unnamed_source is not None:
                # the unnamed tasks' columns cannot be checked against names
                self._warn_mixed_names(
                    f"task {index}: X_{part} has feature names, but "
                    f"{self._unnamed_source} has none; the names are not kept "
                    "or checked")
                return
            if self.feature_names is None:
                self.feature_names = names
                self._feature_names_source = f"task {index} has"
            elif names != list(self.feature_names):
                # within one task the names came from its X_support
                source = ("X_support has" if self._feature_names_source
                          == f"task {index} has" else self._feature_names_source)
                raise ValueError(
                    f"task {index}: X_{part}'s feature names differ from those "
                    f"{source} {names_in_short(self.feature_names)} (the same "
                    "names, in the same order, are needed): "
                    + feature_names_difference(self.feature_names, names,
                                               "not among them")
                )

    def name_tasks_seen(self, prefix):
        """Call the tasks checked so far ``prefix`` tasks in messages about
        the next ones (validation tasks, numbered from 0 again)."""
        for name in ("_input_shape_source", "_feature_names_source",
                     "_unnamed_source"):
            source = getattr(self, name)
            if source is not None and source.startswith("task "):
                setattr(self, name, f"{prefix} {source}")

    def _warn_mixed_names(self, message):
        if not self._warned_mixed_names:  # once: every later task would repeat it
            warn_user(message, UserWarning)
            self._warned_mixed_names = True

    def check_structure(self, task, index):
        """Return the task's four arrays and its group key, or raise."""
        if isinstance(task, (tuple, list)) and len(task) == 4 and (
                hasattr(task[0], "columns") or hasattr(task[2], "columns")):
            self._check_feature_names(task, index)
        elif self._unnamed_source is None:
            self._unnamed_source = f"task {index}"
            if self.feature_names is not None:  # as fit warns of X without names
                self._warn_mixed_names(
                    f"task {index} has no feature names, but "
                    f"{self._feature_names_source} "
                    f"{names_in_short(self.feature_names)}: its columns are taken "
                    "to be in that order")
        arrays = task
        if isinstance(task, tuple) and len(task) == 4:
            X_support, y_support, X_query, y_query = task
            ndarray = np.ndarray
            if not (type(X_support) is ndarray and type(y_support) is ndarray
                    and type(X_query) is ndarray and type(y_query) is ndarray):
                arrays = _unpack(task, index)
        else:
            arrays = _unpack(task, index)
        X_support, y_support, X_query, y_query = arrays
        # a DataFrame as given (its integer columns are floats once mixed
        # with others in one array); any other input as read
        if not self._warned_integers and any(
                integers_lost_in_float32(given if hasattr(given, "select_dtypes")
                                         else read)
                for given, read in ((task[0], X_support), (task[2], X_query))):
            warn_integers_lost_in_float32(f"task {index}")
            self._warned_integers = True
        signature = (X_support.shape, X_support.dtype, y_support.shape,
                     y_support.dtype, X_query.shape, X_query.dtype, y_query.shape,
                     y_query.dtype)
        entry = self._valid_signatures.get(signature)
        if entry is None:
            entry = self._check_signature(arrays, index)
            self._valid_signatures[signature] = entry
        key, conversions = entry
        if conversions:
            arrays = _convert(arrays, conversions, index)
        return arrays, key

    def _check_signature(self, arrays, index):
        """Check a task's shapes and dtypes; return its group key and the
        conversions (see ``_convert``) that every task of its signature needs."""
        conversions = [
            (position, None) for position, (array, field)
            in enumerate(zip(arrays, _FIELDS))
            if array.dtype.kind in "OUS"
            and (field[0] == "X" or not self.classification)
        ]
        # the values of this task's objects; the other tasks' are converted
        # (and refused) one by one
        converted = _convert(arrays, conversions, index)
        X_support, y_support, X_query, y_query = converted
        for position, X, y, part in ((1, X_support, y_support, "support"),
                                     (3, X_query, y_query, "query")):
            if X.ndim < 2:
                raise ValueError(
                    f"task {index}: X_{part} must have at least 2 dimensions "
                    f"(n_samples, n_features, ...), got shape {X.shape}"
                )
            if X.dtype.kind in _TIME_KINDS:
                try:
                    check_no_datetimes(X, f"X_{part}")
                except ValueError as exc:
                    raise ValueError(f"task {index}: {exc}") from None
            if X.dtype.kind not in _NUMERIC_KINDS:
                raise ValueError(
                    f"task {index}: X_{part} must be numeric, got dtype {X.dtype}"
                )
            if len(X) == 0:
                raise ValueError(f"task {index}: the {part} set is empty")
            if 0 in X.shape[1:]:
                raise ValueError(
                    f"task {index}: X_{part} has samples of shape {X.shape[1:]}: "
                    "no features"
                )
            if y.ndim == 0 or len(X) != len(y):
                raise ValueError(
                    f"task {index}: X_{part} has {len(X)} samples but y_{part} "
                    f"has {y.shape[0] if y.ndim else 0} (shape {y.shape})"
                )
            y_shape = self._check_targets(y, index, part)
            if y_shape is not None:
                conversions.append((position, y_shape))
                if part == "support":
                    y_support = y.reshape(len(y), *y_shape)
            if self.input_shape is None:
                self.input_shape = X.shape[1:]
                # named by its array: a task's own query may be the one at fault
                self._input_shape_source = f"task {index}'s X_{part} has"
            elif X.shape[1:] != self.input_shape:
                raise ValueError(
                    f"task {index}: X_{part} has per-sample shape {X.shape[1:]}, "
                    f"but {self._input_shape_source} {self.input_shape}"
                )
        return (len(X_support), len(X_query), y_support.shape[1:]), tuple(conversions)

    def _check_targets(self, y, index, part):
        """Check targets; return the per-sample shape to reshape them to, or
        None to keep theirs."""
        if self.classification:
            column = y.ndim == 2 and y.shape[1] == 1
            if y.ndim != 1 and not column:
                raise ValueError(
                    f"task {index}: y_{part} must be 1-D class labels, got shape "
                    f"{y.shape}"
                )
            if y.dtype.kind in "cSV":  # fit refuses these too
                raise ValueError(
                    f"task {index}: y_{part} has labels of dtype {y.dtype}; use "
                    "integer or string labels"
                )
            if not column:
                return None
            if not self._warned_column_labels:  # fit ravels them, and warns
                from sklearn.exceptions import DataConversionWarning

                warn_user(
                    "A column-vector y was passed when a 1d array was expected "
                    f"(task {index}: y_{part} of shape {y.shape}). Please change "
                    "the shape of y to (n_samples, ), for example using ravel().",
                    DataConversionWarning,
                )
                self._warned_column_labels = True
            return ()
        if y.ndim > 2 or y.dtype.kind not in _NUMERIC_KINDS or 0 in y.shape[1:]:
            raise ValueError(
                f"task {index}: y_{part} must be numeric of shape (n_samples,) or "
                f"(n_samples, n_outputs), got dtype {y.dtype} and shape {y.shape}"
            )
        if self.y_shape is None:
            self.y_shape = y.shape[1:]
        elif y.shape[1:] != self.y_shape:
            if {y.shape[1:], self.y_shape} == {(), (1,)}:
                return self.y_shape  # one output either way, as in fit
            raise ValueError(
                f"task {index}: y_{part} has per-sample shape {y.shape[1:]}, "
                f"expected {self.y_shape}"
            )
        return None


def _convert(arrays, conversions, index):
    """Apply ``conversions``, pairs ``(position, shape)``: a shape reshapes
    the array to ``(n_samples, *shape)``, None reads its objects as float."""
    arrays = list(arrays)
    for position, shape in conversions:
        array = arrays[position]
        if shape is None:
            arrays[position] = _object_to_float(array, index, _FIELDS[position])
        else:
            arrays[position] = array.reshape(len(array), *shape)
    return tuple(arrays)


def encode_labels(y_support, y_query, index):
    """Map a task's labels to codes 0..k-1 in sorted order; return codes and k."""
    for y, part in ((y_support, "support"), (y_query, "query")):
        check_label_values(y, f"y_{part}", prefix=f"task {index}: ")
        # NaN first: it is a missing label (as fit says), not a continuous one
        check_finite_targets(y, f"y_{part}", prefix=f"task {index}: ")
        if y.dtype.kind == "f" and not _integral_as_fit_reads_it(y):
            raise ValueError(
                f"task {index}: y_{part} holds continuous values (Unknown label "
                "type: continuous, as fit says); class labels must be integers "
                "or strings"
            )
    kinds = {label_kind(y) for y in (y_support, y_query)} - {None}
    if len(kinds) > 1 or "mixed" in kinds:
        raise ValueError(
            f"task {index}: the labels mix strings and numbers (support "
            f"{np.asarray(y_support)[:5].tolist()}, query "
            f"{np.asarray(y_query)[:5].tolist()}); use one type of label"
        )
    try:
        classes, support_codes = np.unique(y_support, return_inverse=True)
    except TypeError as exc:
        raise ValueError(f"task {index}: labels cannot be sorted: {exc}") from None
    query_codes = np.searchsorted(classes, y_query)
    query_codes[query_codes == len(classes)] = 0
    unseen = classes[query_codes] != y_query
    if unseen.any():
        raise ValueError(
            f"task {index}: query labels {np.unique(y_query[unseen]).tolist()} do "
            f"not appear in the task's support labels {classes.tolist()}"
        )
    return support_codes, query_codes, len(classes)


def _integral_as_fit_reads_it(y):
    """Whether float labels are whole numbers, as scikit-learn's
    ``type_of_target`` (and so ``fit``) decides: a value beyond int64, such
    as 1e19, does not survive the cast to an integer and is continuous."""
    with np.errstate(invalid="ignore"):
        return bool(np.array_equal(y, y.astype(np.int64)))


def label_kind(y):
    """"string", "number", "mixed", or None for an empty array."""
    if y.dtype.kind in "US":
        return "string"
    if y.dtype.kind != "O":
        return "number"
    kinds = {"string" if isinstance(v, str) else "number" for v in y.ravel()}
    if not kinds:
        return None
    return kinds.pop() if len(kinds) == 1 else "mixed"


def _check_finite(stacked, indices, field, feature_names=None):
    """Raise for the first task whose values are not finite in float32.

    ``stacked`` is already float32, so values that were finite in float64 but
    too large for float32 show up as infinities here, as in ``fit``.
    """
    if np.isfinite(stacked).all():
        return
    finite_per_task = np.isfinite(stacked.reshape(len(stacked), -1)).all(axis=1)
    position = int(np.argmin(finite_per_task))
    missing = missing_mask(stacked[position])  # None converts to NaN
    if missing.any():
        error = missing_error(f"task {indices[position]}: {field}",
                              "target" if field[0] == "y" else "value")
        if field[0] == "X" and missing.ndim == 2:  # a table: say where, and what to do
            columns = describe_columns(np.flatnonzero(missing.any(axis=0)),
                                       feature_names)
            error = ValueError(
                f"{error} in {columns}; impute them first, for example with a "
                "SimpleImputer in a Pipeline meta-fitted by "
                "sk_meta.pipeline.meta_fit_pipeline")
        raise error
    raise ValueError(
        f"task {indices[position]}: {field} contains infinity or a value too "
        "large for float32"
    )


def stack_tasks(indexed_tasks, checker):
    """Validate tasks and stack the ones that share shapes.

    Parameters
    ----------
    indexed_tasks : list of (int, task)
        Tasks with the index used in error messages.
    checker : TaskChecker

    Returns
    -------
    groups : list of StackedTasks
        One entry per distinct shape (and number of classes).
    """
    grouped = {}
    for index, task in indexed_tasks:
        arrays, key = checker.check_structure(task, index)
        n_classes = None
        if checker.classification:
            support_codes, query_codes, n_classes = encode_labels(
                arrays[1], arrays[3], index
            )
            arrays = (arrays[0], support_codes, arrays[2], query_codes)
        grouped.setdefault((key, n_classes), []).append((index, arrays))

    groups = []
    for (_, n_classes), members in grouped.items():
        indices = tuple(index for index, _ in members)
        columns = list(zip(*(arrays for _, arrays in members)))
        stacked = []
        for field, column in zip(_FIELDS, columns):
            # concatenate + reshape: several times faster than np.stack
            array = np.concatenate(column).reshape((len(column), *column[0].shape))
            if field[0] == "y" and checker.classification:
                array = array.astype(np.int64, copy=False)
            else:
                with np.errstate(over="ignore"):  # overflow is reported below
                    array = array.astype(np.float32, copy=False)
                _check_finite(array, indices, field, checker.feature_names)
            stacked.append(array)
        groups.append(StackedTasks(*stacked, n_classes=n_classes, indices=indices))
    return groups
