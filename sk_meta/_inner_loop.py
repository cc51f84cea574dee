"""The inner loop's one owner.

:class:`InnerLoopSettings` binds the estimator's inner-loop parameters once
(learning rates, steps with the meta-training override, inner optimizer,
first or second order, which layers adapt, how the output layer starts,
the multi-step loss); :class:`InnerLoop` runs them on a network, and is
what meta-training, validation, ``fit`` and ``predict`` all go through.
"""

import dataclasses
import functools
import math
import os
import threading
import weakref
from functools import partial

import numpy as np
import torch
from torch import nn

from sk_meta._compile import CompiledFunction, resolve_compile_mode
from sk_meta._head_choice import leave_one_shot_out, logistic_head
from sk_meta._network import is_linear_mlp, is_pretrained_choice
from sk_meta._torch_utils import mean_of_probabilities, single_sample_batch_norm_error
from sk_meta.functional import (
    TaskBatch,
    adapt,
    adapt_and_predict,
    batched_forward,
    choose_strategy,
    expand_params,
    find_output_layer,
    linear_head,
    maml_meta_loss,
    mse_loss,
    outputs_beside_support,
    reptile_meta_gradient,
    zero_head,
)
from sk_meta.functional._forward import runs_beside_support
from sk_meta.functional._heads import prototype_head_of_valid_codes
from sk_meta.functional._losses import (
    cross_entropy_of_valid_codes,
    is_balanced,
    mse_of_valid_weights,
    task_losses,
)
from sk_meta.functional._rng import forked_rng
from sk_meta.models import MLP

# On the CPU, vmap runs a convolution over many tasks as one grouped
# convolution, which slows down once its activations outgrow the caches:
# chunks of tasks keep each chunk's largest activation under this size
# (measured on conv-4 with 4 to 64 filters, 5-way 1-shot Omniglot).
_CPU_CONV_CHUNK_BYTES = 8 * 2**20
# MAML++ anneals its multi-step loss over the first tenth of training (10 of
# 100 epochs in its experiments), then keeps the last step's loss alone.
_MULTI_STEP_FRACTION = 0.1


def loss_for(n_classes, classification, y=None, class_weight=None, *,
             weighted=None, sample_weight=None):
    """The task loss: cross-entropy over ``n_classes`` outputs, or squared error.

    ``class_weight="balanced"`` with class codes ``y`` (the data of the inner
    steps: support sets, or Reptile's whole tasks) weighs every class of a
    task alike. A balanced task's weights are all 1, so its gradient is the
    plain mean's either way; on the CPU a batch of balanced tasks takes the
    plain formula (its loss too is bit-identical to before), and on a GPU,
    where checking would wait for the device, the weighted one.
    ``weighted``: that choice, made by :func:`weighs_classes` beforehand
    (outside a compiled function, where the check would break the graph).
    ``sample_weight``: ``fit``'s weights of the support samples, (B, n_samples).
    """
    if sample_weight is not None:  # fit's weighted support loss
        if not classification:
            return partial(mse_of_valid_weights, sample_weight=sample_weight)
        return partial(cross_entropy_of_valid_codes, n_classes=n_classes,
                       balanced=class_weight == "balanced",
                       sample_weight=sample_weight)
    if not classification:
        return mse_loss
    if weighted is None:
        weighted = weighs_classes(n_classes, y, class_weight)
    return partial(cross_entropy_of_valid_codes, n_classes=n_classes, balanced=weighted)


def weighs_classes(n_classes, y, class_weight):
    """Whether :func:`loss_for` weighs the classes of the tasks ``y``."""
    return class_weight == "balanced" and y is not None and (
        y.device.type != "cpu" or not is_balanced(y, n_classes))


def task_scores(outputs, batch, classification):
    """Per-task score: accuracy for classification, R² for regression; in
    float64 on the CPU, as ``score`` computes them (a float32 accuracy of
    8/27 is 0.2962963184, not 0.2962962963)."""
    outputs, y_query = outputs.detach().cpu().double(), batch.y_query.cpu()
    if classification:
        predicted = outputs[..., : batch.n_classes].argmax(-1)
        return (predicted == y_query).double().mean(1)
    y = y_query.double().reshape(batch.n_tasks, y_query.shape[1], -1)
    outputs = outputs.reshape(y.shape)
    residual = (y - outputs).square().sum(1)
    total = (y - y.mean(1, keepdim=True)).square().sum(1)
    # scikit-learn's r2_score, as score() gives it: per output, averaged; a
    # constant target (one query row, say) scores 1 if fitted exactly, else 0
    constant = total == 0
    r2 = torch.where(constant, (residual == 0).to(y.dtype),
                     1 - residual / torch.where(constant, 1.0, total))
    return r2.mean(1)


def multi_step_weights(n_steps, progress):
    """MAML++'s per-step loss weights at ``progress`` (0 to 1) of training.

    Uniform at the start; the weights of the steps before the last decay
    linearly to ``0.03 / n_steps`` over the first tenth of training while
    the last step's grows; from then on the last step alone counts (MAML++'s
    ``get_per_step_loss_importance_vector``).
    """
    if progress >= _MULTI_STEP_FRACTION:
        weights = torch.zeros(n_steps)
        weights[-1] = 1.0
        return weights
    epoch = progress / _MULTI_STEP_FRACTION  # 0 to 1 over the annealing
    decay = 1.0 / n_steps
    floor = 0.03 / n_steps
    weights = torch.full((n_steps,), 1.0 / n_steps)
    weights[:-1] = torch.clamp(weights[:-1] - epoch * decay, min=floor)
    weights[-1] = min(1.0 / n_steps + epoch * (n_steps - 1) * decay,
                      1.0 - (n_steps - 1) * floor)
    return weights


