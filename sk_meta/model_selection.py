"""Model selection and evaluation across tasks with scikit-learn's own tools.

:func:`tasks_to_cv` turns held-out tasks into ``(X, y, cv)`` for
``GridSearchCV`` and ``cross_val_score``; :func:`evaluate_tasks` scores an
estimator and support-only baselines on each task, with a confidence
interval of the mean; :class:`MetaGridSearch` chooses meta-training
parameters on classes held out of meta-training. Nothing here imports
torch.
"""

import contextlib
import copy
import math
import numbers
import re
import sys
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import stats
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    MetaEstimatorMixin,
    RegressorMixin,
    clone,
)
from sklearn.exceptions import FitFailedWarning, NotFittedError
from sklearn.metrics import check_scoring
from sklearn.model_selection import ParameterGrid
from sklearn.utils import get_tags
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    StrOptions,
    make_constraint,
)
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from sk_meta._checks import (
    DEFAULT_HIDDEN_LAYER_SIZES,
    MAX_VALIDATION_TASKS,
    is_auto,
    is_int,
    set_all_or_nothing,
)
from sk_meta._errors import (
    handling_warnings,
    ignoring_warnings,
    raise_with_context,
    warn_user,
)
from sk_meta.exceptions import DivergenceError, InterruptedWarning
from sk_meta.tasks._stream import as_task_sequence
from sk_meta.tasks._validation import (
    check_finite_targets,
    check_no_missing_labels,
    label_kind,
)

__all__ = ["MetaGridSearch", "TaskEvaluation", "TaskScores", "evaluate_tasks",
           "tasks_to_cv"]

# as for meta_fit's validation_tasks
MAX_TASKS = MAX_VALIDATION_TASKS


def _finite_tasks(tasks, what):
    """Iterate over ``tasks`` with their index; refuse endless iterables."""
    tasks = as_task_sequence(tasks, what)  # a map-style dataset, by index
    n_tasks = getattr(tasks, "n_tasks", 0)
    if n_tasks is None:
        raise ValueError(
            f"{what} must be a finite collection of tasks, but this "
            f"{type(tasks).__name__} is endless (n_tasks=None): pass n_tasks, or "
            "a list of tasks"
        )
    # before adapting any: a sampler's n_tasks says it as a list's length does
    size = (len(tasks) if isinstance(tasks, Sequence)
            else n_tasks if is_int(n_tasks) else 0)
    if size > MAX_TASKS:
        raise ValueError(
            f"{what} must be a finite collection of at most {MAX_TASKS} tasks, "
            f"got {size}" + ("" if isinstance(tasks, Sequence) else
                             f" (this {type(tasks).__name__}'s n_tasks)"))
    for index, task in enumerate(tasks):
        if index == MAX_TASKS:
            raise ValueError(
                f"{what} must be a finite collection of at most {MAX_TASKS} tasks "
                "(pass a list, or a sampler with n_tasks)"
            )
        if not isinstance(task, (tuple, list)) or len(task) != 4:
            raise TypeError(
                f"task {index}: expected a 4-tuple (X_support, y_support, X_query, "
                f"y_query), got {type(task).__name__}"
            )
        yield index, task


def _concatenate(parts, what):
    """Rows of all parts, one DataFrame (or Series) when all are pandas objects.

    Keeping DataFrames keeps the feature names that a pipeline fitted on
    DataFrames checks, and scikit-learn's splitters index them by position.
    """
    framed = [hasattr(part, "iloc") for part in parts]
    if all(framed):
        import pandas as pd  # pandas objects were passed, so pandas is there

        columns = getattr(parts[0], "columns", None)
        for index, part in enumerate(parts):
            if columns is not None and not columns.equals(part.columns):
                raise ValueError(
                    f"task {index // 2}: {what}_{_PARTS[index % 2]}'s columns "
                    f"differ from task 0's {what}_support (the same names, in the "
                    "same order, are needed)"
                )
        return pd.concat(parts, ignore_index=True)
    if any(framed) and what == "X":
        index = framed.index(not framed[0])
        warn_user(
            f"task {index // 2}: X_{_PARTS[index % 2]} is "
            f"{'a DataFrame' if framed[index] else 'not a DataFrame'}, unlike task "
            "0's X_support: X is returned as an array, without feature names",
            UserWarning)
    return np.concatenate([np.asarray(part) for part in parts])


_PARTS = ("support", "query")


