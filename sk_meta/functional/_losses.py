"""Task losses over a batch of tasks: the sum over tasks of each task's mean loss.

Summing (rather than averaging) over tasks makes the gradient with respect to
each task's own copy of the parameters exactly that task's gradient.
"""

import functools
import math

import torch
import torch.nn.functional as F

from sk_meta._checks import check_positive_int


def _check_tensor(outputs, what):
    if not isinstance(outputs, torch.Tensor):
        raise TypeError(f"{what} must be one tensor (the module must return one "
                        f"tensor), got {type(outputs).__name__}")


def cross_entropy_loss(logits, y, n_classes, *, balanced=False, sample_weight=None):
    """Sum over tasks of the mean cross-entropy of each task.

    Parameters
    ----------
    logits : Tensor of shape (B, n_samples, n_outputs)
    y : Tensor of shape (B, n_samples)
        Class codes in ``0 .. n_classes - 1``.
    n_classes : int
        Classes in these tasks; only the first ``n_classes`` outputs are used.
    balanced : bool, default=False
        Weight each sample by ``n_samples / (n_present * count)`` (``count``:
        the samples of its class in its task, ``n_present``: the classes the
        task holds), as scikit-learn's ``class_weight="balanced"``: every
        class weighs the same in each task's mean. With as many samples of
        every class the weights are 1 and the loss is the plain mean.
    sample_weight : Tensor of shape (B, n_samples), default=None
        Non-negative weights of the samples: each task's loss is their
        weighted mean (integer weights act as repeated samples). With
        ``balanced``, each class's weighted mean counts alike (a class whose
        weights are all 0 counts as absent).
    """
    n_classes = _check_logits_and_codes(logits, y, n_classes)
    # torch's "Target 3 is out of bounds" names no argument (and on a GPU it
    # is a device-side assert)
    check_code_range(y, n_classes, "n_classes")
    check_sample_weight_shape(sample_weight, y.shape)
    return _checked_cross_entropy(logits, y, n_classes, balanced, sample_weight)


def check_sample_weight_shape(sample_weight, shape, read_values=True):
    """Refuse sample weights that are not a floating tensor of ``shape``
    ((B, n_samples): one weight per sample of each task), or, with
    ``read_values`` and where they can be read, that are negative or not
    finite."""
    if sample_weight is None:
        return
    if not isinstance(sample_weight, torch.Tensor):
        raise TypeError("sample_weight must be a tensor of shape (B, n_samples), "
                        f"got {type(sample_weight).__name__}")
    if tuple(sample_weight.shape) != tuple(shape):
        raise ValueError(f"sample_weight must have the shape (B, n_samples) "
                         f"{tuple(shape)}, got {tuple(sample_weight.shape)}")
    if not sample_weight.is_floating_point():
        raise TypeError(f"sample_weight must be floating point, got "
                        f"{sample_weight.dtype}")
    if not read_values or not sample_weight.numel() or torch.compiler.is_compiling():
        return
    try:  # vmap's batched weights cannot be read back
        valid = bool(((sample_weight >= 0) & torch.isfinite(sample_weight)).all())
    except RuntimeError:
        return
    if not valid:
        raise ValueError("sample_weight must hold finite, non-negative weights")


def _scaled_weights(sample_weight, dtype):
    """The weights in ``dtype`` or wider, over each task's largest (a float16
    or huge float32 sum overflows; a task of weight 0 stays 0)."""
    weights = sample_weight.to(torch.promote_types(sample_weight.dtype, dtype))
    largest = weights.amax(1, keepdim=True)
    return weights / torch.where(largest > 0, largest, 1.0)


def _task_fractions(sample_weight, dtype):
    """Each task's weights over their sum (0 in a task of weight 0: it adds
    nothing)."""
    weights = _scaled_weights(sample_weight, dtype)
    total = weights.sum(1, keepdim=True)
    return weights / torch.where(total > 0, total, 1.0)


