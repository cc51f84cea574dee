"""The shared estimator: meta-training, adaptation, prediction, clone and pickling."""

import copy
import functools
import inspect
import math
import numbers
import os
import types
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from sk_meta import _persistence, _skorch
from sk_meta._torch_utils import (
    DeviceOptions,
    draw_seeds,
    loss_if_finite,
    resolve_device,
    seeded_torch,
    single_sample_batch_norm_error,
    to_cpu,
    torch_threads,
)
from sk_meta._training import MetaTrainer, loss_for, runs_beside_support
from sk_meta.exceptions import DivergenceError
from sk_meta.functional import (
    TaskBatch,
    adapt,
    batched_forward,
    expand_params,
    outputs_beside_support,
    prepare_module,
)
from sk_meta.models import MLP

# Attributes that make up the meta-learned init. They survive ``clone`` (and
# so grid searches and cross-validation); ``fit`` never changes them.
_META_ATTRIBUTES = (
    "module_",
    "meta_params_",
    "n_meta_iter_",
    "meta_loss_curve_",
    "meta_input_shape_",
    "meta_n_outputs_",
    "meta_architecture_",
    "history_",
    "validation_scores_",
    "best_validation_score_",
    "_meta_y_shape",
    "_meta_training_state",
)
# Attributes set by ``fit``: the adapted model.
_FIT_ATTRIBUTES = (
    "params_",
    "classes_",
    "n_outputs_",
    "n_features_in_",
    "feature_names_in_",
    "_module",
    "_y_ndim",
    "_fit_input_shape",
    "_n_fit_classes",
    "_support_X",
)


def _transactional(method):
    """Leave the estimator exactly as it was if ``method`` raises.

    Attributes are replaced, never mutated in place, so restoring the
    instance dictionary restores the state.
    """

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        saved = self.__dict__.copy()
        try:
            return method(self, *args, **kwargs)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise

    return wrapper


