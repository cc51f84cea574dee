"""Pipelines whose preprocessing is learned on the meta-training data.

A scaler fitted on five support samples is a poor scaler. With
:func:`meta_fit_pipeline`, the preprocessing steps are fitted once on the
meta-training tasks and frozen (scikit-learn's ``FrozenEstimator``): ``fit``
on a support set then only adapts the final meta-learner, and the pipeline
survives ``clone`` (grid searches, cross-validation) with both the fitted
preprocessing and the meta-learned init.

A plain ``Pipeline`` is fine when its steps need no fitting on the data
(``FunctionTransformer`` without state, a fixed feature selection) or when
fitting them on each support set is what you want.
"""

import inspect
from collections.abc import Sequence
from itertools import chain, islice

import numpy as np
from scipy import sparse
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline
from sklearn.utils import get_tags

from sk_meta._checks import DEFAULT_HIDDEN_LAYER_SIZES, check_positive_int, is_auto
from sk_meta._errors import warn_user
from sk_meta.model_selection import MetaGridSearch
from sk_meta.tasks import EpisodeSampler, Task
from sk_meta.tasks._stream import MapStyleTasks, as_task_sequence, is_map_style

__all__ = ["meta_fit_pipeline"]


class _Transformed:
    """Tasks whose inputs are transformed as they are read."""

    def __init__(self, tasks, transform):
        self._tasks = tasks
        self._transform = transform
        if hasattr(tasks, "n_way"):
            self.n_way = tasks.n_way


class _TransformedDataset(_Transformed):
    """A map-style dataset of tasks, transformed: read by index, as lazily as
    the dataset it wraps."""

    def __len__(self):
        return len(self._tasks)

    def __getitem__(self, index):
        return self._transform(self._tasks[index])


class _TransformedSequence(_TransformedDataset, Sequence):
    """A sequence of tasks, transformed when accessed."""


class _TransformedIterable(_Transformed):
    """A re-iterable of tasks (such as a sampler), transformed."""

    def __iter__(self):
        return map(self._transform, self._tasks)


def _check_same_sample_shape(X_parts):
    """Refuse, naming the task, inputs whose samples differ in shape from the
    first task's (concatenating them would fail without saying where)."""
    shapes = [np.shape(part)[1:] for part in X_parts]
    for position, shape in enumerate(shapes):
        if shape != shapes[0]:
            part = "X_support" if position % 2 == 0 else "X_query"
            raise ValueError(
                f"task {position // 2}: {part} has samples of shape {shape}, but "
                f"task 0 has {shapes[0]}: the preprocessing steps need one shape"
            )


def _concatenate(parts):
    """Rows of all ``parts``; DataFrames stay one DataFrame, so that the
    preprocessing keeps their feature names."""
    if all(hasattr(part, "iloc") and hasattr(part, "columns") for part in parts):
        import pandas as pd  # only reached with DataFrames, so pandas is there

        return pd.concat(parts, ignore_index=True)
    if any(sparse.issparse(part) for part in parts):
        return sparse.vstack(parts, format="csr")
    return np.concatenate([np.asarray(part) for part in parts])


def _task_transformer(preprocessing):
    def transform(task):
        if not isinstance(task, (tuple, list)) or len(task) != 4:
            return task  # meta_fit reports malformed tasks with their index
        X_support, y_support, X_query, y_query = task
        transformed = Task(preprocessing.transform(X_support), y_support,
                           preprocessing.transform(X_query), y_query)
        if sparse.issparse(transformed.X_support) or sparse.issparse(
                transformed.X_query):
            # said of the pipeline: the tasks the user gave are dense
            raise TypeError(
                "the pipeline's preprocessing outputs a sparse matrix, and the "
                "last step needs dense data (as its fit does): make the step "
                "dense, e.g. OneHotEncoder(sparse_output=False)")
        return transformed

    return transform


