"""``sk_meta.load``: an estimator back from a file written by ``save``."""

import copy

import numpy as np
import sklearn
import torch

from sk_meta import _persistence
from sk_meta._base import values_for_missing_parameters
from sk_meta._checks import is_int
from sk_meta._errors import ignoring_warnings, warn_user
from sk_meta._fitting import seeds, weights_digest
from sk_meta._maml import (
    FOMAMLClassifier,
    FOMAMLRegressor,
    MAMLClassifier,
    MAMLRegressor,
)
from sk_meta._network import ConstructorRefused, NetworkSpec
from sk_meta._records import FitResult, MetaResult, from_plain
from sk_meta._reptile import ReptileClassifier, ReptileRegressor
from sk_meta.exceptions import FrozenParametersWarning, PersistenceWarning
from sk_meta.functional._rng import forked_rng

ESTIMATOR_CLASSES = {cls.__name__: cls for cls in (
    MAMLClassifier, MAMLRegressor, FOMAMLClassifier, FOMAMLRegressor,
    ReptileClassifier, ReptileRegressor,
)}


def load(path, *, module=None):
    """Load an estimator written by ``save`` or a ``meta_fit`` checkpoint.

    The file is read with ``torch.load(..., weights_only=True)``: no code in
    it runs. Tensors are loaded on the CPU, whatever device the estimator was
    trained on; they move to the estimator's ``device`` when it computes.
    The file's ``checkpoint_path`` is not restored: a file never decides
    where this process writes (set it again to keep checkpointing).

    Parameters
    ----------
    path : str, path-like or binary file object
        The file (a file object is read from its current position, as
        ``torch.load`` reads it).
    module : torch.nn.Module class or instance, default=None
        The custom module the estimator was built with, if any (files never
        hold code, only the module's name and weights): the class when the
        estimator was given the class (its ``module_params`` are in the
        file), an instance built as the saved one was when it was given an
        instance (a class then warns: it is built with its default
        arguments, which replace the instance's attributes that are not
        weights).

    Returns
    -------
    estimator : estimator instance
        Meta-fitted and fitted as it was saved. To resume meta-training from
        a checkpoint, set ``warm_start=True`` and call ``meta_fit`` with the
        same tasks.

    Raises
    ------
    ValueError
        When the file is not a valid sk_meta file (empty, truncated, crafted,
        or holding pickled objects), saying why; when ``module`` is missing,
        given for the default MLP, or a class that cannot be built without
        arguments where an instance was saved.

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
    state = _persistence.read(path)
    path = _persistence.source_name(path)  # for messages: a file object too
    if state["estimator"] not in ESTIMATOR_CLASSES:
        raise ValueError(
            f"{path} is not a valid sk_meta file: unknown estimator "
            f"{state['estimator']!r}"
        )
    estimator_class = ESTIMATOR_CLASSES[state["estimator"]]
    params = _persistence.restored_params(dict(state["params"]))
    unknown = set(params) - set(estimator_class._get_param_names())
    if unknown:
        raise ValueError(
            f"{path} is not a valid sk_meta file: unknown parameters "
            f"{sorted(unknown)} for {state['estimator']}"
        )
    # a file written before a parameter existed keeps the behaviour it had
    params = {**values_for_missing_parameters(estimator_class), **params}
    module_spec = params.get("module")
    params["module"] = _persistence.resolve_module(module_spec, module)
    if (isinstance(module_spec, dict) and "class" in module_spec
            and module is not None and not isinstance(module, type)
            and params.get("module_params")):
        raise ValueError(
            f"the saved estimator was built with the class "
            f"{module_spec['class']} and module_params "
            f"{params['module_params']!r}, which an instance cannot take: pass "
            f"the class, load(path, module={type(module).__name__})")
    if _persistence.saved_as_instance_given_class(module_spec, module):
        # built here, so that its failure is not taken for the file's
        try:
            with forked_rng(torch.device("cpu")):  # the caller's draws stay
                module()
        except Exception as exc:  # noqa: BLE001 - any constructor's refusal
            raise ValueError(
                f"the saved estimator was built with an instance of "
                f"{module_spec['instance_of']}, and the class, given here, cannot "
                f"be built without arguments ({type(exc).__name__}: {exc}): pass "
                "an instance built as the saved one was"
            ) from None
    checkpoint_path = params.pop("checkpoint_path", None)
    if checkpoint_path is not None:
        warn_user(
            f"the file's checkpoint_path ({checkpoint_path!r}) is not restored; "
            "set it with set_params(checkpoint_path=...) to keep checkpointing",
            PersistenceWarning,
        )
    try:
        estimator = estimator_class(**params)
        estimator._validate_params()  # a hand-edited file: refused here, not later
        _restore_metadata_requests(estimator, state.get("metadata_requests") or {})
        if state.get("meta", {}).get("hidden_layer_sizes") is not None:
            # hidden_layer_sizes="auto" reads the network meta_fit chose
            estimator._chosen_hidden_layer_sizes = tuple(
                state["meta"]["hidden_layer_sizes"])
        network = NetworkSpec.from_estimator(estimator)
        estimator.__dict__.pop("_chosen_hidden_layer_sizes", None)
        if "meta" in state:
            meta = state["meta"]
            skeleton = _skeleton(network, meta["input_shape"], meta["n_outputs"],
                                 meta["module_state"],
                                 meta["training_state"].get("init_seed", 0))
            record = from_plain(MetaResult, meta, module=skeleton)
            record.architecture = network.architecture()
            if meta.get("averaged_with") is not None:
                record.averaged_with = _averaged_meta(estimator, meta["averaged_with"])
            elif (record.hidden_layer_sizes_search or {}).get("averaged"):
                raise TypeError("the init averages two networks "
                                "(hidden_layer_sizes_search['averaged']), and the "
                                "file holds one")
            if record.training_params is not None:
                # the module passed here is the one meta-trained from
                record.training_params["module_weights"] = weights_digest(module)
            estimator._meta = record
        if "fit" in state:
            fit = state["fit"]
            if "meta" in state:
                skeleton = copy.deepcopy(estimator._meta.module)
                if "module_state" in fit:
                    # buffers that fit updated (running statistics of an
                    # InstanceNorm, a running normalizer) are not the init's
                    _load_state(skeleton, fit["module_state"])
            else:
                # the module's whole state (buffers, tied weights), saved
                # beside the adapted parameters; files without it: those
                skeleton = _skeleton(network, fit["input_shape"], fit["n_outputs"],
                                     fit.get("module_state", fit["params"]),
                                     _fit_seed(fit, estimator.random_state))
            estimator._fit = from_plain(FitResult, fit, module=skeleton)
            partner = getattr(estimator.__dict__.get("_meta"), "averaged_with", None)
            if (fit.get("averaged_with") is None) != (partner is None):
                raise TypeError("its fit and its init disagree on the averaged "
                                "network: one holds it, the other not")
            if partner is not None:
                estimator._fit.averaged_with = _averaged_fit(partner,
                                                             fit["averaged_with"])
            estimator.n_features_in_ = int(fit["n_features_in"])
            if "feature_names_in" in fit:
                estimator.feature_names_in_ = np.asarray(fit["feature_names_in"],
                                                         dtype=object)
    except ConstructorRefused as exc:
        whose = ("the module class given to load" if module is not None else
                 "the saved module class (has its code changed since?)")
        raise ValueError(
            f"{exc}: {whose} could not be built with the module_params the "
            f"estimator was saved with, {params.get('module_params')!r}") from None
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        raise ValueError(
            f"{path} is not a valid sk_meta file: {type(exc).__name__}: {exc}"
        ) from None
    except _WeightsMismatch as exc:
        if _persistence.saved_as_instance_given_class(module_spec, module):
            raise ValueError(
                f"the saved weights do not fit the module built from the class "
                f"{module.__name__} given here: the estimator was saved with an "
                f"instance of {module_spec['instance_of']}, so pass one built as "
                f"that one was, not the class ({exc.detail})") from None
        raise ValueError(str(exc)) from None
    return estimator


def _naming_the_averaged_network(read):
    """``read`` of an ``averaged_with`` entry, its errors said to be that entry's."""
    def wrapper(*args):
        try:
            return read(*args)
        except (KeyError, TypeError, AttributeError, IndexError) as exc:
            raise TypeError(f"its averaged network: {type(exc).__name__}: {exc}"
                            ) from None
    return wrapper


