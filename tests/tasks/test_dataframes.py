"""Samplers keep what the user gave: DataFrames, Series; sparse rows come dense."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.datasets import load_digits
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sk_meta import MAMLClassifier
from sk_meta.pipeline import meta_fit_pipeline
from sk_meta.tasks import EpisodeSampler

# 4 classes; the first column is the row's position, to trace rows back
Y = np.repeat([10, 20, 30, 40], 12)
X = np.column_stack([np.arange(len(Y)), np.random.default_rng(0).normal(size=len(Y))])


@pytest.fixture(scope="module")
def digits_frame():
    X, y = load_digits(return_X_y=True, as_frame=True)
    return X / 16, y


def test_dataframe_rows_stay_dataframes_with_their_names_and_index():
    frame = pd.DataFrame(X, columns=["row", "noise"],
                         index=[f"r{i}" for i in range(len(Y))])
    labels = pd.Series(Y, index=frame.index, name="label")
    sampler = EpisodeSampler(frame, labels, 3, 2, 4, random_state=0)
    assert sampler.X is frame and sampler.y is labels  # kept by reference
    task = sampler.sample(0)
    for X_part, y_part in ((task.X_support, task.y_support),
                           (task.X_query, task.y_query)):
        assert isinstance(X_part, pd.DataFrame)
        assert list(X_part.columns) == ["row", "noise"]
        assert isinstance(y_part, pd.Series) and y_part.name == "label"
        # the rows are the ones of their labels, and keep their index
        assert list(X_part.index) == list(y_part.index)
        np.testing.assert_array_equal(Y[X_part["row"].to_numpy().astype(int)],
                                      y_part.to_numpy())
    # the same episode as from the numpy array, row for row
    array_task = EpisodeSampler(X, Y, 3, 2, 4, random_state=0).sample(0)
    np.testing.assert_array_equal(task.X_query.to_numpy(), array_task.X_query)
    np.testing.assert_array_equal(task.y_query.to_numpy(), array_task.y_query)


def test_shuffled_labels_of_dataframe_rows_are_numpy():
    frame = pd.DataFrame(X, columns=["row", "noise"])
    task = EpisodeSampler(frame, pd.Series(Y), 3, 2, 4, shuffle_labels=True,
                          random_state=0).sample(0)
    assert isinstance(task.X_support, pd.DataFrame)
    assert isinstance(task.y_support, np.ndarray)
    assert set(task.y_support.tolist()) == {0, 1, 2}


def test_meta_fit_and_fit_on_dataframe_episodes_warn_nothing(digits_frame):
    X_frame, y = digits_frame
    tasks = EpisodeSampler(X_frame, y, 3, 5, 5, classes=range(7), random_state=0)
    new = EpisodeSampler(X_frame, y, 3, 5, 5, classes=[7, 8, 9],
                         random_state=1).sample(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = MAMLClassifier(hidden_layer_sizes=(16,), n_meta_iter=5,
                             random_state=0).meta_fit(tasks)
        clf.fit(new.X_support, new.y_support).score(new.X_query, new.y_query)
    np.testing.assert_array_equal(clf.feature_names_in_, X_frame.columns)


def test_a_pipeline_meta_fitted_on_dataframe_tasks_warns_nothing(digits_frame):
    """Non-regression: a pipeline's scaler was fitted without feature names, so
    every fit/score on a DataFrame warned (2,202 warnings for one meta_fit)."""
    X_frame, y = digits_frame
    tasks = EpisodeSampler(X_frame, y, 3, 5, 5, classes=range(7), random_state=0)
    new = EpisodeSampler(X_frame, y, 3, 5, 5, classes=[7, 8, 9],
                         random_state=1).sample(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe = meta_fit_pipeline(
            make_pipeline(StandardScaler(),
                          MAMLClassifier(hidden_layer_sizes=(16,), n_meta_iter=5,
                                         random_state=0)), tasks)
        pipe.fit(new.X_support, new.y_support).score(new.X_query, new.y_query)
    assert [str(w.message) for w in caught] == []
    np.testing.assert_array_equal(pipe[0].feature_names_in_, X_frame.columns)


@pytest.mark.parametrize("to_sparse", [sparse.csr_matrix, sparse.coo_matrix,
                                       sparse.csc_array])
def test_rows_of_a_sparse_matrix_come_back_dense(to_sparse):
    sampler = EpisodeSampler(to_sparse(X), Y, 2, 1, 3, random_state=0)
    task = sampler.sample(0)
    for X_part, y_part in ((task.X_support, task.y_support),
                           (task.X_query, task.y_query)):
        assert isinstance(X_part, np.ndarray)
        np.testing.assert_array_equal(Y[X_part[:, 0].astype(int)], y_part)
    np.testing.assert_array_equal(
        task.X_query, EpisodeSampler(X, Y, 2, 1, 3, random_state=0).sample(0).X_query)


def test_meta_fit_accepts_a_sampler_over_a_sparse_matrix():
    """Non-regression: the sampler returned sparse rows, which meta_fit refuses."""
    X_dense, y = load_digits(return_X_y=True)
    tasks = EpisodeSampler(sparse.csr_matrix(X_dense / 16), y, 3, 5, 5,
                           random_state=0)
    clf = MAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=3,
                         random_state=0).meta_fit(tasks)
    assert clf.n_meta_iter_ == 3