# prototype_scale="auto" with the prototype head: chosen on the few-shot
# tables of benchmarks/fidelity_tabular.py (FIDELITY.md, tenth run; for the
# MLP without hidden layers and the pretrained MLP, the eighth run)
AUTO_PROTOTYPE_SCALE = 0.3
AUTO_PROTOTYPE_SCALE_LINEAR = 0.1


def auto_prototype_scale(estimator, *, afresh=False):
    """What ``prototype_scale="auto"`` stands for with the prototype head:
    the scale the init was meta-trained at, else (``afresh``: a meta-training
    that starts a new init, or no init) ``AUTO_PROTOTYPE_SCALE``, or
    ``_LINEAR`` when the network is the default MLP without hidden layers
    or the pretrained MLP."""
    meta = None if afresh else estimator.__dict__.get("_meta")
    if meta is not None:
        # files written before the scale was recorded: "auto" was 0.3 then
        return (AUTO_PROTOTYPE_SCALE if meta.auto_prototype_scale is None
                else meta.auto_prototype_scale)
    if is_linear_mlp(estimator) or is_pretrained_choice(estimator, afresh=True):
        return AUTO_PROTOTYPE_SCALE_LINEAR
    return AUTO_PROTOTYPE_SCALE


def resolved_adapt_layers(estimator, *, afresh=False):
    """The layers the inner steps adapt: ``adapt_layers="auto"`` is
    ``"head"`` for the pretrained MLP (a logistic regression on its features,
    started from the class means), ``"all"`` otherwise."""
    if estimator.adapt_layers != "auto":
        return estimator.adapt_layers
    return "head" if is_pretrained_choice(estimator, afresh=afresh) else "all"


# head_solver="auto": the per-task choice of the output layer (logistic
# regression or the steps) on ReptileClassifier's pretrained MLP, where it was
# measured (FIDELITY.md, thirty-third run: +1.9 points on average at 5 shots
# over five tables, the 5-shot gaps to the best baseline on letter, flavia
# and movement_libras narrowed or closed); MAML's and FOMAML's defaults met
# their targets with the steps, and their pretrained MLP, averaged with the
# meta-trained one, was not measured with it
AUTO_HEAD_CHOICE_ALGORITHMS = ("reptile",)


def resolved_head_solver(estimator, *, afresh=False):
    """How the output layer adapts where it adapts alone: ``"auto"`` is
    ``"choose"`` on the pretrained MLP of ``AUTO_HEAD_CHOICE_ALGORITHMS``,
    ``"steps"`` otherwise (regressors have no choice: the steps)."""
    solver = getattr(estimator, "head_solver", "steps")
    if solver != "auto":
        return solver
    return ("choose" if estimator._algorithm in AUTO_HEAD_CHOICE_ALGORITHMS
            and is_pretrained_choice(estimator, afresh=afresh) else "steps")


def _resolve_prototype_scale(prototype_scale, head_init, auto):
    """The number ``prototype_scale`` stands for: ``"auto"`` is ``auto``
    with the prototype head and 1.0 (no scale) with any other, so changing
    ``head_init`` alone never trips the check below."""
    if prototype_scale == "auto":
        return auto if head_init == "prototype" else 1.0
    return float(prototype_scale)


def check_learned_rates(settings, lrs, params, *, trainable=None, learned_mode=None,
                        meta_training=False):
    """Raise a ValueError when ``settings`` cannot use the learned rates ``lrs``.

    ``learned_mode`` is the mode they were learned with (None in files
    written before it was recorded: it is then read from the rates' shapes).
    Refused: rates of the other learned mode, rates
    for fewer layers than ``trainable`` adapts (None: all of ``params``), and, to
    continue meta-training (``meta_training``), a switch between fixed and
    learned rates or per-step rates for another number of steps. Without
    this, the inner loop would read them wrongly or fail deep inside torch.
    """
    mode = settings.lr_mode
    again = "set it back, or meta_fit again with warm_start=False"
    if meta_training and (mode == "fixed") != (lrs is None):
        # the meta-optimizer's state holds the rates, or does not
        raise ValueError(
            f"inner_lr_mode={mode!r}, but the init was meta-trained "
            + ("with learned rates" if lrs is not None else "with fixed rates")
            + f" and meta-training continues where it stopped: {again}")
    if mode == "fixed" or lrs is None:
        return
    if learned_mode is None:
        per_step = all(rate.dim() == 1 for rate in lrs.values())
        per_weight = all(rate.shape == params[name].shape
                         for name, rate in lrs.items() if name in params)
        learned_mode = mode if per_step == per_weight else (
            "per_layer_step" if per_step else "per_parameter")
    if learned_mode != mode:
        raise ValueError(
            f"inner_lr_mode={mode!r}, but the init's rates (inner_lrs_) were "
            f"learned with inner_lr_mode={learned_mode!r}: {again}")
    missing = [name for name in (params if trainable is None else trainable)
               if name not in lrs]
    if missing:
        raise ValueError(
            f"adapt_layers={settings.adapt_layers!r} adapts {missing[0]!r}, which "
            "has no learned rate: the rates (inner_lrs_) were learned for the "
            f"output layer alone (adapt_layers='head'); {again}")
    if not (meta_training and mode == "per_layer_step"):
        return
    n_learned = next(iter(lrs.values())).shape[0]  # per-step rates: one per step
    if n_learned != settings.meta_steps:
        raise ValueError(
            f"meta-training would take {settings.meta_steps} inner steps "
            "(meta_inner_steps, or inner_steps where it is None), but the init's "
            f"per-step rates were learned for {n_learned}: {again}")


