"""sk_meta: MAML, first-order MAML and Reptile as scikit-learn estimators."""

from sk_meta._maml import (
    FOMAMLClassifier,
    FOMAMLRegressor,
    MAMLClassifier,
    MAMLRegressor,
)
from sk_meta._persistence import load
from sk_meta._reptile import ReptileClassifier, ReptileRegressor

__version__ = "0.1.0"

_ESTIMATORS = {
    cls.__name__: cls
    for cls in (MAMLClassifier, MAMLRegressor, FOMAMLClassifier, FOMAMLRegressor,
                ReptileClassifier, ReptileRegressor)
}

__all__ = [
    "FOMAMLClassifier",
    "FOMAMLRegressor",
    "MAMLClassifier",
    "MAMLRegressor",
    "ReptileClassifier",
    "ReptileRegressor",
    "load",
]
