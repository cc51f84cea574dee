"""Building the network from the estimator's architecture parameters."""

import copy
import dataclasses
import inspect
import math
import numbers
import pickle
import re
import warnings

import numpy as np
import torch
from torch.func import functional_call

from sk_meta._checks import DEFAULT_HIDDEN_LAYER_SIZES, is_auto, is_int
from sk_meta._errors import warn_user
from sk_meta._swap_check import check_functional_call_reaches_params
from sk_meta._torch_utils import (
    is_single_sample_batch_norm_error,
    seeded_torch,
    single_sample_message,
)
from sk_meta.exceptions import FrozenParametersWarning
from sk_meta.functional import prepare_module
from sk_meta.functional._forward import check_not_torchscript, copy_network
from sk_meta.functional._heads import check_has_linear_layer
from sk_meta.models import MLP


def _equal(a, b):
    """Equal by value, also for what ``clone`` and pickling copy into
    ``module_params``: arrays and tensors (NaN equal to NaN), modules (type,
    settings and state), nested in dicts, lists and tuples; other objects by
    ``==``, else by their pickled form (a ``functools.partial``, a
    ``RandomState``, objects without ``__eq__``)."""
    if a is b:
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return (type(a) is type(b) and len(a) == len(b)
                and all(_equal(x, y) for x, y in zip(a, b)))
    if isinstance(a, torch.nn.Module) or isinstance(b, torch.nn.Module):
        # repr: the layers and their settings (activations, dropout rates)
        return (type(a) is type(b) and repr(a) == repr(b)
                and _equal(_settings(a), _settings(b)) and _equal(_state(a), _state(b)))
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
                and _same_tensor(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
                and a.shape == b.shape and a.dtype == b.dtype
                and bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")))
    try:
        if bool(a == b):
            return True
    except Exception:  # an == that gives no single answer (a pandas Series)
        pass
    if isinstance(a, float) and isinstance(b, float):
        return math.isnan(a) and math.isnan(b)
    try:
        return type(a) is type(b) and pickle.dumps(a) == pickle.dumps(b)
    except Exception:
        return False


def _same_tensor(a, b):
    if (a.shape, a.dtype, a.layout) != (b.shape, b.dtype, b.layout):
        return False
    if "meta" in (a.device.type, b.device.type):  # no values to compare
        return a.device == b.device
    a, b = a.detach().cpu(), b.detach().cpu()
    if a.layout != torch.strided:
        a, b = a.to_dense(), b.to_dense()
    if a.is_floating_point() or a.is_complex():
        return bool(torch.equal(a.isnan(), b.isnan())
                    and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0)))
    return bool(torch.equal(a, b))


def _settings(module):
    """Plain attributes of a module and its submodules (a custom layer's
    ``self.scale = 2.0``), which neither its repr nor its state may show."""
    return {(name, key): value
            for name, m in module.named_modules()
            for key, value in vars(m).items()
            if not key.startswith("_") and key != "training"
            and isinstance(value, (numbers.Number, str, bool, type(None), tuple))}


def _state(module):
    """A module's parameters and buffers by name (lazy ones by their kind)."""
    return {name: ("lazy" if torch.nn.parameter.is_lazy(value) else value)
            for name, value in module.state_dict(keep_vars=True).items()}


def hidden_layer_sizes_of(estimator):
    """The default MLP's hidden layers: ``hidden_layer_sizes``, with
    ``"auto"`` read as the choice of the ``meta_fit`` under way, else the one
    the init was meta-trained with, else ``DEFAULT_HIDDEN_LAYER_SIZES``."""
    sizes = estimator.hidden_layer_sizes
    if not is_auto(sizes):
        return sizes
    chosen = estimator.__dict__.get("_chosen_hidden_layer_sizes")
    if chosen is None:
        chosen = getattr(estimator.__dict__.get("_meta"), "hidden_layer_sizes", None)
    return DEFAULT_HIDDEN_LAYER_SIZES if chosen is None else tuple(chosen)


def is_pretrained_choice(estimator, *, afresh=False):
    """Whether the init is (``afresh``: a fresh meta-training will build) the
    default MLP pretrained on all meta-training classes, which
    ``hidden_layer_sizes="auto"`` chose."""
    meta = None if afresh else estimator.__dict__.get("_meta")
    if meta is not None:
        return bool(meta.pretrained)
    return bool(estimator.__dict__.get("_chosen_pretrained", False))


