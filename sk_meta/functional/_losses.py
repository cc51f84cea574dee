"""Task losses over a batch of tasks: the sum over tasks of each task's mean loss.

Summing (rather than averaging) over tasks makes the gradient with respect to
each task's own copy of the parameters exactly that task's gradient.
"""

import math

import torch
import torch.nn.functional as F

from sk_meta._checks import check_positive_int


def _check_tensor(outputs, what):
    if not isinstance(outputs, torch.Tensor):
        raise TypeError(f"{what} must be one tensor (the module must return one "
                        f"tensor), got {type(outputs).__name__}")


def cross_entropy_loss(logits, y, n_classes):
    """Sum over tasks of the mean cross-entropy of each task.

    Parameters
    ----------
    logits : Tensor of shape (B, n_samples, n_outputs)
    y : Tensor of shape (B, n_samples)
        Class codes in ``0 .. n_classes - 1``.
    n_classes : int
        Classes in these tasks; only the first ``n_classes`` outputs are used.
    """
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
    n_tasks, n_samples = y.shape
    logits = logits[..., :n_classes].reshape(n_tasks * n_samples, n_classes)
    return F.cross_entropy(logits, y.reshape(-1), reduction="sum") / n_samples


def mse_loss(outputs, y):
    """Sum over tasks of the mean squared error of each task.

    Parameters
    ----------
    outputs : Tensor of shape (B, n_samples, n_outputs)
    y : Tensor of shape (B, n_samples) or (B, n_samples, n_outputs)
    """
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
    return (outputs - y).square().sum() / y[0].numel()