@_naming_the_averaged_network
def _averaged_meta(estimator, plain):
    """The pretrained MLP that ``hidden_layer_sizes="auto"`` averages with
    the meta-trained one, from its saved record."""
    estimator._chosen_hidden_layer_sizes = tuple(plain["hidden_layer_sizes"])
    try:
        network = NetworkSpec.from_estimator(estimator)
    finally:
        estimator.__dict__.pop("_chosen_hidden_layer_sizes", None)
    skeleton = _skeleton(network, plain["input_shape"], plain["n_outputs"],
                         plain["module_state"],
                         plain["training_state"].get("init_seed", 0))
    record = from_plain(MetaResult, plain, module=skeleton)
    record.architecture = network.architecture()
    return record


@_naming_the_averaged_network
def _averaged_fit(averaged_meta, plain):
    """That network adapted by ``fit``, from its saved record."""
    skeleton = copy.deepcopy(averaged_meta.module)
    _load_state(skeleton, plain["module_state"])
    return from_plain(FitResult, plain, module=skeleton)


def _restore_metadata_requests(estimator, requests):
    """Set what ``set_fit_request`` and the like had set when it was saved
    (they refuse to run unless routing is on: it is, for them alone)."""
    if not requests:
        return
    with sklearn.config_context(enable_metadata_routing=True):
        for method, values in requests.items():
            try:
                getattr(estimator, f"set_{method}_request")(**values)
            except ValueError as exc:  # a hand-edited file: as other bad entries
                raise TypeError(f"metadata_requests[{method!r}]: {exc}") from None


