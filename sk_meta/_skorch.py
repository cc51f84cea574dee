"""Hand an adapted or meta-learned network over to skorch."""

import copy

import torch
from sklearn.exceptions import NotFittedError
from skorch import NeuralNetClassifier, NeuralNetRegressor
from torch import nn

from sk_meta._errors import warn_user
from sk_meta._torch_utils import class_logits, resolve_device
from sk_meta.functional._forward import (
    has_batch_norm,
    outputs_beside_support,
    runs_beside_support,
)


class FirstOutputs(nn.Module):
    """The first ``n_outputs`` outputs of ``module`` (a task with fewer classes).

    With ``class_codes`` (a fit in which classes had ``sample_weight`` 0),
    output ``j`` is class ``class_codes[j]`` of ``n_outputs``, and the other
    classes get a logit of -inf (probability 0), as the estimator gives them.
    """

    def __init__(self, module, n_outputs, class_codes=None):
        super().__init__()
        self.module = module
        self.n_outputs = n_outputs
        self.class_codes = class_codes

    def forward(self, X):
        return class_logits(self.module(X), self.n_outputs, self.class_codes)


class BesideSupport(nn.Module):
    """A network with BatchNorm that predicts as the estimator does.

    In eval mode (skorch's ``predict``), a sample is run beside the support
    set of ``fit`` when ``transductive`` is off or when it comes alone, as
    the estimator runs it, instead of being normalized with the statistics
    of skorch's batch. In train mode (``partial_fit``) it is the network
    itself. The support set is a buffer: it moves and saves with the net,
    and is not trained.
    """

    def __init__(self, module, support_X, transductive):
        super().__init__()
        self.module = module
        self.transductive = transductive
        self.register_buffer("support_X", support_X)

    def forward(self, X):
        if self.training or not runs_beside_support(self.module, self.transductive,
                                                    X.shape[0]):
            return self.module(X)
        return outputs_beside_support(
            self.module, dict(self.module.named_buffers()),
            dict(self.module.named_parameters()), self.support_X, X)


def to_skorch(estimator, **net_params):
    """A skorch net holding a copy of ``estimator``'s network, ready to train.

    See :meth:`BaseMetaEstimator.to_skorch`.
    """
    fit = estimator.__dict__.get("_fit")  # None before fit
    if getattr(estimator.__dict__.get("_meta"), "averaged_with", None) is not None:
        raise ValueError(
            f"{type(estimator).__name__} averages the probabilities of two "
            "networks (hidden_layer_sizes='auto' chose the meta-trained MLP and "
            "the pretrained one), and a skorch net holds one; meta-train with "
            "hidden_layer_sizes=(64, 64) to export the meta-trained MLP alone")
    if fit is not None:
        module, params = fit.module, estimator.params_
    elif estimator._is_meta_fitted():
        module, params = estimator.module_, estimator.meta_params_
        if estimator.head_init != "meta":
            warn_user(
                f"{type(estimator).__name__} is meta-trained but not adapted: with "
                f"head_init={estimator.head_init!r} the output layer is built from "
                "a task's support set by fit, so the exported one is not a "
                "trained classifier (call fit first to export the adapted "
                "network)", UserWarning)
    else:
        raise NotFittedError(
            f"This {type(estimator).__name__} instance has neither been meta-fitted "
            "nor fitted; call meta_fit or fit before to_skorch"
        )
    module = copy.deepcopy(module).cpu()
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(params[name].detach().cpu())
    net_params.setdefault("device", str(resolve_device(estimator.device)))
    if fit is not None and has_batch_norm(module):
        # a copy: a change to the net must not reach the estimator
        module = BesideSupport(module, torch.tensor(fit.support_X),
                               bool(estimator.transductive))
        if estimator.transductive and "batch_size" not in net_params:
            # the estimator normalizes all the rows of one predict call together
            net_params.setdefault("iterator_valid__batch_size", -1)
    if estimator._is_classifier():
        n_classes = (len(estimator.classes_) if hasattr(estimator, "classes_")
                     else estimator.meta_n_outputs_)
        n_outputs = fit.n_outputs if fit is not None else estimator.meta_n_outputs_
        class_codes = fit.class_codes if fit is not None else None
        if class_codes is not None or n_outputs != n_classes:
            module = FirstOutputs(module, n_classes, class_codes)
        net_params.setdefault("criterion", nn.CrossEntropyLoss)
        net = NeuralNetClassifier(module, **net_params)
    else:
        net_params.setdefault("criterion", nn.MSELoss)
        net = NeuralNetRegressor(module, **net_params)
    return net.initialize()
