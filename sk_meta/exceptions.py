"""Exceptions and warnings raised by sk_meta."""


class DivergenceError(FloatingPointError):
    """Meta-training or adaptation produced a NaN or infinite loss.

    Raised by ``meta_fit``, ``meta_partial_fit`` and ``fit``, which leave the
    estimator as it was before the call.

    Attributes
    ----------
    estimator : estimator instance or None
        For meta-training, a copy of the estimator holding the last finite
        init (the meta-iterations of the failed call that completed before
        the divergence), to inspect or to resume from with
        ``warm_start=True`` at a lower learning rate; ``None`` when no
        meta-iteration completed, and for ``fit``.
    """

    def __init__(self, message, *, estimator=None):
        super().__init__(message)
        self.estimator = estimator
