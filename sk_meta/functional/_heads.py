"""The output layer: finding it in a network, and starting it per task.

ANIL adapts only the output layer, the zeroing trick starts it at zero for
every task, and ProtoMAML starts it from the class prototypes of the
support set. All three need the network split into a body (features) and a
final linear layer, which :func:`find_output_layer` finds and checks.
"""

import copy
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from sk_meta._checks import check_positive_int
from sk_meta.functional._attention import with_math_attention
from sk_meta.functional._forward import batched_forward, eval_mode
from sk_meta.functional._losses import (
    check_code_range,
    check_sample_weight_shape,
    class_fractions,
)


class OutputLayer(NamedTuple):
    """A network seen as ``outputs = features(X) @ weight.T + bias``.

    ``weight`` and ``bias`` are parameter names (``bias`` is None when the
    layer has none); ``features(params, X)`` runs the network without its
    output layer on a batch of tasks (``params`` may hold the output
    layer's parameters too; they are ignored).

    Parameters
    ----------
    weight : str
        Name of the output layer's weight, of shape ``(n_outputs, n_hidden)``.
    bias : str or None
        Name of its bias, or None.
    features : callable
        ``features(params, X) -> Tensor of shape (B, n, n_hidden)``.
    """

    weight: str
    bias: str | None
    features: object


_OPTIONS = ("head_init='prototype' (the classifiers' default) or 'zero', and "
            "adapt_layers='head',")
_OTHERWISE = "for this network, pass head_init='meta' and adapt_layers='all'"


def check_has_linear_layer(module):
    """Refuse a module with no ``nn.Linear`` layer for the options that
    split off the output layer (it needs no inputs: checked before any task
    is drawn)."""
    if not any(isinstance(m, nn.Linear) for m in module.modules()):
        raise ValueError(
            f"{type(module).__name__} has no nn.Linear layer: {_OPTIONS} need a "
            f"network whose last operation is an nn.Linear layer; {_OTHERWISE}"
        )


def _last_linear(module, probe):
    """The ``nn.Linear`` layer that ``module`` applies last to ``probe`` (the
    order of registration need not be the order of calls), with its name."""
    names = {m: name for name, m in module.named_modules() if isinstance(m, nn.Linear)}
    calls = []  # (layer, its output), in the order of the calls
    def record(layer, inputs, output):
        calls.append((layer, output))

    hooks = [m.register_forward_hook(record) for m in names]
    returned = None
    try:
        with eval_mode(module), torch.no_grad():
            returned = module(probe)
    except Exception:  # the split check below reports a failing module
        calls.clear()
    finally:
        for hook in hooks:
            hook.remove()
    # the layer whose output the module returns; else the last one called (a
    # layer called after the head, whose output is dropped, is not the head)
    returning = [m for m, output in calls if output is returned]
    layer = (returning or [m for m, _ in calls] or list(names))[-1]
    called = {m for m, _ in calls}
    # layers whose weights a forward applies itself (F.linear(x, self.out.weight))
    # never run as modules: the hook cannot see them
    uncalled = [name for m, name in names.items() if calls and m not in called]
    return names[layer], layer, uncalled


