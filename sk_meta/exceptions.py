"""Exceptions and warnings raised by sk_meta."""


class DivergenceError(FloatingPointError):
    """Meta-training or adaptation produced a NaN or infinite loss.

    Raised by ``meta_fit`` after it has kept the last finite meta-learned
    init (``committed`` is True), and by ``fit`` before it changes anything
    (``committed`` is False).
    """

    def __init__(self, message, *, committed):
        super().__init__(message)
        self.committed = committed
