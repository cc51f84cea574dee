"""scikit-learn's estimator checks on all six estimators."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sk_meta import (
    FOMAMLClassifier,
    FOMAMLRegressor,
    MAMLClassifier,
    MAMLRegressor,
    ReptileClassifier,
    ReptileRegressor,
)

ESTIMATORS = [
    cls(hidden_layer_sizes=(16,), n_meta_iter=2)
    for cls in (MAMLClassifier, FOMAMLClassifier, ReptileClassifier,
                MAMLRegressor, FOMAMLRegressor, ReptileRegressor)
]


# No expected failures: every check passes, the comparisons of two fits by
# seeding (the checks set random_state).
@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