def find_output_layer(module, strategy, probe):
    """Split ``module`` into a body and its final ``nn.Linear`` layer.

    The output layer is the ``nn.Linear`` submodule the module applies last
    to ``probe`` (whatever the order it was registered in); the split is
    checked on ``probe``: the module's outputs must equal that layer applied
    to the body's 2-D features.

    Parameters
    ----------
    module : torch.nn.Module
        The network (as returned by :func:`prepare_module`).
    strategy : {"native", "vmap", "loop"}
        How the body runs a batch of tasks (``"native"`` uses the module's
        ``features_batched`` when it has one).
    probe : Tensor of shape (n_samples, ...)
        Inputs of one task.

    Returns
    -------
    OutputLayer

    Raises
    ------
    ValueError
        When the module has no ``nn.Linear`` layer, its output is not that
        layer applied last to 2-D features, or that layer's weight is
        computed (a parametrization such as ``weight_norm``).
    """
    check_has_linear_layer(module)
    if not isinstance(probe, torch.Tensor):
        raise TypeError(f"probe must be a tensor, got {type(probe).__name__}")
    name, layer, uncalled = _last_linear(module, probe)
    try:
        return _split_at(module, strategy, probe, name, layer)
    except ValueError:
        scripted = [n for n, m in module.named_modules()
                    if n and isinstance(m, torch.jit.ScriptModule)]
        if scripted:
            # its layers are no nn.Linear modules: another layer was checked
            raise ValueError(
                f"{_OPTIONS} need the network's output layer as an nn.Linear "
                f"module; {scripted[-1]} is a TorchScript module, whose layers "
                "can be neither found nor split off: script the body alone, or "
                f"{_OTHERWISE}") from None
        uncalled = [n for n in uncalled if _weight_is_used(module, n, probe)]
        if not uncalled:
            raise
        # the layer checked was the wrong one: say why it was picked
        raise ValueError(
            f"{_OPTIONS} need the network's last nn.Linear layer, called as a "
            f"module; {uncalled[0] if len(uncalled) == 1 else uncalled} never "
            "ran as one on a probe batch. A forward that applies a layer's "
            "weight itself (F.linear(x, self.out.weight, self.out.bias)) hides "
            f"the layer: call it (self.out(x)); {_OTHERWISE}") from None


def _weight_is_used(module, name, probe):
    """Whether the outputs change with the weight of the layer ``name`` (a
    layer that never ran as a module may be unused, or applied through
    F.linear)."""
    prefix = f"{name}." if name else ""
    params = dict(module.named_parameters())
    if f"{prefix}weight" not in params:
        return False
    try:
        with eval_mode(module), torch.no_grad():
            before = module(probe)
            moved = {**params, f"{prefix}weight": params[f"{prefix}weight"] * 1.5 + 0.1}
            after = functional_call(module, moved, (probe,))
        return not torch.equal(before, after)
    except Exception:  # noqa: BLE001 - then the first error stands
        return False


def _split_at(module, strategy, probe, name, layer):
    """The OutputLayer of ``module`` at its ``nn.Linear`` layer ``name``,
    checked on ``probe``."""
    prefix = f"{name}." if name else ""
    weight = f"{prefix}weight"
    bias = f"{prefix}bias" if layer.bias is not None else None
    # whichever layer was registered first (named_parameters names a tied
    # tensor once)
    shared = [f"{owner}.{key}" if owner else key
              for owner, m in module.named_modules()
              for key, p in m._parameters.items()
              if p is layer.weight and m is not layer]
    if shared:
        raise ValueError(
            f"{_OPTIONS} need the last nn.Linear layer ({name}) to own its weight; "
            f"it shares it with {shared[0]} (tied weights); {_OTHERWISE}"
        )
    if weight not in dict(module.named_parameters()):
        raise ValueError(
            f"{_OPTIONS} need the last nn.Linear layer ({name}) to hold its weight "
            "as a parameter; it is computed (a parametrization such as weight_norm)"
            f"; {_OTHERWISE}"
        )
    if strategy == "native" and hasattr(module, "features_batched"):
        body = module
        features = module.features_batched
    else:
        if not name:  # the module is one nn.Linear: its features are its inputs
            body = nn.Identity()
        else:
            body = _with_layer_replaced(module, name, nn.Identity())
        body_forward = batched_forward(body, dict(body.named_buffers()),
                                       "loop" if strategy == "native" else strategy)
        body_names = {n for n, _ in body.named_parameters()}

        def features(params, X):
            return body_forward({n: p for n, p in params.items() if n in body_names},
                                X)

    try:
        _check_split(module, body, layer, features, probe, name)
    except ValueError:
        if not name or body is module:
            raise
        # the module reshapes the layer's output (``.view(-1)``, ``[:, 0]``):
        # without the layer that would reshape the features; read them as
        # the layer's input instead (the first error stands if this fails too)
        captured_body, captured = _captured_features(module, name, layer, strategy)
        try:
            _check_split(module, captured_body, layer, captured, probe, name)
        except (ValueError, RuntimeError):
            pass
        else:
            return OutputLayer(weight, bias, captured)
        raise
    return OutputLayer(weight, bias, features)