@dataclasses.dataclass(frozen=True)
class InnerLoopSettings:
    """Every inner-loop choice, bound once from an estimator's parameters."""

    algorithm: str                 # "maml" or "reptile"
    classification: bool
    lr: float
    steps: int                     # fit and validation
    meta_steps: int                # meta-training
    optimizer: str = "sgd"         # inner update rule (Reptile may use "adam")
    first_order: bool = False
    lr_mode: str = "fixed"
    adapt_layers: str = "all"
    head_init: str = "meta"
    prototype_scale: float = 1.0
    multi_step_loss: bool = False
    backtracking: bool = False     # fit and validation only
    transductive: bool = True
    class_weight: object = None    # classifiers: "balanced" or None
    head_solver: str = "steps"     # "steps" or "choose"; fit and validation only
    compile: object = False
    tasks_per_chunk: object = "auto"

    @classmethod
    def from_estimator(cls, estimator, *, check=True, afresh=False):
        """The settings of ``estimator``; raises for combinations that make no
        sense (unless ``check`` is False: ``predict`` needs only some of them,
        and a meta-training option set after ``fit`` must not stop it).
        ``afresh``: for a meta-training that starts a new init."""
        settings = cls(
            algorithm=estimator._algorithm,
            classification=estimator._is_classifier(),
            lr=float(estimator.inner_lr),
            steps=int(estimator.inner_steps),
            meta_steps=int(estimator.meta_inner_steps or estimator.inner_steps),
            optimizer=getattr(estimator, "inner_optimizer", "sgd"),
            first_order=bool(getattr(estimator, "first_order", False)),
            lr_mode=estimator.inner_lr_mode,
            adapt_layers=resolved_adapt_layers(estimator, afresh=afresh),
            head_init=estimator.head_init,
            prototype_scale=_resolve_prototype_scale(
                estimator.prototype_scale, estimator.head_init,
                auto_prototype_scale(estimator, afresh=afresh)),
            multi_step_loss=bool(estimator.multi_step_loss),
            backtracking=bool(estimator.backtracking),
            transductive=bool(estimator.transductive),
            class_weight=getattr(estimator, "class_weight", None),
            head_solver=resolved_head_solver(estimator, afresh=afresh),
            compile=estimator.compile,
            tasks_per_chunk=estimator.tasks_per_chunk,
        )
        if check:
            settings.check()
        return settings

    def check(self):
        if not self.classification and self.head_init != "meta":
            raise ValueError(
                f"head_init={self.head_init!r} is for classifiers (it starts the "
                "output layer from zeros or class prototypes); regressors take "
                "head_init='meta'"
            )
        if self.prototype_scale != 1.0 and self.head_init != "prototype":
            raise ValueError(
                f"prototype_scale={self.prototype_scale!r} scales the output layer "
                "that head_init='prototype' builds from class prototypes; with "
                f"head_init={self.head_init!r} it would do nothing: leave "
                "prototype_scale at 'auto' or 1.0"
            )
        if self.algorithm == "reptile" and self.lr_mode != "fixed":
            raise ValueError(
                f"inner_lr_mode={self.lr_mode!r} needs a meta-gradient with respect "
                "to the inner learning rates, which Reptile does not compute; use "
                "inner_lr_mode='fixed' or MAML"
            )
        if self.algorithm == "reptile" and self.multi_step_loss:
            raise ValueError(
                "multi_step_loss=True weights the query losses after each inner "
                "step, and Reptile has no query loss; use MAML"
            )
        if self.optimizer == "adam" and self.lr_mode != "fixed":
            raise ValueError(
                "learned inner learning rates need inner_optimizer='sgd'"
            )

    def large_prototype_scale(self):
        """``"prototype_scale (now s)"`` when a scale above 1 may be what made
        the steps diverge (it makes the starting logits larger), else None."""
        if self.head_init == "prototype" and self.prototype_scale > 1.0:
            return f"prototype_scale (now {self.prototype_scale:g})"
        return None

    def check_meta_training(self):
        """What meta-training refuses beyond :meth:`check` (``fit`` takes it)."""
        if self.meta_steps == 0:
            raise ValueError(
                "inner_steps=0 takes no inner step, and meta-training needs at "
                "least one: set meta_inner_steps to the steps meta-training "
                "takes (inner_steps=0 then acts in fit alone)"
            )
        if (self.algorithm == "reptile" and self.adapt_layers == "head"
                and self.head_init != "meta"):
            # the body never moves within a task and the head restarts in each:
            # Reptile's direction (init minus adapted weights) is zero everywhere
            raise ValueError(
                f"Reptile with adapt_layers='head' and head_init={self.head_init!r} "
                "would meta-train nothing: the body does not change within a task "
                "and the output layer is rebuilt for each, so no weight moves. "
                "Meta-train with adapt_layers='all' (then fit may use 'head'), or "
                "use MAML/FOMAML for ANIL"
            )

    @property
    def needs_output_layer(self):
        return self.head_init != "meta" or self.adapt_layers == "head"


