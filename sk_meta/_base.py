"""The shared estimator: parameters, the scikit-learn protocol, thin public methods.

The work is done elsewhere: :mod:`sk_meta._fitting` binds the parameters
and runs meta-training, adaptation and prediction; the results are records
(:mod:`sk_meta._records`) that this class holds and its fitted attributes
read from.
"""

import contextvars
import copy
import datetime
import functools
import inspect
import os
import pickle
import types
from numbers import Integral, Real

import numpy as np
import torch
from scipy import sparse
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils._param_validation import (
    Interval,
    InvalidParameterError,
    StrOptions,
)
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    validate_data,
)

from sk_meta import _distributed, _fitting, _persistence, _skorch
from sk_meta._checks import DEFAULT_HIDDEN_LAYER_SIZES, is_auto, set_all_or_nothing
from sk_meta._errors import ignoring_warnings, warn_user
from sk_meta._network import head_rebuilt_with_fixed_rates
from sk_meta._records import FitResult, MetaResult, MetaTrainingState, record_on_cpu
from sk_meta._torch_utils import (
    DeviceOptions,
    class_logits,
    mean_of_probabilities,
    torch_tensor_to_numpy,
    torch_threads,
)
from sk_meta.exceptions import (
    DivergenceError,
    FeatureNamesWarning,
    PersistenceWarning,
)
from sk_meta.functional._adapt import check_not_inference_mode
from sk_meta.tasks import EpisodeSampler
from sk_meta.tasks._samplers import label_repr
from sk_meta.tasks._stream import as_task_sequence
from sk_meta.tasks._validation import (
    check_label_values,
    check_no_datetimes,
    feature_names_difference,
    integers_lost_in_float32,
    missing_error,
    missing_mask,
    non_numeric_columns,
    not_numeric,
    warn_integers_lost_in_float32,
)

MAX_THREADS = 1024  # n_threads above it is refused (see the constraint)


def _transactional(method):
    """Leave the estimator exactly as it was if ``method`` raises.

    Attributes are replaced, never mutated in place, so restoring the
    instance dictionary restores the state.
    """

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        check_not_inference_mode(f"{type(self).__name__}.{method.__name__}")
        saved = self.__dict__.copy()
        try:
            return method(self, *args, **kwargs)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise

    return wrapper


# what a meta_fit under way chose for hidden_layer_sizes="auto", read while
# it builds the network; the record keeps it after
_TRANSIENT_CHOICE = ("_chosen_hidden_layer_sizes", "_chosen_pretrained",
                     "_chosen_average")


def _record_attribute(record, field, doc):
    """A read-only fitted attribute taken from the ``_meta`` or ``_fit`` record."""

    def get(self):
        value = self.__dict__.get(record)
        if value is None:
            raise AttributeError(
                f"{type(self).__name__} has no attribute {doc!r} before "
                f"{'meta_fit' if record == '_meta' else 'fit'}"
            )
        return getattr(value, field)

    # no docstring of its own: numpydoc would show it instead of the class
    # docstring's description of the attribute
    return property(get)


# set while an estimator copies itself: copy and deepcopy copy what pickle
# cannot (a parametrized module, which torch's own deepcopy copies)
_copying = contextvars.ContextVar("sk_meta_copying", default=False)


class ParametrizedModuleError(TypeError):
    """Pickling met a torch module with parametrizations."""


class _Parametrized(Exception):
    def __init__(self, module):
        self.module = module


class _Discard:
    def write(self, data):
        return len(data)


class _ParametrizedModuleFinder(pickle.Pickler):
    """Walks a value as pickle does (containers in C, cycles remembered) to
    find a torch module with parametrizations; modules without them and
    tensors are not walked into."""

    def reducer_override(self, obj):
        if isinstance(obj, BaseMetaEstimator):
            # checked on its own, with its own message, and not walked again
            _refuse_parametrized_modules(obj, obj._copyable_state())
            return object, ()
        if isinstance(obj, torch.nn.Module):
            if any(map(torch.nn.utils.parametrize.is_parametrized, obj.modules())):
                raise _Parametrized(obj)
            return object, ()
        if isinstance(obj, torch.Tensor) or (isinstance(obj, np.ndarray)
                                             and obj.dtype.kind != "O"):
            return object, ()
        # what pickle refuses and cloudpickle (loky's workers) takes: the walk
        # goes on past them
        if isinstance(obj, types.FunctionType) or (
                isinstance(obj, type) and obj is not object):  # object: the stand-in
            return object, ()
        return NotImplemented


def _refuse_parametrized_modules(estimator, state):
    """torch refuses to pickle a parametrized module (weight_norm) with a
    RuntimeError from inside pickle: say where it is, and what works."""
    places = {"_meta": "meta-trained network", "_fit": "adapted network"}
    for name, value in state.items():
        try:
            _ParametrizedModuleFinder(_Discard(), pickle.HIGHEST_PROTOCOL).dump(value)
        except _Parametrized as found:
            module = found.module
        except ParametrizedModuleError:  # an estimator's inside this one
            raise
        except Exception:  # pickle itself will say what else it cannot pickle
            continue
        else:
            continue
        kind = type(module).__name__.removeprefix("Parametrized")
        where = f"{places.get(name, name)} (a {kind})"
        if name == "module_params":  # save() stores no module there
            remedy = ("Remove them first (torch.nn.utils.parametrize."
                      "remove_parametrizations), or build that module in your "
                      "module class's __init__ and use estimator.save")
        else:
            remedy = ("Use estimator.save(path) and sk_meta.load(path, "
                      "module=...) instead")
        raise ParametrizedModuleError(
            f"cannot pickle {type(estimator).__name__}: its {where} uses torch "
            "parametrizations (such as weight_norm), which torch pickles only "
            f"through state_dict(). {remedy}; copy.copy, copy.deepcopy and "
            "sklearn.base.clone work")