def class_fractions(weights, y, n_classes):
    """Each sample's weight over its class's sum in its task, (B, n_samples),
    and the classes' sums, (B, n_classes). Ratios within a class: a class of
    one tiny (subnormal) weight still has the fraction 1."""
    one_hot = (y.unsqueeze(-1) == torch.arange(n_classes, device=y.device)).to(
        weights.dtype)
    class_sums = (one_hot * weights.unsqueeze(-1)).sum(1)         # (B, n_classes)
    per_sample = class_sums.gather(1, y)                          # (B, n_samples)
    # a sample of a class of weight 0 has weight 0 itself
    return weights / torch.where(per_sample > 0, per_sample, 1.0), class_sums


def check_code_range(y, n_codes, name):
    """Refuse codes of ``y`` outside ``0 .. n_codes - 1`` (``name``: the
    argument that gives ``n_codes``), where they can be read."""
    code_range = _code_range(y)
    if code_range is not None and (code_range[0] < 0 or code_range[1] >= n_codes):
        raise ValueError(f"y must hold class codes in 0 .. {n_codes - 1} "
                         f"({name}={n_codes}); found codes from "
                         f"{code_range[0]} to {code_range[1]}")


def _code_range(y):
    """The lowest and highest code of ``y``; None where they cannot be read:
    no code, or while compiling or under ``vmap`` (a check there would break
    the graph or fail)."""
    if not y.numel() or torch.compiler.is_compiling():
        return None
    try:
        return tuple(int(v) for v in torch.aminmax(y.detach()))
    except RuntimeError:  # vmap's batched codes cannot be read back
        return None


def cross_entropy_of_valid_codes(logits, y, n_classes, *, balanced=False,
                                 sample_weight=None):
    """:func:`cross_entropy_loss` for codes known to lie in ``0 .. n_classes
    - 1`` and weights known to fit them (the estimators' own): no range
    check, which waits for the device."""
    n_classes = _check_logits_and_codes(logits, y, n_classes)
    return _checked_cross_entropy(logits, y, n_classes, balanced, sample_weight)


def _checked_cross_entropy(logits, y, n_classes, balanced, sample_weight=None,
                           per_task=False):
    """The loss of logits and codes whose shapes and dtypes are checked
    (``per_task``: each task's, of shape (B,), instead of their sum)."""
    if not isinstance(balanced, bool):
        raise TypeError(f"balanced must be a bool, got {balanced!r}")
    y = y.long()  # int32 or uint8 codes as torch's cross-entropy takes them
    n_tasks, n_samples = y.shape
    logits = logits[..., :n_classes].reshape(n_tasks * n_samples, n_classes)

    def summed(losses):
        return losses.reshape(n_tasks, n_samples).sum(1) if per_task else losses.sum()

    if sample_weight is not None:
        losses = F.cross_entropy(logits, y.reshape(-1), reduction="none")
        weights = _normalized_sample_weights(sample_weight, y, n_classes, balanced,
                                             losses.dtype)
        # the loss keeps the logits' dtype, whatever the weights'
        return summed(losses * weights.reshape(-1).to(losses.dtype))
    if not balanced and not per_task:  # one fused reduction
        return F.cross_entropy(logits, y.reshape(-1), reduction="sum") / n_samples
    losses = F.cross_entropy(logits, y.reshape(-1), reduction="none")
    if balanced:
        losses = losses * balanced_weights(y, n_classes).reshape(-1).to(losses.dtype)
    return summed(losses) / n_samples


def _normalized_sample_weights(sample_weight, y, n_classes, balanced, dtype):
    """Per-sample weights summing to 1 in each task (0 in a task of weight
    0): ``w / sum(w)``, or with ``balanced`` ``w / (n_present * class_sum)``
    (``n_present``: the classes of positive weight)."""
    if not balanced:
        return _task_fractions(sample_weight, dtype)
    fractions, class_sums = class_fractions(_scaled_weights(sample_weight, dtype), y,
                                            n_classes)
    present = (class_sums > 0).sum(1, keepdim=True).to(fractions.dtype)
    return fractions / torch.where(present > 0, present, 1.0)


def _check_logits_and_codes(logits, y, n_classes):
    """Shapes and dtypes, before torch names neither; ``n_classes`` as an int."""
    _check_tensor(logits, "logits")
    n_classes = check_positive_int(n_classes, "n_classes")
    if y.dim() != 2 or logits.dim() != 3 or logits.shape[:2] != y.shape:
        raise ValueError(
            "cross_entropy_loss needs logits of shape (B, n_samples, n_outputs) and "
            f"y of shape (B, n_samples); got {tuple(logits.shape)} and {tuple(y.shape)}"
        )
    if logits.shape[-1] < n_classes:
        raise ValueError(f"n_classes={n_classes}, but the logits have "
                         f"{logits.shape[-1]} outputs")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"y must hold integer class codes, got {y.dtype}")
    return n_classes


