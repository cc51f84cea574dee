"""Exceptions and warnings raised by sk_meta.

Every warning class derives from ``UserWarning``, so filters written for it
keep working; a filter on one class silences just that case.
"""


class DivergenceError(FloatingPointError):
    """Meta-training or adaptation produced a NaN or infinite loss.

    Raised by ``meta_fit``, ``meta_partial_fit`` and ``fit``, which leave the
    estimator as it was before the call. The message is one line that says
    what diverged and what to lower.

    Attributes
    ----------
    estimator : estimator instance or None
        For meta-training, a copy of the estimator holding the last finite
        init (the meta-iterations of the failed call that completed before
        the divergence), to inspect or to resume from with
        ``warm_start=True`` at a lower learning rate; ``None`` when no
        meta-iteration completed, when the divergence happened in the class
        folds of ``hidden_layer_sizes="auto"`` (before the estimator's own
        meta-training), and for ``fit``.
    """

    def __init__(self, message, *, estimator=None):
        super().__init__(message)
        self.estimator = estimator


class InterruptedWarning(UserWarning):
    """Ctrl-C stopped meta-training at the end of a meta-iteration.

    The estimator keeps the init of that meta-iteration; ``meta_fit`` with
    ``warm_start=True`` resumes the run.
    """


class BudgetSpentWarning(UserWarning):
    """``meta_fit`` with ``warm_start=True`` had no meta-iterations left to run.

    ``n_meta_iter`` is the total budget: raise it to continue. Settings that
    the next meta-iteration would refuse (another architecture or learned
    rate mode, ``early_stopping`` without validation tasks) are refused
    first, with a ``ValueError``, even when none is left to run.
    """


class TasksExhaustedWarning(UserWarning):
    """``meta_fit``'s tasks ran out before ``n_meta_iter`` meta-iterations.

    A one-shot iterator or generator is consumed until it is exhausted; the
    estimator keeps the init of the meta-iterations that ran
    (``n_meta_iter_``). Pass a list or a re-iterable sampler (such as
    :class:`~sk_meta.tasks.EpisodeSampler`), which meta-training cycles, or a
    generator of enough tasks.
    """


class CompileWarning(UserWarning):
    """``torch.compile`` failed for the module; meta-training went on eagerly."""


class PersistenceWarning(UserWarning):
    """Something could not be saved or restored as it was.

    For instance a ``random_state`` given as a ``RandomState`` instance (saved
    as None), a file's ``checkpoint_path`` (never restored by
    :func:`sk_meta.load`), or a custom module loaded under another name.
    """


class FrozenParametersWarning(UserWarning):
    """The module has parameters with ``requires_grad=False``.

    sk_meta meta-trains and adapts every parameter of the module it is
    given, as MAML and Reptile do, so a frozen layer changes too. To keep
    a pretrained body fixed within each task, pass ``adapt_layers="head"``
    (ANIL: only the output layer adapts in the inner loop).
    """


class FeatureNamesWarning(UserWarning):
    """Feature names were seen in meta-training but not at ``fit``.

    Without names the columns cannot be checked: they are taken to be in
    the order of the meta-training tasks' columns.
    """


class FeatureScaleWarning(UserWarning):
    """Inputs far larger than the default MLP can adapt to.

    Raised by ``fit`` (for the support set) and ``meta_fit`` (for the first
    meta-batch) when a value exceeds 1,000 in absolute value and the network
    is the default MLP: gradient steps scale with the inputs, so one such
    value can leave every query predicted as one class without the loss
    diverging. Standardize the features (with the meta-training rows'
    statistics) and clip them, for example to [-5, 5]. Custom modules may
    normalize their inputs themselves and get no warning.
    """


class TargetScaleWarning(UserWarning):
    """Regression targets far larger than gradient steps can adapt to.

    Raised by a regressor's ``fit`` (for the support targets) and
    ``meta_fit`` (for the first meta-batch) when a target exceeds 100 in
    absolute value: the squared-error gradient grows with the targets, so
    the steps at the default rates overshoot, and lowering the rates until
    they do not leaves the model learning nothing. Standardize the targets
    with the meta-training tasks' mean and standard deviation, and invert
    the predictions.
    """
