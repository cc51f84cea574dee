"""Evaluation and model selection across tasks: tasks_to_cv and evaluate_tasks."""

import itertools
import signal
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import FitFailedWarning
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from sk_meta import MAMLClassifier, MAMLRegressor, model_selection
from sk_meta.model_selection import TaskEvaluation, evaluate_tasks, tasks_to_cv
from sk_meta.tasks import EpisodeSampler, SinusoidTasks


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16, y


@pytest.fixture(scope="module")
def meta_fitted(digits):
    X, y = digits
    tasks = EpisodeSampler(X, y, 3, 5, 5, classes=range(7), random_state=0)
    return MAMLClassifier(hidden_layer_sizes=(32,), n_meta_iter=20,
                          random_state=0).meta_fit(tasks)


@pytest.fixture(scope="module")
def held_out(digits):
    X, y = digits
    return list(EpisodeSampler(X, y, 3, 5, 6, classes=[7, 8, 9], n_tasks=6,
                               random_state=1))


@pytest.fixture
def no_hang():
    """Fail instead of hanging forever (the bug this guards against)."""
    def on_alarm(signum, frame):
        raise TimeoutError("still iterating after 20 s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


# -- tasks_to_cv ----------------------------------------------------------------------

@pytest.mark.parametrize("make_tasks", [
    lambda X, y: EpisodeSampler(X, y, 3, 5, 5),
    lambda X, y: SinusoidTasks(),
], ids=["EpisodeSampler", "SinusoidTasks"])
def test_tasks_to_cv_refuses_an_endless_sampler(digits, make_tasks, no_hang):
    """Non-regression: an endless sampler (n_tasks=None) made it hang forever."""
    with pytest.raises(ValueError, match="endless .n_tasks=None.: pass n_tasks"):
        tasks_to_cv(make_tasks(*digits))


def test_tasks_to_cv_refuses_an_endless_generator(digits, monkeypatch, no_hang):
    X, y = digits
    sampler = EpisodeSampler(X, y, 3, 5, 5, random_state=0)
    monkeypatch.setattr(model_selection, "MAX_TASKS", 7)
    endless = (sampler.sample(i) for i in itertools.count())
    with pytest.raises(ValueError, match="finite collection of at most 7 tasks"):
        tasks_to_cv(endless)


def test_tasks_to_cv_refuses_what_is_not_tasks(held_out):
    with pytest.raises(TypeError, match="must be an iterable"):
        tasks_to_cv(3)
    with pytest.raises(TypeError, match="task 1: expected a 4-tuple"):
        tasks_to_cv([held_out[0], held_out[1][:3]])
    with pytest.raises(ValueError, match="tasks is empty"):
        tasks_to_cv([])


@pytest.mark.parametrize("part", [1, 3])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_tasks_to_cv_refuses_missing_targets_naming_the_task(part, bad):
    # a regression target: before, a NaN reached fit or the scorer as a bare
    # "Input contains NaN" without the task
    tasks = [tuple(np.asarray(a, dtype=float) for a in task)
             for task in SinusoidTasks(k_shot=5, n_query=5, n_tasks=3, random_state=0)]
    tasks[2][part][1] = bad
    name = "y_support" if part == 1 else "y_query"
    with pytest.raises(ValueError, match=f"^task 2: {name} contains NaN or infinity$"):
        tasks_to_cv(tasks)
    # a NaN in X may be a pipeline's to impute: not refused here
    tasks[2][part][1] = 0.0
    tasks[2][0][0, 0] = np.nan
    X, y, cv = tasks_to_cv(tasks)
    assert np.isnan(X).sum() == 1 and len(cv) == 3


def test_tasks_to_cv_keeps_dataframes(held_out):
    columns = [f"pixel_{i}" for i in range(64)]
    frames = [(pd.DataFrame(t.X_support, columns=columns), pd.Series(t.y_support),
               pd.DataFrame(t.X_query, columns=columns), pd.Series(t.y_query))
              for t in held_out]
    X_cv, y_cv, cv = tasks_to_cv(frames)
    assert isinstance(X_cv, pd.DataFrame) and list(X_cv.columns) == columns
    assert isinstance(y_cv, pd.Series)
    support, query = cv[2]
    np.testing.assert_array_equal(X_cv.iloc[support], held_out[2].X_support)
    np.testing.assert_array_equal(y_cv.iloc[query], held_out[2].y_query)
    renamed = list(frames)
    renamed[3] = (frames[3][0].rename(columns={"pixel_0": "x"}), *frames[3][1:])
    with pytest.raises(ValueError, match="task 3: X_support's columns differ"):
        tasks_to_cv(renamed)
    renamed[3] = (frames[3][0], frames[3][1],
                  frames[3][2].rename(columns={"pixel_0": "x"}), frames[3][3])
    with pytest.raises(ValueError, match="task 3: X_query's columns differ from task "
                       "0's X_support"):
        tasks_to_cv(renamed)


# -- evaluate_tasks -------------------------------------------------------------------

def test_evaluate_tasks_matches_a_hand_written_loop(meta_fitted, held_out):
    result = evaluate_tasks(meta_fitted, held_out,
                            baselines={"logreg": LogisticRegression()})
    assert isinstance(result, TaskEvaluation)
    assert list(result) == ["MAMLClassifier", "logreg"]
    for name, model in (("MAMLClassifier", meta_fitted),
                        ("logreg", LogisticRegression())):
        expected = [clone(model).fit(t.X_support, t.y_support)
                    .score(t.X_query, t.y_query) for t in held_out]
        np.testing.assert_allclose(result[name].scores, expected)
        assert result[name].mean == pytest.approx(np.mean(expected))
    # the adaptation started from the meta-learned init, not from scratch
    untrained = [MAMLClassifier(hidden_layer_sizes=(32,), random_state=0)
                 .fit(t.X_support, t.y_support).score(t.X_query, t.y_query)
                 for t in held_out]
    assert not np.allclose(result["MAMLClassifier"].scores, untrained)


def test_evaluate_tasks_agrees_with_cross_val_score_over_tasks_to_cv(
        meta_fitted, held_out):
    X_cv, y_cv, cv = tasks_to_cv(held_out)
    np.testing.assert_allclose(cross_val_score(meta_fitted, X_cv, y_cv, cv=cv),
                               evaluate_tasks(meta_fitted, held_out)
                               ["MAMLClassifier"].scores)


def test_evaluate_tasks_interval_is_students_t(meta_fitted, held_out):
    result = evaluate_tasks(meta_fitted, held_out, confidence=0.9)
    scores = result["MAMLClassifier"].scores
    low, high = stats.t.interval(0.9, len(scores) - 1, loc=scores.mean(),
                                 scale=stats.sem(scores))
    assert result["MAMLClassifier"].low == pytest.approx(low)
    assert result["MAMLClassifier"].high == pytest.approx(high)
    table = str(result)
    assert "90 % interval" in table
    assert f"[{low:.3f}, {high:.3f}]" in table
    one = evaluate_tasks(meta_fitted, held_out[:1])["MAMLClassifier"]
    assert np.isnan(one.low) and np.isnan(one.high)


def test_evaluate_tasks_leaves_the_estimator_unchanged(meta_fitted, held_out):
    params = {k: v.clone() for k, v in meta_fitted.meta_params_.items()}
    evaluate_tasks(meta_fitted, held_out[:2])
    assert not hasattr(meta_fitted, "params_")
    for name, value in meta_fitted.meta_params_.items():
        assert (value == params[name]).all()


def test_evaluate_tasks_names_baselines_and_refuses_bad_input(
        meta_fitted, held_out, digits, no_hang):
    result = evaluate_tasks(meta_fitted, held_out[:2],
                            baselines=[LogisticRegression(), KNeighborsClassifier(1)])
    assert list(result) == ["MAMLClassifier", "LogisticRegression",
                            "KNeighborsClassifier"]
    with pytest.raises(ValueError, match="two models are named 'MAMLClassifier'"):
        evaluate_tasks(meta_fitted, held_out, baselines=[meta_fitted])
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\)"):
        evaluate_tasks(meta_fitted, held_out, confidence=95)
    with pytest.raises(ValueError, match="endless"):
        evaluate_tasks(meta_fitted, EpisodeSampler(*digits, 3, 5, 5))
    with pytest.raises(ValueError, match="tasks is empty"):
        evaluate_tasks(meta_fitted, [])