def _validated(estimator, X, y="no_validation", **params):
    """``validate_data``, naming pandas' NA held as an object in ``X`` (it
    stops numpy's conversion with a TypeError of its own) and pandas columns
    that are not numbers; ``fit``'s and ``predict``'s alike."""
    try:
        return validate_data(estimator, X, y, **params)
    except (TypeError, ValueError) as exc:
        if "feature names" in str(exc):
            raise  # other columns than fit saw: said first, whatever they hold
        # pandas columns of categories or text: named, as meta_fit names
        # them, instead of numpy's "could not convert string to float"
        columns = non_numeric_columns(X)
        if columns:
            raise ValueError(not_numeric(X, "X", exc, columns)) from None
        if not isinstance(exc, TypeError):
            raise
        try:
            missing = missing_mask(np.asarray(X, dtype=object)).any()
        except ValueError:  # ragged: not what stopped the conversion
            missing = False
        if missing:
            raise missing_error("X", "value") from None
        raise


def _torch_viewable(array):
    """``array`` as torch can view it without a copy or a warning: contiguous
    (not reversed or strided) and writeable (a read-only memmap, as joblib
    hands its workers, makes torch warn that it does not support them)."""
    array = np.ascontiguousarray(array)
    return array if array.flags.writeable else array.copy()


def _module_input(X):
    """A contiguous, writeable copy of the caller's ``X``, the one the module
    runs on: a module may write its input where the probe cannot see
    (``x.data.mul_()``), and the caller's array must stay as it was."""
    return np.array(X, order="C", copy=True)


def _check_no_time_targets(y):
    """Refuse dates and durations as regression targets: numpy reads them as
    counts of nanoseconds (or days...), and objects (Timestamps with a time
    zone, Python datetimes) fail its conversion with no word of ``y``."""
    dtype = getattr(y, "dtype", None)
    values = np.asarray(y)
    if getattr(dtype, "kind", None) not in ("m", "M") and values.dtype.kind not in "mM":
        if values.dtype.kind != "O":
            return
        dates = [v for v in values.ravel()
                 if isinstance(v, (datetime.date, datetime.timedelta,
                                   np.datetime64, np.timedelta64))]
        if not dates:
            return
        what = f"{type(dates[0]).__name__} values"
    else:
        pandas_time = getattr(dtype, "kind", None) in ("m", "M")  # a time zone too
        what = f"dtype {dtype if pandas_time else values.dtype}"
    raise ValueError(
        f"y must be numeric, got {what}: datetime and timedelta targets are "
        "counts of time units to a network; convert them first (for example to "
        "elapsed days)")


def _checked_sample_weight(sample_weight, X):
    """``fit``'s sample weights in float64, refused with a ValueError that
    names them where scikit-learn refuses them (not one per sample,
    negative, not numbers), where one is not finite, or where all are 0."""
    kind = getattr(getattr(sample_weight, "dtype", None), "kind", None)
    if isinstance(kind, str) and kind in "mM":  # numpy would read their counts
        raise ValueError(f"sample_weight has dtype {sample_weight.dtype}: dates and "
                         "durations are no weights")
    try:
        weights = _check_sample_weight(torch_tensor_to_numpy(sample_weight), X,
                                       dtype=np.float64, ensure_non_negative=True)
    except (TypeError, ValueError, RuntimeError, NotImplementedError) as exc:
        # NotImplementedError: a tensor on the "meta" device has no values
        message = str(exc).strip()
        raise ValueError(message if "sample_weight" in message
                         else f"sample_weight: {message}") from None
    if not np.isfinite(weights).all():  # a scalar inf or NaN is not checked there
        raise ValueError(f"sample_weight must be finite, got {sample_weight!r}"
                         if np.ndim(sample_weight) == 0 else
                         "sample_weight must be finite: it holds NaN or infinity")
    if not (weights > 0).any():
        raise ValueError("sample_weight: every weight is 0; give at least one "
                         "positive weight")
    return weights


def _float32_weights(weights):
    """Positive float64 weights as float32: only ratios matter (a weighted
    mean), so scaled to at most 1 (no overflow), and kept positive (a weight
    1e-46 times the largest must still count its class, not vanish)."""
    scaled = (weights / weights.max()).astype(np.float32)
    return np.maximum(scaled, np.finfo(np.float32).smallest_subnormal)


@functools.cache
def _param_names(estimator_class):
    return tuple(BaseEstimator._get_param_names.__func__(estimator_class))