def head_rebuilt_with_fixed_rates(estimator):
    """Whether each task's output layer is built anew from its class means
    (the prototype head) and the inner rates are fixed: no weight of the
    init's output layer, and no rate, is meta-learned."""
    return estimator.head_init == "prototype" and estimator.inner_lr_mode == "fixed"


def is_fixed_linear_choice(estimator):
    """Whether a fresh meta-training builds the model without hidden layers
    that ``hidden_layer_sizes="auto"`` chose, with its one layer rebuilt for
    each task and fixed rates, so that meta-training would move no weight."""
    chosen = estimator.__dict__.get("_chosen_hidden_layer_sizes")
    return (is_auto(estimator.hidden_layer_sizes) and estimator.module is None
            and chosen is not None and len(chosen) == 0
            and head_rebuilt_with_fixed_rates(estimator))


def is_linear_mlp(estimator):
    """Whether the network is the default MLP without hidden layers."""
    if estimator.module is not None:
        return False
    try:
        return len(hidden_layer_sizes_of(estimator)) == 0
    except TypeError:  # not a sequence: refused where the network is built
        return False


def _differs(value, default):
    """Whether a parameter is set away from its default (a list of sizes
    equal to the default tuple is not)."""
    if isinstance(default, tuple):
        try:
            value = tuple(value)
        except TypeError:
            return True
    return not _equal(value, default)


def _check_trainable(module):
    """Refuse a network the inner loop cannot train: no parameters, or
    sparse gradients."""
    if next(iter(module.parameters()), None) is None:
        raise ValueError(
            f"{type(module).__name__} has no parameters: there is nothing to "
            "meta-train or adapt"
        )
    not_float = [(name, p.dtype) for name, p in module.named_parameters()
                 if not p.is_floating_point()]
    if not_float:
        name, dtype = not_float[0]
        raise TypeError(
            f"{type(module).__name__}.{name} is a parameter of dtype {dtype}: the "
            "inner loop takes gradient steps on every parameter, which only "
            "floating-point ones can take; register it as a buffer "
            "(self.register_buffer) instead"
        )
    hooked = [name for name, p in module.named_parameters()
              if p._backward_hooks or getattr(p, "_post_accumulate_grad_hooks", None)]
    if hooked:
        raise ValueError(
            f"{type(module).__name__}.{hooked[0]} has a gradient hook "
            "(Tensor.register_hook or register_post_accumulate_grad_hook): "
            "sk_meta takes the gradients of the tensors "
            "torch.func.functional_call swaps in for the parameters, so the hook "
            "would never run; remove it (adapt_layers='head' keeps the body "
            "fixed within each task)"
        )
    backward_hooked = [name for name, m in module.named_modules()
                       if m._backward_hooks or m._backward_pre_hooks]
    if backward_hooked:
        where = backward_hooked[0] or "the module"
        raise ValueError(
            f"{type(module).__name__}: {where!r} has a backward hook "
            "(register_full_backward_hook or register_full_backward_pre_hook), "
            "which meta-training's batched tasks (torch.func.vmap) do not run: "
            "meta_fit and fit would train differently; remove it"
        )
    sparse = [name for name, m in module.named_modules()
              if isinstance(m, (torch.nn.Embedding, torch.nn.EmbeddingBag))
              and m.sparse]
    if sparse:
        raise ValueError(
            f"{type(module).__name__}.{sparse[0]} is an embedding with "
            "sparse=True: its sparse gradients cannot take the inner loop's "
            "steps; build it with sparse=False"
        )


def _extra_runs(module, X):
    """Run a copy of ``module`` on copies of a few samples of ``X``: two in
    the other train/eval mode, then one in its own mode. Return whether the
    first run wrote into its input, and the outputs on one sample (None
    where that run fails or the module cannot be copied). Runs the module
    would not have made must leave no trace: on copies, its buffers (a
    spectral norm's power iteration, a call counter) and the caller's
    inputs stay as they were, and its warnings unsaid."""
    try:
        module = copy.deepcopy(module)
    except Exception:  # noqa: BLE001 - refused later, with its own message
        return False, None
    results = []
    for mode, samples in ((not module.training, X[:2]), (module.training, X[:1])):
        samples = samples.clone()
        version = samples._version
        module.train(mode)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                outputs = module(samples)
        except Exception:  # noqa: BLE001 - a failure is reported where it matters
            outputs = None
        results.append((samples._version != version, outputs))
    return results[0][0], results[1][1]