def tasks_to_cv(tasks):
    """Turn held-out tasks into ``(X, y, cv)`` for scikit-learn's model selection.

    Each task becomes one split whose training part is the task's support set
    and whose test part is its query set. ``GridSearchCV(estimator, grid,
    cv=cv).fit(X, y)`` then adapts every candidate on each support set and
    scores it on the matching query set: the mean test score is the mean
    post-adaptation query score over the tasks, the quantity that matters
    for choosing ``inner_lr`` or ``inner_steps`` after meta-training.
    ``cross_val_score(estimator, X, y, cv=cv)`` gives the score on each task.

    Parameters
    ----------
    tasks : iterable of tasks
        ``(X_support, y_support, X_query, y_query)`` tuples or
        :class:`~sk_meta.tasks.Task`, finite: a list, or a sampler with
        ``n_tasks`` (an endless sampler is refused). The tasks must not be
        the meta-training tasks.

    Returns
    -------
    X : ndarray or DataFrame of shape (n_rows, ...)
        All support and query rows, task after task; a DataFrame when the
        tasks hold DataFrames.
    y : ndarray or Series of shape (n_rows,) or (n_rows, n_outputs)
        Their targets. Targets of shape ``(n,)`` and ``(n, 1)`` are one output,
        as ``meta_fit`` reads them: they take the shape of task 0's
        ``y_support``.
    cv : list of (ndarray, ndarray)
        One ``(support_rows, query_rows)`` pair of row indices per task.

    Raises
    ------
    ValueError
        For an endless sampler, more than 10,000 tasks, no task, or a task
        whose ``X`` and ``y`` lengths differ, whose per-sample shapes differ
        from task 0's, or whose ``y`` holds NaN or infinity (the message
        names the task).
    TypeError
        For something that is not an iterable of 4-tuples.

    See Also
    --------
    evaluate_tasks : Per-task scores with a confidence interval and baselines.

    Notes
    -----
    ``GridSearchCV`` refits the best candidate on all of ``X`` by default,
    which mixes the tasks' labels: pass ``refit=False`` and set the best
    parameters on your meta-trained estimator yourself.

    A candidate whose adaptation diverges raises ``DivergenceError`` in its
    ``fit``; ``GridSearchCV`` records ``error_score`` for it (NaN by default)
    and warns with the traceback. :ref:`diverging_candidates` in the user
    guide shows how to keep that output short.

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
    first_shapes = None
    for index, task in _finite_tasks(tasks, "tasks"):
        # checked here so that the error names the task, not numpy's concatenation
        shapes = [np.shape(part) for part in task]
        if any(len(shape) == 0 for shape in shapes):
            raise ValueError(
                f"task {index}: X_support, y_support, X_query and y_query must be "
                f"arrays of samples, got shapes {shapes}"
            )
        task = list(task)
        for position in (1, 3):
            # (n,) and (n, 1) are one output either way, as meta_fit reads them:
            # in the form of task 0's y_support
            form = (first_shapes or shapes)[1][1:]
            if {shapes[position][1:], form} == {(), (1,)}:
                part = task[position]
                task[position] = (
                    part.iloc[:, 0] if form == () and hasattr(part, "columns")
                    else np.asarray(part).reshape(shapes[position][0], *form))
                shapes[position] = np.shape(task[position])
        n_support, n_query = shapes[0][0], shapes[2][0]
        if shapes[1][0] != n_support or shapes[3][0] != n_query:
            raise ValueError(f"task {index}: X and y lengths differ")
        if not n_support or not n_query:  # as meta_fit refuses it
            raise ValueError(
                f"task {index}: the {'support' if not n_support else 'query'} set "
                "is empty")
        for support, query, what in ((0, 2, "X"), (1, 3, "y")):
            if shapes[support][1:] != shapes[query][1:]:
                raise ValueError(
                    f"task {index}: {what}_query has per-sample shape "
                    f"{shapes[query][1:]}, but {what}_support has {shapes[support][1:]}"
                )
        if first_shapes is None:
            first_shapes = shapes
        for position, name in enumerate(("X_support", "y_support", "X_query",
                                         "y_query")):
            if shapes[position][1:] != first_shapes[position][1:]:
                raise ValueError(
                    f"task {index}: {name} has per-sample shape "
                    f"{shapes[position][1:]}, but task 0 has "
                    f"{first_shapes[position][1:]}"
                )
        for position, name in ((1, "y_support"), (3, "y_query")):
            # no estimator fits or scores a missing target (meta_fit refuses
            # it too); a NaN in X may be a pipeline's to impute
            check_finite_targets(np.asarray(task[position]), name,
                                 prefix=f"task {index}: ")
        X_parts += [task[0], task[2]]
        y_parts += [task[1], task[3]]
        support_rows = np.arange(n_rows, n_rows + n_support)
        query_rows = np.arange(n_rows + n_support, n_rows + n_support + n_query)
        cv.append((support_rows, query_rows))
        n_rows += n_support + n_query
    if not cv:
        raise ValueError("tasks is empty")
    _check_label_kinds(y_parts)
    return _concatenate(X_parts, "X"), _concatenate(y_parts, "y"), cv


def _check_label_kinds(y_parts):
    """Refuse string labels beside numbers: concatenating would turn the
    numbers into strings (1 into '1') without a word."""
    kinds = {}
    for position, part in enumerate(y_parts):
        values = np.asarray(part)
        kind = values.dtype.kind
        if kind == "O":  # objects: strings, numbers or both (fit refuses both)
            name = f"y_{_PARTS[position % 2]}"
            prefix = f"task {position // 2}: "
            check_no_missing_labels(values, name, prefix)
            found = {label_kind(values)} - {None}
            if "mixed" in found:
                raise ValueError(f"{prefix}{name} mixes strings and other labels "
                                 f"({values.ravel()[:5].tolist()}); use one type")
        else:
            found = {"string" if kind in "US" else "number" if kind in "biuf"
                     else kind}
        for one in found:
            kinds.setdefault(one, position)
    if "string" in kinds and "number" in kinds:
        later = max(kinds["string"], kinds["number"])
        part = "y_support" if later % 2 == 0 else "y_query"
        raise ValueError(
            f"task {later // 2}: {part} mixes numeric and string labels with the "
            "other tasks' sets; use one kind of label"
        )


class TaskScores(NamedTuple):
    """Scores of one model on each task, their mean and its confidence interval.

    Parameters
    ----------
    scores : ndarray of shape (n_tasks,)
        The score on each task's query set, after fitting on its support set.
    mean : float
        Mean of ``scores``.
    low : float
        Lower bound of the confidence interval of the mean.
    high : float
        Upper bound of the confidence interval of the mean.
    """

    scores: np.ndarray
    mean: float
    low: float
    high: float

    def __str__(self):
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


class TaskEvaluation(dict):
    """Per-model :class:`TaskScores`, by name; ``print`` shows a table.

    A ``dict`` from model name to :class:`TaskScores`, in the order the models
    were given (the evaluated estimator first), with ``confidence`` the level
    of the intervals.

    Parameters
    ----------
    results : dict of str to TaskScores
        Scores by model name.
    confidence : float
        Level of the intervals (0.95: 95 %).
    """

    def __init__(self, results, *, confidence):
        super().__init__(results)
        self.confidence = confidence

    def __str__(self):
        width = max(len("model"), *(len(name) for name in self))
        intervals = {name: f"[{result.low:.3f}, {result.high:.3f}]"
                     for name, result in self.items()}
        level = f"{100 * self.confidence:g} % interval"
        level_width = max(len(level), *(len(text) for text in intervals.values()))
        lines = [f"{'model':<{width}}  {'mean':>6}  {level:<{level_width}}  tasks"]
        for name, result in self.items():
            lines.append(f"{name:<{width}}  {result.mean:6.3f}  "
                         f"{intervals[name]:<{level_width}}  {len(result.scores)}")
        return "\n".join(lines)


# scikit-learn's scorer names whose scores lie in [0, 1] (and their
# averages, "f1_macro", "roc_auc_ovr"...), or are at most 1; the others
# named "neg_..." are negated losses and errors: at most 0
_UNIT_SCORERS = ("accuracy", "balanced_accuracy", "top_k_accuracy",
                 "average_precision", "f1", "precision", "recall", "jaccard",
                 "roc_auc")
_AT_MOST_ONE_SCORERS = ("r2", "explained_variance", "d2_absolute_error_score",
                        "d2_brier_score", "d2_log_loss_score")


def _score_range(model, scoring):
    """The values ``model``'s score can take, as far as its scorer tells."""
    if scoring is None:  # the model's own score: scikit-learn's accuracy or R²
        final = _final_step(model)
        if isinstance(final, MetaGridSearch):
            final = _final_step(final.estimator)
        score = getattr(type(final), "score", None)
        if score is ClassifierMixin.score:
            return 0.0, 1.0
        # another score (a search's, scored with its own scoring) may be any
        return (-np.inf, 1.0) if score is RegressorMixin.score else (-np.inf, np.inf)
    if not isinstance(scoring, str):
        return -np.inf, np.inf
    if scoring.startswith("neg_"):
        return -np.inf, 0.0
    if scoring in _UNIT_SCORERS or scoring.startswith(
            tuple(f"{name}_" for name in _UNIT_SCORERS)):
        return 0.0, 1.0
    if scoring in _AT_MOST_ONE_SCORERS:
        return -np.inf, 1.0
    return -np.inf, np.inf


def _summarize(scores, confidence, score_range=(-np.inf, np.inf)):
    scores = np.asarray(scores, dtype=float)
    mean = float(scores.mean())
    if len(scores) < 2:
        return TaskScores(scores, mean, np.nan, np.nan)
    # Student's t interval of the mean: tasks are independent draws. It is
    # cut to the values the score can take (an accuracy of 0.956 on five
    # tasks reached 1.031)
    sem = scores.std(ddof=1) / np.sqrt(len(scores))
    half = float(stats.t.ppf(0.5 + confidence / 2, len(scores) - 1) * sem)
    low, high = score_range
    if not low <= mean <= high:  # a score out of its range: nothing to cut to
        low, high = -np.inf, np.inf
    return TaskScores(scores, mean, max(mean - half, low), min(mean + half, high))


def _final_step(estimator):
    """A pipeline's last step; any other estimator itself."""
    return estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator


def _model_name(estimator):
    return type(_final_step(estimator)).__name__


def evaluate_tasks(estimator, tasks, *, baselines=None, scoring=None,
                   confidence=0.95):
    """Score an estimator and baselines on held-out tasks, with intervals.

    For each task, every model is fitted on the support set and scored on
    the query set: the meta-learned ``estimator`` adapts from its init
    (``fit`` takes ``inner_steps`` steps), each baseline (any scikit-learn
    estimator, such as a logistic regression) is fitted from scratch on the
    support set alone. All models see the same tasks, so their scores can be
    compared task by task.

    Parameters
    ----------
    estimator : estimator
        A meta-trained sk_meta estimator (or a pipeline ending in one). It
        is cloned, which keeps its meta-learned init; the original is not
        changed.
    tasks : iterable of tasks
        Finite held-out tasks, from classes (or task parameters) not seen
        in meta-training: a list, or a sampler with ``n_tasks``.
    baselines : dict of str to estimator, or list of estimators, default=None
        Models fitted on each support set alone, by name (a list is named by
        class). Each is cloned for every task.
    scoring : str or callable, default=None
        A scikit-learn scorer name or callable ``scorer(estimator, X, y)``;
        None uses each model's ``score`` (accuracy for classifiers, R² for
        regressors).
    confidence : float, default=0.95
        Level of the confidence interval of each mean, in (0, 1).

    Returns
    -------
    evaluation : TaskEvaluation
        A dict from model name (the estimator's class name first, then the
        baselines) to :class:`TaskScores` ``(scores, mean, low, high)``;
        ``print(evaluation)`` shows a table.

    Raises
    ------
    ValueError
        For an endless sampler, more than 10,000 tasks, no task, a
        ``confidence`` outside (0, 1), or two models with the same name.

    See Also
    --------
    tasks_to_cv : The same evaluation through ``cross_val_score``.
    sk_meta.tasks.class_splits : Repeat the evaluation over class splits.

    Notes
    -----
    The interval is Student's t interval of the mean over tasks,
    ``mean ± t * std / sqrt(n_tasks)``, cut to the values the score can
    take (accuracy: [0, 1]; R²: at most 1; scikit-learn's ``"neg_..."``
    scorers: at most 0): it says how precisely the tasks
    measured the mean score on this pool of classes, not how the score
    would change with other classes (see :func:`~sk_meta.tasks.class_splits`
    for that). With a single task the bounds are NaN.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sk_meta import MAMLClassifier
    >>> from sk_meta.model_selection import evaluate_tasks
    >>> from sk_meta.tasks import EpisodeSampler
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = MAMLClassifier(n_meta_iter=5, random_state=0).meta_fit(
    ...     EpisodeSampler(X / 16, y, 3, 5, 5, classes=range(7), random_state=0))
    >>> test_tasks = EpisodeSampler(X / 16, y, 3, 5, 5, classes=[7, 8, 9],
    ...                             n_tasks=10, random_state=1)
    >>> result = evaluate_tasks(clf, test_tasks, baselines={
    ...     "logistic regression": LogisticRegression()})
    >>> list(result)
    ['MAMLClassifier', 'logistic regression']
    >>> result["MAMLClassifier"].scores.shape
    (10,)
    """
    if (not isinstance(confidence, numbers.Real) or isinstance(confidence, bool)
            or not 0 < confidence < 1):
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if isinstance(scoring, (list, tuple, set, dict)):
        raise ValueError(
            "scoring must be one scorer (a name or a callable): evaluate_tasks "
            f"reports one score per task and model, got {type(scoring).__name__}")
    if baselines is None:
        baselines = {}
    elif hasattr(baselines, "fit") or not hasattr(baselines, "__iter__"):
        raise TypeError(
            "baselines must be a dict from name to estimator, or a list of "
            f"estimators; got {type(baselines).__name__} (put one estimator in a "
            "list)")
    elif not isinstance(baselines, dict):
        baselines = list(baselines)
        names = [_model_name(model) for model in baselines]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(
                f"two baselines are named {repeated[0]!r}: give the baselines as a "
                "dict with other names"
            )
        baselines = dict(zip(names, baselines))
    models = {_model_name(estimator): estimator}
    _warn_if_not_meta_trained(estimator)
    for name, model in baselines.items():
        if not isinstance(name, str):
            raise TypeError(f"baseline names must be strings, got {name!r}")
        if name in models:
            raise ValueError(
                f"two models are named {name!r}: give the baselines as a dict "
                "with other names"
            )
        models[name] = model
    scorers = {name: check_scoring(model, scoring=scoring)
               for name, model in models.items()}
    adapted = clone(estimator)  # keeps the meta-learned init; fit starts from it
    scores = {name: [] for name in models}
    for index, task in _finite_tasks(tasks, "tasks"):
        X_support, y_support, X_query, y_query = task
        for name, model in models.items():
            try:
                fitted = (adapted if model is estimator else clone(model)).fit(
                    X_support, y_support)
                scores[name].append(scorers[name](fitted, X_query, y_query))
            except (ValueError, TypeError) as exc:
                # the model's own message does not say which task is bad
                raise_with_context(exc, f"task {index}: {name}", chain=True)
            except Exception as exc:
                # a divergence, torch's RuntimeError: their type and attributes
                # kept, the task and model in a note
                exc.add_note(f"in evaluate_tasks, task {index}: {name}")
                raise
    if not scores[_model_name(estimator)]:
        raise ValueError("tasks is empty")
    return TaskEvaluation(
        {name: _summarize(values, confidence, _score_range(models[name], scoring))
         for name, values in scores.items()},
        confidence=confidence)