def test_evaluate_tasks_with_a_scorer_on_regression_tasks():
    tasks = SinusoidTasks(k_shot=10, n_query=10, random_state=0)
    reg = MAMLRegressor(hidden_layer_sizes=(16,), n_meta_iter=5,
                        random_state=0).meta_fit(tasks)
    test_tasks = list(SinusoidTasks(k_shot=10, n_tasks=4, random_state=1))
    result = evaluate_tasks(reg, test_tasks, baselines=[LinearRegression()],
                            scoring="neg_mean_squared_error")
    expected = [-np.mean((LinearRegression().fit(t.X_support, t.y_support)
                          .predict(t.X_query) - t.y_query) ** 2) for t in test_tasks]
    np.testing.assert_allclose(result["LinearRegression"].scores, expected,
                               rtol=1e-5)
    assert (result["MAMLRegressor"].scores <= 0).all()


# -- diverging candidates in a grid search ---------------------------------------------

def test_a_diverging_candidate_scores_nan_and_its_message_is_one_line(
        meta_fitted, held_out):
    """The documented recipe: error_score=np.nan, the FitFailedWarning silenced."""
    X_cv, y_cv, cv = tasks_to_cv(held_out[:2])
    search = GridSearchCV(meta_fitted, {"inner_lr": [0.1, 1e30]}, cv=cv,
                          refit=False, error_score=np.nan)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=FitFailedWarning)
        warnings.filterwarnings("ignore", message="One or more of the test scores")
        search.fit(X_cv, y_cv)
    assert not caught
    scores = search.cv_results_["mean_test_score"]
    assert np.isfinite(scores[0]) and np.isnan(scores[1])
    with pytest.raises(FloatingPointError, match="adaptation diverged") as error:
        clone(meta_fitted).set_params(inner_lr=1e30).fit(held_out[0].X_support,
                                                         held_out[0].y_support)
    assert "\n" not in str(error.value)
