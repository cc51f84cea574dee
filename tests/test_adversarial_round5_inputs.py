"""A hostile user's cases, fifth round: inputs that ``fit`` reads one way and
``meta_fit`` read another (object numbers, datetime columns, column-vector
targets, categorical columns).

Each test is one case that once went wrong (its docstring says how).
"""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import DataConversionWarning

from sk_meta import MAMLClassifier, MAMLRegressor

RNG = np.random.RandomState(0)
X12 = RNG.randn(12, 3)
Y12 = X12 @ np.array([1.0, 2.0, 3.0])
LABELS12 = np.arange(12) % 3


def _regressor(**params):
    return MAMLRegressor(**{"hidden_layer_sizes": (4,), "n_meta_iter": 2,
                            "random_state": 0, **params})


def _classifier(**params):
    return MAMLClassifier(**{"hidden_layer_sizes": (4,), "n_meta_iter": 2,
                             "random_state": 0, **params})


def _task(X, y):
    return (X[:6], y[:6], X[6:], y[6:])


def _assert_same_init(a, b):
    for (name, p), (_, q) in zip(a.module_.state_dict().items(),
                                 b.module_.state_dict().items()):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=name)


# -- numbers stored as objects ----------------------------------------------------

def test_regressor_meta_fit_reads_an_object_series_of_floats_as_fit_does():
    """meta_fit refused a pandas Series y of dtype object holding floats ("y_support
    must be numeric ... got dtype object") that fit (and Ridge) accept."""
    y = pd.Series(Y12, dtype=object)
    reg = _regressor().meta_fit([_task(X12, y)])
    _assert_same_init(reg, _regressor().meta_fit([_task(X12, Y12)]))
    assert reg.fit(X12, y).predict(X12).shape == (12,)


def test_meta_fit_reads_an_object_ndarray_of_numbers_as_fit_does():
    """meta_fit refused an object ndarray X holding numbers ("X_support must be
    numeric, got dtype object"); fit converts it to float."""
    X = X12.astype(object)
    reg = _regressor().meta_fit([(X[:6], Y12[:6], X[6:], Y12[6:])])
    _assert_same_init(reg, _regressor().meta_fit([_task(X12, Y12)]))
    clf = _classifier().meta_fit([_task(X, LABELS12)])
    _assert_same_init(clf, _classifier().meta_fit([_task(X12, LABELS12)]))


def test_class_labels_stored_as_object_numbers_are_refused_alike():
    """meta_fit trained on class labels held as numbers of dtype object (a pandas
    column read as object), then fit refused the same labels with scikit-learn's
    "Unknown label type: unknown". Both now refuse them with the conversion;
    the task that holds them is named, and string labels of dtype object pass."""
    labels = pd.Series(LABELS12, dtype=object)
    with pytest.raises(ValueError, match=r"^Unknown label type: y holds numbers "
                                         r"with dtype object \(\[0, 1, 2\]\.\.\.\); "
                                         r"class labels .*y\.astype\(int\)"):
        _classifier().fit(X12, labels)
    strings = LABELS12.astype(str).astype(object)
    with pytest.raises(ValueError, match=r"^task 1: Unknown label type: y_query "
                                         r"holds numbers with dtype object"):
        _classifier(meta_batch_size=2).meta_fit(
            [_task(X12, strings), (X12[:6], strings[:6], X12[6:], labels[6:])])
    clf = _classifier().meta_fit([_task(X12, strings)]).fit(X12, strings)
    assert list(clf.classes_) == ["0", "1", "2"]


def test_object_values_that_are_not_numbers_are_refused_with_their_task():
    """With object numbers accepted, the task whose objects are not numbers must
    be the one blamed (all object tasks were refused as task 0 before)."""
    good = _task(X12.astype(object), Y12)
    X_bad = X12.astype(object)
    X_bad[7, 1] = "a"
    with pytest.raises(ValueError, match=r"task 1: X_query must be numeric, got "
                                         r"dtype object holding a value that is not"):
        _regressor(meta_batch_size=2).meta_partial_fit([good, _task(X_bad, Y12)])
    y_bad = Y12.astype(object)
    y_bad[2] = "a"
    with pytest.raises(ValueError, match=r"task 1: y_support must be numeric, got "
                                         r"dtype object holding"):
        _regressor(meta_batch_size=2).meta_partial_fit(
            [_task(X12, Y12.astype(object)), _task(X12, y_bad)])