def _warn_if_not_meta_trained(estimator):
    final = _final_step(estimator)
    is_meta_fitted = getattr(final, "_is_meta_fitted", None)
    if is_meta_fitted is not None and not is_meta_fitted():
        warn_user(
            f"{type(final).__name__} is not meta-trained: each task adapts it from "
            "a random init. Pass the estimator meta_fit returned (for a pipeline, "
            "the one meta_fit_pipeline returned)", UserWarning)


def _estimator_has(method):
    """For ``available_if``: the method exists on the wrapped estimator."""
    def check(search):
        getattr(search.best_estimator_ if hasattr(search, "best_estimator_")
                else search.estimator, method)
        return True

    return check


def _seed(rng):
    return int(rng.integers(np.iinfo(np.int32).max))


def _group_of_class(sampler, groups):
    """The group of each of the sampler's classes (the class itself without groups)."""
    classes = sampler.class_labels
    if groups is None:
        return classes
    groups = np.asarray(groups)
    if groups.shape != (len(sampler.y),):
        raise ValueError(
            f"groups must have one label per row of the sampler ({len(sampler.y)}), "
            f"got shape {groups.shape}"
        )
    from sk_meta.tasks._samplers import _check_labels

    y = np.asarray(sampler.y)
    rows = np.isin(y, classes)
    _check_labels(groups[rows], "groups (of the sampler's rows)")
    class_codes = np.searchsorted(classes, y[rows])
    try:
        group_labels, group_codes = np.unique(groups[rows], return_inverse=True)
    except TypeError as exc:  # labels of several types
        raise ValueError(f"groups' labels cannot be sorted: {exc}") from None
    pairs = np.unique(np.stack([class_codes, group_codes.ravel()]), axis=1)
    n_groups = np.bincount(pairs[0], minlength=len(classes))
    if (n_groups > 1).any():
        first = np.argmax(n_groups > 1)
        label = classes[first:first + 1].tolist()[0]
        raise ValueError(
            f"class {label!r} has rows in {n_groups[first]} groups; "
            "every class must lie in one group"
        )
    group_of_class = np.empty(len(classes), dtype=int)
    group_of_class[pairs[0]] = pairs[1]
    return group_labels[group_of_class]


def _validation_curve(history):
    """``(meta_iter, valid_score)`` of every validation in a meta-fit history."""
    return [(row["meta_iter"], row["valid_score"]) for row in history
            if "valid_score" in row]


def _best_of_mean_curve(curves, tol):
    """Best meta-iteration, score and per-fold scores of the folds' mean curve.

    An improvement must exceed ``tol``, as in the estimators' early stopping,
    so one fold gives the meta-iteration and score its estimator kept.
    Folds stopped early are compared over the validations they all ran, at
    the same meta-iterations (a fold that ``max_time`` stopped validates
    last off the interval).
    """
    common = set.intersection(*({meta_iter for meta_iter, _ in curve}
                                for curve in curves))
    if common:
        curves = [[point for point in curve if point[0] in common]
                  for curve in curves]
    n_common = min(len(curve) for curve in curves)  # by position, if none
    meta_iters = [meta_iter for meta_iter, _ in curves[0][:n_common]]
    scores = np.array([[score for _, score in curve[:n_common]]
                       for curve in curves])
    mean = scores.mean(axis=0)
    best = None
    for index, score in enumerate(mean):
        # a NaN validation (outputs that overflowed) never holds its place
        if best is None or score > mean[best] + tol or (
                math.isnan(mean[best]) and not math.isnan(score)):
            best = index
    return meta_iters[best], float(mean[best]), [float(s) for s in scores[:, best]]


def _end_of_curves(curves):
    """The earliest last meta-iteration of the folds, their mean score and
    each fold's score, at each fold's last validation."""
    scores = [float(curve[-1][1]) for curve in curves]
    return min(curve[-1][0] for curve in curves), float(np.mean(scores)), scores


def _writes_checkpoints(estimator):
    """Whether ``estimator`` (an sk_meta one) writes its ``checkpoint_path``
    in this process."""
    return bool(getattr(estimator, "_writes_checkpoints", lambda: False)())


def _announce(estimator, line):
    """Print ``line`` before a meta-training whose progress ``verbose``
    prints, so that its lines (a stop line among them) say which run they
    belong to; in a distributed job process 0 alone, as the progress."""
    params = estimator.get_params()
    verbose = params.get("verbose")
    # a verbose the estimator refuses (by scikit-learn's "verbose" constraint,
    # which sk_meta's estimators declare) prints nothing: its meta_fit says why
    if not (make_constraint("verbose").is_satisfied_by(verbose) and verbose):
        return
    from sk_meta import _distributed  # torch: not for sk_meta.tasks

    world = _distributed.world(params.get("distributed", "auto"))
    if world is None or world.writes:
        print(line, flush=True)


def _fresh(estimator, params, **fixed):
    """An unfitted copy of ``estimator`` with ``params``: it meta-trains from a
    fresh init, whatever a meta-fitted estimator's clone would keep."""
    candidate = clone(estimator).set_params(**{**params, **fixed})
    if "warm_start" in candidate.get_params():
        candidate.set_params(warm_start=False)
    if is_auto(candidate.get_params().get("hidden_layer_sizes")):
        # the grid is the choice here: not class folds inside each candidate
        candidate.set_params(hidden_layer_sizes=DEFAULT_HIDDEN_LAYER_SIZES)
    return candidate


