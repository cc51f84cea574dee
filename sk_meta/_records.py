"""What ``meta_fit`` and ``fit`` produce, defined once.

The trainer and ``fit`` build these records, the estimator holds them (its
public fitted attributes read from them), and persistence writes and reads
them field by field: a field added here is saved, loaded, cloned and
pickled with no other change.
"""

import collections
import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
from skorch.history import History

from sk_meta._torch_utils import to_cpu


@dataclass
class MetaTrainingState:
    """What meta-training needs, beyond the init, to continue exactly."""

    init_seed: int
    stream_seed: int
    torch_seed: int
    n_drawn: int = 0
    optimizer_state: dict | None = None
    torch_rng_state: torch.Tensor | None = None
    cuda_rng_state: torch.Tensor | None = None
    forward_strategy: str | None = None
    # early stopping: the init kept is the best one, the run goes on from
    # where it was; both survive an interruption
    current: dict | None = None
    best: dict | None = None
    n_no_improvement: int = 0
    # a digest of the validation tasks the best score was measured on (None
    # in files written before it was recorded): scores on others do not compare
    validation_key: str | None = None


@dataclass
class MetaResult:
    """The meta-learned init and everything needed to adapt from it or resume.

    ``module`` holds the init as its parameters (on the CPU); ``inner_lrs``
    the learned inner learning rates (``inner_lr_mode`` other than
    ``"fixed"``), which started at ``inner_lr_init`` and were learned with
    ``inner_lr_mode`` for ``inner_lr_steps`` meta-training steps (both None
    in files written before they were recorded).
    """

    module: torch.nn.Module
    n_meta_iter: int
    loss_curve: list
    input_shape: tuple
    y_shape: tuple | None
    n_outputs: int
    training_state: MetaTrainingState
    history: History = field(default_factory=History)
    validation_scores: list = field(default_factory=list)
    best_validation_score: float | None = None
    inner_lrs: dict | None = None
    inner_lr_init: float | None = None
    inner_lr_mode: str | None = None
    inner_lr_steps: int | None = None
    feature_names: list | None = None
    device: str = "cpu"
    # the meta-training settings the init was trained with, as plain values
    # (None in files written before they were recorded)
    training_params: dict | None = None
    # the default MLP's hidden layers (None with a module, and in files
    # written before they were recorded); with hidden_layer_sizes="auto", what
    # the class folds of meta_fit scored ("candidates", "scores" averaged
    # over the folds, "fold_scores") when they ran
    hidden_layer_sizes: tuple | None = None
    hidden_layer_sizes_search: dict | None = None
    # what prototype_scale="auto" stands for with the prototype head, for
    # this init (None in files written before it was recorded: 0.3)
    auto_prototype_scale: float | None = None
    # the default MLP pretrained on all meta-training classes and not
    # meta-trained (hidden_layer_sizes="auto" chose it): adapt_layers="auto"
    # adapts its output layer alone
    pretrained: bool = False
    # with hidden_layer_sizes="auto", the MLP pretrained on all meta-training
    # classes whose predicted probabilities fit averages with this init's
    # (the class folds did not choose the linear model); None otherwise
    averaged_with: "MetaResult | None" = None
    # recomputed from the estimator's parameters when a file is loaded
    architecture: dict | None = field(default=None, metadata={"saved": False})

    @property
    def params(self):
        return {name: p.detach() for name, p in self.module.named_parameters()}


@dataclass
class FitResult:
    """The network adapted to one support set by ``fit``."""

    module: torch.nn.Module
    params: dict
    n_outputs: int
    input_shape: tuple
    support_X: np.ndarray
    strategy: str | None = None
    y_ndim: int | None = None
    classes: np.ndarray | None = None
    device: str = "cpu"
    # the seed a network built by fit (never meta-trained) was built at; None
    # for one adapted from a meta-learned init, and in older files
    init_seed: int | None = None
    # where sample_weight gave classes weight 0: the codes in classes of the
    # network's outputs (the others have probability 0); None: every class
    class_codes: tuple | None = None
    # the pretrained MLP of MetaResult.averaged_with, adapted to the same
    # support set: predictions average the two networks' probabilities
    averaged_with: "FitResult | None" = None