# A module's train/eval mode is state that adaptation and prediction set,
# and the clones of a fitted estimator (and the threads using one) share its
# module: one lock per module keeps a prediction from running in another
# call's mode (dropout on in predict).
_MODE_LOCKS = weakref.WeakKeyDictionary()
_MODE_LOCKS_GUARD = threading.Lock()


def _new_mode_locks():
    """Locks of its own for a forked process: a lock another thread of the
    parent held at the fork would stay held in the child for good."""
    global _MODE_LOCKS, _MODE_LOCKS_GUARD
    _MODE_LOCKS = weakref.WeakKeyDictionary()
    _MODE_LOCKS_GUARD = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_mode_locks)


def module_lock(module):
    """The lock of ``module``: held by whatever sets its mode or runs it with
    ``functional_call``, which swaps the module's parameters for its own
    while it runs (two calls at once would leave one's tensors in place)."""
    with _MODE_LOCKS_GUARD:
        return _MODE_LOCKS.setdefault(module, threading.RLock())


def _holding_mode_lock(method):
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with module_lock(self.module):
            return method(self, *args, **kwargs)
    return locked


class InnerLoop:
    """Adaptation on a network, for a batch of tasks at a time.

    Parameters
    ----------
    settings : InnerLoopSettings
    module : torch.nn.Module
        A prepared network on ``device`` that this object may switch between
        train and eval mode (nobody else's).
    device : torch.device
    strategy : {"native", "vmap", "loop"}, default=None
        How tasks are batched; chosen from ``probe`` when None.
    probe : Tensor of shape (n_samples, ...), default=None
        Inputs of one task, to choose the strategy and find the output layer.
    """

    def __init__(self, settings, module, *, device, strategy=None, probe=None,
                 probe_name="the support set"):
        self.settings = settings
        self.module = module
        self.device = device
        # the probes run the module (as do other fits sharing it, in threads)
        with module_lock(module):
            # whether its seeded sections need torch's generator (to itself)
            # sk_meta's MLP draws no random number; any other module may
            # (dropout, noise, in ways no probe sees for sure)
            self.draws_random = type(module) is not MLP
            self.strategy = strategy or choose_strategy(module, probe)
            self.buffers = dict(module.named_buffers())
            self.forward = batched_forward(module, self.buffers, self.strategy)
            self.output_layer = None
            if settings.needs_output_layer:
                if probe is None:
                    raise ValueError("the output layer options need a probe of inputs")
                # the probe is a support set: one sample is the user's error to name
                with single_sample_batch_norm_error(probe_name):
                    self.output_layer = find_output_layer(module, self.strategy, probe)
        # learned rates: their scale, and the meta-training steps they were
        # learned for (steps beyond those floor them); fit sets both from
        # the meta-training record, continued meta-training the scale
        self.rate_scale = 1.0
        self.learned_steps = settings.meta_steps
        self.chunk_size = None
        self.compile_mode = resolve_compile_mode(settings.compile, device)
        self._meta_loss = self._maml_loss
        if self.compile_mode is not None:
            # the loss (inner steps included) is compiled; its gradient is
            # taken outside, as autograd cannot differentiate twice through
            # a compiled graph
            self._meta_loss = CompiledFunction(
                partial(self._maml_loss, functional=True), self._maml_loss,
                self.compile_mode,
            )
            self._reptile = CompiledFunction(
                partial(self._reptile_direction, functional=True),
                self._reptile_direction, self.compile_mode,
            )
        else:
            self._reptile = self._reptile_direction

    # -- learned inner learning rates -------------------------------------------------
    def initial_rates(self, params):
        """Learned rates at their start (``inner_lr``), or None for fixed rates.

        ``"per_layer_step"`` (MAML++): one rate per parameter tensor and
        meta-training step; ``"per_parameter"`` (Meta-SGD): one per weight.
        """
        mode = self.settings.lr_mode
        if mode == "fixed":
            return None
        names = self._trainable_names(params) or list(params)
        if mode == "per_layer_step":
            return {name: torch.full((self.settings.meta_steps,), self.settings.lr,
                                     device=params[name].device,
                                     dtype=params[name].dtype)
                    for name in names}
        return {name: torch.full_like(params[name], self.settings.lr)
                for name in names}

    def usable_rates(self, lrs, params, **learned):
        """The learned rates ``lrs`` of a meta-trained init, for these settings.

        ``"fixed"`` adapts with ``inner_lr`` alone, so it drops them; a
        learned mode without any (the init was meta-trained with ``"fixed"``)
        starts them at ``inner_lr``. ``learned`` goes to
        :func:`check_learned_rates`, which refuses rates these settings
        cannot use.
        """
        check_learned_rates(self.settings, lrs, params,
                            trainable=self._trainable_names(params), **learned)
        if self.settings.lr_mode == "fixed":
            return None
        if lrs is None:
            return self.initial_rates(params)
        return lrs

    def rates(self, lrs, n_steps):
        """The ``lr`` argument of :func:`adapt`: a float, a dict or a callable.

        Learned rates are multiplied by ``rate_scale`` (the ratio of
        ``inner_lr`` to the value they started from, so that changing
        ``inner_lr`` after meta-training scales them in ``fit``, validation
        and continued meta-training alike). Neither MAML++ nor
        Meta-SGD bounds them, and meta-training can drive some below zero: the
        init then relies on those steps ascending the support loss, for
        exactly the meta-training steps. A step beyond those (``fit`` with more
        ``inner_steps``) has no learned rate of its own: it takes the last
        one floored at zero, so that it never ascends. Per-parameter rates
        come as a plain dict when none of the ``n_steps`` steps goes beyond
        the learned ones.
        """
        if lrs is None:
            return self.settings.lr
        scale = self.rate_scale
        if self.settings.lr_mode == "per_parameter":
            learned = {name: rate * scale for name, rate in lrs.items()}
            n_learned = self.learned_steps
            if n_steps <= n_learned:
                return learned  # no step beyond the learned ones
            floored = {name: rate.clamp_min(0) * scale for name, rate in lrs.items()}
            return lambda step: learned if step < n_learned else floored

        def per_step(step):
            return {name: (rate[step] if step < rate.shape[0]
                           else rate[-1].clamp_min(0)) * scale
                    for name, rate in lrs.items()}

        return per_step

    # -- where each task starts --------------------------------------------------------
    def _trainable_names(self, params):
        if self.settings.adapt_layers == "all":
            return None
        layer = self.output_layer
        return [name for name in (layer.weight, layer.bias) if name is not None]

    def _problem(self, params, X, y, n_classes, n_tasks, sample_weight=None):
        """Forward pass, per-task start and inputs of an inner loop.

        Returns ``(forward, start, inputs, trainable, reinitialized)``:
        ``inputs(X)`` maps a task batch's inputs to what ``forward`` takes
        (the body's features when only the output layer adapts, which are
        computed once instead of at every step).
        """
        settings = self.settings
        start = expand_params(params, n_tasks)
        if not settings.needs_output_layer:
            return self.forward, start, _same, None, ()
        layer = self.output_layer
        head = [name for name in (layer.weight, layer.bias) if name is not None]
        reinitialized = ()
        computed = []  # (inputs, features) already computed
        if settings.head_init != "meta":
            features = None
            if settings.head_init == "prototype":
                if layer.bias is None:
                    raise ValueError(
                        "head_init='prototype' needs an output layer with a bias"
                    )
                # from a view of θ of their own: the inner gradients with
                # respect to the body must not flow back through the head
                features = layer.features(expand_params(params, n_tasks), X)
                computed.append((X, features))
            start = {**start,
                     **self._head_start(params, features, y, n_tasks, sample_weight)}
            reinitialized = tuple(head)
        if settings.adapt_layers == "all":
            return self.forward, start, _same, None, reinitialized
        # ANIL: the body is fixed within a task: run it once, adapt the head
        body = start

        def inputs(X):
            for known, features in computed:
                if known is X:
                    return features
            return layer.features(body, X)

        def head_forward(head_params, features):
            return linear_head(head_params[layer.weight],
                               head_params.get(layer.bias), features)

        return (head_forward, {name: start[name] for name in head}, inputs, None,
                reinitialized)

    def _head_start(self, params, features, y, n_tasks, sample_weight=None):
        """Each task's output layer before its inner steps: the meta-learned
        one, zeros, or the layer built from the class prototypes of the body's
        ``features`` on the tasks' samples ``(X, y)``."""
        layer, settings = self.output_layer, self.settings
        head = [name for name in (layer.weight, layer.bias) if name is not None]
        if settings.head_init == "meta":
            return expand_params({name: params[name] for name in head}, n_tasks)
        if settings.head_init == "zero":
            weight, bias = zero_head(params[layer.weight], params.get(layer.bias),
                                     n_tasks)
        else:
            weight, bias = prototype_head_of_valid_codes(
                features, y, params[layer.weight].shape[0],
                scale=settings.prototype_scale, sample_weight=sample_weight)
        return dict(zip(head, (weight, bias)))

    # -- the output layer chosen per task (head_solver="choose") -----------------------
    @property
    def chooses_head(self):
        """Whether ``fit`` and validation choose each task's output layer:
        it adapts alone, with a bias (a logistic regression's intercept)."""
        settings = self.settings
        return (settings.head_solver == "choose" and settings.classification
                and settings.adapt_layers == "head"
                and self.output_layer.bias is not None)

    def _choose_heads(self, params, lrs, adapted, features, y, n_classes,
                      sample_weight=None):
        """``adapted`` (the steps' output layers, per task) with a logistic
        regression on the body's support ``features`` in place of the steps'
        layer wherever leave one shot out on the support set prefers it by
        log-loss. Tasks with a class of one sample (or without weight), or
        of one class, keep the steps."""
        layer = self.output_layer
        chosen = None
        for task in range(features.shape[0]):
            codes = y[task].cpu().numpy()
            weights = None if sample_weight is None else sample_weight[task]
            folds = leave_one_shot_out(
                codes, None if weights is None else weights.cpu().numpy())
            if (not folds or len(np.unique(codes)) < n_classes
                    or not bool(torch.isfinite(features[task]).all())):
                continue  # nothing to hold out, or features the steps flag
            if not self._prefers_logistic(params, lrs, features[task], y[task],
                                          n_classes, folds, weights):
                continue
            weight, bias = self._logistic(features[task], codes, n_classes, weights)
            if chosen is None:
                chosen = {name: p.clone() for name, p in adapted.items()}
            # outputs beyond the task's classes are never read: zeros, not
            # what steps that diverged may have left there
            chosen[layer.weight][task] = 0
            chosen[layer.bias][task] = 0
            chosen[layer.weight][task, :n_classes] = weight
            chosen[layer.bias][task, :n_classes] = bias
        return adapted if chosen is None else chosen

    def _logistic(self, features, codes, n_classes, weights=None):
        """The output layer's rows ``(weight, bias)`` of a logistic
        regression on one task's ``features``."""
        weight, bias = logistic_head(
            features.detach().cpu().double().numpy(), codes, n_classes,
            class_weight=self.settings.class_weight,
            sample_weight=None if weights is None else weights.cpu().double().numpy())
        return (torch.as_tensor(weight, dtype=features.dtype, device=features.device),
                torch.as_tensor(bias, dtype=features.dtype, device=features.device))

    def _prefers_logistic(self, params, lrs, features, y, n_classes, folds,
                          weights=None):
        """Whether a logistic regression's mean log-loss on the rows each
        fold holds out, refitted on the others, is below the steps' (or the
        steps' is not finite)."""
        layer, device = self.output_layer, features.device
        rest = torch.as_tensor(np.stack([np.flatnonzero(~held) for held in folds]),
                               device=device)
        held = torch.as_tensor(np.stack([np.flatnonzero(held) for held in folds]),
                               device=device)
        rest_weights = None if weights is None else weights[rest]
        held_weights = None if weights is None else weights[held]
        n_folds = len(folds)
        # every fold's steps at once, as fit takes them on the rows it keeps
        steps_heads, _ = adapt(
            lambda head, X: linear_head(head[layer.weight], head[layer.bias], X),
            self._head_start(params, features[rest], y[rest], n_folds, rest_weights),
            features[rest], y[rest],
            loss_fn=loss_for(n_classes, True, y[rest], self.settings.class_weight,
                             sample_weight=rest_weights),
            lr=self.rates(lrs, self.settings.steps), n_steps=self.settings.steps,
            detach=True, optimizer=self.settings.optimizer,
            backtracking=self.settings.backtracking,
        )
        logistic = [self._logistic(features[rest[fold]], y[rest[fold]].cpu().numpy(),
                                   n_classes,
                                   None if weights is None else rest_weights[fold])
                    for fold in range(n_folds)]
        heads = {
            "steps": (steps_heads[layer.weight], steps_heads[layer.bias]),
            "logistic": (torch.stack([w for w, _ in logistic]),
                         torch.stack([b for _, b in logistic])),
        }
        # each fold's (weighted) mean log-loss, then their mean: the folds
        # hold out one row of every class each
        held_loss = loss_for(n_classes, True, sample_weight=held_weights)
        losses = {name: float(task_losses(
                      held_loss, linear_head(weight, bias, features[held]).double(),
                      y[held]).mean())
                  for name, (weight, bias) in heads.items()}
        return (math.isfinite(losses["logistic"])
                and not losses["steps"] <= losses["logistic"])

    # -- meta-training ----------------------------------------------------------------
    def meta_gradient(self, params, lrs, batch, *, progress=0.0):
        """Summed meta-gradient and meta-loss over ``batch``'s tasks.

        Returns ``(grads, lr_grads, loss)``: gradients with respect to
        ``params`` and to the learned rates ``lrs`` (None for fixed rates),
        each summed over tasks, and the summed meta-loss.
        """
        total_grads = total_lr_grads = None
        total_loss = 0.0
        for chunk in _split(batch, self.chunk_size):
            if self.settings.algorithm == "reptile":
                # decided here: a compiled function breaks its graph on it
                grads, loss = self._reptile(params, chunk,
                                            weighted=self._weighted(chunk, whole=True))
                lr_grads = None
            else:
                grads, lr_grads, loss = self._maml_gradient(params, lrs, chunk,
                                                            progress)
            if self.compile_mode == "reduce-overhead":
                # CUDA graph outputs are overwritten by the next replay
                grads = {k: g.clone() for k, g in grads.items()}
            total_loss = total_loss + loss
            total_grads = _add(total_grads, grads)
            total_lr_grads = _add(total_lr_grads, lr_grads)
        return total_grads, total_lr_grads, total_loss

    def _maml_gradient(self, params, lrs, batch, progress):
        params = {name: p if p.requires_grad else p.detach().requires_grad_()
                  for name, p in params.items()}
        weights = None
        if self.settings.multi_step_loss and progress < _MULTI_STEP_FRACTION:
            # once annealed, the last step alone counts: plain MAML's loss,
            # without the query passes of the earlier steps
            weights = multi_step_weights(self.settings.meta_steps, progress).to(
                self.device)
        self.module.train()
        with torch.enable_grad():
            loss = self._meta_loss(params, lrs, batch, weights,
                                   weighted=self._weighted(batch))
            wrt = [*params.values(), *(lrs or {}).values()]
            grads = torch.autograd.grad(loss, wrt, allow_unused=True,
                                        materialize_grads=True)
        param_grads = dict(zip(params, grads[:len(params)]))
        lr_grads = dict(zip(lrs, grads[len(params):])) if lrs else None
        return param_grads, lr_grads, loss.detach()

    def _maml_loss(self, params, lrs, batch, step_weights, functional=False,
                   weighted=None):
        loss_fn = loss_for(batch.n_classes, self.settings.classification,
                           batch.y_support, self.settings.class_weight,
                           weighted=weighted)
        forward, start, inputs, trainable, _ = self._problem(
            params, batch.X_support, batch.y_support, batch.n_classes, batch.n_tasks)
        inner_batch = TaskBatch(inputs(batch.X_support), batch.y_support,
                                inputs(batch.X_query), batch.y_query, batch.n_classes)
        return maml_meta_loss(
            forward, params, inner_batch, loss_fn=loss_fn,
            lr=self.rates(lrs, self.settings.meta_steps),
            n_steps=self.settings.meta_steps, first_order=self.settings.first_order,
            functional=functional, task_params=start, trainable=trainable,
            step_weights=step_weights,
            # class_weight acts in the inner steps: the query loss is the mean
            query_loss_fn=loss_for(batch.n_classes, self.settings.classification),
        )

    def _weighted(self, batch, whole=False):
        """Whether the inner steps weigh classes: on the support sets, or on
        the whole tasks (Reptile's), joined only when the weights may act."""
        if not self.settings.classification or self.settings.class_weight != "balanced":
            return False
        y = (torch.cat([batch.y_support, batch.y_query], dim=1) if whole
             else batch.y_support)
        return weighs_classes(batch.n_classes, y, self.settings.class_weight)

    def _reptile_direction(self, params, batch, functional=False, weighted=None):
        self.module.train()
        X = torch.cat([batch.X_support, batch.X_query], dim=1)
        y = torch.cat([batch.y_support, batch.y_query], dim=1)
        loss_fn = loss_for(batch.n_classes, self.settings.classification, y,
                           self.settings.class_weight, weighted=weighted)
        forward, start, inputs, _, reinitialized = self._problem(
            {k: p.detach() for k, p in params.items()}, X, y, batch.n_classes,
            batch.n_tasks)
        features = inputs(X)  # the whole task at once, as the inner loop sees it
        whole = TaskBatch(features, y, features[:, :0], y[:, :0], batch.n_classes)
        if start.keys() != params.keys():  # only the output layer adapts
            grads, loss = reptile_meta_gradient(
                forward, {k: params[k] for k in start}, whole, loss_fn=loss_fn,
                lr=self.settings.lr, n_steps=self.settings.meta_steps,
                optimizer=self.settings.optimizer, functional=functional,
                task_params=start, reinitialized=reinitialized,
            )
            zeros = {k: torch.zeros_like(p) for k, p in params.items()
                     if k not in grads}
            return {**zeros, **grads}, loss
        return reptile_meta_gradient(
            forward, params, whole, loss_fn=loss_fn, lr=self.settings.lr,
            n_steps=self.settings.meta_steps, optimizer=self.settings.optimizer,
            functional=functional, task_params=start, reinitialized=reinitialized,
        )

    @_holding_mode_lock
    def resolve_chunk_size(self, probe):
        """Tasks per chunk of a meta-batch (None: the whole meta-batch at once).

        ``probe`` is one task's larger set of inputs, used by ``"auto"`` to
        size the chunks of convolutional networks on the CPU.
        """
        tasks_per_chunk = self.settings.tasks_per_chunk
        if tasks_per_chunk != "auto":
            self.chunk_size = tasks_per_chunk
            return
        has_convolutions = any(isinstance(m, nn.modules.conv._ConvNd)
                               for m in self.module.modules())
        if not (self.device.type == "cpu" and self.strategy == "vmap"
                and has_convolutions):
            self.chunk_size = None
            return
        with forked_rng(self.device):  # its dropout leaves the caller's draws alone
            per_task = _largest_activation_bytes(self.module, probe)
        self.chunk_size = max(1, _CPU_CONV_CHUNK_BYTES // max(per_task, 1))

    # -- adaptation and prediction --------------------------------------------------
    @_holding_mode_lock
    def adapt(self, params, lrs, X, y, n_classes, *, what="the support set",
              sample_weight=None):
        """Adapt ``params`` to each task's ``(X, y)`` (with a task dimension),
        weighing the samples by ``sample_weight`` (same shape as ``y``'s
        first two dimensions) if given.

        Returns every task's adapted parameters (detached) and a loss on the
        support sets that is non-finite if adaptation diverged.
        """
        loss_fn = loss_for(n_classes, self.settings.classification, y,
                           self.settings.class_weight, sample_weight=sample_weight)
        self.module.train()  # dropout on, as in meta-training (prototypes too)
        with single_sample_batch_norm_error(what):
            forward, start, inputs, trainable, _ = self._problem(
                params, X, y, n_classes, X.shape[0], sample_weight)
            support = inputs(X)
            adapted, loss = adapt(
                forward, start, support, y, loss_fn=loss_fn,
                lr=self.rates(lrs, self.settings.steps),
                n_steps=self.settings.steps, detach=True,
                optimizer=self.settings.optimizer, trainable=trainable,
                backtracking=self.settings.backtracking,
            )
            if self.chooses_head:
                adapted = self._choose_heads(params, lrs, adapted, support, y,
                                             n_classes, sample_weight)
            if not self.settings.backtracking or self.chooses_head:
                # a plain step reports the loss before it: one forward pass
                # more shows a last step that overflowed the outputs with
                # finite parameters (the line search reports that itself,
                # but not of a regression chosen in its place)
                with torch.no_grad():
                    loss = loss_fn(forward(adapted, support), y)
        return self._full(params, adapted, X.shape[0]), loss

    def _full(self, params, adapted, n_tasks):
        """Adapted parameters of the whole network (ANIL adapts only the head)."""
        if adapted.keys() == params.keys():
            return adapted
        return {**{k: p.detach() for k, p in expand_params(params, n_tasks).items()},
                **adapted}

    @_holding_mode_lock
    def predict(self, adapted, X_query, X_support):
        """Outputs of each task's adapted network on its query inputs.

        Eval mode (dropout off); with BatchNorm, samples run beside the
        support set when ``transductive`` is off or when a set holds one.
        """
        self.module.eval()
        try:
            with torch.no_grad():
                if not runs_beside_support(self.module, self.settings.transductive,
                                           X_query.shape[1]):
                    return self.forward(adapted, X_query)
                return torch.stack([
                    outputs_beside_support(
                        self.module, self.buffers,
                        {k: p[i] for k, p in adapted.items()},
                        X_support[i], X_query[i],
                    )
                    for i in range(X_query.shape[0])
                ])
        finally:
            self.module.train()

    def evaluate(self, params, lrs, batch, averaged_log_probas=None):
        """Summed post-adaptation query loss and score over ``batch``'s tasks.

        ``averaged_log_probas``: another network's class log-probabilities on
        the query sets, averaged (as probabilities) with this one's, as
        ``predict_proba`` averages the pretrained MLP in.
        """
        outputs = self.query_outputs(params, lrs, batch)
        if averaged_log_probas is not None:
            outputs = mean_of_probabilities(
                [class_log_probas(outputs, batch.n_classes), averaged_log_probas])
        loss = float(loss_for(batch.n_classes, self.settings.classification)(
            outputs, batch.y_query))
        score = float(task_scores(outputs, batch, self.settings.classification).sum())
        if not math.isfinite(loss):
            # outputs that overflowed: predict refuses them, so no score (an
            # argmax over NaN would count as class 0)
            score = math.nan
        return loss, score

    @_holding_mode_lock
    def query_outputs(self, params, lrs, batch):
        """Outputs on ``batch``'s query sets of the network adapted to each
        task's support set."""
        loss_fn = loss_for(batch.n_classes, self.settings.classification,
                           batch.y_support, self.settings.class_weight)
        forward, start, inputs, trainable, _ = self._problem(
            params, batch.X_support, batch.y_support, batch.n_classes, batch.n_tasks)
        self.module.train()
        support = inputs(batch.X_support)

        def predict(adapted, X_query):
            if self.chooses_head:  # as fit chooses
                adapted = self._choose_heads(params, lrs, adapted, support,
                                             batch.y_support, batch.n_classes)
            return self.predict(self._full(params, adapted, batch.n_tasks), X_query,
                                batch.X_support)

        _, outputs = adapt_and_predict(
            forward, start, support, batch.y_support,
            batch.X_query, loss_fn=loss_fn,
            lr=self.rates(lrs, self.settings.steps),
            n_steps=self.settings.steps, predict=predict,
            optimizer=self.settings.optimizer, trainable=trainable,
            backtracking=self.settings.backtracking,
        )
        return outputs


def class_log_probas(outputs, n_classes):
    """Log-probabilities of a task's ``n_classes`` classes (its first outputs),
    in float64, as ``predict_log_proba`` computes them."""
    return torch.log_softmax(outputs.detach().double()[..., :n_classes], -1)


def _same(X):
    return X


def _add(total, new):
    if new is None:
        return total
    if total is None:
        return dict(new)
    return {k: total[k] + g for k, g in new.items()}


def _split(batch, chunk_size):
    """Split a TaskBatch into chunks of at most ``chunk_size`` tasks."""
    if chunk_size is None or batch.n_tasks <= chunk_size:
        return [batch]
    parts = [t.split(chunk_size) for t in batch[:4]]
    return [TaskBatch(*tensors, batch.n_classes) for tensors in zip(*parts)]


def _largest_activation_bytes(module, X):
    """Bytes of the largest layer output of ``module`` on ``X``."""
    largest = [0]

    def record(module, inputs, output):
        if isinstance(output, torch.Tensor):
            largest[0] = max(largest[0], output.numel() * output.element_size())

    hooks = [m.register_forward_hook(record) for m in module.modules()]
    try:
        with torch.no_grad():
            module(X)
    finally:
        for hook in hooks:
            hook.remove()
    return largest[0]