def _row_by_row(transform):
    """``transform`` wrapped to return None unless it gives a few rows alone
    what it gives them among all rows together (scaling, encoding,
    imputation: yes; a transform of each set by its own statistics, or a
    random one: no). The rows alone are dense, as the episodes a sampler
    draws are (from a sparse table too), and must come out dense; all rows
    together may come out sparse, which the sampler densifies per episode."""
    def checked(X):
        out = transform(X)
        n_rows = out.shape[0] if hasattr(out, "shape") else len(out)
        if n_rows < 2:
            return None
        few = min(16, n_rows - 1)
        for block in (slice(0, few), slice(-1, None)):
            rows = _rows(X, block)
            try:
                alone = transform(rows.toarray() if sparse.issparse(rows) else rows)
            except Exception:  # noqa: BLE001 - said by the episodes' own transform
                return None
            if sparse.issparse(alone):
                return None
            if sparse.issparse(out):
                # a format without row slicing (coo, dia) is compared as csr
                together = sparse.csr_array(out)[block].toarray()
            else:
                together = _rows(out, block)
            alone, together = np.asarray(alone), np.asarray(together)
            if (alone.shape != together.shape or alone.dtype.kind not in "biuf"
                    or not np.allclose(alone, together, rtol=1e-6, atol=1e-9,
                                       equal_nan=True)):
                return None
        return out

    return checked


def _rows(X, rows):
    return X.iloc[rows] if hasattr(X, "iloc") else X[rows]


def _transformed(tasks, transform_task, preprocessing):
    """``tasks`` with their inputs transformed by the fitted preprocessing.

    An :class:`~sk_meta.tasks.EpisodeSampler` (not a subclass) whose rows
    the preprocessing transforms one by one is transformed once, on the rows
    of its classes, and draws the same episodes; other tasks are transformed
    as they are read.
    """
    if type(tasks) is EpisodeSampler:
        fast = tasks._with_transformed_inputs(_row_by_row(preprocessing.transform))
        if fast is not None:
            return fast
    if isinstance(tasks, MapStyleTasks):
        return _TransformedDataset(tasks.dataset, transform_task)
    if isinstance(tasks, Sequence):
        return _TransformedSequence(tasks, transform_task)
    if iter(tasks) is tasks:
        return map(transform_task, tasks)
    return _TransformedIterable(tasks, transform_task)