def balanced_weights(y, n_classes):
    """Per-sample weights ``n_samples / (n_present * count)`` of each task's
    class codes ``y`` (shape (B, n_samples)): 1 where classes are balanced."""
    one_hot = y.unsqueeze(-1) == torch.arange(n_classes, device=y.device)
    counts = one_hot.sum(1, dtype=torch.float32)                 # (B, n_classes)
    present = (counts > 0).sum(1, keepdim=True, dtype=torch.float32)  # (B, 1)
    per_sample = counts.gather(1, y.long())                      # (B, n_samples)
    # one division of whole numbers: exactly 1 for a balanced task
    return y.shape[1] / (present * per_sample)


def is_balanced(y, n_classes):
    """Whether every task of ``y`` (class codes, (B, n_samples)) holds as many
    samples of each of its classes (weights all 1)."""
    return bool((balanced_weights(y, n_classes) == 1).all())


def mse_loss(outputs, y, *, sample_weight=None):
    """Sum over tasks of the mean squared error of each task.

    Parameters
    ----------
    outputs : Tensor of shape (B, n_samples, n_outputs)
    y : Tensor of shape (B, n_samples) or (B, n_samples, n_outputs)
    sample_weight : Tensor of shape (B, n_samples), default=None
        Non-negative weights of the samples: each task's loss is their
        weighted mean (integer weights act as repeated samples).
    """
    return _mse(outputs, y, sample_weight, read_weights=True)


def mse_of_valid_weights(outputs, y, *, sample_weight=None):
    """:func:`mse_loss` for weights known to be valid (the estimators' own):
    they are not read back, which waits for the device."""
    return _mse(outputs, y, sample_weight, read_weights=False)


def _mse(outputs, y, sample_weight, read_weights, per_task=False):
    _check_tensor(outputs, "outputs")
    if outputs.shape != y.shape:
        # one output: (B, n) on one side, (B, n, 1) on the other
        if outputs.shape[:2] != y.shape[:2] or math.prod(outputs.shape[2:]) != 1 or (
                math.prod(y.shape[2:]) != 1):
            raise ValueError(
                f"mse_loss needs outputs and targets of one shape, (B, n_samples) "
                f"or (B, n_samples, n_outputs); got {tuple(outputs.shape)} and "
                f"{tuple(y.shape)}"
            )
        outputs = outputs.reshape(y.shape)
    if sample_weight is None:
        squares = (outputs - y).square()
        if per_task:
            return squares.reshape(y.shape[0], -1).sum(1) / y[0].numel()
        return squares.sum() / y[0].numel()
    check_sample_weight_shape(sample_weight, y.shape[:2], read_weights)
    errors = (outputs - y).square().reshape(*y.shape[:2], -1).mean(-1)
    fractions = _task_fractions(sample_weight, errors.dtype).to(errors.dtype)
    weighted = errors * fractions
    return weighted.sum(1) if per_task else weighted.sum()


def task_losses(loss_fn, outputs, y):
    """Each task's loss, of shape (B,), in one pass where ``loss_fn`` is one
    of this module's losses (bare, or with keyword options bound by
    :func:`functools.partial`), whose value is their sum; None for another
    function (the caller then calls it on each task)."""
    options = {}
    if type(loss_fn) is functools.partial:  # a subclass may call something else
        if loss_fn.args:
            return None
        loss_fn, options = loss_fn.func, loss_fn.keywords
    if loss_fn in (mse_loss, mse_of_valid_weights):
        return _mse(outputs, y, options.get("sample_weight"),
                    read_weights=loss_fn is mse_loss, per_task=True)
    if loss_fn in (cross_entropy_loss, cross_entropy_of_valid_codes) and (
            "n_classes" in options):
        n_classes = _check_logits_and_codes(outputs, y, options["n_classes"])
        return _checked_cross_entropy(
            outputs, y, n_classes, options.get("balanced", False),
            options.get("sample_weight"), per_task=True)
    return None
