"""Saving estimators as tensors and plain values, loadable with ``weights_only=True``.

``pickle``/``joblib`` work too, but unpickling runs code from the file. The
format here holds only tensors, numbers, strings, lists and dicts, so
``torch.load(..., weights_only=True)`` reads it safely; a custom module is
never stored as code: its class is named, and :func:`load` takes it from the
caller.
"""

import contextlib
import os
import pickle
import uuid
import warnings
import zipfile

import numpy as np
import torch
from skorch.history import History

from sk_meta._torch_utils import to_cpu
from sk_meta._training import MetaTrainingState

_FORMAT = "sk_meta"
_VERSION = 1
_TRAINING_STATE_FIELDS = (
    "init_seed", "stream_seed", "torch_seed", "n_drawn", "optimizer_state",
    "torch_rng_state", "forward_strategy",
)


def _qualified_name(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


def _plain(value, name):
    """``value`` as plain data for the file, or raise for what cannot be stored."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, torch.device):
        return str(value)
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return _plain(value.tolist(), name)
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v, name) for v in value)
    if isinstance(value, dict):
        return {str(k): _plain(v, name) for k, v in value.items()}
    raise TypeError(
        f"parameter {name}={value!r} cannot be saved in the weights-only format; "
        "use pickle or joblib for this estimator"
    )


def _estimator_params(estimator):
    params = {}
    for name, value in estimator.get_params(deep=False).items():
        if name == "module":
            if value is None:
                params[name] = None
            elif isinstance(value, type):
                params[name] = {"class": _qualified_name(value)}
            else:
                params[name] = {"instance_of": _qualified_name(type(value))}
        elif name == "random_state" and isinstance(value, np.random.RandomState):
            warnings.warn(
                "random_state is a RandomState instance; it is saved as None",
                UserWarning,
            )
            params[name] = None
        else:
            params[name] = _plain(value, name)
    return params


def estimator_state(estimator):
    """The saved form of ``estimator``: a dict of tensors and plain values."""
    state = {
        "format": _FORMAT,
        "version": _VERSION,
        "estimator": type(estimator).__name__,
        "params": _estimator_params(estimator),
    }
    if estimator._is_meta_fitted():
        training = estimator._meta_training_state
        state["meta"] = {
            "module_state": to_cpu(estimator.module_.state_dict()),
            "n_meta_iter": estimator.n_meta_iter_,
            "loss_curve": [float(v) for v in estimator.meta_loss_curve_],
            "input_shape": tuple(estimator.meta_input_shape_),
            "y_shape": (None if estimator._meta_y_shape is None
                        else tuple(estimator._meta_y_shape)),
            "n_outputs": int(estimator.meta_n_outputs_),
            "history": [dict(row) for row in estimator.history_],
            "validation_scores": [float(v) for v in estimator.validation_scores_],
            "best_validation_score": estimator.best_validation_score_,
            "training_state": {
                name: to_cpu(getattr(training, name))
                for name in _TRAINING_STATE_FIELDS
            },
        }
    if hasattr(estimator, "params_"):
        fit = {
            "params": to_cpu(estimator.params_),
            "n_outputs": int(estimator.n_outputs_),
            "input_shape": tuple(estimator._fit_input_shape),
            "n_features_in": int(estimator.n_features_in_),
            "y_ndim": getattr(estimator, "_y_ndim", None),
            # non-transductive prediction runs each sample beside it
            "support_X": torch.from_numpy(estimator._support_X.copy()),
        }
        if hasattr(estimator, "feature_names_in_"):
            fit["feature_names_in"] = [str(f) for f in estimator.feature_names_in_]
        if hasattr(estimator, "classes_"):
            fit["classes"] = estimator.classes_.tolist()
            fit["classes_dtype"] = estimator.classes_.dtype.str
        state["fit"] = fit
    return state


def check_saveable(estimator):
    """Raise a ValueError now if ``estimator`` could not be saved later.

    ``meta_fit`` calls it before training when ``checkpoint_path`` is set, so
    that a bad setting is found before the run, not at its first checkpoint.
    """
    path = os.fspath(estimator.checkpoint_path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(
            f"checkpoint_path={path!r}: the directory {directory!r} does not exist"
        )
    if os.path.isdir(path):
        raise ValueError(f"checkpoint_path={path!r} is a directory, not a file")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ValueError(
            f"checkpoint_path={path!r}: the directory {directory!r} is not writable"
        )
    try:
        _estimator_params(estimator)
    except TypeError as exc:
        raise ValueError(f"checkpoint_path is set, but {exc}") from None


def save(estimator, path):
    """Write ``estimator`` to ``path`` atomically (a crash never leaves half a file)."""
    _write_atomically(estimator_state(estimator), path)


def _write_atomically(state, path):
    """``torch.save(state, path)``, replacing ``path`` in one step.

    The file gets the permissions ``torch.save`` would give it (those of a
    new file under the process's umask). Where the system allows it (Linux),
    the data is written to an unnamed file that only gets a name once it is
    complete, so a crash while writing leaves nothing behind; elsewhere a
    temporary file beside ``path`` is removed on any error.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(
        directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp"
    )
    try:
        if not _write_unnamed_then_link(state, directory, temporary):
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(fd, "wb") as f:
                _save_and_sync(state, f)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)


def _write_unnamed_then_link(state, directory, name):
    """Write to an ``O_TMPFILE`` file and link it as ``name``; False if unsupported."""
    if not hasattr(os, "O_TMPFILE") or not os.path.isdir("/proc/self/fd"):
        return False
    try:
        fd = os.open(directory, os.O_TMPFILE | os.O_WRONLY, 0o666)
    except OSError:  # a file system without unnamed files
        return False
    with os.fdopen(fd, "wb") as f:
        _save_and_sync(state, f)
        try:
            os.link(f"/proc/self/fd/{f.fileno()}", name)
        except OSError:
            return False
    return True


def _save_and_sync(state, f):
    torch.save(state, f)
    f.flush()
    os.fsync(f.fileno())


def _resolve_module(spec, module):
    if spec is None:
        if module is not None:
            raise ValueError("the saved estimator uses the default MLP; do not pass "
                             "module")
        return None
    saved_name = spec.get("class") or spec.get("instance_of")
    if module is None:
        raise ValueError(
            f"the saved estimator uses the custom module {saved_name}; pass it to "
            "load(path, module=...) (sk_meta never stores code in its files)"
        )
    given_class = module if isinstance(module, type) else type(module)
    if _qualified_name(given_class) != saved_name:
        warnings.warn(
            f"the saved estimator used {saved_name}, loading with "
            f"{_qualified_name(given_class)}",
            UserWarning,
        )
    return module


def load(path, *, module=None):
    """Load an estimator written by ``save`` or a ``meta_fit`` checkpoint.

    The file is read with ``torch.load(..., weights_only=True)``: no code in
    it runs. Tensors are loaded on the CPU, whatever device the estimator was
    trained on.

    Parameters
    ----------
    path : str or path-like
        The file.
    module : torch.nn.Module class or instance, default=None
        The custom module the estimator was built with, if any (files never
        hold code, only the module's name and weights).

    Returns
    -------
    estimator : estimator instance
        Meta-fitted and fitted as it was saved. To resume meta-training from
        a checkpoint, set ``warm_start=True`` and call ``meta_fit`` with the
        same tasks.

    Examples
    --------
    >>> import os, tempfile
    >>> import sk_meta
    >>> from sk_meta import MAMLRegressor
    >>> from sk_meta.tasks import SinusoidTasks
    >>> reg = MAMLRegressor(n_meta_iter=3, random_state=0)
    >>> reg = reg.meta_fit(SinusoidTasks(random_state=0))
    >>> path = os.path.join(tempfile.mkdtemp(), "model.pt")
    >>> reg.save(path)
    >>> sk_meta.load(path).n_meta_iter_
    3
    """
    from sk_meta import estimator_classes  # the estimators import this module

    state = _read(path)
    classes = estimator_classes()
    if state["estimator"] not in classes:
        raise ValueError(
            f"{path} is not a valid sk_meta file: unknown estimator "
            f"{state['estimator']!r}"
        )
    estimator_class = classes[state["estimator"]]
    params = dict(state["params"])
    unknown = set(params) - set(estimator_class().get_params(deep=False))
    if unknown:
        raise ValueError(
            f"{path} is not a valid sk_meta file: unknown parameters "
            f"{sorted(unknown)} for {state['estimator']}"
        )
    params["module"] = _resolve_module(params.get("module"), module)
    # a file never arms a write: checkpoints go where this process says
    checkpoint_path = params.pop("checkpoint_path", None)
    if checkpoint_path is not None:
        warnings.warn(
            f"the file's checkpoint_path ({checkpoint_path!r}) is not restored; "
            "set it with set_params(checkpoint_path=...) to keep checkpointing",
            UserWarning,
        )
    try:
        estimator = estimator_class(**params)
        if "meta" in state:
            _restore_meta(estimator, state["meta"])
        if "fit" in state:
            _restore_fit(estimator, state["fit"])
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        raise ValueError(
            f"{path} is not a valid sk_meta file: {type(exc).__name__}: {exc}"
        ) from None
    return estimator


def _read(path):
    """The file's top-level dict, or a ValueError saying why it is not one."""
    if not os.path.isfile(path):
        if os.path.exists(path):
            raise ValueError(f"{path} is not a file")
        raise FileNotFoundError(f"No such file: {path!r}")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path} is not a valid sk_meta file: it is empty")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses anything but tensors and plain values: the
        # file holds code or objects, which sk_meta never writes
        first_line = str(exc).strip().splitlines()[0] if str(exc) else ""
        raise ValueError(
            f"{path} is not a valid sk_meta file: it holds objects that loading "
            f"without running code refuses ({first_line})"
        ) from None
    except (OSError, RuntimeError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(
            f"{path} is not a valid sk_meta file (truncated or not written by "
            f"torch.save): {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise ValueError(f"{path} is not an sk_meta file")
    version = state.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(f"{path} is not a valid sk_meta file: no format version")
    if version > _VERSION:
        raise ValueError(
            f"{path} was written by a newer sk_meta (format version "
            f"{version}); upgrade sk_meta to read it"
        )
    if not isinstance(state.get("estimator"), str) or not isinstance(
            state.get("params"), dict):
        raise ValueError(
            f"{path} is not a valid sk_meta file: no estimator name or parameters"
        )
    return state


def _skeleton(estimator, input_shape, n_outputs, module_state):
    """The network with the saved weights (built, then overwritten)."""
    probe = np.zeros((2, *input_shape), dtype=np.float32)
    module, _ = estimator._build_module(tuple(input_shape), n_outputs, 0, probe)
    try:
        module.load_state_dict(module_state)
    except RuntimeError as exc:
        raise ValueError(f"the saved weights do not fit the module: {exc}") from None
    return module


def _restore_meta(estimator, meta):
    module = _skeleton(estimator, meta["input_shape"], meta["n_outputs"],
                       meta["module_state"])
    training = MetaTrainingState(**meta["training_state"])
    estimator._commit_meta_state(
        module=module,
        n_meta_iter=meta["n_meta_iter"],
        loss_curve=list(meta["loss_curve"]),
        input_shape=tuple(meta["input_shape"]),
        y_shape=None if meta["y_shape"] is None else tuple(meta["y_shape"]),
        n_outputs=meta["n_outputs"],
        training_state=training,
        history=History(meta["history"]),
        validation_scores=list(meta["validation_scores"]),
        best_validation_score=meta["best_validation_score"],
        live_stream=None,
    )


def _restore_fit(estimator, fit):
    if estimator._is_meta_fitted():
        module = estimator.module_
    else:
        module = _skeleton(estimator, fit["input_shape"], fit["n_outputs"],
                           fit["params"])
    if not hasattr(module, "forward_batched"):
        module = estimator._private_module_copy(module)
    estimator._module = module
    estimator.params_ = dict(fit["params"])
    estimator.n_outputs_ = fit["n_outputs"]
    estimator.n_features_in_ = fit["n_features_in"]
    estimator._fit_input_shape = tuple(fit["input_shape"])
    if fit.get("y_ndim") is not None:
        estimator._y_ndim = fit["y_ndim"]
    estimator._support_X = fit["support_X"].numpy()
    if "feature_names_in" in fit:
        estimator.feature_names_in_ = np.asarray(fit["feature_names_in"], dtype=object)
    if "classes" in fit:
        estimator.classes_ = np.asarray(fit["classes"],
                                        dtype=np.dtype(fit["classes_dtype"]))
        estimator._n_fit_classes = len(estimator.classes_)