class BaseMetaEstimator(BaseEstimator):
    """Hyperparameters and machinery shared by every sk_meta estimator."""

    _algorithm = None  # "maml" or "reptile"

    def _validate_params(self):
        super()._validate_params()
        # scikit-learn's Interval takes True for 1: a number parameter given a
        # bool is a mistake (tasks_per_chunk=True failed inside torch)
        for name, constraints in self._parameter_constraints.items():
            value = getattr(self, name, None)
            if (isinstance(value, (bool, np.bool_)) and "boolean" not in constraints
                    and (any(isinstance(c, Interval) for c in constraints)
                         or "random_state" in constraints)):
                raise InvalidParameterError(
                    f"The {name!r} parameter of {type(self).__name__} must be a "
                    f"number, not a bool; got {value!r}."
                )

    @classmethod
    def _get_param_names(cls):
        # scikit-learn reads the signature on every get_params, three times
        # per fit: a tenth of the time of fit + predict on a small network
        return list(_param_names(cls))

    _parameter_constraints = {
        "module": [None, type, torch.nn.Module],
        "module_params": [None, dict],
        "hidden_layer_sizes": [StrOptions({"auto"}), "array-like"],
        "activation": [StrOptions({"relu", "tanh", "logistic", "identity"})],
        "concat_input": ["boolean"],
        "inner_lr": [Interval(Real, 0, None, closed="neither")],
        "inner_steps": [Interval(Integral, 0, None, closed="left")],
        "meta_inner_steps": [None, Interval(Integral, 1, None, closed="left")],
        "inner_lr_mode": [StrOptions({"fixed", "per_layer_step", "per_parameter"})],
        "adapt_layers": [StrOptions({"all", "head", "auto"})],
        "head_init": [StrOptions({"meta", "zero", "prototype"})],
        "prototype_scale": [StrOptions({"auto"}),
                            Interval(Real, 0, None, closed="neither")],
        "multi_step_loss": ["boolean"],
        "backtracking": ["boolean"],
        "task_interpolation": [Interval(Real, 0, 1, closed="both")],
        "meta_lr": [Interval(Real, 0, None, closed="neither")],
        "meta_batch_size": [Interval(Integral, 1, None, closed="left")],
        "n_meta_iter": [Interval(Integral, 1, None, closed="left")],
        "max_time": [None, Interval(Real, 0, None, closed="neither")],
        "meta_optimizer": [StrOptions({"adam", "sgd"})],
        "meta_lr_schedule": [StrOptions({"constant", "linear"})],
        "meta_grad_max_norm": [None, Interval(Real, 0, None, closed="neither")],
        "tasks_per_chunk": [None, StrOptions({"auto"}),
                            Interval(Integral, 1, None, closed="left")],
        "compile": ["boolean", StrOptions({"default", "reduce-overhead",
                                           "max-autotune"})],
        "transductive": ["boolean"],
        "validation_interval": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "warm_start": ["boolean"],
        "checkpoint_path": [None, str, os.PathLike],
        "checkpoint_every": [Interval(Integral, 1, None, closed="left")],
        "distributed": [StrOptions({"auto"}), "boolean"],
        # bounded: torch kills the process (libgomp cannot create the threads,
        # or a segfault) when asked for far more threads than a system has
        "n_threads": [None, Interval(Integral, 1, MAX_THREADS, closed="both")],
        "device": [DeviceOptions(), torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(self, module, *, module_params, hidden_layer_sizes, activation,
                 concat_input, inner_lr, inner_steps, meta_inner_steps, inner_lr_mode,
                 adapt_layers, head_init, prototype_scale, multi_step_loss,
                 backtracking, task_interpolation,
                 meta_lr, meta_batch_size,
                 n_meta_iter, max_time, meta_optimizer, meta_lr_schedule,
                 meta_grad_max_norm,
                 tasks_per_chunk, compile, transductive, validation_interval,
                 early_stopping, n_iter_no_change, tol, warm_start, checkpoint_path,
                 checkpoint_every, distributed, n_threads, device, random_state,
                 verbose):
        self.module = module
        self.module_params = module_params
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.concat_input = concat_input
        self.inner_lr = inner_lr
        self.inner_steps = inner_steps
        self.meta_inner_steps = meta_inner_steps
        self.inner_lr_mode = inner_lr_mode
        self.adapt_layers = adapt_layers
        self.head_init = head_init
        self.prototype_scale = prototype_scale
        self.multi_step_loss = multi_step_loss
        self.backtracking = backtracking
        self.task_interpolation = task_interpolation
        self.meta_lr = meta_lr
        self.meta_batch_size = meta_batch_size
        self.n_meta_iter = n_meta_iter
        self.max_time = max_time
        self.meta_optimizer = meta_optimizer
        self.meta_lr_schedule = meta_lr_schedule
        self.meta_grad_max_norm = meta_grad_max_norm
        self.tasks_per_chunk = tasks_per_chunk
        self.compile = compile
        self.transductive = transductive
        self.validation_interval = validation_interval
        self.early_stopping = early_stopping
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.warm_start = warm_start
        self.checkpoint_path = checkpoint_path
        self.checkpoint_every = checkpoint_every
        self.distributed = distributed
        self.n_threads = n_threads
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # -- fitted attributes, read from the records ----------------------------------
    module_ = _record_attribute("_meta", "module", "module_")
    meta_params_ = _record_attribute("_meta", "params", "meta_params_")
    inner_lrs_ = _record_attribute("_meta", "inner_lrs", "inner_lrs_")
    n_meta_iter_ = _record_attribute("_meta", "n_meta_iter", "n_meta_iter_")
    meta_loss_curve_ = _record_attribute("_meta", "loss_curve", "meta_loss_curve_")
    meta_input_shape_ = _record_attribute("_meta", "input_shape", "meta_input_shape_")
    meta_n_outputs_ = _record_attribute("_meta", "n_outputs", "meta_n_outputs_")
    meta_architecture_ = _record_attribute("_meta", "architecture",
                                           "meta_architecture_")
    hidden_layer_sizes_search_ = _record_attribute(
        "_meta", "hidden_layer_sizes_search", "hidden_layer_sizes_search_")
    pretrained_ = _record_attribute("_meta", "pretrained", "pretrained_")
    history_ = _record_attribute("_meta", "history", "history_")
    validation_scores_ = _record_attribute("_meta", "validation_scores",
                                           "validation_scores_")
    best_validation_score_ = _record_attribute("_meta", "best_validation_score",
                                               "best_validation_score_")
    params_ = _record_attribute("_fit", "params", "params_")
    n_outputs_ = _record_attribute("_fit", "n_outputs", "n_outputs_")

    @property
    def hidden_layer_sizes_(self):
        meta = self.__dict__.get("_meta")
        if meta is None:
            raise AttributeError(
                f"{type(self).__name__} has no attribute 'hidden_layer_sizes_' "
                "before meta_fit")
        if meta.hidden_layer_sizes is not None or self.module is not None:
            return meta.hidden_layer_sizes
        # a file written before the network was recorded: as it was loaded
        return tuple(meta.architecture["hidden_layer_sizes"])

    @property
    def averaged_module_(self):
        meta = self.__dict__.get("_meta")
        if meta is None:
            raise AttributeError(
                f"{type(self).__name__} has no attribute 'averaged_module_' "
                "before meta_fit")
        return None if meta.averaged_with is None else meta.averaged_with.module

    @property
    def device_(self):
        # the device of the last fit or, before it, of meta_fit; no docstring:
        # the class's Attributes section documents it, as the others
        record = self.__dict__.get("_fit") or self.__dict__.get("_meta")
        if record is None:
            raise AttributeError(
                f"{type(self).__name__} has no attribute 'device_' before meta_fit "
                "or fit")
        return torch.device(record.device)

    # -- what subclasses define ----------------------------------------------------
    def _is_classifier(self):
        raise NotImplementedError

    # -- scikit-learn protocol -----------------------------------------------------
    def __sklearn_is_fitted__(self):
        return self.__dict__.get("_fit") is not None

    def _is_meta_fitted(self):
        return self.__dict__.get("_meta") is not None

    def __sklearn_clone__(self):
        # A clone is unfitted, with the same hyperparameters, and adapts from
        # the same meta-learned init: the init is shared, never copied, since
        # nothing in sk_meta modifies it.
        clone = super().__sklearn_clone__()
        if self._is_meta_fitted():
            clone._meta = self._meta
        return clone

    def _copyable_state(self):
        # a copy: object.__getstate__ returns the instance's own dictionary
        state = dict(super().__getstate__())
        state.pop("_live_stream", None)  # holds the user's iterator
        # Pickles never carry GPU tensors: they load on any machine.
        for name in ("_meta", "_fit"):
            if name in state:
                state[name] = record_on_cpu(state[name])
        return state

    def __getstate__(self):
        state = self._copyable_state()
        if not _copying.get():
            _refuse_parametrized_modules(self, state)
        return state

    def _state_to_copy(self):
        # through __getstate__, so that a subclass's own applies
        token = _copying.set(True)
        try:
            return self.__getstate__()
        finally:
            _copying.reset(token)

    def __copy__(self):
        copied = type(self).__new__(type(self))
        copied.__setstate__(self._state_to_copy())
        return copied

    def __deepcopy__(self, memo):
        copied = type(self).__new__(type(self))
        memo[id(self)] = copied
        copied.__setstate__(copy.deepcopy(self._state_to_copy(), memo))
        return copied

    def __setstate__(self, state):
        _upgrade_pickle(state, self)
        super().__setstate__(state)
        # parameters added since the pickle was written take their defaults
        for name, default in values_for_missing_parameters(type(self)).items():
            self.__dict__.setdefault(name, default)

    def set_params(self, **params):
        """Set parameters; ``module_params__<name>`` sets one module argument.

        Parameters
        ----------
        **params : dict
            Estimator parameters, and ``module_params__<name>=value`` entries
            that update the ``module_params`` dict (so that a grid search can
            tune the arguments of a custom module).

        Returns
        -------
        self : estimator instance
        """
        prefix = "module_params__"
        skorch_style = [k for k in params if k.startswith("module__")]
        if skorch_style and not hasattr(params.get("module", self.module),
                                        "set_params"):
            name = skorch_style[0][len("module__"):]
            raise ValueError(
                f"{type(self).__name__} sets a module's constructor arguments "
                f"with module_params__<name>: pass module_params__{name}, not "
                f"{skorch_style[0]} (skorch's spelling)"
            )
        nested = {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}
        params = {k: v for k, v in params.items() if not k.startswith(prefix)}
        if nested:
            module_params = dict(params.get("module_params", self.module_params) or {})
            module_params.update(nested)
            params["module_params"] = module_params
        return set_all_or_nothing(self, super().set_params, params)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = self.module is not None
        tags.non_deterministic = False
        return tags

    # -- meta-training -------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    @_transactional
    def meta_fit(self, tasks, validation_tasks=None):
        """Meta-learn the initialization from an iterable of few-shot tasks.

        Parameters
        ----------
        tasks : iterable of tasks
            Each task is ``(X_support, y_support, X_query, y_query)``, a
            tuple or a :class:`~sk_meta.tasks.Task`. A list (or other
            sequence) is cycled, in a new order each pass (seeded by
            ``random_state``), until ``n_meta_iter`` meta-iterations have
            run; another re-iterable (such as an
            :class:`~sk_meta.tasks.EpisodeSampler`) is iterated again when it
            ends; a one-shot iterator or generator is consumed until it is
            exhausted or the budget is spent.
        validation_tasks : iterable of tasks, default=None
            Held-out tasks (a finite collection). Every ``validation_interval``
            meta-iterations the current init is adapted to each one's support
            set (``inner_steps`` at ``inner_lr``, as ``fit`` does) and scored on
            its query set; the mean goes to ``history_`` and
            ``validation_scores_``, and drives ``early_stopping``.

        Returns
        -------
        self : object
            The estimator, with the meta-learned init in ``module_``.
        """
        return self._meta_fit(tasks, validation_tasks, incremental=False)

    @_fit_context(prefer_skip_nested_validation=True)
    @_transactional
    def meta_partial_fit(self, tasks, validation_tasks=None):
        """Continue meta-training with one pass over ``tasks``.

        The tasks are used once, in the given order, ``meta_batch_size`` per
        meta-iteration (the last meta-batch may be smaller); ``n_meta_iter``
        does not bound it, and ``meta_lr_schedule="linear"`` is refused (it
        needs that budget). Calling it once per meta-batch gives the same
        init as ``meta_fit`` on the same stream of tasks, validated at the
        same meta-iterations (every ``validation_interval``, counted across
        calls). A sampler without ``n_tasks`` has no end and is refused.

        Parameters
        ----------
        tasks : iterable of tasks
            As in :meth:`meta_fit`.
        validation_tasks : iterable of tasks, default=None
            As in :meth:`meta_fit`.

        Returns
        -------
        self : object
        """
        return self._meta_fit(tasks, validation_tasks, incremental=True)

    def _writes_checkpoints(self):
        """Whether this process writes ``checkpoint_path`` (in a distributed
        run, process 0 alone: the others need not see its directory)."""
        if self.checkpoint_path is None:
            return False
        world = _distributed.world(self.distributed)
        return world is None or world.writes

    def _check_meta_fit(self, validation_tasks=None):
        """Raise what ``meta_fit`` refuses before it reads a task (for callers
        that read the tasks first, such as ``meta_fit_pipeline``)."""
        self._validate_params()
        if self._writes_checkpoints():
            _persistence.check_saveable(self)
        _fitting.check_settings(self, validation_tasks, incremental=False)

    def _meta_fit(self, tasks, validation_tasks, *, incremental):
        as_task_sequence(tasks)  # tasks refused before validation_tasks are read
        checkpoint = None
        if self.checkpoint_path is not None:
            if self._writes_checkpoints():
                _persistence.check_saveable(self)
            checkpoint = self._save_checkpoint
        search, validation_tasks = self._choose_hidden_layer_sizes(
            tasks, validation_tasks, incremental=incremental)
        with torch_threads(self.n_threads):
            try:
                outcome = _fitting.meta_train(self, tasks, validation_tasks,
                                              incremental=incremental,
                                              checkpoint=checkpoint,
                                              hidden_layer_sizes_search=search)
            except DivergenceError as exc:
                result = getattr(exc, "result", None)
                if result is not None:
                    exc.estimator = self._with_meta(result)
                raise
        for transient in _TRANSIENT_CHOICE:
            self.__dict__.pop(transient, None)  # now in _meta
        if outcome is not None:
            self._commit_meta(*outcome)
        return self

    def _choose_hidden_layer_sizes(self, tasks, validation_tasks, *, incremental):
        """With ``hidden_layer_sizes="auto"``, fix the MLP a fresh
        meta-training builds: a classifier given an EpisodeSampler of few
        classes chooses it on class folds, of many takes the wider MLP.
        Returns what the folds scored (None when they did not run) and the
        validation tasks (read before the folds, which may take minutes, so
        that their refusal comes first)."""
        if (not is_auto(self.hidden_layer_sizes) or self.module is not None
                or _fitting.continues_meta_training(self, incremental)):
            return None, validation_tasks  # a warm start keeps the init's network
        chosen, search, pretrained = None, None, False
        if self._is_classifier() and incremental:
            from sk_meta.model_selection import _many_classes_network

            # what meta_partial_fit refuses, before the choice is printed
            _fitting.check_settings(self, validation_tasks, incremental=True)
            # one pass cannot run class folds; the many-class rule needs none
            params = _many_classes_network(self, tasks, incremental=True)
            chosen = None if params is None else params["hidden_layer_sizes"]
        elif self._is_classifier():
            from sk_meta.model_selection import (
                AUTO_CHOICE_MARGIN,
                _averages_pretrained_mlp,
                _candidate_name,
                _choose_network,
                _incumbent,
                _pretrained_mlp_applies,
            )

            # what meta_fit refuses before reading a training task
            _fitting.check_settings(self, validation_tasks, incremental=False)
            if validation_tasks is not None:
                validation_tasks = [task for _, task in _fitting.read_validation_tasks(
                    validation_tasks, classification=True, meta=None,
                    sampler=tasks if type(tasks) is EpisodeSampler else None)]
            candidates = [{"hidden_layer_sizes": DEFAULT_HIDDEN_LAYER_SIZES},
                          {"hidden_layer_sizes": ()}]
            prototype_fixed = head_rebuilt_with_fixed_rates(self)
            if _pretrained_mlp_applies(self):
                candidates.append({"hidden_layer_sizes": DEFAULT_HIDDEN_LAYER_SIZES,
                                   "pretrained": True})
            # no weight of the linear model moves in meta-training with the
            # prototype head (its one layer is rebuilt for every task)
            unchanged = (1,) if prototype_fixed else ()
            # the two MLPs, compared task by task where the folds keep one
            paired = (0, 2) if _averages_pretrained_mlp(self) else None
            with torch_threads(self.n_threads):
                params, search = _choose_network(
                    self, tasks, candidates, one_iteration=unchanged, paired=paired)
            if params is not None:
                chosen = params["hidden_layer_sizes"]
                pretrained = params.get("pretrained", False)
                if search is not None:
                    # an MLP kept: which one, the folds tell only where they
                    # keep the meta-trained one and it is above the
                    # pretrained one beyond noise; elsewhere both, averaged
                    comparison = search["paired"]
                    average = (len(chosen) > 0 and paired is not None
                               and not (comparison is not None
                                        and comparison["above"]))
                    search["averaged"] = average
                    if average:
                        chosen, pretrained = DEFAULT_HIDDEN_LAYER_SIZES, False
                if self.verbose and search is not None:
                    scores = ", ".join(
                        f"{_candidate_name(c)} {score:.4f}"
                        for c, score in zip(candidates, search["scores"]))
                    not_trained = (", not meta-trained" if pretrained
                                   or (prototype_fixed and len(chosen) == 0) else "")
                    # the network the others must beat by the margin
                    incumbent = _candidate_name(
                        candidates[_incumbent(self, candidates)])
                    if incumbent.startswith("MLP"):
                        incumbent = "meta-trained " + incumbent
                    name = (f"the meta-trained MLP {chosen} and the pretrained one, "
                            "their probabilities averaged" if search["averaged"]
                            else _candidate_name(params))
                    paired_line = "" if comparison is None else (
                        f"; per task, the meta-trained MLP minus the pretrained "
                        f"one {comparison['difference']:+.4f} ± "
                        f"{comparison['half_width']:.4f} over "
                        f"{comparison['n_tasks']} tasks: "
                        + ("above it, alone" if comparison["above"]
                           else "not above it, averaged"))
                    print(f"hidden_layer_sizes='auto': {name}{not_trained}, "
                          f"by the mean validation score over {search['n_folds']} "
                          f"class folds ({scores}; another network replaces the "
                          f"{incumbent} only when more than "
                          f"{AUTO_CHOICE_MARGIN} above it{paired_line})")
        if self.verbose and chosen is not None and search is None:
            from sk_meta.model_selection import _auto_many_classes, _candidate_name

            print(f"hidden_layer_sizes='auto': {_candidate_name(params)}, for the "
                  f"sampler's {len(tasks.class_labels)} classes "
                  f"({_auto_many_classes(self, pretrained=bool(pretrained))} or "
                  "more: no class folds"
                  f"{', not meta-trained' if pretrained else ''})", flush=True)
        elif self.verbose and chosen is None and self._is_classifier():
            # say why nothing was compared: a sampler subclass or a list gets
            # the MLP without a word otherwise
            if type(tasks) is EpisodeSampler:
                why = ("meta_partial_fit runs no class folds" if incremental
                       else "too few classes for two class folds")
            elif isinstance(tasks, EpisodeSampler):
                why = "class folds need an EpisodeSampler itself, not a subclass"
            else:
                why = f"class folds need an EpisodeSampler, got {type(tasks).__name__}"
            print(f"hidden_layer_sizes='auto': MLP {DEFAULT_HIDDEN_LAYER_SIZES} "
                  f"({why})", flush=True)
        # a fresh meta-training does not keep an earlier init's choice
        self._chosen_hidden_layer_sizes = (DEFAULT_HIDDEN_LAYER_SIZES if chosen is None
                                           else chosen)
        self._chosen_pretrained = pretrained
        self._chosen_average = bool(search is not None and search.get("averaged"))
        return search, validation_tasks

    def _commit_meta(self, result, stream):
        # an adapted model of an old init is stale
        for name in ("_fit", "n_features_in_", "feature_names_in_"):
            self.__dict__.pop(name, None)
        self._meta = result
        self._live_stream = stream

    def _with_meta(self, result):
        """A shallow copy of this estimator holding ``result`` as its init."""
        other = type(self).__new__(type(self))
        other.__dict__.update(self.__dict__)
        for transient in _TRANSIENT_CHOICE:
            other.__dict__.pop(transient, None)  # in the record
        other._commit_meta(result, None)
        return other

    def _save_checkpoint(self, result):
        try:
            _persistence.save(self._with_meta(result), self.checkpoint_path)
        except Exception as exc:
            # what the call returns is the run in memory: a checkpoint that
            # cannot be written (a full disk, a state load would refuse)
            # must not throw it away
            warn_user(
                f"checkpoint not written to {os.fsdecode(self.checkpoint_path)!r} "
                f"({type(exc).__name__}: {exc}); meta-training does not stop for "
                "it, and the estimator keeps its result (a later checkpoint, if "
                "any, tries again)",
                PersistenceWarning,
            )

    def save(self, path):
        """Save the estimator to ``path`` in a format free of code.

        The file holds the hyperparameters, the meta-learned init with what
        resuming meta-training needs, and the adapted parameters, as tensors
        and plain values: :func:`sk_meta.load` reads it with
        ``torch.load(..., weights_only=True)``, so loading an untrusted file
        runs no code (unlike pickle). Tensors are saved from the CPU.

        Parameters
        ----------
        path : str, path-like or binary file object
            Destination file, replaced atomically (a symbolic link is
            written through, and a replaced file keeps its permissions); or
            a file object opened for binary writing, written as
            ``torch.save`` writes one.
        """
        _persistence.save(self, path)

    def to_skorch(self, **net_params):
        """Export the network to a skorch net, to keep training it with skorch.

        The net holds a copy of the adapted network after ``fit`` (else of the
        meta-learned one after ``meta_fit``), with cross-entropy (classifiers)
        or mean squared error (regressors) as criterion; it is initialized
        and ready for ``partial_fit``. skorch classifiers work with class
        codes ``0 .. n_classes - 1``: code ``i`` is ``classes_[i]`` (classes
        that ``fit``'s ``sample_weight`` gave weight 0 get a logit of -inf).
        A network with BatchNorm, exported after ``fit``, predicts as the
        estimator does: its module keeps a copy of the support set, beside
        which it runs a sample where the estimator would, and ``predict``
        takes all rows as one batch unless ``batch_size`` is given.

        Parameters
        ----------
        **net_params : dict
            Parameters of ``skorch.NeuralNetClassifier`` or
            ``skorch.NeuralNetRegressor`` (``lr``, ``max_epochs``,
            ``optimizer``, ``callbacks``...). ``device`` defaults to this
            estimator's.

        Returns
        -------
        net : skorch.NeuralNetClassifier or skorch.NeuralNetRegressor
        """
        return _skorch.to_skorch(self, **net_params)

    # -- adaptation ------------------------------------------------------------------
    def _validate_support(self, X, y):
        X, y = torch_tensor_to_numpy(X), torch_tensor_to_numpy(y)
        check_no_datetimes(X)  # else numpy's DTypePromotionError, or nanoseconds
        if integers_lost_in_float32(X):  # said at the user's call, past fit's wrappers
            warn_integers_lost_in_float32("X")
        allow_nd = self.module is not None
        if y is not None and sparse.issparse(y):  # as meta_fit says it
            raise TypeError("y is a sparse matrix, but dense data is required; use "
                            ".toarray()")
        if self._is_classifier():
            if y is not None:  # before scikit-learn's checks, which stop on them
                check_label_values(np.asarray(y))
            X, y = _validated(self, X, y, allow_nd=allow_nd, dtype=np.float32)
            check_classification_targets(y)
        else:
            if y is not None:
                _check_no_time_targets(y)
            if y is not None and missing_mask(np.asarray(y)).any():
                # said as meta_fit says it (pandas' NA would stop scikit-learn's
                # conversion with its own error)
                raise missing_error("y", "target")
            X, y = _validated(
                self, X, y, allow_nd=allow_nd, dtype=np.float32, multi_output=True,
                y_numeric=True,
            )
            with np.errstate(over="ignore"):  # said below, in a ValueError
                y = y.astype(np.float32, copy=False)
            if missing_mask(y).any():  # an object string "nan" converted to NaN
                raise missing_error("y", "target")
            if not np.isfinite(y).all():  # finite in float64, too large for float32
                raise ValueError("y contains infinity or a value too large for float32")
        self._check_feature_names_against_meta()
        return _module_input(X), _torch_viewable(y)

    def _check_feature_names_against_meta(self):
        meta = self.__dict__.get("_meta")
        names = getattr(self, "feature_names_in_", None)
        # None: meta-trained without names, or in a file that did not record
        # them; either way there is nothing to check against
        if meta is None or meta.feature_names is None:
            return
        if names is None:
            warn_user(
                f"X does not have feature names, but {type(self).__name__} was "
                "meta-trained on tasks with feature names",
                FeatureNamesWarning,
            )
            return
        if list(names) != list(meta.feature_names):
            raise ValueError(
                "The feature names should match those of the meta-training tasks, "
                "in the same order: "
                + feature_names_difference(meta.feature_names, names)
            )

    @_fit_context(prefer_skip_nested_validation=True)
    @_transactional
    def fit(self, X, y, sample_weight=None):
        """Adapt the meta-learned init to a support set.

        ``inner_steps`` gradient steps at ``inner_lr`` (or the learned rates)
        from a copy of the meta-learned init (``module_``); the init itself
        never changes, so every ``fit`` starts from the same point. Without
        ``meta_fit``, the steps start from an initialization seeded by
        ``random_state``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, ...)
            Support inputs. N-D inputs need a custom ``module``.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Support targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the support samples. The support loss is
            their weighted mean, and class prototypes (``head_init=
            "prototype"``) are weighted means: a weight of 2 counts a sample
            twice, and a row of weight 0 is left out (a class of weight 0
            stays in ``classes_``, with probability 0). With
            ``class_weight="balanced"``, each class's weighted mean counts
            alike. BatchNorm's batch statistics are not weighted.
            Meta-training is not weighted.

        Returns
        -------
        self : object
            The adapted estimator.
        """
        X, y = self._validate_support(X, y)
        kept = slice(None)
        if sample_weight is not None:
            sample_weight = _checked_sample_weight(sample_weight, X)
            if not (sample_weight > 0).all():
                # a row of weight 0 is no row at all: not in BatchNorm's batch,
                # and no 0 * inf where it holds a huge value (a fill value)
                kept = sample_weight > 0
            sample_weight = _float32_weights(sample_weight[kept])
            if (sample_weight == sample_weight[0]).all():
                # equal weights (as the network's float32 sees them) are no
                # weights: the plain mean, to the bit (inner Adam amplifies
                # the rounding of the weighted one)
                sample_weight = None
        X_kept = X[kept]  # a boolean mask copies: once
        _fitting.warn_if_large_features(
            self, [X_kept], "The support set",
            names=getattr(self, "feature_names_in_", None))
        classes = y_ndim = None
        if self._is_classifier():
            try:  # classes_ holds the classes of weight 0 too
                classes, y_target = np.unique(y, return_inverse=True)
            except TypeError as exc:  # as meta_fit says of a task's labels
                raise ValueError(f"y: labels cannot be sorted: {exc}") from None
            y_target = y_target.astype(np.int64)[kept]
            n_classes = n_outputs = len(classes)
            weighed = np.unique(y_target)
            if len(weighed) < n_classes:
                # a class of weight 0 is no class of the fit: its rows are not
                # there, and predictions give it probability 0
                y_target = np.searchsorted(weighed, y_target)
                n_classes = n_outputs = len(weighed)
            if n_classes == 1:
                # LogisticRegression refuses this, scikit-learn's contract lets
                # a classifier fit it: say what the fit will do
                only = classes[weighed[0]]
                rows = ("the support set holds" if len(classes) == 1 else
                        "the support set's rows of positive sample_weight hold")
                warn_user(
                    f"{rows} one class "
                    f"({label_repr(only)}): "
                    "the adapted classifier predicts it for every sample. A "
                    "support set needs samples of 2 classes or more to tell "
                    "them apart", UserWarning)
        else:
            y_target, n_classes = y[kept], None
            _fitting.warn_if_large_targets([y_target], "The support set")
            n_outputs = 1 if y.ndim == 1 else y.shape[1]
            y_ndim = y.ndim
            if self._is_meta_fitted():
                meta_outputs = int(np.prod(self._meta.y_shape or ()))
                if n_outputs != meta_outputs:
                    raise ValueError(
                        f"y has {n_outputs} output(s), but {type(self).__name__} "
                        f"was meta-trained on {meta_outputs}"
                    )
        what = ("the support set" if isinstance(kept, slice) else
                "the support set's rows of positive sample_weight")
        with torch_threads(self.n_threads):
            fit = _fitting.adapt_to_support(
                self, X_kept, y_target, n_classes, n_outputs, sample_weight,
                what=what)
            averaged_with = getattr(self.__dict__.get("_meta"), "averaged_with", None)
            if averaged_with is not None:
                # the pretrained MLP that hidden_layer_sizes="auto" averages in,
                # adapted as its own estimator would be (its warnings are the
                # ones just given)
                with ignoring_warnings():
                    fit.averaged_with = _fitting.adapt_to_support(
                        self._with_meta(averaged_with), X_kept, y_target, n_classes,
                        n_outputs, sample_weight, what=what)
        fit.classes, fit.y_ndim = classes, y_ndim
        if classes is not None and n_classes < len(classes):
            fit.class_codes = tuple(int(code) for code in weighed)
        self._fit = fit
        return self

    # -- prediction --------------------------------------------------------------------
    def _raw_outputs(self, X):
        """Outputs on ``X`` of each adapted network, as tensors on the CPU: the
        meta-trained one's, then, where ``hidden_layer_sizes="auto"`` averages
        it in, the pretrained MLP's."""
        # meta_fit learns an init; predicting needs it adapted to a task
        check_is_fitted(self, msg=(
            "This %(name)s is meta-trained but not adapted to a task yet: call "
            "fit(X_support, y_support) with the new task's labelled samples "
            "before predicting.") if self._is_meta_fitted() else None)
        X = torch_tensor_to_numpy(X)
        check_no_datetimes(X)
        if integers_lost_in_float32(X):
            warn_integers_lost_in_float32("X")
        if self.module is not None and len(getattr(X, "shape", ())) >= 2:
            # N-D samples: n_features_in_, which validate_data checks, is their
            # first dimension alone
            _fitting.check_input_shape(self, X, self._fit.input_shape,
                                       trained="fitted")
        X = _validated(self, X, reset=False, allow_nd=self.module is not None,
                       dtype=np.float32)
        _fitting.check_input_shape(self, X, self._fit.input_shape, trained="fitted")
        X = _module_input(X)
        fits = [self._fit]
        if self._fit.averaged_with is not None:
            fits.append(self._fit.averaged_with)
        with torch_threads(self.n_threads):
            every_output = [_fitting.predict_outputs(self, fit, X) for fit in fits]
        for outputs in every_output:
            self._check_outputs(outputs, X)
        return every_output

    def _check_outputs(self, outputs, X):
        if outputs.dim() not in (1, 2) or len(outputs) != len(X):
            # a module whose output shape follows its inputs beyond the probe's
            raise ValueError(
                f"module returned outputs of shape {tuple(outputs.shape)} on "
                f"{len(X)} samples: it must return (n_samples, n_outputs)")
        if not bool(torch.isfinite(outputs).all()):
            if _fitting.holds_non_finite([X]):  # scikit-learn's assume_finite=True
                raise ValueError(_fitting.NOT_FINITE_UNCHECKED.format(what="X"))
            # finite float32 inputs can still overflow the network
            raise ValueError(
                "the adapted network's outputs on X are not finite (X has values up "
                f"to {float(np.max(np.abs(X))):.3g}); scale the features as the "
                "support set was"
            )


# Parameters whose default changed: a file or pickle written before the
# parameter existed keeps the behaviour it was written with.
PARAMETERS_OF_OLDER_FILES = {"head_init": "meta", "task_interpolation": 0.0,
                             "prototype_scale": 1.0, "meta_grad_max_norm": None,
                             "backtracking": False, "head_solver": "steps"}


def values_for_missing_parameters(estimator_class):
    """The value of each parameter for a file or pickle that lacks it:
    ``PARAMETERS_OF_OLDER_FILES`` first, then the signature's default."""
    signature = inspect.signature(estimator_class.__init__)
    defaults = {name: p.default for name, p in signature.parameters.items()
                if p.default is not inspect.Parameter.empty}
    return {**defaults, **{name: value for name, value in
                           PARAMETERS_OF_OLDER_FILES.items() if name in defaults}}


def _upgrade_pickle(state, estimator):
    """Turn a pickle of sk_meta 0.1 (fitted attributes in the instance) into records."""
    if "module_" in state:
        old = {k: state.pop(k) for k in list(state)
               if k.endswith("_") and not k.startswith("_") and k not in (
                   "n_features_in_", "feature_names_in_")}
        training = state.pop("_meta_training_state")
        state["_meta"] = MetaResult(
            module=old["module_"], n_meta_iter=old["n_meta_iter_"],
            loss_curve=old["meta_loss_curve_"],
            input_shape=tuple(old["meta_input_shape_"]),
            y_shape=state.pop("_meta_y_shape", None),
            n_outputs=old["meta_n_outputs_"],
            training_state=MetaTrainingState(**vars(training)),
            history=old["history_"], validation_scores=old["validation_scores_"],
            best_validation_score=old["best_validation_score_"],
            architecture=old["meta_architecture_"],
        )
        state.update({k: v for k, v in old.items() if k in ("params_", "classes_",
                                                            "n_outputs_")})
    if "params_" in state:
        state["_fit"] = FitResult(
            module=state.pop("_module"), params=state.pop("params_"),
            n_outputs=state.pop("n_outputs_"),
            input_shape=tuple(state.pop("_fit_input_shape")),
            support_X=state.pop("_support_X"), y_ndim=state.pop("_y_ndim", None),
            classes=state.pop("classes_", None),
        )
        state.pop("_n_fit_classes", None)


class MetaClassifierMixin:
    """``predict``, ``predict_proba`` for meta-learned classifiers."""

    classes_ = _record_attribute("_fit", "classes", "classes_")

    def _is_classifier(self):
        return True

    def _class_logits(self, X):
        """The adapted network's logits of the support set's classes, float64
        (the network may have more outputs than the task has classes); -inf
        for the classes that ``sample_weight`` gave weight 0."""
        codes = getattr(self.__dict__.get("_fit"), "class_codes", None)
        # outputs first: they check that the estimator is fitted
        logits = [class_logits(outputs.double(), len(self.classes_), codes)
                  for outputs in self._raw_outputs(X)]
        if len(logits) == 1:
            return logits[0]
        # the average of the networks' probabilities, as log-probabilities
        return mean_of_probabilities([torch.log_softmax(lg, 1) for lg in logits])

    def predict_proba(self, X):
        """Class probabilities of the adapted network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, ...)
            Query inputs.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns follow ``classes_``.
        """
        return torch.softmax(self._class_logits(X), dim=1).numpy()

    def predict_log_proba(self, X):
        """Logarithms of the class probabilities of the adapted network.

        Computed from the logits (``log_softmax``), so that probabilities too
        small for ``predict_proba`` keep a finite logarithm.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, ...)
            Query inputs.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Columns follow ``classes_``.
        """
        return torch.log_softmax(self._class_logits(X), dim=1).numpy()

    def predict(self, X):
        """Predict class labels with the adapted network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, ...)
            Query inputs.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        codes = self._class_logits(X).argmax(dim=1).numpy()  # first: is it fitted
        return self.classes_[codes]


class MetaRegressorMixin:
    """``predict`` for meta-learned regressors."""

    def _is_classifier(self):
        return False

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        # a few gradient steps from an init that was not meta-trained for the
        # task at hand underfit scikit-learn's generic regression data
        tags.regressor_tags.poor_score = True
        return tags

    def predict(self, X):
        """Predict targets with the adapted network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, ...)
            Query inputs.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        out = self._raw_outputs(X)[0].numpy().astype(np.float64)
        if self._fit.y_ndim == 1:
            return out.reshape(len(out))
        return out.reshape(len(out), -1)

    def score(self, X, y, sample_weight=None):
        """Coefficient of determination R² of ``predict(X)`` against ``y``.

        scikit-learn's ``r2_score``, as ``RegressorMixin.score`` gives it;
        dates and durations in ``y`` are refused, as ``fit`` refuses them.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, ...)
            Query inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            True targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        score : float
        """
        _check_no_time_targets(y)
        return super().score(X, y, sample_weight=sample_weight)