def _with_layer_replaced(module, name, replacement):
    """A copy of ``module`` with its submodule ``name`` replaced."""
    body = copy.deepcopy(module)
    parent_name, _, attribute = name.rpartition(".")
    parent = body.get_submodule(parent_name) if parent_name else body
    setattr(parent, attribute, replacement)
    return body


class _Capture(nn.Module):
    """Stands for the output layer: keeps its input, returns zeros of the
    layer's output shape, so that what the module does after it still runs."""

    def __init__(self, out_features):
        super().__init__()
        self.out_features = out_features
        self.last = None

    def forward(self, x):
        self.last = x
        return x.new_zeros((*x.shape[:-1], self.out_features))


def _captured_features(module, name, layer, strategy):
    """The body and ``features(params, X)`` that read the output layer's
    input on the way through the whole module."""
    capture = _Capture(layer.out_features)
    body = _with_layer_replaced(module, name, capture)
    buffers = dict(body.named_buffers())
    body_names = {n for n, _ in body.named_parameters()}

    def one_task(params, X):
        functional_call(body, (params, buffers), (X,))
        captured, capture.last = capture.last, None
        return captured

    vmapped = vmap(one_task, randomness="different")

    def mapped(params, X):
        # as batched_forward: vmap over a single task only adds overhead
        if strategy == "vmap" and X.shape[0] > 1:
            return vmapped(params, X)
        return torch.stack([one_task({n: p[i] for n, p in params.items()}, X[i])
                            for i in range(X.shape[0])])

    mapped = with_math_attention(mapped, body)

    def features(params, X):
        return mapped({n: p for n, p in params.items() if n in body_names}, X)

    return body, features


def _check_split(module, body, layer, features, probe, name):
    params = {n: p.detach().unsqueeze(0) for n, p in module.named_parameters()}
    own = {n for n, p in module.named_parameters()
           if p is layer.weight or p is layer.bias}
    with eval_mode(module, body):
        _compare_split(module, layer, features, probe, name, params)
        # a parameter applied after the layer (a learned scale that starts at
        # 1, a shift at 0) is the identity where it starts, not once
        # meta-training has moved it: the check is made again with the other
        # parameters moved, by the first move that keeps the outputs finite
        # (a parameter may have a domain: a rate in (0, 1) under a sqrt)
        for move in _MOVES:
            moved = {n: p if n in own else move(p) for n, p in params.items()}
            try:
                with torch.no_grad():
                    expected = functional_call(
                        module, {n: p[0] for n, p in moved.items()}, (probe,))
            except Exception:  # noqa: BLE001 - out of the module's domain
                continue
            if isinstance(expected, torch.Tensor) and bool(
                    torch.isfinite(expected).all()):
                _compare_split(module, layer, features, probe, name, moved,
                               expected=expected)
                break


# moves of the body's parameters, tried in turn, that take a scale of 1 and a
# shift of 0 off the identity
_MOVES = (lambda p: p * 1.25 + 0.05, lambda p: p * 0.8 + 0.01, lambda p: p * 0.8)


