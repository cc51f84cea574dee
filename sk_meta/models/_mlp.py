"""The default network for tabular data, with a hand-batched forward pass."""

import numbers
from collections.abc import Iterable

import torch
from torch import nn

from sk_meta.models._checks import check_positive_ints

_ACTIVATIONS = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "logistic": torch.sigmoid,
    "identity": lambda x: x,
}


# the dtypes nn.Linear can initialize (not the float8 ones)
_FLOATING = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _floating_dtype(dtype):
    """A torch floating dtype from itself or its name (None stays None)."""
    if dtype is None or isinstance(dtype, torch.dtype):
        named = dtype
    elif isinstance(dtype, str):
        named = getattr(torch, dtype.removeprefix("torch."), None)
    else:
        named = None
    if dtype is not None and named not in _FLOATING:
        raise TypeError(f"dtype must be a torch floating dtype, such as "
                        f"torch.float32, or its name; got {dtype!r}")
    return named


class MLP(nn.Module):
    """Fully connected network ``n_features -> hidden_layer_sizes -> n_outputs``.

    Besides the usual ``forward``, it implements ``forward_batched``: the
    forward pass of many tasks at once, each with its own parameters, written
    with ``torch.baddbmm``. Meta-training and adaptation use it instead of
    ``torch.func.vmap``, which is slower for such small layers.

    Parameters
    ----------
    n_features : int
        Number of input features.
    hidden_layer_sizes : tuple of int, default=(64, 64)
        Width of each hidden layer.
    n_outputs : int, default=1
        Number of outputs (classes for a classifier).
    activation : {"relu", "tanh", "logistic", "identity"}, default="relu"
        Non-linearity after each hidden layer.
    concat_input : bool, default=False
        Feed the output layer the inputs beside the last hidden layer
        (``[X, h(X)]``, as in wide-and-deep networks). With a prototype
        head, the class prototypes then include the raw features, so a
        new task is never left with only features learned on other
        classes; this helps when meta-training classes are few.
    dtype : torch.dtype or str, default=None
        The weights' floating dtype (``torch.float32``, or its name,
        ``"float32"``, as a saved estimator's ``module_params`` hold it);
        None: torch's default. The estimators build their default network in
        float32, whatever the default (the same weights for a seed under
        ``torch.set_default_dtype(torch.float64)``).

    Examples
    --------
    >>> import torch
    >>> from sk_meta.models import MLP
    >>> net = MLP(3, (8,), n_outputs=2)
    >>> net(torch.zeros(5, 3)).shape
    torch.Size([5, 2])
    """

    def __init__(self, n_features, hidden_layer_sizes=(64, 64), n_outputs=1,
                 activation="relu", concat_input=False, dtype=None):
        super().__init__()
        if isinstance(hidden_layer_sizes, (str, numbers.Integral)) or not isinstance(
                hidden_layer_sizes, Iterable):
            raise ValueError("hidden_layer_sizes must be a sequence of positive "
                             f"integers, such as (64, 64); got {hidden_layer_sizes!r}")
        hidden_layer_sizes = tuple(hidden_layer_sizes)
        sizes_named = {f"hidden_layer_sizes[{i}]": size
                       for i, size in enumerate(hidden_layer_sizes)}
        check_positive_ints(n_features=n_features, n_outputs=n_outputs, **sizes_named)
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}"
            )
        self.activation = activation
        dtype = _floating_dtype(dtype)
        # without hidden layers the output layer sees the inputs already
        self.concat_input = bool(concat_input) and len(hidden_layer_sizes) > 0
        sizes = [n_features, *hidden_layer_sizes]
        layers = [nn.Linear(n_in, n_out, dtype=dtype)
                  for n_in, n_out in zip(sizes[:-1], sizes[1:])]
        head_width = sizes[-1] + (n_features if self.concat_input else 0)
        self.layers = nn.ModuleList([*layers,
                                     nn.Linear(head_width, n_outputs, dtype=dtype)])

    def forward(self, X):
        """Outputs of ``X`` of shape ``(n_samples, n_features)``."""
        activation = _ACTIVATIONS[self.activation]
        hidden = X
        for layer in self.layers[:-1]:
            hidden = activation(layer(hidden))
        if self.concat_input:
            hidden = torch.cat([X, hidden], dim=-1)
        return self.layers[-1](hidden)

    def features_batched(self, params, X):
        """The last hidden layer's activations for ``B`` tasks at once.

        Parameters
        ----------
        params : dict of str to Tensor
            This module's parameters by name, each with a leading task
            dimension ``B`` (the output layer's are not used).
        X : Tensor of shape (B, n_samples, n_features)

        Returns
        -------
        features : Tensor of shape (B, n_samples, n_head_inputs)
            The last hidden layer (after ``X`` with ``concat_input``), or
            ``X`` itself when there is no hidden layer.
        """
        activation = _ACTIVATIONS[self.activation]
        hidden = X
        for i in range(len(self.layers) - 1):
            hidden = activation(torch.baddbmm(
                params[f"layers.{i}.bias"].unsqueeze(1), hidden,
                params[f"layers.{i}.weight"].transpose(1, 2)))
        if self.concat_input:
            hidden = torch.cat([X, hidden], dim=-1)
        return hidden

    def forward_batched(self, params, X):
        """Forward pass of ``B`` tasks, each with its own parameters.

        Parameters
        ----------
        params : dict of str to Tensor
            This module's parameters by name, each with a leading task
            dimension ``B``.
        X : Tensor of shape (B, n_samples, n_features)
            The inputs of each task.

        Returns
        -------
        outputs : Tensor of shape (B, n_samples, n_outputs)
        """
        X = self.features_batched(params, X)
        last = len(self.layers) - 1
        # out = bias + X @ weight.T, for every task at once
        return torch.baddbmm(params[f"layers.{last}.bias"].unsqueeze(1), X,
                             params[f"layers.{last}.weight"].transpose(1, 2))