def _score_candidates(estimator, grid, folds, error_score, *, searcher,
                      inside=None, pretrained=(), at_the_end=False,
                      fold_estimators=None, **fixed):
    """Meta-train a fresh copy of ``estimator`` per candidate of ``grid`` and
    fold, with early stopping on the fold's validation tasks.

    Returns ``results`` (as ``MetaGridSearch.results_``), the best candidate
    as ``(index, score, estimator of the last fold, rank)`` (None when every
    candidate failed) and the first error. ``fixed``: parameters set on every
    copy. ``inside``: the names of the candidates, for a search that runs
    inside a caller's ``meta_fit``: an error raised (``error_score="raise"``)
    says which fold and candidate raised it, a divergence offers no init
    (the fold's is not the caller's), and the copies' warnings are not
    repeated (the caller's own meta-training gives them once).
    ``pretrained``: the indices of candidates whose copies pretrain the
    default MLP instead of meta-training it (``hidden_layer_sizes="auto"``).
    ``at_the_end``: meta-train without early stopping and score each
    candidate at its last validation, not its best, for a caller that
    meta-trains the chosen one for all of ``n_meta_iter`` (the best of ten
    noisy validations favours a candidate with a curve over one scored
    once). ``fold_estimators``: a dict of candidate indices to empty lists,
    each filled with that candidate's meta-fitted copy of every fold.
    """
    results = {"params": [], "validation_score": [], "best_meta_iter": [],
               "n_meta_iter": [], "fold_validation_scores": []}
    best, first_error = None, None
    for index, params in enumerate(grid):
        try:
            curves, n_meta_iters = [], []
            for fold, (search_tasks, fold_validation, _) in enumerate(folds):
                # scored at the end: every candidate runs as it will be used
                candidate = _fresh(estimator, params, early_stopping=not at_the_end,
                                   **fixed)
                if index in pretrained:
                    candidate._chosen_pretrained = True
                if inside is None:
                    _announce(candidate, f"{searcher}: candidate {index + 1} of "
                                         f"{len(grid)} {params}, class fold "
                                         f"{fold + 1} of {len(folds)}")
                try:
                    with (ignoring_warnings() if inside is not None
                          else contextlib.nullcontext()):
                        with _interrupt_stops_search(f"the candidate {params}",
                                                     searcher):
                            candidate.meta_fit(search_tasks,
                                               validation_tasks=fold_validation)
                except Exception as error:
                    if error_score == "raise" and inside is not None:
                        _raise_in_fold(_drawn_by_the_fold(error),
                                       f"{searcher}, meta-training "
                                       f"{inside[index]} on class fold "
                                       f"{fold + 1} of {len(folds)}")
                    raise
                curves.append(_validation_curve(candidate.history_))
                n_meta_iters.append(int(candidate.n_meta_iter_))
                if fold_estimators is not None and index in fold_estimators:
                    fold_estimators[index].append(candidate)
        except Exception as error:
            if error_score == "raise":
                raise
            # as GridSearchCV: one diverging candidate does not end the search
            first_error = first_error or error
            warn_user(
                f"Candidate {params} failed to meta-train and scores "
                f"error_score={error_score!r}: "
                f"{type(error).__name__}: {error}", FitFailedWarning)
            candidate, score = None, float(error_score)
            best_meta_iter = n_meta_iter = fold_scores = None
        else:
            if at_the_end:
                best_meta_iter, score, fold_scores = _end_of_curves(curves)
            else:
                best_meta_iter, score, fold_scores = _best_of_mean_curve(
                    curves, candidate.get_params().get("tol", 0.0))
            n_meta_iter = min(n_meta_iters)
        results["params"].append(params)
        results["validation_score"].append(score)
        results["best_meta_iter"].append(best_meta_iter)
        results["n_meta_iter"].append(n_meta_iter)
        results["fold_validation_scores"].append(fold_scores)
        if candidate is None:  # a failed candidate never wins
            continue
        # a NaN score (a diverged candidate) never wins
        rank = score if np.isfinite(score) else -np.inf
        if best is None or rank > best[3]:
            best = (len(results["params"]) - 1, score, candidate, rank)
    return results, best, first_error


def _drawn_by_the_fold(error):
    """``error`` without the task numbers and the name ``validation_tasks`` of
    a fold's own tasks, which the user never passed: "task 2" of a fold's
    stream means nothing to them, the classes it was drawn from do."""
    message = str(error)
    for pattern, source in ((r"^validation_tasks: task \d+: ", "held-out"),
                            (r"^task \d+: ", "meta-training")):
        if re.match(pattern, message) and type(error) in (ValueError, TypeError):
            return type(error)(re.sub(pattern, f"a task drawn from its {source} "
                                               "classes: ", message))
    return error


def _raise_in_fold(error, context):
    """Raise ``error`` of a fold's meta-training again, led by ``context``."""
    if isinstance(error, DivergenceError):
        # the fold's last finite init is not one to resume the caller's from
        message = re.sub(r"exc\.estimator holds the last finite init \(after \d+ "
                         r"meta-iterations\); ", "", str(error))
        raise DivergenceError(f"{context}: {message}") from None
    drawn = re.match(r"(a task drawn from its [\w-]+ classes): (.*)", str(error),
                     re.DOTALL)
    if drawn and type(error) in (ValueError, TypeError):
        # the data's problem first, as meta_fit with a fixed network says it:
        # the folds are where it showed, not what to fix
        raise type(error)(f"{drawn[2]} ({drawn[1]}, in {context})") from None
    raise_with_context(error, context)


@contextlib.contextmanager
def _interrupt_stops_search(what, searcher):
    """Ctrl-C during a candidate's meta-training stops the whole search (as
    in GridSearchCV), instead of scoring a candidate cut short."""
    def stop(message, category):
        if issubclass(category, InterruptedWarning):
            raise InterruptedWarning(message)
        return False

    with handling_warnings(stop):
        try:
            yield
        except InterruptedWarning:
            raise KeyboardInterrupt(
                f"{searcher} interrupted while meta-training {what}; the "
                "search keeps no result") from None


# hidden_layer_sizes="auto" (the classifiers' default): with this many
# classes or more, per algorithm, the wider MLP is meta-trained; with fewer,
# class folds choose the network (FIDELITY.md, nineteenth run). Reptile's
# wider MLP gains from 15 classes and loses up to 7 points on 10 (twenty-first
# and twenty-second runs); MAML's and FOMAML's gain about a point on 10 and
# 12 classes, over three seeds (twenty-third run)
AUTO_MANY_CLASSES = {"maml": 10, "reptile": 15}
AUTO_MANY_CLASSES_SIZES = (128, 128)
AUTO_CHOICE_FOLDS = 3
# ... but Reptile's meta_fit takes the wider MLP pretrained, where that
# applies, from this many classes: on 10 and 12 it beat the class folds on
# all four rows (+0.5 to +1.8 points over three splits; and on 13, the
# validation classes of letter, +0.8 and +2.1), at a tenth of their time
# (FIDELITY.md, thirty-fifth run)
AUTO_PRETRAINED_MANY_CLASSES = 10


def _auto_many_classes(estimator, *, pretrained=False):
    """How many classes make ``hidden_layer_sizes="auto"`` the wider MLP:
    meta-trained (the estimator's algorithm's count), or ``pretrained``
    (Reptile's)."""
    if pretrained:
        return AUTO_PRETRAINED_MANY_CLASSES
    return AUTO_MANY_CLASSES[estimator._algorithm]


def _pretrained_mlp_applies(estimator):
    """Whether ``hidden_layer_sizes="auto"`` may take the MLP pretrained on
    all meta-training classes: with the prototype head and a fixed inner
    rate (a new output layer for each task, built from the class means) and
    ``adapt_layers="auto"`` (its output layer alone adapts), the measured
    setting."""
    from sk_meta._network import head_rebuilt_with_fixed_rates

    return head_rebuilt_with_fixed_rates(estimator) and estimator.adapt_layers == "auto"


# hidden_layer_sizes="auto" with class folds that do not choose the linear
# model: the meta-trained MLP's and the pretrained MLP's predicted
# probabilities are averaged, for MAML and FOMAML (FIDELITY.md, twenty-ninth
# and thirtieth runs: marketing +1.9 / +0.8 points, within 0.1 of its best
# configuration, vowel -0.6 / -0.8); not for Reptile, whose meta-trained MLP
# is the weaker of the two there (thirty-third run: -0.2 to -3.2 points on
# five of six rows)
AUTO_AVERAGE_ALGORITHMS = ("maml",)
# ... unless the meta-trained MLP scores above the pretrained one on the
# folds' validation tasks beyond this confidence interval (paired over
# tasks): then it alone (thirty-first run: vowel, where it is the better
# network on the test classes, +0.7 / +0.7 points against the average;
# marketing 1-shot, where the folds seldom tell the two apart, -0.6 / 0)
AUTO_AVERAGE_CONFIDENCE = 0.95


def _averages_pretrained_mlp(estimator):
    """Whether class folds of ``hidden_layer_sizes="auto"`` that keep an MLP
    average the meta-trained one with the pretrained one."""
    return (estimator._algorithm in AUTO_AVERAGE_ALGORITHMS
            and _pretrained_mlp_applies(estimator))


