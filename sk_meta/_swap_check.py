"""Whether a custom module computes with the weights the functional core
swaps in.

Every inner step and every prediction runs the module through
``torch.func.functional_call`` at weights other than its own. A module that
reaches a parameter another way (a dict, list or closure holding it, a
weight cached when it switches to eval mode), or that recomputes a segment
in the backward pass (``torch.utils.checkpoint``), computes with its own
weights there, silently: the check compares it, once, with a copy that
holds the swapped weights.
"""

import copy
import re
import warnings

import torch
from torch.func import functional_call

from sk_meta._torch_utils import seeded_torch


def _moved(value):
    """Parameters moved off the module's own values, the same way every time
    (no draws): the functional core computes at weights other than the
    module's, and a module that reads its own would be seen there."""
    return value.detach() * 1.25 + 0.01


def _run(module, params, X, seed):
    """One seeded run in train mode (dropout masks repeat): the outputs, the
    gradients of their weighted sum for ``params`` (the module's own where
    None; zeros where a parameter is not used), the parameters the graph
    reaches besides, and the warnings said."""
    with seeded_torch(seed, torch.device("cpu")), torch.enable_grad(), \
            warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        out = module(X) if params is None else functional_call(module, params, (X,))
        inputs = dict(module.named_parameters()) if params is None else params
        others = [p for p in _parameters_reached(out)
                  if not any(p is q for q in inputs.values())]
        # weighted: a sum that no weight moves (softmax, layer norm outputs)
        # would give every gradient zero, and compare nothing
        weights = (torch.arange(out.numel()) % 7 + 1).reshape(out.shape).to(
            out.device, out.dtype)  # (counted as integers: float16 stops at 65504)
        grads = torch.autograd.grad((out * weights).sum(), list(inputs.values()),
                                    allow_unused=True)
    grads = {name: torch.zeros_like(p) if g is None else g
             for (name, p), g in zip(inputs.items(), grads)}
    # a copy: the module may keep its outputs as a buffer, restored later
    return out.detach().clone(), grads, others, [str(w.message) for w in said]


def _parameters_reached(out):
    """The ``nn.Parameter`` leaves of the autograd graph of ``out``."""
    reached, seen, nodes = [], set(), [out.grad_fn]
    while nodes:
        node = nodes.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        leaf = getattr(node, "variable", None)  # an AccumulateGrad node
        if isinstance(leaf, torch.nn.Parameter):
            reached.append(leaf)
        nodes.extend(child for child, _ in node.next_functions)
    return reached


def _eval_outputs(module, params, X):
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module.eval()
        return module(X) if params is None else functional_call(module, params, (X,))


def _same(a, b):
    try:  # (sparse gradients: no comparison, nothing refused)
        return a.shape == b.shape and bool(torch.allclose(a, b, rtol=1e-4, atol=1e-6))
    except (RuntimeError, NotImplementedError, TypeError):
        return True


_CHECKPOINTING = (
    "sk_meta adapts and meta-trains through torch.func.functional_call, whose "
    "swapped weights are gone when the backward pass recomputes a segment "
    "(torch.utils.checkpoint, reentrant or not), so the inner steps would take "
    "gradients at the wrong weights, or none; run the module without "
    "activation checkpointing"
)
_SWAPPED = (
    "sk_meta adapts and meta-trains through torch.func.functional_call, which "
    "swaps the registered parameters, so one that its forward reaches another "
    "way would never change"
)


def check_functional_call_reaches_params(module, X, original=None):
    """Refuse a module whose outputs or gradients at given weights are not
    those of the module holding them, in train or in eval mode, naming the
    parameter. ``original``: the module ``module`` was copied from (a
    closure in the copy holds the original's parameters)."""
    name = type(module).__name__
    owners = [module] if original is None else [module, original]
    try:  # one copy: a forward may leave tensors or update buffers on the module
        copied = copy.deepcopy(module).train()
    except Exception:  # refused later, with its own message
        return
    if _shares_tensors(copied, owners):
        return  # its __deepcopy__ shares them: moving them would move the user's
    start = {key: b.clone() for key, b in copied.named_buffers()}
    moved = {key: _moved(p).requires_grad_() for key, p in copied.named_parameters()}
    try:
        out, grads, others, said = _run(copied, moved, X, 0)
    except Exception as exc:  # noqa: BLE001 - refused later, with its own message
        if re.search("checkpoint|use_reentrant", str(exc)):
            raise ValueError(f"module ({name}) fails when its backward pass "
                             f"recomputes a segment: {_CHECKPOINTING}") from None
        return  # (BatchNorm on one sample, say: the probe did not fail)
    if any("None of the inputs have requires_grad=True" in text for text in said):
        raise ValueError(f"module ({name}) checkpoints a segment that gets no "
                         f"gradient: {_CHECKPOINTING}")
    _refuse_unswapped(name, others, copied, owners)
    try:
        eval_out = _eval_outputs(copied, moved, X).clone()
    except Exception:  # noqa: BLE001 - refused later, with its own message
        eval_out = None
    # the same copy now holds the moved weights, and its buffers as they
    # were: the reference (one copy at a time, for large networks' memory)
    reference = _holding(copied, moved, start)
    del moved
    try:
        expected_out, expected, _, _ = _run(reference, None, X, 0)
    except Exception:  # noqa: BLE001 - refused later, with its own message
        return
    differs = [key for key in expected
               if key in grads and not _same(grads[key], expected[key])]
    if differs or not _same(out, expected_out):
        _refuse_train_mode_difference(name, reference, start, X, (out, grads),
                                      (expected_out, expected), differs)
    elif eval_out is not None:
        _refuse_eval_mode_difference(name, eval_out, reference, X)


