"""Every warning names the user's line that called into sk_meta, however
deep inside the package it was raised: that is the line Python prints, and
the one ``warnings.filterwarnings(module=...)`` and ``-W`` filters match."""

import linecache
import os
import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.exceptions import DataConversionWarning
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

import sk_meta
from sk_meta import ReptileClassifier
from sk_meta.exceptions import BudgetSpentWarning, FeatureScaleWarning
from sk_meta.model_selection import evaluate_tasks, tasks_to_cv
from sk_meta.tasks import EpisodeSampler, Task

PACKAGE_DIR = os.path.dirname(os.path.abspath(sk_meta.__file__))
SKLEARN_DIR = os.path.dirname(os.path.abspath(sklearn.__file__))


def _caught(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return caught


def _lines_of(caught, category):
    """(file, line) of each warning of ``category``: at least one."""
    found = [(w.filename, w.lineno) for w in caught if issubclass(w.category, category)]
    assert found, f"no {category.__name__} among {[str(w.message) for w in caught]}"
    return found


def test_meta_fit_and_fit_warnings_name_this_file(blob_tasks, small_estimator):
    tasks = blob_tasks()
    clf = small_estimator(module_params={"width": 3})  # ignored by the default MLP
    for filename, lineno in _lines_of(_caught(lambda: clf.meta_fit(tasks)),
                                      UserWarning):
        assert filename == __file__
        assert "clf.meta_fit(tasks)" in linecache.getline(filename, lineno)

    clf.set_params(warm_start=True)  # the budget is spent: a warning, no training
    for filename, _ in _lines_of(_caught(lambda: clf.meta_fit(tasks)),
                                 BudgetSpentWarning):
        assert filename == __file__

    X, y = tasks[0].X_support, tasks[0].y_support
    for filename, _ in _lines_of(_caught(lambda: clf.fit(X * 1e4, y)),
                                 FeatureScaleWarning):
        assert filename == __file__


def test_warnings_from_task_checks_name_this_file(small_estimator):
    ids = np.array([[2**24], [2**24 + 1], [2**24 + 2]] * 2, dtype=np.int64)
    y = np.repeat(np.arange(3), 2)
    clf = small_estimator(inner_lr=1e-9, meta_lr=1e-9, n_meta_iter=1, meta_batch_size=1)
    # raised while tasks are stacked, several calls below meta_fit
    for filename, _ in _lines_of(_caught(lambda: clf.meta_fit([(ids, y, ids, y)])),
                                 DataConversionWarning):
        assert filename == __file__
    # said again of the validation tasks
    small = ids - 2**24
    caught = _caught(lambda: small_estimator(n_meta_iter=1, meta_batch_size=1).meta_fit(
        [(small, y, small, y)], validation_tasks=[(ids, y, ids, y)]))
    for filename, _ in _lines_of(caught, DataConversionWarning):
        assert filename == __file__

    framed = Task(pd.DataFrame(ids, columns=["id"]), y, ids, y)
    for filename, _ in _lines_of(_caught(lambda: tasks_to_cv([framed])), UserWarning):
        assert filename == __file__


def test_warnings_through_scikit_learn_name_this_file_too(blob_tasks,
                                                         small_estimator):
    """A Pipeline, ``score`` (scikit-learn's mixin calls predict) and the
    scorers of evaluate_tasks call sk_meta for the user: the warning names
    the user's line, not scikit-learn's."""
    pipe = make_pipeline(FunctionTransformer(), small_estimator(ReptileClassifier))
    X, y = blob_tasks(1)[0].X_support, blob_tasks(1)[0].y_support
    for filename, _ in _lines_of(_caught(lambda: pipe.fit(X * 1e4, y)),
                                 FeatureScaleWarning):
        assert filename == __file__

    tasks = blob_tasks()
    clf = small_estimator().meta_fit(tasks).fit(X, y)
    ids = np.full(X.shape, 2**24) + np.arange(len(X))[:, None]
    reptile = small_estimator(ReptileClassifier)
    for call in (lambda: clf.score(ids, y),
                 lambda: evaluate_tasks(clf, [Task(X, y, ids, y)]),
                 lambda: evaluate_tasks(clf, [Task(X, y, ids, y)], scoring="accuracy"),
                 lambda: cross_val_score(reptile, X * 1e4, y, cv=2)):
        caught = _caught(call)
        category = (FeatureScaleWarning if any(
            issubclass(w.category, FeatureScaleWarning) for w in caught)
            else DataConversionWarning)
        for filename, lineno in _lines_of(caught, category):
            assert filename == __file__
            assert not filename.startswith(SKLEARN_DIR)


def test_a_warning_can_be_filtered_by_the_calling_module(blob_tasks, small_estimator):
    """``filterwarnings(module=...)`` matches the module the warning is
    attributed to: the caller's, not sk_meta's internals."""
    clf = small_estimator(module_params={"width": 3})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.filterwarnings("error", category=UserWarning, module=__name__)
        with pytest.raises(UserWarning, match="module_params"):
            clf.meta_fit(blob_tasks())


def test_sampler_warnings_name_this_file(small_estimator):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 4)), np.repeat(np.arange(6), 10)
    sampler = EpisodeSampler(X, y, n_way=3, k_shot=2, n_query=2, random_state=0)
    # the network builder, deepest of all, runs after the sampler's first draw
    clf = small_estimator(n_meta_iter=1, module_params={"width": 3})
    for filename, _ in _lines_of(_caught(lambda: clf.meta_fit(sampler)), UserWarning):
        assert filename == __file__


def test_a_warning_in_a_worker_thread_names_no_line_of_python_itself(small_estimator):
    """In joblib's thread pool no user's line is on the stack: the warning
    names the first line outside sk_meta, not the pool's in Python's own
    multiprocessing module."""
    from joblib import parallel_backend

    X, y = np.random.default_rng(0).normal(size=(12, 4)), np.repeat(np.arange(3), 4)
    clf = small_estimator(ReptileClassifier, module_params={"width": 3})
    with parallel_backend("threading", n_jobs=2):
        caught = _caught(lambda: cross_val_score(clf, X, y, cv=2))
    stdlib = os.path.dirname(os.path.abspath(os.__file__))
    for filename, _ in _lines_of(caught, UserWarning):
        assert not filename.startswith(PACKAGE_DIR)
        assert not filename.startswith(stdlib + os.sep)


def test_a_warning_in_a_worker_process_names_no_line_of_python_itself(tmp_path):
    """loky's worker processes run from multiprocessing's bootstrap: the
    warning (printed by the worker) named multiprocessing/process.py."""
    import subprocess
    import sys

    script = tmp_path / "workers.py"
    script.write_text(
        "import numpy as np\n"
        "from sklearn.model_selection import cross_val_score\n"
        "from sk_meta import ReptileClassifier\n"
        "X = np.random.default_rng(0).normal(size=(12, 4)) * 1e4\n"
        "y = np.repeat(np.arange(3), 4)\n"
        "clf = ReptileClassifier(hidden_layer_sizes=(4,), n_meta_iter=1)\n"
        "cross_val_score(clf, X, y, cv=2, n_jobs=2)\n"
    )
    result = subprocess.run([sys.executable, "-W", "always", str(script)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    stdlib = os.path.dirname(os.path.abspath(os.__file__))
    shown = [line for line in result.stderr.splitlines()
             if "FeatureScaleWarning" in line]
    assert shown
    for line in shown:
        assert not line.startswith(stdlib + os.sep), line
        assert not line.startswith(PACKAGE_DIR), line