def _check_one_sample_output(one, X, out):
    """Refuse outputs whose shape follows the number of samples beyond its
    first axis (a ``.squeeze()`` after the output layer): one sample, in a
    one-sample support set or ``predict(X[:1])``, would lose its batch axis.
    ``one``: the outputs on one sample (None where the module fails on one,
    as a BatchNorm in train mode does)."""
    if one is None:
        return
    got = tuple(one.shape) if isinstance(one, torch.Tensor) else type(one).__name__
    if got != (1, *out.shape[1:]):
        raise ValueError(
            f"module must return a tensor of shape (n_samples, n_outputs) for any "
            f"number of samples: on {len(X)} samples it returned "
            f"{tuple(out.shape)}, on one sample {got} (does its forward squeeze() "
            "the batch axis away?)"
        )


def _check_outputs_depend_on_params(module, X):
    """Refuse a module whose outputs no parameter moves (a forward that
    detaches them, or runs under ``torch.no_grad()``): adaptation would fail
    inside torch's backward, with no gradient to step along."""
    try:  # a copy: a forward may leave tensors on the module (an activation)
        module = copy.deepcopy(module)
    except Exception:  # refused later, with its own message
        return
    params = {name: p.detach().requires_grad_()
              for name, p in module.named_parameters()}
    try:  # in train mode, as it adapts (a forward may build no graph in eval)
        with torch.enable_grad():
            out = functional_call(module.train(), params, (X,))
    except Exception:  # BatchNorm on one sample, say: the probe did not fail
        return
    if isinstance(out, torch.Tensor) and not out.requires_grad:
        raise ValueError(
            f"the outputs of module ({type(module).__name__}) do not depend on "
            "its parameters, so no gradient adapts them: does its forward "
            "detach them or run under torch.no_grad()?"
        )


def _dtype_hint(module):
    """A hint for a module failing on float32 inputs: its parameters'
    other floating dtype, if it has one."""
    other = sorted({str(p.dtype) for p in module.parameters()
                    if p.is_floating_point() and p.dtype != torch.float32})
    if not other:
        return ""
    return (f" (sk_meta feeds float32 inputs, and the module has "
            f"{', '.join(other)} parameters: convert it to float32, with "
            "module.float() or in its constructor)")


class ConstructorRefused(TypeError):
    """The module class refused ``module_params`` (its constructor's
    ``TypeError``)."""