class BaseMetaEstimator(BaseEstimator):
    """Hyperparameters and machinery shared by every sk_meta estimator."""

    _parameter_constraints = {
        "module": [None, type, torch.nn.Module],
        "module_params": [None, dict],
        "hidden_layer_sizes": ["array-like"],
        "activation": [StrOptions({"relu", "tanh", "logistic", "identity"})],
        "inner_lr": [Interval(Real, 0, None, closed="neither")],
        "inner_steps": [Interval(Integral, 1, None, closed="left")],
        "meta_inner_steps": [None, Interval(Integral, 1, None, closed="left")],
        "meta_lr": [Interval(Real, 0, None, closed="neither")],
        "meta_batch_size": [Interval(Integral, 1, None, closed="left")],
        "n_meta_iter": [Interval(Integral, 1, None, closed="left")],
        "meta_optimizer": [StrOptions({"adam", "sgd"})],
        "meta_lr_schedule": [StrOptions({"constant", "linear"})],
        "tasks_per_chunk": [None, StrOptions({"auto"}),
                            Interval(Integral, 1, None, closed="left")],
        "compile": ["boolean", StrOptions({"default", "reduce-overhead",
                                           "max-autotune"})],
        "validation_interval": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "warm_start": ["boolean"],
        "checkpoint_path": [None, str, os.PathLike],
        "checkpoint_every": [Interval(Integral, 1, None, closed="left")],
        "max_time": [None, Interval(Real, 0, None, closed="neither")],
        "n_threads": [None, Interval(Integral, 1, None, closed="left")],
        "transductive": ["boolean"],
        "device": [DeviceOptions(), torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(self, module, *, module_params, hidden_layer_sizes, activation,
                 inner_lr, inner_steps, meta_inner_steps, meta_lr, meta_batch_size,
                 n_meta_iter, max_time, meta_optimizer, meta_lr_schedule,
                 tasks_per_chunk,
                 compile, transductive, validation_interval,
                 early_stopping, n_iter_no_change, tol, warm_start, checkpoint_path,
                 checkpoint_every, n_threads, device, random_state, verbose):
        self.module = module
        self.module_params = module_params
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.inner_lr = inner_lr
        self.inner_steps = inner_steps
        self.meta_inner_steps = meta_inner_steps
        self.meta_lr = meta_lr
        self.meta_batch_size = meta_batch_size
        self.n_meta_iter = n_meta_iter
        self.max_time = max_time
        self.meta_optimizer = meta_optimizer
        self.meta_lr_schedule = meta_lr_schedule
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
        self.n_threads = n_threads
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # -- what subclasses define -------------------------------------------------
    def _is_classifier(self):
        raise NotImplementedError

    def _meta_step(self, compile_mode):
        """``step(forward, params, batch, *, loss_fn) -> (grads, loss)``.

        Sums over the batch's tasks of the meta-gradient and of the meta-loss,
        compiled with ``torch.compile`` in ``compile_mode`` unless it is None.
        """
        raise NotImplementedError

    def _adapt_options(self):
        """Extra keyword arguments of :func:`adapt` used by ``fit``."""
        return {}

    # -- scikit-learn protocol ---------------------------------------------------
    def __sklearn_is_fitted__(self):
        return hasattr(self, "params_")

    def _is_meta_fitted(self):
        return hasattr(self, "module_")

    def __sklearn_clone__(self):
        # A clone is unfitted, with the same hyperparameters, and adapts from
        # the same meta-learned init: the init is shared, never copied, since
        # nothing in sk_meta modifies it.
        clone = super().__sklearn_clone__()
        for name in _META_ATTRIBUTES:
            if name in self.__dict__:
                clone.__dict__[name] = self.__dict__[name]
        return clone

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_live_stream", None)  # holds the user's iterator
        # Pickles never carry GPU tensors: they load on any machine.
        return to_cpu(state)

    def __setstate__(self, state):
        super().__setstate__(state)
        # parameters added since the pickle was written take their defaults
        for name, default in _init_defaults(type(self)).items():
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
        nested = {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}
        params = {k: v for k, v in params.items() if not k.startswith(prefix)}
        if nested:
            module_params = dict(params.get("module_params", self.module_params) or {})
            module_params.update(nested)
            params["module_params"] = module_params
        return super().set_params(**params)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = self.module is not None
        tags.non_deterministic = False
        return tags

    # -- building the network -----------------------------------------------------
    def _seeds(self):
        """Seeds of the initialization, the task order and torch's RNG."""
        return draw_seeds(check_random_state(self.random_state), 3)

    def _architecture(self):
        """What determines the network's shape, to detect changes after meta_fit."""
        if self.module is None:
            return {
                "module": "MLP",
                "hidden_layer_sizes": tuple(int(h) for h in self.hidden_layer_sizes),
                "activation": self.activation,
            }
        if isinstance(self.module, type):
            return {
                "module": self.module,
                "module_params": dict(self.module_params or {}),
            }
        return {
            "module": type(self.module),
            "parameter shapes": tuple(
                (name, tuple(p.shape)) for name, p in self.module.named_parameters()
            ),
        }

    def _check_architecture_unchanged(self):
        current = self._architecture()
        meta = self.meta_architecture_
        changed = [key for key in set(current) | set(meta)
                   if not _equal(current.get(key), meta.get(key))]
        if changed:
            details = "; ".join(
                f"{key}: {meta.get(key)!r} at meta_fit, now {current.get(key)!r}"
                for key in sorted(changed)
            )
            raise ValueError(
                "The network's architecture changed since meta_fit "
                f"({details}); the meta-learned init does not fit it. Restore the "
                "parameter or call meta_fit again."
            )

    def _build_module(self, input_shape, n_outputs, seed, probe):
        """A freshly initialized network, prepared for the functional core.

        Returns the module and its number of outputs. ``probe`` is one task's
        inputs, used to check what a custom module returns.
        """
        if self.module is None:
            if len(input_shape) != 1:
                raise ValueError(
                    "The default MLP takes 2-D input (n_samples, n_features), got "
                    f"samples of shape {tuple(input_shape)}; pass module=... for "
                    "N-D input"
                )
            hidden = tuple(self.hidden_layer_sizes)
            if not all(isinstance(h, numbers.Integral) and h > 0 for h in hidden):
                raise ValueError(
                    "hidden_layer_sizes must be positive integers, got "
                    f"{self.hidden_layer_sizes!r}"
                )
            with seeded_torch(seed, torch.device("cpu")):
                module = MLP(input_shape[0], hidden, n_outputs, self.activation)
            return prepare_module(module), n_outputs
        if isinstance(self.module, type):
            if not issubclass(self.module, torch.nn.Module):
                raise TypeError(
                    f"module must be a torch.nn.Module class or instance, got "
                    f"{self.module!r}"
                )
            with seeded_torch(seed, torch.device("cpu")):
                try:
                    module = self.module(**(self.module_params or {}))
                except TypeError as exc:
                    raise TypeError(
                        f"{self.module.__name__}(**module_params) failed: {exc}"
                    ) from None
        else:
            if self.module_params:
                raise ValueError(
                    "module_params only applies when module is a class; got an "
                    "instance"
                )
            module = self.module
        module = prepare_module(module)
        return module, self._probe_outputs(module, probe, n_outputs)

    def _probe_outputs(self, module, probe, n_outputs):
        """Run the module once and check its output shape; return its width."""
        X = torch.as_tensor(np.asarray(probe, dtype=np.float32))
        try:
            with torch.no_grad():
                out = module(X)
        except Exception as exc:
            raise ValueError(
                f"module failed on inputs of shape {tuple(X.shape)}: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        if not isinstance(out, torch.Tensor) or out.dim() not in (1, 2) or (
                len(out) != len(X)):
            raise ValueError(
                f"module must return a tensor of shape (n_samples, n_outputs); on "
                f"inputs of shape {tuple(X.shape)} it returned "
                f"{getattr(out, 'shape', type(out).__name__)}"
            )
        width = 1 if out.dim() == 1 else out.shape[1]
        if self._is_classifier():
            if width < n_outputs:
                raise ValueError(
                    f"module has {width} outputs, but the tasks have up to "
                    f"{n_outputs} classes"
                )
        elif width != n_outputs:
            raise ValueError(
                f"module has {width} outputs, but the targets have {n_outputs}"
            )
        return width

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
        does not apply. Calling it once per meta-batch gives the same init as
        ``meta_fit`` on the same stream of tasks.

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

    def _meta_fit(self, tasks, validation_tasks, *, incremental):
        device = resolve_device(self.device)
        warm = (incremental or self.warm_start) and self._is_meta_fitted()
        if warm:
            self._check_architecture_unchanged()
        if self.checkpoint_path is not None:
            _persistence.check_saveable(self)
        with torch_threads(self.n_threads):
            trainer = MetaTrainer(
                self, tasks, device=device, incremental=incremental, warm=warm,
                validation_tasks=validation_tasks,
            )
            trainer.run()
        return self

    def _commit_meta_state(self, *, module, n_meta_iter, loss_curve, input_shape,
                           y_shape, n_outputs, training_state, history,
                           validation_scores, best_validation_score, live_stream):
        for name in _FIT_ATTRIBUTES:  # an adapted model of an old init is stale
            self.__dict__.pop(name, None)
        self.module_ = module
        self.meta_params_ = {
            name: p.detach() for name, p in module.named_parameters()
        }
        self.n_meta_iter_ = n_meta_iter
        self.meta_loss_curve_ = loss_curve
        self.meta_input_shape_ = input_shape
        self.meta_n_outputs_ = n_outputs
        self.meta_architecture_ = self._architecture()
        self.history_ = history
        self.validation_scores_ = validation_scores
        self.best_validation_score_ = best_validation_score
        self._meta_y_shape = y_shape
        self._meta_training_state = training_state
        self._live_stream = live_stream

    def save(self, path):
        """Save the estimator to ``path`` in a format free of code.

        The file holds the hyperparameters, the meta-learned init with what
        resuming meta-training needs, and the adapted parameters, as tensors
        and plain values: :func:`sk_meta.load` reads it with
        ``torch.load(..., weights_only=True)``, so loading an untrusted file
        runs no code (unlike pickle). Tensors are saved from the CPU.

        Parameters
        ----------
        path : str or path-like
            Destination file, replaced atomically.
        """
        _persistence.save(self, path)

    def to_skorch(self, **net_params):
        """Export the network to a skorch net, to keep training it with skorch.

        The net holds a copy of the adapted network after ``fit`` (else of the
        meta-learned one after ``meta_fit``), with cross-entropy (classifiers)
        or mean squared error (regressors) as criterion; it is initialized
        and ready for ``partial_fit``. skorch classifiers work with class
        codes ``0 .. n_classes - 1``: code ``i`` is ``classes_[i]``.

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
        allow_nd = self.module is not None
        if self._is_classifier():
            X, y = validate_data(self, X, y, allow_nd=allow_nd, dtype=np.float32)
            check_classification_targets(y)
        else:
            X, y = validate_data(
                self, X, y, allow_nd=allow_nd, dtype=np.float32, multi_output=True,
                y_numeric=True,
            )
            y = y.astype(np.float32, copy=False)
        # torch cannot view reversed or strided arrays
        return np.ascontiguousarray(X), np.ascontiguousarray(y)

    def _start(self, device, X, n_outputs, init_seed=None):
        """The module and initial parameters ``fit`` adapts from."""
        if self._is_meta_fitted():
            self._check_architecture_unchanged()
            if X.shape[1:] != tuple(self.meta_input_shape_):
                what = (f"{X.shape[1]} features" if X.ndim == 2
                        else f"samples of shape {X.shape[1:]}")
                meta = self.meta_input_shape_
                meta_what = (f"{meta[0]} features" if len(meta) == 1
                             else f"samples of shape {tuple(meta)}")
                raise ValueError(
                    f"X has {what}, but {type(self).__name__} was meta-trained on "
                    f"{meta_what}"
                )
            module = self.module_
            n_outputs = self.meta_n_outputs_
        else:
            if init_seed is None:
                init_seed = self._seeds()[0]
            module, n_outputs = self._build_module(
                X.shape[1:], n_outputs, init_seed, probe=X
            )
        if not hasattr(module, "forward_batched"):
            module = self._private_module_copy(module).to(device)
        params = {name: p.detach().to(device) for name, p in module.named_parameters()}
        return module, params, n_outputs

    @staticmethod
    def _private_module_copy(module):
        # fit and predict switch the module's train/eval mode: never on a
        # module that clones share
        return copy.deepcopy(module)

    def _forward_for(self, module):
        strategy = "native" if hasattr(module, "forward_batched") else "loop"
        return batched_forward(module, dict(module.named_buffers()), strategy)

    def _adapt_to_support(self, X, y_target, n_outputs):
        device = resolve_device(self.device)
        init_seed, _, torch_seed = self._seeds()
        with torch_threads(self.n_threads):
            module, params, n_outputs = self._start(device, X, n_outputs, init_seed)
            if self._is_classifier() and n_outputs < len(self.classes_):
                raise ValueError(
                    f"The support set has {len(self.classes_)} classes, but the "
                    f"network was meta-trained with {n_outputs} outputs (the most "
                    "classes in one meta-training task)"
                )
            X_t = torch.from_numpy(X).to(device).unsqueeze(0)
            y_t = torch.from_numpy(y_target).to(device).unsqueeze(0)
            batch = TaskBatch(X_t, y_t, X_t, y_t, n_classes=getattr(
                self, "_n_fit_classes", None))
            loss_fn = loss_for(batch, self._is_classifier())
            with seeded_torch(torch_seed, device):
                if not hasattr(module, "forward_batched"):
                    module.train()  # a private copy (dropout on, as in meta-training)
                with single_sample_batch_norm_error("the support set"):
                    adapted, loss = adapt(
                        self._forward_for(module), expand_params(params, 1), X_t,
                        y_t, loss_fn=loss_fn, lr=self.inner_lr,
                        n_steps=self.inner_steps, detach=True,
                        **self._adapt_options(),
                    )
            if not math.isfinite(float(loss_if_finite(loss, adapted.values()))):
                raise DivergenceError(
                    f"adaptation diverged: {self.inner_steps} steps at inner_lr="
                    f"{self.inner_lr} gave a non-finite loss or parameters; lower "
                    "inner_lr or inner_steps",
                )
        return module, {name: p[0] for name, p in adapted.items()}, n_outputs

    @_fit_context(prefer_skip_nested_validation=True)
    @_transactional
    def fit(self, X, y):
        """Adapt the meta-learned init to a support set.

        ``inner_steps`` gradient steps at ``inner_lr`` from a copy of the
        meta-learned init (``module_``); the init itself never changes, so
        every ``fit`` starts from the same point. Without ``meta_fit``, the
        steps start from an initialization seeded by ``random_state``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, ...)
            Support inputs. N-D inputs need a custom ``module``.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Support targets.

        Returns
        -------
        self : object
            The adapted estimator.
        """
        X, y = self._validate_support(X, y)
        if self._is_classifier():
            classes, y_target = np.unique(y, return_inverse=True)
            self.classes_ = classes
            self._n_fit_classes = len(classes)
            y_target = y_target.astype(np.int64)
            n_outputs = len(classes)
        else:
            y_target = y
            n_outputs = 1 if y.ndim == 1 else y.shape[1]
            if self._is_meta_fitted():
                meta_outputs = int(np.prod(self._meta_y_shape or ()))
                if n_outputs != meta_outputs:
                    raise ValueError(
                        f"y has {n_outputs} output(s), but {type(self).__name__} "
                        f"was meta-trained on {meta_outputs}"
                    )
            self._y_ndim = y.ndim
        module, params, n_outputs = self._adapt_to_support(X, y_target, n_outputs)
        self._fit_input_shape = X.shape[1:]
        # for non-transductive prediction, which runs each sample beside it
        self._support_X = X
        self._module = module
        self.params_ = params
        self.n_outputs_ = n_outputs
        return self

    # -- prediction --------------------------------------------------------------------
    def _raw_outputs(self, X):
        """Outputs of the adapted network on ``X``, as a tensor on the CPU."""
        check_is_fitted(self)
        X = validate_data(
            self, X, reset=False, allow_nd=self.module is not None, dtype=np.float32
        )
        X = np.ascontiguousarray(X)  # torch cannot view reversed or strided arrays
        device = next(iter(self.params_.values())).device
        with torch_threads(self.n_threads), torch.no_grad():
            if not hasattr(self._module, "forward_batched"):
                self._module.eval()  # a private copy (dropout off)
            if runs_beside_support(self._module, self.transductive, len(X)):
                out = outputs_beside_support(
                    self._module, dict(self._module.named_buffers()), self.params_,
                    torch.from_numpy(self._support_X).to(device),
                    torch.from_numpy(X).to(device),
                )
            else:
                X_t = torch.from_numpy(X).to(device).unsqueeze(0)
                forward = self._forward_for(self._module)
                out = forward(expand_params(self.params_, 1), X_t)[0]
        return out.cpu()


def _init_defaults(estimator_class):
    signature = inspect.signature(estimator_class.__init__)
    return {name: p.default for name, p in signature.parameters.items()
            if p.default is not inspect.Parameter.empty}


def with_defaults(init, **defaults):
    """A copy of the ``__init__`` function ``init`` with other keyword defaults.

    Estimators of one algorithm share a parameter list and differ in a few
    defaults (``inner_lr`` for regressors, ``first_order`` for FOMAML).
    scikit-learn reads the parameters and their defaults from the signature
    of ``__init__``, which reports the copy's defaults.
    """
    unknown = set(defaults) - set(init.__kwdefaults__)
    if unknown:
        raise TypeError(f"{init.__qualname__} has no keyword parameters {unknown}")
    copy = types.FunctionType(init.__code__, init.__globals__, init.__name__,
                              init.__defaults__, init.__closure__)
    copy.__kwdefaults__ = {**init.__kwdefaults__, **defaults}
    copy.__qualname__ = init.__qualname__
    copy.__doc__ = init.__doc__
    copy.__module__ = init.__module__
    return copy


def _equal(a, b):
    try:
        return bool(a == b)
    except Exception:
        return a is b


class MetaClassifierMixin:
    """``predict``, ``predict_proba`` for meta-learned classifiers."""

    def _is_classifier(self):
        return True

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
        logits = self._raw_outputs(X)[:, : len(self.classes_)]
        return torch.softmax(logits.double(), dim=1).numpy()

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
        logits = self._raw_outputs(X)[:, : len(self.classes_)]
        return self.classes_[logits.argmax(dim=1).numpy()]


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
        out = self._raw_outputs(X).numpy().astype(np.float64)
        if self._y_ndim == 1:
            return out.reshape(len(out))
        return out.reshape(len(out), -1)