def test_object_string_labels_stay_labels_when_given_as_a_column():
    """Class labels of dtype object (strings) in a one-column DataFrame were
    refused ("must be 1-D class labels"); they must stay labels, not numbers."""
    names = np.array(["ant", "bee", "cat"], dtype=object)[LABELS12]
    y = pd.DataFrame({"label": names})
    with pytest.warns(DataConversionWarning, match="column-vector y"):
        clf = _classifier().meta_fit([(X12[:6], y.iloc[:6], X12[6:], y.iloc[6:])])
    _assert_same_init(clf, _classifier().meta_fit([_task(X12, names)]))
    pred = clf.fit(X12, names).predict(X12)
    assert set(pred) <= {"ant", "bee", "cat"}


# -- datetime and timedelta columns ----------------------------------------------

def _frame_with(column):
    return pd.DataFrame({"a": X12[:, 0], "b": X12[:, 1], "when": column})


@pytest.mark.parametrize("column, dtype", [
    (pd.date_range("2020-01-01", periods=12, freq="D"), "datetime64"),
    (pd.date_range("2020-01-01", periods=12, freq="D", tz="UTC"), "datetime64"),
    (pd.timedelta_range("1D", periods=12), "timedelta64"),
])
def test_meta_fit_refuses_datetime_columns_as_fit_does(column, dtype):
    """A DataFrame with a datetime or timedelta column: fit refused it (numpy's
    DTypePromotionError) but meta_fit converted it to nanoseconds and trained."""
    df = _frame_with(column)
    good = _task(pd.DataFrame({"a": X12[:, 0], "b": X12[:, 1], "when": X12[:, 2]}),
                 Y12)
    with pytest.raises(ValueError, match=rf"task 1: X_query has datetime or "
                                         rf"timedelta column\(s\) 'when' \({dtype}"):
        _regressor(meta_batch_size=2).meta_partial_fit(
            [good, (good[0], Y12[:6], df.iloc[6:], Y12[6:])])


def test_fit_refuses_datetime_columns_with_the_same_message():
    """fit refused a DataFrame with a datetime column with numpy's raw
    DTypePromotionError ("The DType <class 'numpy.dtypes.Float64DType'> could
    not be promoted by ..."), which names neither the column nor the problem."""
    df = _frame_with(pd.date_range("2020-01-01", periods=12, freq="D"))
    with pytest.raises(ValueError, match=r"X has datetime or timedelta column\(s\) "
                                         r"'when' \(datetime64"):
        _regressor().fit(df, Y12)


def test_meta_fit_says_why_a_datetime_array_is_refused():
    """A datetime64 ndarray X was refused as "must be numeric, got dtype
    datetime64[D]", without saying that datetimes need converting."""
    X = np.datetime64("2020-01-01") + np.arange(36).reshape(12, 3).astype("m8[D]")
    with pytest.raises(ValueError, match=r"task 0: X_support has dtype "
                                         r"datetime64\[D\]: datetimes and timedeltas"):
        _regressor().meta_fit([_task(X, Y12)])


# -- single-output targets: (n,) and (n, 1) ----------------------------------------

FLAT = [_task(X12, Y12)]
COLUMN = [_task(X12, Y12[:, None])]


def test_regressor_meta_fit_takes_one_task_with_flat_and_column_targets():
    """y_support of shape (n,) with y_query of shape (n, 1) was refused ("y_query
    has per-sample shape (1,), expected ()"): fit treats both as one output."""
    mixed = _regressor().meta_fit([(X12[:6], Y12[:6], X12[6:], Y12[6:, None])])
    _assert_same_init(mixed, _regressor().meta_fit(FLAT))
    assert mixed.meta_n_outputs_ == 1


def test_regressor_meta_fit_takes_tasks_that_mix_flat_and_column_targets():
    """Tasks with y of shape (n,) and others with (n, 1) were refused as having
    different per-sample shapes; tasks with several outputs still are."""
    reg = _regressor(meta_batch_size=2).meta_fit(FLAT + COLUMN)
    assert reg.meta_n_outputs_ == 1
    reg = _regressor(meta_batch_size=2).meta_fit(COLUMN + FLAT)
    assert reg.meta_n_outputs_ == 1
    two = [_task(X12, np.c_[Y12, Y12])]
    with pytest.raises(ValueError, match=r"per-sample shape \(2,\), expected \(1,\)"):
        _regressor(meta_batch_size=2).meta_partial_fit(COLUMN + two)