def _shares_tensors(copied, owners):
    """Whether the copy holds a parameter or buffer of ``owners``."""
    own = {id(t) for owner in owners
           for t in [*owner.parameters(), *owner.buffers()]}
    return any(id(t) in own for t in [*copied.parameters(), *copied.buffers()])


def _holding(module, moved, buffers):
    """``module`` (a private copy) in train mode, holding the ``moved``
    weights (where given) and the ``buffers`` it started from."""
    with torch.no_grad():
        for key, p in module.named_parameters():
            if moved is not None:
                p.copy_(moved[key])
            p.requires_grad_(True)
        # reassigned, not written into: a forward may have changed a buffer's
        # shape (a queue), or handed it out as its outputs
        for key, value in buffers.items():
            owner, _, attribute = key.rpartition(".")
            setattr(module.get_submodule(owner), attribute, value.clone())
    return module.train()


def _refuse_unswapped(name, others, copied, owners):
    """Refuse a parameter of the module that functional_call did not swap,
    among ``others``: held in a dict or a list (the copy's own), or in a
    closure (an owner's: deepcopy copies no function). Another module's (a
    frozen teacher outside it) is not the module's to train; nor, unseen, is
    a parameter that a clone's closure reads from the user's module."""
    if not others:
        return

    def among_others(owner):
        return [key for key, p in owner.named_parameters()
                if any(p is q for q in others)]

    held = among_others(copied)
    closed = [key for owner in owners for key in among_others(owner)]
    unregistered = [key for key, p in _held_unregistered(copied)
                    if any(p is q for q in others)]
    if unregistered and not held:
        raise ValueError(
            f"module ({name}) computes its outputs with parameter "
            f"{unregistered[0]!r}, which a plain list, tuple or dict holds "
            "without registering it: the module's parameters leave it out, so "
            "it would never adapt nor meta-train; hold it in an nn.ModuleList, "
            "nn.ModuleDict, nn.ParameterList or nn.ParameterDict (or, for a "
            "network not meant to train, such as a teacher, freeze it with "
            "requires_grad_(False))")
    if held or closed:
        which = (repr(held[0]) if held else
                 f"{closed[0]!r}, held in a closure or a lambda (which copying "
                 "the module does not copy),")
        raise ValueError(
            f"module ({name}) computes its outputs with parameter {which} other "
            f"than as registered: {_SWAPPED} (a dict, list or closure holding "
            "it); reach it through the module's attribute (self.<name>)")


_REGISTRIES = ("_parameters", "_buffers", "_modules")  # what torch registers


def _held_unregistered(module):
    """``(name, parameter)`` for the parameters that the plain lists, tuples
    and dicts among the module's attributes hold, directly or in modules
    (``self.layers = [nn.Linear(...)]``: not registered, so never trained)."""
    found = []
    for prefix, submodule in module.named_modules():
        for attribute, value in vars(submodule).items():
            if attribute in _REGISTRIES or not isinstance(value, (list, tuple, dict)):
                continue
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for index, item in items:
                where = f"{prefix + '.' if prefix else ''}{attribute}[{index!r}]"
                if isinstance(item, torch.nn.Parameter):
                    found.append((where, item))
                elif isinstance(item, torch.nn.Module):
                    found += [(f"{where}.{key}", p)
                              for key, p in item.named_parameters()]
    return found


def _refuse_eval_mode_difference(name, eval_out, reference, X):
    """predict runs in eval mode: a weight cached there (branches fused into
    one) would predict with the module's own. ``eval_out``: the swapped
    weights' outputs; ``reference`` holds them."""
    try:
        outputs = (_eval_outputs(reference, None, X), _eval_outputs(reference, None, X))
    except Exception:  # noqa: BLE001 - refused later, with its own message
        return
    if _same(eval_out, outputs[0]) or not _same(outputs[0], outputs[1]):
        return  # (or it draws in eval mode: nothing to compare)
    raise ValueError(
        f"module ({name}) computes other outputs in eval mode than the module "
        f"holding the same weights: {_SWAPPED}, and predict would run with "
        "weights it computed from its own (a weight cached or fused when it "
        "switches to eval mode); compute it in forward from the registered "
        "parameters")


def _refuse_train_mode_difference(name, reference, start, X, swapped_run,
                                  reference_run, differs):
    """Refuse the difference between the swapped run and the reference one,
    unless the reference, run once more on ``reference`` (holding the moved
    weights) from its ``start`` buffers, does not repeat itself (a module
    drawing from a generator of its own), or the moved weights left the
    module's range."""
    (out, grads), (expected_out, expected) = swapped_run, reference_run
    try:
        again_out, again, _, _ = _run(_holding(reference, None, start), None, X, 0)
    except Exception:  # noqa: BLE001 - refused later, with its own message
        return
    tensors = [out, expected_out, *grads.values(), *expected.values()]
    if not all(torch.isfinite(t).all() for t in tensors if not t.is_sparse):
        return  # moved weights out of the module's range (a log, say)
    if not _same(expected_out, again_out) or any(
            not _same(expected[key], again[key]) for key in expected):
        return  # nothing to compare
    # a parameter functional_call never reaches has no gradient there
    unreached = [key for key in differs
                 if not grads[key].any() and expected[key].any()]
    keys = ", ".join(repr(key) for key in (unreached or differs or ["?"])[:3])
    if not _same(out, expected_out):
        raise ValueError(
            f"module ({name}) computes its outputs with parameter {keys} other "
            f"than as registered: {_SWAPPED} (a dict or list holding it, an "
            "attribute set before registration); reach it through the "
            "module's attribute (self.<name>)")
    raise ValueError(
        f"module ({name}) gives gradients for parameters {keys} other than its "
        f"own weights would: {_CHECKPOINTING}")