def meta_fit_pipeline(pipeline, tasks, *, validation_tasks=None,
                      preprocessing_tasks=None, n_preprocessing_tasks=1000):
    """Meta-fit a pipeline: fit and freeze its preprocessing, meta-fit its last step.

    Parameters
    ----------
    pipeline : Pipeline
        Preprocessing steps followed by an sk_meta estimator. It is not
        modified.
    tasks : iterable of tasks
        The meta-training tasks, as for ``meta_fit``. An
        :class:`~sk_meta.tasks.EpisodeSampler` (over a dense or a sparse
        table) has its rows transformed once, not once per episode, when the
        preprocessing transforms a few rows alone as it does all rows
        together, to dense output for rows alone (scikit-learn's scalers,
        encoders and imputers do): the episodes are the same, and the last
        step gets a sampler. A classifier's ``hidden_layer_sizes="auto"``
        then chooses its network as on that sampler, on class folds of its
        classes, whose preprocessing was fitted on all of them. Other steps
        transform each episode as it is drawn: ``"auto"`` then takes the MLP
        (64, 64), with a warning, and a ``MetaGridSearch`` needs
        ``validation_tasks``.
    validation_tasks : iterable of tasks, default=None
        Passed, transformed by the fitted preprocessing, to the last step's
        ``meta_fit`` (validation scores, ``early_stopping``). The
        preprocessing is not fitted on them.
    preprocessing_tasks : iterable of tasks, default=None
        Tasks whose inputs (support and query) and labels the preprocessing
        steps are fitted on; by default the first ``n_preprocessing_tasks``
        of ``tasks``. A one-shot iterator of tasks is not lost: the tasks
        read for preprocessing are also used for meta-training. An
        :class:`~sk_meta.tasks.EpisodeSampler` with ``shuffle_labels=True``
        is not read episode by episode: its labels are drawn anew for each
        episode, noise to a step that uses ``y`` (feature selection, a
        target encoder), so the steps are fitted on the rows of its classes
        with their own labels. Tasks of your own that shuffle labels should
        come with ``preprocessing_tasks`` that do not.
    n_preprocessing_tasks : int, default=1000
        At most this many tasks are read to fit the preprocessing.

    Returns
    -------
    pipeline : Pipeline
        A new pipeline with each preprocessing step wrapped, fitted, in
        ``FrozenEstimator``, and the meta-fitted final step. ``fit`` on a
        support set adapts the final step only.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sk_meta import MAMLClassifier
    >>> from sk_meta.pipeline import meta_fit_pipeline
    >>> from sk_meta.tasks import EpisodeSampler
    >>> X, y = load_digits(return_X_y=True)
    >>> tasks = EpisodeSampler(X, y, 3, 5, 5, classes=range(7), random_state=0)
    >>> pipe = meta_fit_pipeline(
    ...     make_pipeline(StandardScaler(), MAMLClassifier(n_meta_iter=5)), tasks)
    >>> new = EpisodeSampler(X, y, 3, 5, 5, classes=[7, 8, 9], random_state=1).sample()
    >>> pipe.fit(new.X_support, new.y_support).predict(new.X_query).shape
    (15,)
    """
    if not isinstance(pipeline, Pipeline):
        raise TypeError(f"pipeline must be a Pipeline, got {type(pipeline).__name__}")
    final_name, final = pipeline.steps[-1]
    if not hasattr(final, "meta_fit"):
        raise TypeError(
            f"the last step of the pipeline ({final_name}) must have meta_fit, got "
            f"{type(final).__name__}"
        )
    # a map-style dataset (torch's Dataset) is read by index, as a sequence
    tasks = as_task_sequence(tasks)
    if preprocessing_tasks is not None:
        preprocessing_tasks = as_task_sequence(preprocessing_tasks,
                                               "preprocessing_tasks")
    if validation_tasks is not None and is_map_style(validation_tasks):
        validation_tasks = as_task_sequence(validation_tasks, "validation_tasks")
    if (isinstance(final, MetaGridSearch) and validation_tasks is None
            and preprocessing_tasks is None
            and any(_fitted_here(step) for _, step in pipeline.steps[:-1])):
        raise ValueError(
            f"the last step ({type(final).__name__}) holds classes of tasks out to "
            "choose on, but the preprocessing would be fitted on every class of "
            "tasks, the held-out ones too: pass validation_tasks of other classes, "
            "or preprocessing_tasks")
    n_preprocessing_tasks = check_positive_int(n_preprocessing_tasks,
                                               "n_preprocessing_tasks")
    pipeline = clone(pipeline)
    final_name, final = pipeline.steps[-1]
    check_final = getattr(final, "_check_meta_fit", None)
    if check_final is not None:
        # what the last step refuses from its parameters, before any task is
        # read (a refusal must not consume the user's iterator)
        check_final(validation_tasks)
    meta_fit_kwargs = ({} if validation_tasks is None
                       else {"validation_tasks": validation_tasks})
    preprocessing_steps = pipeline.steps[:-1]
    if not preprocessing_steps:  # nothing to fit before the estimator
        final.meta_fit(tasks, **meta_fit_kwargs)
        return _with_steps(pipeline, [(final_name, final)])

    source = tasks if preprocessing_tasks is None else preprocessing_tasks
    if isinstance(source, EpisodeSampler) and source.shuffle_labels:
        # its episodes' labels are codes drawn anew per episode, noise to a
        # step that uses y: the rows of its classes, with their own labels
        X_rows, y_rows = source._labelled_rows()
        preprocessing = Pipeline(preprocessing_steps).fit(X_rows, y_rows)
    else:
        preprocessing, tasks = _fitted_on_tasks(preprocessing_steps, source, tasks,
                                                n_preprocessing_tasks)
    transform_task = _task_transformer(preprocessing)
    meta_tasks = _transformed(tasks, transform_task, preprocessing)
    if type(tasks) is EpisodeSampler and type(meta_tasks) is not EpisodeSampler:
        _say_the_sampler_is_lost(final, validation_tasks)
    if validation_tasks is not None:
        meta_fit_kwargs["validation_tasks"] = _transformed(
            validation_tasks, transform_task, preprocessing)
    final.meta_fit(meta_tasks, **meta_fit_kwargs)

    frozen = [
        (name, step if step is None or step == "passthrough" else FrozenEstimator(step))
        for name, step in preprocessing.steps
    ]
    return _with_steps(pipeline, [*frozen, (final_name, final)])