def test_regressor_validation_tasks_may_use_the_other_target_shape():
    """validation_tasks with y of shape (n, 1) after tasks with y of shape (n,)
    were refused ("validation_tasks: task 0: y_support has per-sample shape
    (1,), expected ()")."""
    for tasks, validation in ((FLAT, COLUMN), (COLUMN, FLAT)):
        reg = _regressor(validation_interval=1).meta_fit(tasks,
                                                         validation_tasks=validation)
        assert len(reg.validation_scores_) == 2


def test_regressor_warm_start_may_use_the_other_target_shape():
    """A warm start on y of shape (n, 1) after meta-training on y of shape (n,)
    was refused ("y_support has per-sample shape (1,), expected ()"), and the
    reverse too; predictions keep following fit's y."""
    for first, then in ((FLAT, COLUMN), (COLUMN, FLAT)):
        reg = _regressor().meta_fit(first)
        reg.set_params(warm_start=True, n_meta_iter=4).meta_fit(then)
        assert reg.n_meta_iter_ == 4
        assert reg.fit(X12, Y12).predict(X12).shape == (12,)
        assert reg.fit(X12, Y12[:, None]).predict(X12).shape == (12, 1)


def test_classifier_meta_fit_reads_column_labels_as_1d_with_one_warning():
    """Labels of shape (n, 1) were refused ("must be 1-D class labels") though
    fit ravels them with a DataConversionWarning; one warning per meta_fit,
    not one per task."""
    tasks = [_task(X12, LABELS12[:, None]), _task(X12[::-1], LABELS12[:, None])]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = _classifier(meta_batch_size=2, n_meta_iter=3).meta_fit(tasks)
    conversions = [w for w in caught if issubclass(w.category, DataConversionWarning)]
    assert len(conversions) == 1
    assert "A column-vector y was passed" in str(conversions[0].message)
    flat = [(X, y.ravel(), Xq, yq.ravel()) for X, y, Xq, yq in tasks]
    _assert_same_init(clf, _classifier(meta_batch_size=2, n_meta_iter=3)
                      .meta_fit(flat))
    with pytest.raises(ValueError, match="must be 1-D class labels"):
        _classifier().meta_fit([_task(X12, np.c_[LABELS12, LABELS12])])


# -- categorical columns ------------------------------------------------------------

def test_categorical_column_is_named_with_a_hint_to_encode_it():
    """A pandas category column gave "X_support must be numeric, got dtype
    object", naming neither the column nor what to do."""
    df = pd.DataFrame({"a": X12[:, 0],
                       "site": pd.Categorical(np.array(["n", "s", "e"])[LABELS12]),
                       "b": X12[:, 1],
                       "code": pd.Categorical(LABELS12)})  # numbers: fit reads it
    with pytest.raises(ValueError, match=r"task 0: X_support must be numeric, but "
                                         r"its column\(s\) 'site' \(category\) hold "
                                         r"values that are not numbers; encode them "
                                         r".*OneHotEncoder.*meta_fit_pipeline"):
        _classifier().meta_fit([(df.iloc[:6], LABELS12[:6], df.iloc[6:],
                                 LABELS12[6:])])


def test_numbers_written_as_strings_are_read_as_fit_reads_them():
    """fit (as scikit-learn's estimators) reads an array of numeric strings
    as numbers; meta_fit refused it as "must be numeric"."""
    rng = np.random.RandomState(0)
    X, y = rng.randn(12, 3), np.arange(12) % 3
    tasks = [(X[:6], y[:6], X[6:], y[6:])]
    as_text = [(X[:6].astype(str), y[:6], X[6:].astype(str), y[6:])]

    def init(task_list):
        clf = MAMLClassifier(hidden_layer_sizes=(4,), n_meta_iter=2, random_state=0)
        return [p.detach() for p in clf.meta_fit(task_list)._meta.module.parameters()]

    assert all(torch.equal(a, b) for a, b in zip(init(tasks), init(as_text)))
    targets = X @ np.array([1.0, 2.0, 3.0])
    reg = MAMLRegressor(hidden_layer_sizes=(4,), n_meta_iter=2, random_state=0)
    reg.meta_fit([(X[:6], targets[:6].astype(str), X[6:], targets[6:].astype(str))])
    with pytest.raises(ValueError, match="task 0: X_query must be numeric, got dtype "
                                         "<U1 holding a value that is not a number"):
        MAMLClassifier(n_meta_iter=2).meta_fit(
            [(X[:6], y[:6], np.full((6, 3), "a"), y[6:])])
