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


# Expected failures. The classifiers start each task's output layer from
# the class prototypes, whose logits 2 c.h - ||c||^2 cancel large terms: in
# float32, predicting a subset of rows differs from predicting them in a larger
# batch by about 1e-6 (matrix products are blocked by batch size), above the
# check's 1e-7. tests/test_estimators.py holds them to 1e-5. Every other check
# passes, the comparisons of two fits by seeding (the checks set random_state).
def _expected_failures(estimator):
    failures = {}
    if estimator.get_params().get("head_init") == "prototype":
        failures["check_methods_subset_invariance"] = (
            "float32 prototype logits: subsets differ by ~1e-6 (> 1e-7)")
    if "class_weight" not in estimator.get_params():
        # weights and repeated rows sum in another order: the regressors'
        # float32 predictions differ by ~2e-7 relative, above the check's
        # 1e-7; tests/test_sample_weight.py holds them to 1e-5
        failures["check_sample_weight_equivalence_on_dense_data"] = (
            "float32 sums: weighted and repeated rows differ by ~2e-7 (> 1e-7)")
    if "class_weight" in estimator.get_params():
        # the check sets a dict; a support set's labels differ from task to
        # task, so the classifiers take "balanced" or None, and refuse a dict
        # with scikit-learn's InvalidParameterError
        failures["check_class_weight_classifiers"] = (
            "class_weight is 'balanced' or None, not a dict")
    return failures


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failures)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