def _compare_split(module, layer, features, probe, name, params, expected=None):
    with torch.no_grad():
        if expected is None:
            expected = module(probe)
        if not isinstance(expected, torch.Tensor):
            raise TypeError(f"the module must return one tensor, got "
                            f"{type(expected).__name__}")
        try:
            hidden = features(params, probe.unsqueeze(0))[0]
        except RuntimeError as exc:  # the body does not run without that layer
            raise ValueError(
                f"{_OPTIONS} need the network without its last nn.Linear layer "
                f"({name}) to compute the features; it fails: {exc}; {_OTHERWISE}"
            ) from None
        if hidden.dim() != 2 or hidden.shape[-1] != layer.in_features:
            raise ValueError(
                f"{_OPTIONS} need the network's last nn.Linear layer ({name}) "
                f"to map 2-D features to the outputs; the features before it "
                f"have shape {tuple(hidden.shape)}; {_OTHERWISE}"
            )
        try:
            recomposed = F.linear(hidden, layer.weight, layer.bias)
        except RuntimeError as exc:  # the body casts or reshapes before that layer
            raise ValueError(
                f"{_OPTIONS} need the features before the network's last "
                f"nn.Linear layer ({name}) to feed it as they are; they do not: "
                f"{exc}; {_OTHERWISE}"
            ) from None
    if expected.dim() == 1 and recomposed.shape == (len(expected), 1):
        recomposed = recomposed[:, 0]  # one output as (n,): as mse_loss reads it
    scale = float(torch.nan_to_num(expected.abs(), nan=0.0, posinf=0.0).max()
                  .clamp_min(1.0))
    if (expected.shape != recomposed.shape or expected.dtype != recomposed.dtype
            or not torch.allclose(expected, recomposed, rtol=1e-4,
                                  atol=1e-5 * scale, equal_nan=True)):
        raise ValueError(
            f"{_OPTIONS} need the network's output to be its last nn.Linear "
            f"layer ({name}) applied last; {type(module).__name__} does something "
            f"after it; {_OTHERWISE}"
        )


def linear_head(weight, bias, features):
    """``features @ weight.T + bias`` for a batch of tasks.

    Parameters
    ----------
    weight : Tensor of shape (B, n_outputs, n_features)
    bias : Tensor of shape (B, n_outputs) or None
    features : Tensor of shape (B, n_samples, n_features)

    Returns
    -------
    outputs : Tensor of shape (B, n_samples, n_outputs)
    """
    _check_head_shapes(weight, bias, features)
    if bias is None:
        return torch.bmm(features, weight.transpose(1, 2))
    return torch.baddbmm(bias.unsqueeze(1), features, weight.transpose(1, 2))


def _check_head_shapes(weight, bias, features):
    """Shapes only (values are not read: no device sync in the inner loop)."""
    if weight.dim() != 3 or features.dim() != 3:
        raise ValueError(
            "linear_head takes a batch of tasks: weight of shape (B, n_outputs, "
            "n_features) and features of shape (B, n_samples, n_features); got "
            f"{tuple(weight.shape)} and {tuple(features.shape)}"
        )
    if weight.shape[0] != features.shape[0] or weight.shape[2] != features.shape[2]:
        raise ValueError(
            f"weight of shape {tuple(weight.shape)} does not fit features of shape "
            f"{tuple(features.shape)}: they need the same number of tasks and of "
            "features"
        )
    if bias is not None and tuple(bias.shape) != tuple(weight.shape[:2]):
        raise ValueError(f"bias must have shape {tuple(weight.shape[:2])} (B, "
                         f"n_outputs), got {tuple(bias.shape)}")


def zero_head(weight, bias, n_tasks):
    """The zeroing trick's start: an all-zero output layer for every task.

    Parameters
    ----------
    weight, bias : Tensor
        The output layer's parameters (no task dimension; ``bias`` may be
        None), giving shapes, dtype and device.
    n_tasks : int

    Returns
    -------
    weight, bias : Tensor
        Zeros with a leading task dimension (``bias`` None if it was).
    """
    n_tasks = check_positive_int(n_tasks, "n_tasks")
    zero_weight = weight.new_zeros((n_tasks, *weight.shape))
    zero_bias = None if bias is None else bias.new_zeros((n_tasks, *bias.shape))
    return zero_weight, zero_bias


