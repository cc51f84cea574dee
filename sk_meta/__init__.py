"""sk_meta: MAML, first-order MAML and Reptile as scikit-learn estimators.

The estimators are imported on first use, so that ``sk_meta.tasks`` and
``sk_meta.datasets`` (no torch) load without torch.
"""

import importlib

__version__ = "0.1.0"

_LAZY = {
    "FOMAMLClassifier": "sk_meta._maml",
    "FOMAMLRegressor": "sk_meta._maml",
    "MAMLClassifier": "sk_meta._maml",
    "MAMLRegressor": "sk_meta._maml",
    "ReptileClassifier": "sk_meta._reptile",
    "ReptileRegressor": "sk_meta._reptile",
    "load": "sk_meta._load",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sk_meta' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])


def estimator_classes():
    """The six estimator classes by name."""
    return {name: __getattr__(name) for name in _LAZY if name != "load"}