# -- to and from the weights-only file format --------------------------------------

PLAIN_TYPES = (bool, int, float, str)


def plain_scalar(value):
    """``value`` as the plain Python value it equals where it is a numpy
    scalar or a subclass of a number or a string (``np.float64``, an enum);
    anything else as it is. The weights-only reader takes the exact types
    alone: a numpy ``meta_lr`` lands in the optimizer's state, the
    comparisons of a numpy ``tol`` in the history."""
    if value is None or type(value) in PLAIN_TYPES:
        return value
    if isinstance(value, np.generic) and value.dtype.kind in "biufU":
        plain = value.item()
        # a longdouble's item() is itself: float64 holds its value closely enough
        return plain if type(plain) in PLAIN_TYPES else float(value)
    for base in PLAIN_TYPES[1:]:
        if isinstance(value, base):
            return getattr(base, f"__{base.__name__}__")(value)
    return value


def plain_scalars(value):
    """:func:`plain_scalar` throughout (nested) dicts, lists and tuples."""
    if type(value) in (dict, collections.OrderedDict):
        return type(value)((plain_scalars(k), plain_scalars(v))
                           for k, v in value.items())
    if type(value) in (list, tuple):
        return type(value)(plain_scalars(v) for v in value)
    return plain_scalar(value)


def to_plain(record):
    """``record`` as tensors and plain values (the module as its state dict)."""
    plain = {}
    for f in dataclasses.fields(record):
        if not f.metadata.get("saved", True):
            continue
        value = getattr(record, f.name)
        if f.name == "averaged_with" and value is None:
            continue  # files without the average stay readable by older versions
        if isinstance(value, torch.nn.Module):
            plain["module_state"] = to_cpu(value.state_dict())
        elif dataclasses.is_dataclass(value):
            plain[f.name] = to_plain(value)
        elif isinstance(value, History):
            plain[f.name] = [plain_scalars(dict(row)) for row in value]
        elif isinstance(value, np.ndarray):
            if value.dtype.kind in "mM":  # dates and durations: their int64 counts
                value_saved = torch.from_numpy(value.view(np.int64).copy())
            elif value.dtype.kind in "biuf":
                value_saved = torch.from_numpy(value.copy())
            else:  # object arrays: np.str_ labels as str
                value_saved = plain_scalars(value.tolist())
            plain[f.name] = value_saved
            plain[f.name + "_dtype"] = value.dtype.str
        elif isinstance(value, tuple):
            plain[f.name] = plain_scalars(tuple(value))
        else:
            plain[f.name] = plain_scalars(to_cpu(value))
    return plain


def from_plain(record_class, plain, module=None):
    """The record ``to_plain`` wrote (older files lack newer fields: defaults).

    ``module`` is the network, rebuilt by the caller, into which the saved
    state dict is loaded.
    """
    values = {}
    for f in dataclasses.fields(record_class):
        if f.name == "module":
            values["module"] = module
            continue
        if f.name == "averaged_with":
            continue  # a record of its own, with its own module: the caller's
        if f.name not in plain:
            continue  # a file from before the field existed: its default
        value = plain[f.name]
        if f.name == "training_state":
            value = from_plain(MetaTrainingState, value)
        elif f.name == "history":
            value = History(value)
        elif f.name + "_dtype" in plain:
            dtype = np.dtype(plain[f.name + "_dtype"])
            value = (value.numpy().astype(dtype) if isinstance(value, torch.Tensor)
                     else np.asarray(value, dtype=dtype))
        elif f.name in ("input_shape", "y_shape",
                        "hidden_layer_sizes") and value is not None:
            value = tuple(value)
        elif isinstance(value, torch.Tensor) and f.name == "support_X":
            value = value.numpy()  # files of format version 1
        values[f.name] = value
    return record_class(**values)


def record_on_cpu(record):
    """A copy of ``record`` whose tensors and modules are on the CPU (for pickles)."""
    if record is None:
        return None
    return dataclasses.replace(record, **{
        f.name: (record_on_cpu(getattr(record, f.name)) if f.name == "averaged_with"
                 else to_cpu(getattr(record, f.name)))
        for f in dataclasses.fields(record) if f.name != "training_state"
    })