def _with_steps(pipeline, steps):
    """A Pipeline of ``steps`` with ``pipeline``'s other settings (``memory``,
    ``verbose``, ``transform_input``: whatever this scikit-learn has)."""
    # a subclass's own parameters are not Pipeline's: the result is a Pipeline
    accepted = set(inspect.signature(Pipeline).parameters) - {"steps"}
    settings = {key: value for key, value in pipeline.get_params(deep=False).items()
                if key in accepted}
    return Pipeline(steps, **settings)


_NOT_ROW_BY_ROW = (
    "the preprocessing does not transform rows one by one (it gives a few "
    "rows alone other values than among all rows, or sparse output), so "
    "each episode of the EpisodeSampler is transformed as it is drawn, and "
    "the last step gets tasks, not the sampler")


def _say_the_sampler_is_lost(final, validation_tasks):
    """Refuse a search that needs the sampler's classes, and warn a
    classifier whose ``hidden_layer_sizes="auto"`` would choose on them."""
    if isinstance(final, MetaGridSearch):
        if validation_tasks is None:
            raise TypeError(
                f"{_NOT_ROW_BY_ROW}; the search holds classes of the sampler "
                "out to choose on: pass validation_tasks of other classes, or "
                "steps that transform rows one by one")
        return
    params = final.get_params()
    continued = params.get("warm_start") and getattr(final, "_is_meta_fitted",
                                                     lambda: False)()
    if (is_auto(params.get("hidden_layer_sizes")) and params.get("module") is None
            and get_tags(final).estimator_type == "classifier" and not continued):
        warn_user(
            f"{_NOT_ROW_BY_ROW}: hidden_layer_sizes='auto' does not choose the "
            f"network on the sampler's classes and takes the MLP "
            f"{DEFAULT_HIDDEN_LAYER_SIZES}; set hidden_layer_sizes, or use steps "
            "that transform rows one by one", UserWarning)


def _fitted_here(step):
    """Whether meta_fit_pipeline fits ``step`` on the tasks' rows."""
    return (step is not None and step != "passthrough"
            and not isinstance(step, FrozenEstimator) and get_tags(step).requires_fit)


def _fitted_on_tasks(preprocessing_steps, source, tasks, n_preprocessing_tasks):
    """The preprocessing fitted on the inputs and labels of the first
    ``n_preprocessing_tasks`` of ``source``, and ``tasks`` (a one-shot
    iterator of them keeps the tasks read)."""
    if isinstance(source, Sequence):
        read = list(source[:n_preprocessing_tasks])
    else:
        iterator = iter(source)
        read = list(islice(iterator, n_preprocessing_tasks))
        if source is tasks and iterator is tasks:  # one-shot: keep what was read
            tasks = chain(read, iterator)
    if not read:
        raise ValueError("no tasks to fit the preprocessing steps on")
    X_parts, y_parts = [], []
    for index, task in enumerate(read):
        if not isinstance(task, (tuple, list)) or len(task) != 4:
            raise TypeError(
                f"task {index}: expected a 4-tuple (X_support, y_support, X_query, "
                f"y_query), got {type(task).__name__}"
                + (f" of length {len(task)}" if isinstance(task, (tuple, list)) else "")
            )
        X_parts += [task[0], task[2]]
        y_parts += [np.asarray(task[1]), np.asarray(task[3])]
    _check_same_sample_shape(X_parts)
    preprocessing = Pipeline(preprocessing_steps).fit(
        _concatenate(X_parts), np.concatenate(y_parts)
    )
    return preprocessing, tasks