def _many_classes_network(estimator, sampler, *, incremental=False):
    """The wider MLP's parameters for an :class:`~sk_meta.tasks.EpisodeSampler`
    of ``AUTO_MANY_CLASSES`` classes or more (the estimator's algorithm's);
    None for fewer classes and other tasks. Reptile's ``meta_fit`` takes it
    pretrained (``"pretrained": True``), not meta-trained, from
    ``AUTO_PRETRAINED_MANY_CLASSES``; its ``meta_partial_fit``
    (``incremental``), which meta-trains, does not."""
    from sk_meta.tasks import EpisodeSampler

    # Reptile's meta-trained MLP lost to the pretrained one on Omniglot
    # pixels by 7.2 and 6.1 points, on letter 1-shot and flavia 1-shot by
    # 2.8 and 1.7, and was within 0.4 on the other two rows (FIDELITY.md,
    # twenty-fifth run)
    pretrained = (estimator._algorithm == "reptile" and not incremental
                  and _pretrained_mlp_applies(estimator))
    if (type(sampler) is not EpisodeSampler or len(sampler.class_labels)
            < _auto_many_classes(estimator, pretrained=pretrained)):
        return None
    params = {"hidden_layer_sizes": AUTO_MANY_CLASSES_SIZES}
    if pretrained:
        params["pretrained"] = True
    return params


# how messages state the rule
_AUTO_CHOICE_RULE = (
    f"{AUTO_MANY_CLASSES_SIZES} with {AUTO_MANY_CLASSES['maml']} classes or "
    f"more (for Reptile pretrained from {AUTO_PRETRAINED_MANY_CLASSES}, "
    f"meta-trained from {AUTO_MANY_CLASSES['reptile']} where it cannot take "
    "it pretrained), class folds with fewer")
# another candidate replaces the incumbent (the meta-trained MLP) only when
# it scores more than this above it on the folds: closer margins are noise
# there (twentieth run: chosen by 0.004 to 0.007, the pretrained MLP lost
# 2 to 8 points on the test classes of vowel)
AUTO_CHOICE_MARGIN = 0.01
# ... but for these algorithms the incumbent is the pretrained MLP, where it
# is a candidate: Reptile's meta-trained MLP is the weaker of the two on
# most of these tables (thirty-third run). Thirty-fourth run, five tables
# of 6 to 10 classes, 1 and 5 shots, three splits: the choice changed in
# 6 of 30 runs, movement_libras 5-shot +3.1 points (mean over the splits),
# marketing +0.8 and +0.9, vowel -1.8 and -1.2 (its meta-trained MLP is
# the better one; the two scored within 0.01 of each other there)
AUTO_PRETRAINED_INCUMBENT_ALGORITHMS = ("reptile",)


def _incumbent(estimator, candidates):
    """The index of the candidate the class folds keep unless another scores
    more than ``AUTO_CHOICE_MARGIN`` above it."""
    if (estimator._algorithm in AUTO_PRETRAINED_INCUMBENT_ALGORITHMS
            and candidates[-1].get("pretrained")):
        return len(candidates) - 1
    return 0


def _candidate_name(candidate):
    """How ``verbose`` names a network ``hidden_layer_sizes="auto"`` compares."""
    if candidate.get("pretrained"):
        return f"pretrained MLP {candidate['hidden_layer_sizes']}"
    sizes = candidate["hidden_layer_sizes"]
    return f"MLP {sizes}" if len(sizes) else "linear ()"