def _fit_seed(fit, random_state):
    """The seed ``fit`` built a network from scratch at, where it is known
    (files written before it was recorded: from an int random_state)."""
    if fit.get("init_seed") is not None:
        return int(fit["init_seed"])
    if is_int(random_state):
        return seeds(random_state)[0]
    return 0


def _skeleton(network, input_shape, n_outputs, module_state, seed):
    """The network with the saved weights (built, then overwritten). Built at
    the seed it was trained from: what its state dict leaves out (buffers
    with persistent=False, such as fixed random features) comes back as the
    constructor drew it."""
    probe = np.zeros((2, *input_shape), dtype=np.float32)
    # said when the estimator was trained; loading changes nothing
    with ignoring_warnings(FrozenParametersWarning):
        # a module saved before the batch-axis check: predict refuses what
        # would come out of it wrong
        module, _ = network.build(tuple(input_shape), n_outputs, seed, probe,
                                  check_batch_axis=False)
    _load_state(module, module_state)
    return module


class _WeightsMismatch(ValueError):
    """The saved state dict does not fit the module built for it (load
    adds the remedy where it knows one)."""

    def __init__(self, detail):
        super().__init__(f"the saved weights do not fit the module: {detail}")
        self.detail = detail


def _load_state(module, module_state):
    try:
        module.load_state_dict(module_state)
    except RuntimeError as exc:
        # torch says each mismatched tensor on a line, and the missing and
        # unexpected keys on one line each: those, or the first tensor
        problems = [line.strip().rstrip(".") for line in str(exc).splitlines()[1:]
                    if line.strip()] or [str(exc)]
        shown = [line for line in problems
                 if line.startswith(("Missing key", "Unexpected key"))] or problems[:1]
        more = len(problems) - len(shown)
        detail = "; ".join(shown) + (f" (and {more} more such lines)" if more else "")
        raise _WeightsMismatch(detail) from None