def prototype_head(features, y, n_outputs, scale=1.0, *, sample_weight=None):
    """ProtoMAML's start: the output layer of a nearest-prototype classifier.

    With ``c_k`` the mean support feature of class ``k``, the logits
    ``-||f - c_k||²`` equal ``f · 2c_k - ||c_k||²`` up to a term that is the
    same for every class, so ``w_k = 2 c_k`` and ``b_k = -||c_k||²``
    (Triantafillou et al., 2020). ``scale`` multiplies both, and so the
    logits: the metric scaling of Oreshkin et al. (2018). Below 1 the
    starting classifier is less sure of itself, so the gradient steps that
    follow still have a support loss to reduce. Rows of classes absent from
    a task (or of weight 0) are zero. The result is differentiable with
    respect to ``features``. ProtoMAML adapts it as a parameter of its own:
    pass it to :func:`adapt` with the body's parameters, so that the inner
    gradients do not flow back through the prototypes, while the
    meta-gradient does.

    Parameters
    ----------
    features : Tensor of shape (B, n_samples, n_features)
    y : Tensor of shape (B, n_samples)
        Class codes in ``0 .. n_outputs - 1``.
    n_outputs : int
    scale : float, default=1.0
        Factor of the weights and biases.
    sample_weight : Tensor of shape (B, n_samples), default=None
        Non-negative weights of the samples: the prototypes are weighted
        means (integer weights act as repeated samples).

    Returns
    -------
    weight : Tensor of shape (B, n_outputs, n_features)
    bias : Tensor of shape (B, n_outputs)
    """
    n_outputs = _check_prototype_inputs(features, y, n_outputs)
    # one_hot's "Class values must be smaller than num_classes" names no argument
    check_code_range(y, n_outputs, "n_outputs")
    check_sample_weight_shape(sample_weight, y.shape)
    return _prototype_weights(features, y, n_outputs, scale, sample_weight)


def prototype_head_of_valid_codes(features, y, n_outputs, scale=1.0,
                                  sample_weight=None):
    """:func:`prototype_head` for codes known to lie in ``0 .. n_outputs -
    1`` and weights known to fit them (the estimators' own): no range
    check, which waits for the device."""
    n_outputs = _check_prototype_inputs(features, y, n_outputs)
    return _prototype_weights(features, y, n_outputs, scale, sample_weight)


def _check_prototype_inputs(features, y, n_outputs):
    n_outputs = check_positive_int(n_outputs, "n_outputs")
    if features.dim() != 3 or y.dim() != 2 or y.shape != features.shape[:2]:
        raise ValueError(
            "prototype_head takes features of shape (B, n_samples, n_features) and "
            "y of shape (B, n_samples); got "
            f"{tuple(features.shape)} and {tuple(y.shape)}"
        )
    if y.dtype != torch.long:
        raise TypeError(f"y must hold class codes as int64 (torch.long), got {y.dtype}")
    if not features.is_floating_point():
        raise TypeError(f"features must be floating point, got {features.dtype}")
    return n_outputs


def _prototype_weights(features, y, n_outputs, scale, sample_weight=None):
    one_hot = F.one_hot(y, n_outputs).to(features.dtype)      # (B, n, K)
    if sample_weight is None:
        counts = one_hot.sum(1).clamp_min(1.0)                # (B, K)
        prototypes = torch.bmm(one_hot.transpose(1, 2), features) / counts.unsqueeze(-1)
    else:  # weighted means: each sample's share of its class (a class of weight 0: 0)
        fractions, _ = class_fractions(sample_weight.to(features.dtype), y, n_outputs)
        prototypes = torch.bmm((one_hot * fractions.unsqueeze(-1)).transpose(1, 2),
                               features)
    return 2 * scale * prototypes, -scale * prototypes.square().sum(-1)