def _choose_network(estimator, sampler, candidates, *, one_iteration=(),
                    paired=None):
    """The network ``hidden_layer_sizes="auto"`` stands for in a classifier's
    ``meta_fit`` on ``sampler``, and what the class folds scored: the
    candidate, of ``candidates`` (dicts of parameters), that scores best on
    classes held out of ``sampler``. ``one_iteration``: the indices of
    candidates that meta-training does not change, scored after one
    meta-iteration. ``paired``: two candidate indices; where the folds
    choose the first, the record's ``"paired"`` compares it with the second
    task by task on every fold's validation tasks (``_paired_difference`` at
    ``AUTO_AVERAGE_CONFIDENCE``; None elsewhere).

    An :class:`~sk_meta.tasks.EpisodeSampler` of ``AUTO_MANY_CLASSES``
    classes or more (the estimator's algorithm's) gets the MLP
    ``AUTO_MANY_CLASSES_SIZES``, pretrained for Reptile (no record).
    One of fewer: up to ``AUTO_CHOICE_FOLDS`` disjoint class folds, as in
    ``MetaGridSearch(cv=3)``, each candidate meta-trained on the other
    classes and scored on tasks of the held-out ones at its last
    validation, as the chosen one is used: meta-trained for all of
    ``n_meta_iter``. Returns ``(None, None)`` for other tasks and for a
    sampler with too few classes for two folds that leave ``n_way``
    classes to meta-train on. Another candidate
    replaces the incumbent (the first, or for Reptile the pretrained MLP:
    ``_incumbent``) only when its score is more than
    ``AUTO_CHOICE_MARGIN`` above the incumbent's. A candidate's error is
    raised, as ``meta_fit`` would.
    """
    from sk_meta.tasks import EpisodeSampler
    from sk_meta.tasks._samplers import _resolve_size

    if type(sampler) is not EpisodeSampler:
        return None, None
    many_classes = _many_classes_network(estimator, sampler)
    if many_classes is not None:
        return many_classes, None
    n_classes = len(sampler.class_labels)
    n_val = max(2, _resolve_size(0.25, "val_size", n_classes, round_up=True))
    n_folds = min(AUTO_CHOICE_FOLDS, n_classes // n_val)
    if n_folds < 2 or n_classes - n_val < sampler.n_way:
        return None, None
    random_state = estimator.random_state
    if not is_int(random_state):
        try:
            MetaGridSearch(estimator, candidates, random_state=random_state
                           )._check_same_hold_out_everywhere()
        except ValueError:
            raise ValueError(
                f"hidden_layer_sizes='auto' with {n_classes} classes chooses the "
                "network on classes held out of the sampler; in a distributed "
                "job every process must hold out the same ones: pass an int "
                "random_state (the same in every process), or set "
                "hidden_layer_sizes"
            ) from None
        # the held-out classes, drawn from the estimator's generator
        from sklearn.utils import check_random_state

        random_state = int(check_random_state(random_state).randint(
            np.iinfo(np.int32).max))
    search = MetaGridSearch(estimator, candidates, val_size=n_val, cv=n_folds,
                            random_state=random_state)
    folds = search._hold_out(sampler, None)
    if estimator.get_params().get("verbose"):
        print(f"hidden_layer_sizes='auto': meta-training "
              f"{', '.join(map(_candidate_name, candidates))} "
              f"on {n_folds} folds of the {n_classes} classes, to choose the "
              "network", flush=True)
    grid, pretrained = [], []
    for index, params in enumerate(candidates):
        params = dict(params)
        if params.pop("pretrained", False):
            pretrained.append(index)
        if index in one_iteration:  # scored after one meta-iteration
            params["n_meta_iter"] = 1
        grid.append(params)
    fold_estimators = None if paired is None else {index: [] for index in paired}
    results, best, _ = _score_candidates(
        estimator, grid, folds, "raise", searcher="hidden_layer_sizes='auto'",
        inside=candidates, pretrained=pretrained, at_the_end=True,
        fold_estimators=fold_estimators, checkpoint_path=None, verbose=0)
    scores = results["validation_score"]
    # a NaN score (outputs that overflowed) never holds its place
    incumbent = _incumbent(estimator, candidates)
    to_beat = scores[incumbent] if math.isfinite(scores[incumbent]) else -math.inf
    chosen = best[0] if scores[best[0]] > to_beat + AUTO_CHOICE_MARGIN else incumbent
    record = {"candidates": [dict(params) for params in candidates],
              "scores": scores,
              "fold_scores": results["fold_validation_scores"],
              "scored_at_meta_iter": results["best_meta_iter"],
              "n_folds": n_folds, "chosen": chosen, "paired": None}
    if paired is not None and chosen == paired[0]:  # the only case it decides
        # every fold's validation tasks, scored per task by both candidates
        per_task = [np.concatenate([_task_scores(copy, fold_validation)
                                    for copy, (_, fold_validation, _)
                                    in zip(fold_estimators[index], folds)])
                    for index in paired]
        record["paired"] = {"candidates": list(paired),
                            **_paired_difference(*per_task, AUTO_AVERAGE_CONFIDENCE)}
    return candidates[chosen], record


def _task_scores(estimator, tasks):
    """The score of ``estimator`` adapted to each task's support set, on its
    query set: what validation during meta-training sums. NaN for a task
    that ``fit`` or ``score`` refuses (outputs that overflowed), where
    validation may have scored the batch: the comparison then has no
    interval, and the two MLPs are averaged."""
    scores = []
    with ignoring_warnings():  # the fold's own validation gave them
        for task in tasks:
            try:
                scores.append(estimator.fit(task.X_support, task.y_support).score(
                    task.X_query, task.y_query))
            except (ValueError, DivergenceError):
                scores.append(math.nan)
    return np.asarray(scores, dtype=float)


def _paired_difference(first, second, confidence):
    """Mean of ``first - second`` (scores of two models on the same tasks),
    the half-width of its ``confidence`` interval (as ``evaluate_tasks``
    gives one) and whether the first is above the second beyond it."""
    summary = _summarize(np.asarray(first, dtype=float)
                         - np.asarray(second, dtype=float), confidence)
    return {"difference": summary.mean, "half_width": summary.mean - summary.low,
            "n_tasks": len(summary.scores), "above": bool(summary.low > 0)}


class MetaGridSearch(MetaEstimatorMixin, BaseEstimator):
    """Choose meta-training parameters on held-out classes, then meta-train.

    Which network, head or inner loop works best depends on the table: the
    wide network (``concat_input=True``) gains up to 8 points where the
    support set alone separates the classes and loses as much where the
    learned features are what works, and how long to meta-train depends on
    how many classes there are. Both show on classes held out of
    meta-training. ``meta_fit(sampler)`` holds out ``val_size`` of the
    sampler's classes, meta-trains a clone of ``estimator`` for each
    candidate of ``param_grid`` on the other classes with early stopping on
    tasks of the held-out ones, and then meta-trains the best candidate on
    all the sampler's classes for as many meta-iterations as it took to
    reach its best validation score (``refit``). ``fit``, ``predict``,
    ``predict_proba`` and ``score`` are those of ``best_estimator_``.

    With ``meta_fit(tasks, validation_tasks=...)`` the validation tasks are
    yours: each candidate meta-trains on ``tasks`` with early stopping on
    them, and the best candidate, with its best init, is kept.

    The estimator's ``checkpoint_path`` is written by the refit alone, or,
    with ``validation_tasks``, once with the kept candidate at the end: the
    candidates, meta-trained on part of the classes, never write it.

    Parameters
    ----------
    estimator : sk_meta estimator
        The estimator to meta-train, with its other parameters (including
        ``n_meta_iter``, the most meta-iterations a candidate takes, and
        ``validation_interval``, how often candidates are scored). With its
        ``verbose``, a line names the candidate and class fold (or the refit)
        before each meta-training's progress.
    param_grid : dict or list of dicts
        Parameter names to lists of values, as for scikit-learn's
        ``GridSearchCV``; every combination is a candidate.
    val_size : int or float, default=0.25
        Number of held-out classes, or their fraction of the sampler's
        classes (rounded up, at least 2).
    cv : int, default=1
        Number of class folds: each holds out ``val_size`` classes that no
        other fold holds out, every candidate meta-trains once per fold, and
        its validation scores are averaged over the folds at each
        validation before the best meta-iteration is read off the mean. On
        tables with 6 to 10 classes which classes a single fold holds out
        moves the choice; more folds cost proportionally more. Needs
        ``cv`` times as many classes (groups) as one fold holds out; only
        without ``validation_tasks``.
    n_val_tasks : int, default=100
        Number of validation tasks drawn from the held-out classes (at most
        10,000); each has ``min(n_way, held-out classes)`` classes and the
        sampler's ``k_shot`` and ``n_query``.
    error_score : "raise" or float, default=np.nan
        The validation score of a candidate whose ``meta_fit`` raises (for
        example a ``DivergenceError`` at a large ``meta_lr``), with a
        ``FitFailedWarning``; such a candidate never wins, and when every
        candidate fails ``meta_fit`` raises a ``ValueError``. ``"raise"``
        raises the candidate's error at once.
    random_state : int, RandomState instance or None, default=None
        Seeds the choice of held-out classes (the validation pool of
        :func:`~sk_meta.tasks.split_classes` with this seed) and the
        validation tasks. In a distributed job, an int (the same in every
        process) is required when the search holds out classes itself.

    Attributes
    ----------
    best_estimator_ : sk_meta estimator
        The meta-trained estimator with the best parameters.
    best_params_ : dict
        The candidate with the best validation score.
    best_score_ : float
        Its best validation score (the estimator's ``score`` after
        adaptation, averaged over the validation tasks and the folds).
    best_n_meta_iter_ : int
        The meta-iteration at which it reached that score.
    results_ : dict of lists
        ``params``, ``validation_score`` (best score of the folds' mean),
        ``best_meta_iter``, ``n_meta_iter`` (iterations run, the fewest
        over the folds) and ``fold_validation_scores`` (each fold's score
        at ``best_meta_iter``) of every candidate, in the order of
        ``param_grid`` (None for the last three of a candidate that
        failed).
    val_classes_ : ndarray or None
        The held-out classes of the first fold (None when the validation
        tasks were passed).
    fold_val_classes_ : list of ndarray or None
        The held-out classes of each fold (None when the validation tasks
        were passed).
    classes_ : ndarray
        The classes of the support set of the last ``fit`` (classifiers).
    n_features_in_ : int
        Features of the support set of the last ``fit`` (``best_estimator_``'s).
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Its column names, when it was a DataFrame with string column names.

    See Also
    --------
    tasks_to_cv : Choose ``inner_lr`` or ``inner_steps`` for ``fit`` after
        meta-training, with ``GridSearchCV``.
    sk_meta.tasks.split_classes : Class pools for meta-training and testing.

    Notes
    -----
    It meta-trains ``cv`` times per candidate and once more to refit: with
    two candidates and ``cv=1``, about three times the cost of one
    ``meta_fit``, with ``cv=3`` about seven. The candidates meta-train on
    fewer classes than the refit; what is chosen is the parameters and the
    number of meta-iterations, not the init.

    ``clone`` keeps the search's result, as an estimator's clone keeps its
    meta-learned init: ``cross_val_score``, ``GridSearchCV`` and a pipeline
    of :func:`~sk_meta.pipeline.meta_fit_pipeline` adapt clones of
    ``best_estimator_``. On a searched search, ``set_params`` of
    ``estimator__<name>`` sets it on ``best_estimator_`` too, so
    ``GridSearchCV`` over ``estimator__inner_steps`` tunes the adaptation
    as on the estimator itself; the search's own settings act in
    ``meta_fit`` alone, and ``fit`` warns when they were set after it. As an
    estimator, the search is fitted (``check_is_fitted``) once ``fit`` has
    adapted ``best_estimator_``, not by ``meta_fit`` alone.

    An estimator's ``hidden_layer_sizes="auto"`` is ``(64, 64)`` here,
    whatever the number of classes: the grid is the choice (list ``()`` in
    it to compare the model without hidden layers, ``(128, 128)`` for the
    MLP "auto" builds with 10 classes or more, pretrained for Reptile),
    and no
    candidate runs class
    folds of its own.

    Every candidate and the refit meta-train from a fresh init, with
    ``warm_start=False``, whatever init ``estimator`` holds (an init
    meta-trained before would have seen the held-out classes); the refit
    runs without early stopping. Ctrl-C during the search raises
    ``KeyboardInterrupt`` and keeps no result, as in ``GridSearchCV``.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sk_meta import MAMLClassifier
    >>> from sk_meta.model_selection import MetaGridSearch
    >>> from sk_meta.tasks import EpisodeSampler
    >>> X, y = load_digits(return_X_y=True)
    >>> sampler = EpisodeSampler(X / 16, y, 3, 1, 5, classes=range(7),
    ...                          shuffle_labels=True, random_state=0)
    >>> search = MetaGridSearch(
    ...     MAMLClassifier(hidden_layer_sizes=(64, 64), n_meta_iter=20,
    ...                    validation_interval=10, random_state=0),
    ...     {"concat_input": [False, True]}, n_val_tasks=10, random_state=0)
    >>> search.meta_fit(sampler).results_["params"]
    [{'concat_input': False}, {'concat_input': True}]
    >>> X_support, y_support = X[[7, 8, 9]] / 16, [7, 8, 9]
    >>> search.fit(X_support, y_support).predict(X_support).shape
    (3,)
    """

    _parameter_constraints = {
        "estimator": [HasMethods(["meta_fit", "fit"])],
        "param_grid": [dict, list],
        "val_size": [Interval(numbers.Integral, 2, None, closed="left"),
                     Interval(numbers.Real, 0, 1, closed="neither")],
        "cv": [Interval(numbers.Integral, 1, None, closed="left")],
        # what validation_tasks may hold
        "n_val_tasks": [Interval(numbers.Integral, 1, MAX_TASKS, closed="both")],
        "error_score": [StrOptions({"raise"}), numbers.Real],
        "random_state": ["random_state"],
    }

    def __init__(self, estimator, param_grid, *, val_size=0.25, cv=1,
                 n_val_tasks=100, error_score=np.nan, random_state=None):
        self.estimator = estimator
        self.param_grid = param_grid
        self.val_size = val_size
        self.cv = cv
        self.n_val_tasks = n_val_tasks
        self.error_score = error_score
        self.random_state = random_state

    def meta_fit(self, tasks, validation_tasks=None, *, groups=None):
        """Meta-train every candidate, choose the best, and refit it.

        Parameters
        ----------
        tasks : EpisodeSampler or re-iterable tasks
            Without ``validation_tasks``, an
            :class:`~sk_meta.tasks.EpisodeSampler`, whose classes are split
            into meta-training and held-out ones. With them, any collection
            that can be iterated once per candidate (a list or a sampler;
            not a generator).
        validation_tasks : iterable of tasks, default=None
            Finite held-out tasks to choose on.
        groups : array-like of shape (n_samples,), default=None
            Group labels of the sampler's rows, as for scikit-learn's
            ``GroupKFold``: classes of one group (for example the rotations
            of one Omniglot character) are held out together, and
            ``val_size`` counts groups. Every class must lie in one group.
            Only without ``validation_tasks``.

        Returns
        -------
        self : MetaGridSearch
        """
        self._validate_params()
        as_task_sequence(tasks)  # tasks refused before validation_tasks are read
        if isinstance(self.estimator, type):
            raise TypeError(
                f"estimator must be an estimator, not the class "
                f"{self.estimator.__name__}: pass {self.estimator.__name__}()")
        if isinstance(self.cv, bool):
            raise TypeError(f"cv must be an int, got {self.cv!r}")
        if isinstance(self.random_state, (bool, np.bool_)):  # scikit-learn takes 1
            raise TypeError(f"random_state must be an int, a RandomState or None, "
                            f"not a bool; got {self.random_state!r}")
        grid = list(ParameterGrid(self.param_grid))
        if not grid:
            raise ValueError("param_grid has no candidate")
        valid = self.estimator.get_params(deep=True)
        # a nested name (module_params__width) needs a known first part
        unknown = sorted({name for params in grid for name in params
                          if name not in valid and name.split("__")[0] not in valid})
        if unknown:
            # a typo, not a candidate that failed to meta-train
            raise ValueError(
                f"Invalid parameter {unknown[0]!r} for estimator "
                f"{type(self.estimator).__name__}: param_grid names parameters it "
                f"does not have: {unknown}"
            )
        if any("early_stopping" in params for params in grid):
            raise ValueError(
                "param_grid must not set early_stopping: MetaGridSearch turns it "
                "on for the candidates, which is how it reads their best "
                "validation score and meta-iteration"
            )
        if any(is_auto(params.get("hidden_layer_sizes")) for params in grid):
            raise ValueError(
                "param_grid must not set hidden_layer_sizes='auto': it is a "
                f"choice of its own ({_AUTO_CHOICE_RULE}); list the sizes to "
                f"compare, e.g. [(64, 64), ()] or [(64, 64), {AUTO_MANY_CLASSES_SIZES}]"
            )
        if (is_auto(valid.get("hidden_layer_sizes"))
                and get_tags(self.estimator).estimator_type == "classifier"
                and valid.get("module") is None
                and not any("hidden_layer_sizes" in params for params in grid)):
            warn_user(
                "The estimator's hidden_layer_sizes='auto' is (64, 64) in every "
                "candidate: MetaGridSearch does not choose the network as the "
                f"estimator's own meta_fit would (on {_AUTO_CHOICE_RULE}). Add the "
                "sizes to compare to the grid, e.g. {'hidden_layer_sizes': "
                f"[(64, 64), ()]}} or [(64, 64), {AUTO_MANY_CLASSES_SIZES}], or set "
                "hidden_layer_sizes=(64, 64) to say you want that MLP",
                UserWarning)
        if any("checkpoint_path" in params for params in grid):
            raise ValueError(
                "param_grid must not set checkpoint_path: the candidates never "
                "write it; set it on the estimator, and the refit, or the chosen "
                "candidate, writes it"
            )
        if any("warm_start" in params for params in grid):
            raise ValueError(
                "param_grid must not set warm_start: every candidate meta-trains "
                "from a fresh init (an init meta-trained before would have seen "
                "the held-out classes)"
            )
        if validation_tasks is None:
            self._check_same_hold_out_everywhere()
            folds = self._hold_out(tasks, groups)
        elif groups is not None:
            raise ValueError(
                "groups chooses which classes are held out; with validation_tasks "
                "nothing is held out: pass one or the other"
            )
        elif self.cv != 1:
            raise ValueError(
                f"cv={self.cv} holds out classes in {self.cv} folds; with "
                "validation_tasks nothing is held out: pass cv=1 or no "
                "validation_tasks"
            )
        else:
            if iter(tasks) is tasks:
                raise TypeError(
                    f"tasks is a {type(tasks).__name__}, which can be read only "
                    "once; every candidate meta-trains on it: pass a list or a "
                    "sampler"
                )
            validation_tasks = [task for _, task in
                                _finite_tasks(validation_tasks, "validation_tasks")]
            if not validation_tasks:
                raise ValueError("validation_tasks is empty")
            folds = [(tasks, validation_tasks, None)]
        checkpoint_path = valid.get("checkpoint_path")
        fixed = {}
        if checkpoint_path is not None:
            # candidates, meta-trained on part of the classes, must not write
            # the user's file: the refit does, or the chosen one at the end
            if _writes_checkpoints(self.estimator):
                from sk_meta import _persistence  # torch: not for sk_meta.tasks

                _persistence.check_saveable(self.estimator)
            fixed["checkpoint_path"] = None
        results, best, first_error = _score_candidates(
            self.estimator, grid, folds, self.error_score, searcher="MetaGridSearch",
            **fixed)
        if best is None:
            raise ValueError(
                f"All {len(grid)} candidates failed to meta-train; the first "
                f"error: {type(first_error).__name__}: {first_error}"
            ) from first_error
        index, score, best_estimator, _ = best
        best_params = results["params"][index]
        best_n_meta_iter = results["best_meta_iter"][index]
        val_classes = [fold_classes for *_, fold_classes in folds]
        if val_classes[0] is not None:  # refit on every class
            # n_meta_iter in the grid bounds a candidate; the refit stops at
            # the candidate's best iteration
            best_estimator = _fresh(self.estimator, best_params,
                                    n_meta_iter=best_n_meta_iter,
                                    early_stopping=False)
            _announce(best_estimator, f"MetaGridSearch: the refit of the best "
                                      f"candidate {best_params} on all the classes")
            with _interrupt_stops_search(f"the refit of {best_params}",
                                         "MetaGridSearch"):
                best_estimator.meta_fit(tasks)
        elif checkpoint_path is not None:
            # as the user set it: the file resumes as their estimator would
            best_estimator.set_params(checkpoint_path=checkpoint_path,
                                      early_stopping=valid["early_stopping"])
            if _writes_checkpoints(best_estimator):
                best_estimator._save_checkpoint(best_estimator._meta)
        self.results_ = results
        self.best_params_ = best_params
        self.best_score_ = score
        self.best_n_meta_iter_ = best_n_meta_iter
        self.val_classes_ = val_classes[0]
        self.fold_val_classes_ = None if val_classes[0] is None else val_classes
        self.best_estimator_ = best_estimator
        self._set_after_search = []
        return self

    _SEARCH_RESULT = ("results_", "best_params_", "best_score_", "best_n_meta_iter_",
                      "val_classes_", "fold_val_classes_", "_set_after_search")
    # what acts in meta_fit alone
    _SEARCH_SETTINGS = ("param_grid", "val_size", "cv", "n_val_tasks", "error_score",
                        "random_state")

    def __sklearn_clone__(self):
        # as an estimator's clone keeps its meta-learned init, a search's
        # keeps its result (cross_val_score, GridSearchCV and pipelines
        # clone it), with the best estimator unadapted
        clone_ = super().__sklearn_clone__()
        if hasattr(self, "best_estimator_"):
            for name in self._SEARCH_RESULT:
                if hasattr(self, name):  # a search pickled by an older sk_meta
                    setattr(clone_, name, copy.deepcopy(getattr(self, name)))
            clone_.best_estimator_ = clone(self.best_estimator_)
        return clone_

    def _check_same_hold_out_everywhere(self):
        """In a distributed job (a torch.distributed group the estimator
        uses), every process must hold out the same classes: refuse a seed
        each process would draw for itself."""
        distributed = sys.modules.get("torch.distributed")
        if (is_int(self.random_state) or distributed is None
                or not distributed.is_available() or not distributed.is_initialized()
                or distributed.get_world_size() < 2
                or self.estimator.get_params().get("distributed") is False):
            return
        raise ValueError(
            f"MetaGridSearch(random_state={self.random_state!r}) in a distributed "
            "job: each process would hold out other classes, and meta-train on "
            "the others' held-out ones. Pass an int random_state (the same in "
            "every process)."
        )

    def _hold_out(self, sampler, groups):
        """``cv`` folds: (meta-training sampler, validation tasks, held-out classes)."""
        from sk_meta.tasks import EpisodeSampler, split_classes
        from sk_meta.tasks._samplers import _make_generator, _resolve_size

        if not isinstance(sampler, EpisodeSampler):
            raise TypeError(
                f"without validation_tasks, tasks must be an EpisodeSampler (its "
                f"classes are split into meta-training and held-out classes), got "
                f"{type(sampler).__name__}; with tasks of your own, pass "
                "validation_tasks as well"
            )
        if type(sampler) is not EpisodeSampler:
            # the folds are EpisodeSamplers of its data: what the subclass
            # changes would act in the refit alone, not in the choice
            raise TypeError(
                f"without validation_tasks, tasks must be an EpisodeSampler, not a "
                f"subclass of it ({type(sampler).__name__}): the candidates would "
                "be meta-trained and scored on EpisodeSamplers of its X and y, and "
                "only the refit on it. Pass validation_tasks, and tasks of its "
                "meta-training classes"
            )
        classes = sampler.class_labels
        group_of_class = _group_of_class(sampler, groups)
        units = np.unique(group_of_class)
        what = "classes" if groups is None else "groups"
        # A fraction rounds up, to at least 2 classes (or groups): adaptation
        # to fewer cannot be scored.
        n_val = max(2, _resolve_size(self.val_size, "val_size", len(units),
                                     round_up=True))
        n_train = len(units) - n_val
        if n_train < 1 or (groups is None and n_train < sampler.n_way):
            raise ValueError(
                f"val_size={self.val_size!r} holds out {n_val} of the sampler's "
                f"{len(units)} {what}, which leaves {max(n_train, 0)} to "
                f"meta-train on" + (f", fewer than n_way={sampler.n_way}"
                                    if groups is None else "")
            )
        if self.cv * n_val > len(units):
            raise ValueError(
                f"cv={self.cv} disjoint folds of {n_val} held-out {what} "
                f"(val_size={self.val_size!r}) need {self.cv * n_val} {what}; "
                f"the sampler has {len(units)}: lower cv or val_size"
            )
        rng = _make_generator(self.random_state)
        train_units, val_units, _ = split_classes(
            units, train_size=n_train, val_size=n_val, random_state=rng)
        held_out = [(val_units, _seed(rng))]
        # later folds hold out classes no earlier fold held out
        never_held_out = rng.permutation(train_units)
        for fold in range(1, self.cv):
            units_out = never_held_out[(fold - 1) * n_val:fold * n_val]
            held_out.append((np.sort(units_out), _seed(rng)))
        folds = []
        for val_units, seed in held_out:
            is_val = np.isin(group_of_class, val_units)
            train_classes, val_classes = classes[~is_val], classes[is_val]
            if len(train_classes) < sampler.n_way or len(val_classes) < 2:
                raise ValueError(
                    f"the held-out groups hold {len(val_classes)} classes and "
                    f"leave {len(train_classes)} to meta-train on; at least 2 "
                    f"and n_way={sampler.n_way} are needed: change val_size or "
                    "random_state"
                )
            # a generator of the user's sampler is not drawn from: the
            # folds' episodes come from the fold's own seed. What building a
            # sampler of its data warns of, the user's sampler said once
            with ignoring_warnings():
                search_tasks = EpisodeSampler(
                    sampler.X, sampler.y, sampler.n_way, sampler.k_shot,
                    sampler.n_query, classes=train_classes, n_tasks=sampler.n_tasks,
                    random_state=(sampler.random_state
                                  if is_int(sampler.random_state) else seed + 1),
                    shuffle_labels=sampler.shuffle_labels)
                validation_tasks = list(EpisodeSampler(
                    # classes, not groups: a held-out group may hold several
                    sampler.X, sampler.y, min(sampler.n_way, len(val_classes)),
                    sampler.k_shot, sampler.n_query, classes=val_classes,
                    n_tasks=self.n_val_tasks, random_state=seed))
            folds.append((search_tasks, validation_tasks, val_classes))
        return folds

    def _check_searched(self):
        check_is_fitted(self, "best_estimator_", msg=(
            "This %(name)s has not searched yet: call meta_fit first."))

    def set_params(self, **params):
        """Set parameters; on a searched search, ``estimator__<name>`` is set
        on ``best_estimator_`` too.

        So ``GridSearchCV`` over ``estimator__inner_steps`` tunes the
        adaptation of the estimator the search chose, as it does on that
        estimator itself (meta-training settings warn there that they act
        in ``meta_fit`` alone). The search's own settings act in
        ``meta_fit`` alone: ``fit`` warns when they were set after it.

        Parameters
        ----------
        **params : dict
            Parameters of the search, and ``estimator__<name>`` entries.

        Returns
        -------
        self : MetaGridSearch
        """
        # all or nothing: a misspelled name leaves the search, its estimator
        # and best_estimator_ as they were (the last step, itself all or nothing)
        def set_both(**params):
            super(MetaGridSearch, self).set_params(**params)
            prefix = "estimator__"
            nested = {name[len(prefix):]: value for name, value in params.items()
                      if name.startswith(prefix)}
            if nested and hasattr(self, "best_estimator_"):
                self.best_estimator_.set_params(**nested)

        # set back on the search alone: best_estimator_ holds the chosen values
        set_all_or_nothing(self, set_both, params, restore=super().set_params)
        if not hasattr(self, "best_estimator_"):
            return self
        # said at fit: a meta_fit may come first, and search again
        self._set_after_search = sorted(
            set(getattr(self, "_set_after_search", ())).union(
                name for name in params
                if name in self._SEARCH_SETTINGS or name == "estimator"))
        return self

    @available_if(_estimator_has("fit"))
    def fit(self, X, y, sample_weight=None):
        """Adapt the best estimator to a support set (its ``fit``).

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            The support set.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Its targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the support samples, passed to the best estimator's
            ``fit``.

        Returns
        -------
        self : MetaGridSearch
        """
        self._check_searched()
        if getattr(self, "_set_after_search", None):
            warn_user(
                f"{', '.join(self._set_after_search)} set after meta_fit, and act "
                "in meta_fit alone: fit adapts the estimator the search chose (a "
                "grid over them would score it once per value); call meta_fit to "
                "search again", UserWarning)
        if type(self.estimator) is not type(self.best_estimator_):
            raise ValueError(
                f"the search's estimator is a {type(self.estimator).__name__} now, "
                f"and meta_fit chose a {type(self.best_estimator_).__name__}: "
                "meta_fit the search again")
        weights = {} if sample_weight is None else {"sample_weight": sample_weight}
        self.best_estimator_.fit(X, y, **weights)
        return self

    @available_if(_estimator_has("predict"))
    def predict(self, X):
        """Predictions of the adapted best estimator."""
        self._check_searched()
        return self.best_estimator_.predict(X)

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities of the adapted best estimator."""
        self._check_searched()
        return self.best_estimator_.predict_proba(X)

    @available_if(_estimator_has("predict_log_proba"))
    def predict_log_proba(self, X):
        """Log class probabilities of the adapted best estimator."""
        self._check_searched()
        return self.best_estimator_.predict_log_proba(X)

    @available_if(_estimator_has("score"))
    def score(self, X, y, sample_weight=None):
        """The adapted best estimator's score on ``(X, y)``."""
        self._check_searched()
        weights = {} if sample_weight is None else {"sample_weight": sample_weight}
        return self.best_estimator_.score(X, y, **weights)

    @property
    def classes_(self):
        """The classes of the last support set (classifiers)."""
        self._check_searched()
        return self.best_estimator_.classes_

    def __sklearn_is_fitted__(self):
        # fitted as the estimator it chose is: by fit, not by meta_fit alone
        best = self.__dict__.get("best_estimator_")
        if best is None:
            return False
        try:
            check_is_fitted(best)
        except NotFittedError:
            return False
        return True

    @property
    def n_features_in_(self):
        """Features of the last support set (as ``GridSearchCV`` gives them)."""
        return self._fitted_attribute("n_features_in_")

    @property
    def feature_names_in_(self):
        """Column names of the last support set, when it was a DataFrame."""
        return self._fitted_attribute("feature_names_in_")

    def _fitted_attribute(self, name):
        best = self.__dict__.get("best_estimator_")
        if best is None or not hasattr(best, name):
            after = ("; nor after a fit on data without column names"
                     if name == "feature_names_in_" else "")
            raise AttributeError(
                f"{type(self).__name__} has no {name} before fit{after}")
        return getattr(best, name)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = get_tags(self.estimator)
        tags.estimator_type = inner.estimator_type
        tags.classifier_tags = inner.classifier_tags
        tags.regressor_tags = inner.regressor_tags
        return tags