def _type_name(cls):
    """A class by its module and name: classes made anew with the same
    name (torch makes one per parametrized instance) compare equal."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _layer_change(before, now):
    """The first layer whose type differs, in words (the whole list of
    layers would bury it)."""
    def named(layer):
        return "no layer" if layer is None else layer.rsplit(".", 1)[-1]

    before, now = dict(before), dict(now)
    for name in [*before, *now]:
        if before.get(name) != now.get(name):
            return (f"layer {name or 'the module'!r}: {named(before.get(name))} at "
                    f"meta_fit, now {named(now.get(name))}")
    return "layer types"


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    """The parameters that decide the network: ``module``, ``module_params``,
    ``hidden_layer_sizes``, ``activation`` and ``concat_input``."""

    module: object
    module_params: dict | None
    hidden_layer_sizes: object
    activation: str
    concat_input: bool
    classification: bool
    # the default MLP's parameters set away from their defaults beside a module
    ignored_mlp_params: tuple = ()

    @classmethod
    def from_estimator(cls, estimator):
        ignored = ()
        if estimator.module is not None:
            defaults = inspect.signature(type(estimator)).parameters
            ignored = tuple(
                name for name in ("hidden_layer_sizes", "activation")
                if name in defaults
                and _differs(getattr(estimator, name), defaults[name].default)
                # the MLP "auto" stands for, written out
                and not (name == "hidden_layer_sizes"
                         and is_auto(defaults[name].default)
                         and not _differs(getattr(estimator, name),
                                          DEFAULT_HIDDEN_LAYER_SIZES)))
        return cls(estimator.module, estimator.module_params,
                   hidden_layer_sizes_of(estimator), estimator.activation,
                   bool(estimator.concat_input), estimator._is_classifier(),
                   ignored)

    def architecture(self):
        """What determines the network's shape, to detect changes after meta_fit."""
        if self.module is None:
            architecture = {
                "module": "MLP",
                "hidden_layer_sizes": tuple(int(h) for h in self.hidden_layer_sizes),
                "activation": self.activation,
            }
            # only when set: files meta-trained before the option compare equal
            if self.concat_input:
                architecture["concat_input"] = True
            return architecture
        if isinstance(self.module, type):
            return {
                "module": self.module,
                "module_params": dict(self.module_params or {}),
            }
        return {
            # by name, as the layers: a class of torch's own per instance
            # (an fx GraphModule, a parametrized module) does not pickle
            "module": _type_name(type(self.module)),
            "parameter shapes": tuple(
                # a lazy layer of the user's instance has no shape yet (the
                # network sk_meta trains is a copy, materialized on the data)
                (name, None if torch.nn.parameter.is_lazy(p) else tuple(p.shape))
                for name, p in self.module.named_parameters()
            ),
            # the layers without parameters (an activation) shape the
            # function too
            "layer types": tuple((name, _type_name(type(layer)))
                                 for name, layer in self.module.named_modules()),
        }

    def check_unchanged(self, meta_architecture,
                        remedy="Restore the parameter or call meta_fit again."):
        """Raise if the architecture differs from the one meta-trained."""
        current = self.architecture()

        def value(architecture, key):
            # an MLP's architecture names concat_input only when it is set
            if architecture.get("module") == "MLP" and key == "concat_input":
                return architecture.get(key, False)
            if key == "layer types" and key not in meta_architecture:
                return None  # an init pickled before the layer types were kept
            if key in ("layer types", "parameter shapes") and key in architecture:
                # by name, not order: a ModuleDict built from a set orders its
                # layers by the process's string hashes (the state dict
                # matches them by name)
                return tuple(sorted(architecture[key], key=lambda pair: pair[0]))
            if (key == "module" and "parameter shapes" in architecture
                    and isinstance(architecture[key], type)):
                # an instance's class, as an init pickled before it was kept
                # by name (a class given as module is compared as it is:
                # its network, built later, is not in the record)
                return _type_name(architecture[key])
            return architecture.get(key)

        changed = [key for key in set(current) | set(meta_architecture)
                   if not _equal(value(current, key), value(meta_architecture, key))]
        if changed:
            # another kind of network (an MLP, a class) has no layer types:
            # its other keys say what changed
            kinds_differ = "layer types" not in current or (
                "layer types" not in meta_architecture)
            details = "; ".join(
                _layer_change(value(meta_architecture, key), value(current, key))
                if key == "layer types" else
                f"{key}: {value(meta_architecture, key)!r} at meta_fit, now "
                f"{value(current, key)!r}"
                for key in sorted(changed)
                if not (key == "layer types" and kinds_differ)
            )
            raise ValueError(
                "The network's architecture changed since meta_fit "
                f"({details}); the meta-learned init does not fit it. {remedy}"
            )
        if self.module is not None and not isinstance(self.module, type):
            self._check_no_module_params()  # as before meta_fit

    def check(self, *, needs_output_layer=False, needs_bias=False, seed=None):
        """Refuse what the parameters alone make impossible, before ``meta_fit``
        draws a task (a refusal must not consume the user's iterator).

        With ``seed``, a module class is built here, at that seed, and the
        instance returned for :meth:`build` (built once: a constructor may
        draw from other generators than torch's), so that its constructor's
        failure is refused before any task is drawn, as are, for a class or
        an instance, a network without parameters, with sparse gradients or
        (with ``seed``) that cannot be copied and, with
        ``needs_output_layer``, one without an ``nn.Linear`` layer (with
        ``needs_bias``, without one that has a bias). Returns None otherwise.
        """
        if self.module is None:
            sizes = self.hidden_layer_sizes
            # a set has no order and a dict's keys are not sizes: neither is
            # a list of layers, though scikit-learn's "array-like" takes both
            if isinstance(sizes, (set, frozenset, dict, str, bytes)) or (
                    isinstance(sizes, np.ndarray) and sizes.ndim != 1):
                raise TypeError(
                    "hidden_layer_sizes must be a tuple or list of layer widths "
                    f"(or 'auto'), got {type(sizes).__name__} {sizes!r}"
                )
            hidden = tuple(sizes)
            if not all(is_int(h) and h > 0 for h in hidden):
                raise ValueError(
                    "hidden_layer_sizes must be positive integers, got "
                    f"{self.hidden_layer_sizes!r}"
                )
            return None
        if self.concat_input:
            raise ValueError(
                "concat_input=True applies to the default MLP only (module=None); "
                f"got module={self.module!r}: build the concatenation into your "
                "module, or pass concat_input=False"
            )
        if isinstance(self.module, type):
            if not issubclass(self.module, torch.nn.Module):
                raise TypeError(
                    f"module must be a torch.nn.Module class or instance, got "
                    f"{self.module!r}"
                )
            if seed is None:
                return None
            module = instance = self._construct(seed)
        else:
            self._check_no_module_params()
            module, instance = self.module, None
        check_not_torchscript(module)  # said before its layers are looked for
        _check_trainable(module)
        if seed is not None:  # meta_fit, before a task is read
            copy_network(module)
        if needs_output_layer:
            check_has_linear_layer(module)
        if needs_bias and not any(isinstance(m, torch.nn.Linear) and m.bias is not None
                                  for m in module.modules()):
            raise ValueError(
                "head_init='prototype' needs an output layer with a bias; no "
                f"nn.Linear layer of {type(module).__name__} has one"
            )
        return instance

    def _check_no_module_params(self):
        """Refuse ``module_params`` beside a module instance, which ignores them."""
        if self.module_params:
            raise ValueError(
                "module_params only applies when module is a class; got an "
                "instance"
            )

    def _construct(self, seed):
        """An instance of the module class, its constructor's failure named."""
        with seeded_torch(seed, torch.device("cpu")):
            try:
                return self.module(**(self.module_params or {}))
            except TypeError as exc:
                raise ConstructorRefused(
                    f"{self.module.__name__}(**module_params) failed: {exc}"
                ) from None
            except RuntimeError as exc:  # torch's, from inside the constructor
                raise ValueError(
                    f"{self.module.__name__}(**module_params) failed: {exc}"
                ) from None

    def warn_if_ignored(self):
        """Say that ``module_params`` is ignored with the default MLP, and
        ``hidden_layer_sizes`` or ``activation`` with a module (a warning,
        not an error: a grid over ``module`` may include None, and files
        saved so must still load and resume)."""
        if self.ignored_mlp_params:
            names = " and ".join(self.ignored_mlp_params)
            plural = len(self.ignored_mlp_params) > 1
            warn_user(
                f"{names} {'are' if plural else 'is'} ignored: "
                f"{'they shape' if plural else 'it shapes'} the default MLP "
                "(module=None); with "
                f"module={getattr(self.module, '__name__', type(self.module).__name__)}"
                " the network is the module's (pass its sizes in module_params)",
                UserWarning,
            )
        if self.module is None and self.module_params:
            warn_user(
                f"module_params={self.module_params!r} is ignored: it applies when "
                "module is a class; the default MLP (module=None) takes "
                "hidden_layer_sizes and activation",
                UserWarning,
            )

    def build(self, input_shape, n_outputs, seed, probe, instance=None,
              check_batch_axis=True, probe_name=None):
        """A freshly initialized network, prepared for the functional core.

        Returns the module and its number of outputs. ``probe`` is one task's
        inputs, used to check what a custom module returns; ``probe_name``
        names them where one sample of them is refused. ``instance``: the
        module class already built at ``seed`` by :meth:`check`.
        """
        self.check()
        if self.module is None:
            if len(input_shape) != 1:
                raise ValueError(
                    "The default MLP takes 2-D input (n_samples, n_features), got "
                    f"samples of shape {tuple(input_shape)}; pass module=... for "
                    "N-D input"
                )
            hidden = tuple(self.hidden_layer_sizes)
            with seeded_torch(seed, torch.device("cpu")):
                try:
                    # float32 (sk_meta's), drawn as under the default dtype
                    module = MLP(input_shape[0], hidden, n_outputs, self.activation,
                                 concat_input=self.concat_input, dtype=torch.float32)
                except (RuntimeError, TypeError, OverflowError) as exc:
                    # torch's allocator, or sizes beyond its 64-bit counts
                    if not re.search("alloc|overflow", str(exc), re.IGNORECASE):
                        raise
                    widths = [input_shape[0], *hidden, n_outputs]
                    n_weights = sum((a + 1) * b for a, b in zip(widths, widths[1:]))
                    raise MemoryError(
                        f"hidden_layer_sizes={tuple(hidden)!r}: the default MLP "
                        f"would hold {n_weights:.3g} weights "
                        f"({4 * n_weights / 2**30:.3g} GiB in float32), more than "
                        "this machine could allocate"
                    ) from None
            return prepare_module(module), n_outputs
        if isinstance(self.module, type):
            module = self._construct(seed) if instance is None else instance
        else:
            module = self.module
        _check_trainable(module)
        frozen = [name for name, p in module.named_parameters() if not p.requires_grad]
        if frozen:
            warn_user(
                "module has parameters with requires_grad=False ("
                f"{', '.join(frozen[:5])}{', ...' if len(frozen) > 5 else ''}"
                "): sk_meta meta-trains every parameter of the module, and adapts "
                "them all in the inner loop unless adapt_layers='head', so these "
                "change too",
                FrozenParametersWarning,
            )
        original, module = module, prepare_module(module)
        # seeded: the probe initializes lazy layers (from random_state, as a
        # module class is), and dropout leaves the user's generator alone
        with seeded_torch(seed, torch.device("cpu")):
            return module, self._probe_outputs(module, probe, n_outputs,
                                               check_batch_axis, original=original,
                                               probe_name=probe_name)

    def _probe_outputs(self, module, probe, n_outputs, check_batch_axis=True,
                       original=None, probe_name=None):
        """Run the module once and check its output shape; return its width.
        ``check_batch_axis``: refuse outputs that lose their batch axis on one
        sample (not for a file saved before that check: predict refuses a
        wrong shape there)."""
        # a copy: the probe may be the caller's own array
        X = torch.tensor(np.asarray(probe, dtype=np.float32))
        version = X._version
        try:
            with torch.no_grad():
                out = module(X)
        except Exception as exc:
            if (probe_name is not None and len(X) == 1
                    and is_single_sample_batch_norm_error(exc)):
                raise ValueError(single_sample_message(probe_name)) from None
            raise ValueError(
                f"module failed on inputs of shape {tuple(X.shape)}: "
                f"{type(exc).__name__}: {exc}{_dtype_hint(module)}"
            ) from None
        # in the other mode too: inner steps run in train mode, predict in eval
        written_in_other_mode, one_sample = _extra_runs(module, X)
        if X._version != version or written_in_other_mode:
            # it would compound over the inner steps' forward passes, and
            # overwrite the inputs that the meta-gradient's backward pass reads
            raise ValueError(
                "module modifies its input in place (an nn.ReLU(inplace=True) "
                "or an in-place operation such as x.mul_() applied to the input "
                "itself"
                + ("" if X._version != version else
                   f", in {'eval' if module.training else 'train'} mode")
                + "); make its first operation out of place"
            )
        if not isinstance(out, torch.Tensor) or out.dim() not in (1, 2) or (
                len(out) != len(X)):
            raise ValueError(
                f"module must return a tensor of shape (n_samples, n_outputs); on "
                f"inputs of shape {tuple(X.shape)} it returned "
                f"{getattr(out, 'shape', type(out).__name__)}"
            )
        if check_batch_axis:
            _check_one_sample_output(one_sample, X, out)
        if not out.is_floating_point():
            raise ValueError(
                f"module must return floating-point outputs (logits or "
                f"predictions); on inputs of shape {tuple(X.shape)} it returned "
                f"{out.dtype}, through which no gradient flows"
            )
        _check_outputs_depend_on_params(module, X)
        check_functional_call_reaches_params(module, X, original)
        width = 1 if out.dim() == 1 else out.shape[1]
        if self.classification:
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
