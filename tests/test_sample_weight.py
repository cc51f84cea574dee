"""``fit(X, y, sample_weight=...)`` and ``predict_log_proba``, as scikit-learn's
estimators have them: integer weights act as repeated rows, zero weights as
removed rows, and the weighted losses and prototypes match float64
computations written out here."""

import io

import numpy as np
import pytest
import sklearn
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import sk_meta
from sk_meta import (
    FOMAMLClassifier,
    FOMAMLRegressor,
    MAMLClassifier,
    MAMLRegressor,
    ReptileClassifier,
    ReptileRegressor,
)
from sk_meta.functional import cross_entropy_loss, mse_loss, prototype_head
from sk_meta.model_selection import MetaGridSearch
from sk_meta.tasks import EpisodeSampler

X_DIGITS, Y_DIGITS = load_digits(return_X_y=True)
X_DIGITS = X_DIGITS / 16
RNG = np.random.RandomState(0)
SUPPORT = RNG.choice(np.flatnonzero(Y_DIGITS < 3), 15, replace=False)
X_SUPPORT, Y_SUPPORT = X_DIGITS[SUPPORT], Y_DIGITS[SUPPORT]
# every class keeps a positive weight; several rows weigh 0, 2 or 3
WEIGHTS = np.array([1, 0, 2, 3, 1, 0, 2, 1, 3, 1, 2, 0, 1, 2, 1])
X_QUERY = X_DIGITS[Y_DIGITS < 3][:60]
TOLERANCE = 1e-5  # float32 sums of weights and of repeated rows differ in order


def _repeated(X, y, weights):
    return np.repeat(X, weights, axis=0), np.repeat(y, weights, axis=0)


@pytest.fixture(scope="module")
def meta_fitted():
    sampler = EpisodeSampler(X_DIGITS, Y_DIGITS, 3, 3, 3, classes=range(3, 10),
                             random_state=0)
    return {cls: cls(hidden_layer_sizes=(16,), n_meta_iter=5, random_state=0)
            .meta_fit(sampler)
            for cls in (MAMLClassifier, FOMAMLClassifier, ReptileClassifier)}


CLASSIFIER_SETTINGS = [
    {},
    {"class_weight": None},
    {"head_init": "meta"},
    {"head_init": "zero"},
    {"adapt_layers": "head"},
]


@pytest.mark.parametrize("cls", [MAMLClassifier, FOMAMLClassifier, ReptileClassifier])
@pytest.mark.parametrize("settings", CLASSIFIER_SETTINGS)
def test_integer_weights_act_as_repeated_rows(cls, settings):
    weighted = cls(hidden_layer_sizes=(16,), random_state=0, **settings).fit(
        X_SUPPORT, Y_SUPPORT, sample_weight=WEIGHTS)
    repeated = cls(hidden_layer_sizes=(16,), random_state=0, **settings).fit(
        *_repeated(X_SUPPORT, Y_SUPPORT, WEIGHTS))
    unweighted = cls(hidden_layer_sizes=(16,), random_state=0, **settings).fit(
        X_SUPPORT, Y_SUPPORT)
    np.testing.assert_allclose(weighted.predict_proba(X_QUERY),
                               repeated.predict_proba(X_QUERY), atol=TOLERANCE)
    # the weights act: without them the fit is another one
    assert np.abs(weighted.predict_proba(X_QUERY)
                  - unweighted.predict_proba(X_QUERY)).max() > 1e-3


@pytest.mark.parametrize("cls", [MAMLClassifier, FOMAMLClassifier, ReptileClassifier])
def test_weights_act_on_a_meta_trained_init(cls, meta_fitted):
    est = meta_fitted[cls]
    weighted = est.fit(X_SUPPORT, Y_SUPPORT, sample_weight=WEIGHTS).predict_proba(
        X_QUERY)
    repeated = est.fit(*_repeated(X_SUPPORT, Y_SUPPORT, WEIGHTS)).predict_proba(X_QUERY)
    np.testing.assert_allclose(weighted, repeated, atol=TOLERANCE)
    kept = WEIGHTS > 0
    removed = est.fit(X_SUPPORT[kept], Y_SUPPORT[kept],
                      sample_weight=WEIGHTS[kept]).predict_proba(X_QUERY)
    np.testing.assert_allclose(weighted, removed, atol=TOLERANCE)


@pytest.mark.parametrize("cls", [MAMLRegressor, FOMAMLRegressor, ReptileRegressor])
@pytest.mark.parametrize("two_outputs", [False, True])
def test_regressors_weigh_the_squared_errors(cls, two_outputs):
    y = X_SUPPORT[:, 10] - X_SUPPORT[:, 20]
    if two_outputs:
        y = np.column_stack([y, X_SUPPORT[:, 30]])
    X = X_SUPPORT[:, :8]

    def fitted(*args, **kwargs):
        return cls(hidden_layer_sizes=(16,), random_state=0).fit(
            *args, **kwargs).predict(X_QUERY[:, :8])

    weighted = fitted(X, y, sample_weight=WEIGHTS)
    np.testing.assert_allclose(weighted, fitted(*_repeated(X, y, WEIGHTS)),
                               atol=TOLERANCE)
    assert np.abs(weighted - fitted(X, y)).max() > 1e-3


def test_uniform_weights_and_their_scale_change_nothing():
    est = MAMLClassifier(hidden_layer_sizes=(16,), random_state=0)
    plain = est.fit(X_SUPPORT, Y_SUPPORT).predict_proba(X_QUERY)
    for weights in (np.full(15, 3.7), np.full(15, 1e-30), np.full(15, 1e30)):
        np.testing.assert_allclose(
            est.fit(X_SUPPORT, Y_SUPPORT, sample_weight=weights).predict_proba(X_QUERY),
            plain, atol=TOLERANCE)
    scaled = est.fit(X_SUPPORT, Y_SUPPORT, sample_weight=WEIGHTS * 1e20).predict_proba(
        X_QUERY)
    np.testing.assert_allclose(
        scaled, est.fit(X_SUPPORT, Y_SUPPORT, sample_weight=WEIGHTS).predict_proba(
            X_QUERY), atol=TOLERANCE)


@pytest.mark.parametrize("cls", [MAMLClassifier, ReptileClassifier])
@pytest.mark.parametrize("settings", [{}, {"head_init": "meta"}])
def test_a_class_of_weight_zero_stays_a_class_of_probability_zero(cls, settings):
    """Its prototype row started at zero, a logit that still won queries
    after few steps; now the fit is the fit without its rows, and the class
    has probability 0."""
    weights = np.where(Y_SUPPORT == 1, 0.0, 1.0)
    clf = cls(hidden_layer_sizes=(16,), random_state=0, **settings).fit(
        X_SUPPORT, Y_SUPPORT, sample_weight=weights)
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    proba, log_proba = clf.predict_proba(X_QUERY), clf.predict_log_proba(X_QUERY)
    assert (proba[:, 1] == 0).all() and (log_proba[:, 1] == -np.inf).all()
    assert (clf.predict(X_QUERY) != 1).all()
    kept = weights > 0
    without = cls(hidden_layer_sizes=(16,), random_state=0, **settings).fit(
        X_SUPPORT[kept], Y_SUPPORT[kept])
    np.testing.assert_allclose(proba[:, [0, 2]], without.predict_proba(X_QUERY),
                               atol=TOLERANCE)
    buffer = io.BytesIO()
    clf.save(buffer)
    buffer.seek(0)
    np.testing.assert_array_equal(sk_meta.load(buffer).predict_proba(X_QUERY), proba)


# -- the functional core against float64 computations written out here ---------------

def _weighted_problem(seed=0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 9, 4, generator=generator, dtype=torch.float64)
    y = torch.tensor([[0, 0, 1, 1, 1, 2, 2, 2, 2], [3, 3, 3, 1, 1, 0, 0, 0, 0]])
    weights = torch.rand(2, 9, generator=generator, dtype=torch.float64)
    weights[1, 3:5] = 0  # class 1 of task 1 weighs nothing
    return logits, y, weights


def test_weighted_cross_entropy_against_a_written_out_sum():
    logits, y, weights = _weighted_problem()
    expected = 0.0
    for task in range(2):
        losses = [-torch.log_softmax(logits[task, i], 0)[y[task, i]] for i in range(9)]
        w = weights[task]
        expected += sum(float(w[i] * losses[i]) for i in range(9)) / float(w.sum())
    got = cross_entropy_loss(logits, y, 4, sample_weight=weights)
    np.testing.assert_allclose(float(got), expected, rtol=1e-12)


def test_balanced_weighted_cross_entropy_averages_the_classes_weighted_means():
    logits, y, weights = _weighted_problem()
    expected = 0.0
    for task in range(2):
        means = []
        for k in range(4):
            rows = [i for i in range(9) if y[task, i] == k]
            total = sum(float(weights[task, i]) for i in rows)
            if total > 0:  # a class of weight 0 is absent
                means.append(sum(
                    float(weights[task, i])
                    * float(-torch.log_softmax(logits[task, i], 0)[k])
                    for i in rows) / total)
        expected += sum(means) / len(means)
    got = cross_entropy_loss(logits, y, 4, balanced=True, sample_weight=weights)
    np.testing.assert_allclose(float(got), expected, rtol=1e-12)


def test_weighted_cross_entropy_gradient_against_finite_differences():
    logits, y, weights = _weighted_problem(1)
    logits.requires_grad_()
    torch.autograd.gradcheck(
        lambda z: cross_entropy_loss(z, y, 4, balanced=True, sample_weight=weights),
        (logits,))


def test_weighted_mse_against_a_written_out_sum():
    generator = torch.Generator().manual_seed(0)
    outputs = torch.randn(2, 5, 3, generator=generator, dtype=torch.float64)
    y = torch.randn(2, 5, 3, generator=generator, dtype=torch.float64)
    weights = torch.rand(2, 5, generator=generator, dtype=torch.float64)
    expected = sum(
        sum(float(weights[t, i]) * float(((outputs[t, i] - y[t, i]) ** 2).mean())
            for i in range(5)) / float(weights[t].sum())
        for t in range(2))
    np.testing.assert_allclose(float(mse_loss(outputs, y, sample_weight=weights)),
                               expected, rtol=1e-12)


def test_weighted_prototypes_are_weighted_class_means():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 9, 5, generator=generator, dtype=torch.float64)
    _, y, weights = _weighted_problem()
    weight, bias = prototype_head(features, y, 4, scale=0.5, sample_weight=weights)
    for task in range(2):
        for k in range(4):
            w = weights[task].numpy() * (y[task].numpy() == k)
            if w.sum() == 0:  # absent, or of weight 0: a zero row
                assert not weight[task, k].any() and bias[task, k] == 0
                continue
            mean = (w[:, None] * features[task].numpy()).sum(0) / w.sum()
            np.testing.assert_allclose(weight[task, k].numpy(), 2 * 0.5 * mean,
                                       rtol=1e-12)
            np.testing.assert_allclose(float(bias[task, k]), -0.5 * (mean ** 2).sum(),
                                       rtol=1e-12)


def test_the_functional_core_refuses_weights_of_another_shape_or_kind():
    logits, y, weights = _weighted_problem()
    with pytest.raises(ValueError, match=r"sample_weight must have the shape "
                                         r"\(B, n_samples\) \(2, 9\), got \(9,\)"):
        cross_entropy_loss(logits, y, 4, sample_weight=weights[0])
    with pytest.raises(TypeError, match="sample_weight must be floating point"):
        prototype_head(logits, y, 4, sample_weight=torch.ones(2, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="sample_weight must have the shape"):
        mse_loss(logits, logits, sample_weight=weights[:, :3])


# -- what fit refuses ------------------------------------------------------------------

# scikit-learn's messages (their wording varies with its version)
@pytest.mark.parametrize("weights, message", [
    (np.ones(14), "sample_weight.shape == .*expected"),
    (-WEIGHTS, "(?i)negative values in data passed to .?sample_weight"),
    (np.where(WEIGHTS == 2, np.nan, WEIGHTS), "sample_weight.*NaN"),
    (np.zeros(15), "(?i)(every weight is 0|sample weights.*non-zero)"),
    (np.ones((15, 2)), "(?i)sample weights must be 1D"),
])
def test_fit_refuses_bad_weights_and_stays_as_it_was(weights, message):
    clf = MAMLClassifier(hidden_layer_sizes=(16,), random_state=0).fit(
        X_SUPPORT, Y_SUPPORT)
    before = clf.predict_proba(X_QUERY)
    given = weights.copy()
    with pytest.raises(ValueError, match=message):
        clf.fit(X_DIGITS[:15], Y_DIGITS[:15] % 2, sample_weight=weights)
    np.testing.assert_array_equal(clf.predict_proba(X_QUERY), before)
    np.testing.assert_array_equal(weights, given)


def test_fit_leaves_the_callers_weights_alone():
    weights = WEIGHTS.astype(np.float64)
    MAMLClassifier(hidden_layer_sizes=(16,), random_state=0).fit(
        X_SUPPORT, Y_SUPPORT, sample_weight=weights)
    np.testing.assert_array_equal(weights, WEIGHTS)


# -- scikit-learn's tools pass the weights through -------------------------------------

def _cv_tasks():
    sampler = EpisodeSampler(X_DIGITS, Y_DIGITS, 3, 5, 5, classes=range(3),
                             n_tasks=3, random_state=0)
    return sk_meta.model_selection.tasks_to_cv(sampler)


def test_pipelines_and_searches_route_the_weights_to_fit():
    clf = MAMLClassifier(hidden_layer_sizes=(16,), random_state=0)
    direct = clf.fit(X_SUPPORT, Y_SUPPORT, sample_weight=WEIGHTS).predict_proba(X_QUERY)
    scaled_X = StandardScaler().fit_transform(X_SUPPORT)
    in_pipeline = make_pipeline(StandardScaler(), clf).fit(
        X_SUPPORT, Y_SUPPORT, mamlclassifier__sample_weight=WEIGHTS)
    expected = MAMLClassifier(hidden_layer_sizes=(16,), random_state=0).fit(
        scaled_X, Y_SUPPORT, sample_weight=WEIGHTS)
    scaler = in_pipeline[0]
    np.testing.assert_allclose(in_pipeline.predict_proba(X_QUERY),
                               expected.predict_proba(scaler.transform(X_QUERY)),
                               atol=TOLERANCE)
    search = GridSearchCV(clf, {"inner_steps": [20]}, cv=[(np.arange(15),
                                                          np.arange(15))])
    search.fit(X_SUPPORT, Y_SUPPORT, sample_weight=WEIGHTS)
    np.testing.assert_allclose(search.predict_proba(X_QUERY), direct, atol=TOLERANCE)


def test_cross_val_score_passes_the_weights_with_metadata_routing():
    X_cv, y_cv, cv = _cv_tasks()
    weights = np.where(np.arange(len(y_cv)) % 4 == 0, 3.0, 1.0)
    clf = MAMLClassifier(hidden_layer_sizes=(16,), random_state=0)
    plain = cross_val_score(clf, X_cv, y_cv, cv=cv)
    with sklearn.config_context(enable_metadata_routing=True):
        routed = cross_val_score(
            clone_requesting(clf), X_cv, y_cv, cv=cv, params={"sample_weight": weights})
    # by hand: each task's support rows weighted, its query rows scored plainly
    by_hand = []
    for train, test in cv:
        fitted = MAMLClassifier(hidden_layer_sizes=(16,), random_state=0).fit(
            X_cv[train], y_cv[train], sample_weight=weights[train])
        by_hand.append(fitted.score(X_cv[test], y_cv[test],
                                    sample_weight=weights[test]))
    np.testing.assert_allclose(routed, by_hand)
    assert not np.allclose(plain, routed)


def clone_requesting(clf):
    return sklearn.clone(clf).set_fit_request(sample_weight=True).set_score_request(
        sample_weight=True)


# -- predict_log_proba -----------------------------------------------------------------

@pytest.mark.parametrize("cls", [MAMLClassifier, FOMAMLClassifier, ReptileClassifier])
def test_predict_log_proba_is_the_log_of_predict_proba(cls):
    clf = cls(hidden_layer_sizes=(16,), random_state=0).fit(X_SUPPORT, Y_SUPPORT)
    log_proba = clf.predict_log_proba(X_QUERY)
    assert log_proba.shape == (60, 3)
    np.testing.assert_allclose(np.exp(log_proba), clf.predict_proba(X_QUERY),
                               rtol=1e-10)


def test_predict_log_proba_stays_finite_where_predict_proba_underflows():
    clf = MAMLClassifier(hidden_layer_sizes=(16,), random_state=0).fit(
        X_SUPPORT, Y_SUPPORT)
    far = X_QUERY * 1e4  # logits hundreds apart: probabilities below 1e-308
    proba = clf.predict_proba(far)
    log_proba = clf.predict_log_proba(far)
    assert (proba == 0).any()
    assert np.isfinite(log_proba).all()
    logits = torch.log_softmax(torch.from_numpy(log_proba), 1)  # already normalized
    np.testing.assert_allclose(logits.numpy(), log_proba, atol=1e-9)


def test_meta_grid_search_passes_weights_and_log_probabilities():
    sampler = EpisodeSampler(X_DIGITS, Y_DIGITS, 3, 3, 3, classes=range(3, 10),
                             random_state=0)
    search = MetaGridSearch(
        MAMLClassifier(hidden_layer_sizes=(16,), n_meta_iter=3, random_state=0),
        {"inner_steps": [5, 10]}, n_val_tasks=4, random_state=0)
    search.meta_fit(sampler)
    search.fit(X_SUPPORT, Y_SUPPORT, sample_weight=WEIGHTS)
    best = search.best_estimator_
    weighted = best.predict_proba(X_QUERY)
    np.testing.assert_allclose(search.predict_log_proba(X_QUERY), np.log(weighted),
                               rtol=1e-10)
    best.fit(X_SUPPORT, Y_SUPPORT)
    assert np.abs(best.predict_proba(X_QUERY) - weighted).max() > 1e-3
    y_query = Y_DIGITS[Y_DIGITS < 3][:60]
    score_weights = (y_query == 0).astype(float)
    assert search.score(X_QUERY, y_query, sample_weight=score_weights) == (
        best.score(X_QUERY, y_query, sample_weight=score_weights))


def test_a_saved_estimator_fitted_with_weights_predicts_the_same():
    clf = MAMLClassifier(hidden_layer_sizes=(16,), random_state=0).fit(
        X_SUPPORT, Y_SUPPORT, sample_weight=WEIGHTS)
    buffer = io.BytesIO()
    clf.save(buffer)
    buffer.seek(0)
    loaded = sk_meta.load(buffer)
    np.testing.assert_array_equal(loaded.predict_log_proba(X_QUERY),
                                  clf.predict_log_proba(X_QUERY))



# -- what the hostile pass on weights found --------------------------------------------

def test_weights_of_weight_zero_rows_never_meet_their_values():
    """A zero-weighted row holding a fill value (1e20) made fit diverge:
    (o - 1e20)^2 overflowed to inf, and 0 * inf is NaN. Such rows are now
    dropped, as removing them would."""
    X = X_SUPPORT[:, :8]
    y = X_SUPPORT[:, 10].copy()
    y[1] = 1e20
    weights = np.ones(15)
    weights[1] = 0
    kept = weights > 0
    reg = MAMLRegressor(hidden_layer_sizes=(16,), random_state=0)
    np.testing.assert_allclose(
        reg.fit(X, y, sample_weight=weights).predict(X_QUERY[:, :8]),
        reg.fit(X[kept], y[kept]).predict(X_QUERY[:, :8]), atol=TOLERANCE)
    X_filled = X_SUPPORT.copy()
    X_filled[1] = 1e20
    clf = MAMLClassifier(hidden_layer_sizes=(16,), random_state=0)
    np.testing.assert_allclose(
        clf.fit(X_filled, Y_SUPPORT, sample_weight=weights).predict_proba(X_QUERY),
        clf.fit(X_SUPPORT[kept], Y_SUPPORT[kept]).predict_proba(X_QUERY),
        atol=TOLERANCE)


def test_a_tiny_weight_still_counts_its_class():
    """Scaled to float32, a weight 1e-46 times the largest became 0: its
    one-sample class lost its prototype and its balanced share."""
    y = Y_SUPPORT.copy()
    y[0] = 7  # a class of one sample
    means = []
    for tiny in (1e-30, 1e-46, 1e-300):
        weights = np.ones(15)
        weights[0] = tiny
        clf = MAMLClassifier(hidden_layer_sizes=(16,), random_state=0).fit(
            X_SUPPORT, y, sample_weight=weights)
        means.append(clf.predict_proba(X_QUERY)[:, 3].mean())
    weights[0] = 0
    absent = MAMLClassifier(hidden_layer_sizes=(16,), random_state=0).fit(
        X_SUPPORT, y, sample_weight=weights).predict_proba(X_QUERY)[:, 3].mean()
    np.testing.assert_allclose(means, means[0], atol=1e-3)
    assert means[0] > absent + 0.05


@pytest.mark.parametrize("weights, message", [
    (np.inf, r"sample_weight must be finite, got inf"),
    (np.nan, r"sample_weight must be finite, got nan"),
    (np.zeros(15), "sample_weight"),
    (np.ones((15, 1)), "sample_weight"),
    (np.array(["1"] * 14 + ["a"]), "sample_weight"),
    (np.ones(15, complex), "sample_weight"),
    (dict.fromkeys(range(15), 1.0), "sample_weight"),
])
def test_every_refused_weight_is_named(weights, message):
    with pytest.raises(ValueError, match=message):
        MAMLClassifier(hidden_layer_sizes=(16,), random_state=0).fit(
            X_SUPPORT, Y_SUPPORT, sample_weight=weights)


def test_weights_as_a_tensor_that_requires_grad_are_read():
    clf = MAMLClassifier(hidden_layer_sizes=(16,), random_state=0)
    from_tensor = clf.fit(X_SUPPORT, Y_SUPPORT, sample_weight=torch.tensor(
        WEIGHTS, dtype=torch.float64, requires_grad=True)).predict_proba(X_QUERY)
    np.testing.assert_array_equal(
        from_tensor,
        clf.fit(X_SUPPORT, Y_SUPPORT, sample_weight=WEIGHTS).predict_proba(X_QUERY))


@pytest.mark.parametrize("dtype, scale", [(torch.float16, 2e4), (torch.float32, 3e38),
                                          (torch.bfloat16, 1.0)])
def test_uniform_functional_weights_give_the_plain_loss_at_any_scale(dtype, scale):
    """w / w.sum() in the weights' dtype overflowed: float16 weights of 2e4
    (a sum of 1.2e5) gave a loss of 0, float32 weights of 3e38 NaN."""
    torch.manual_seed(0)
    logits, y, target = torch.randn(2, 6, 3), torch.randint(0, 3, (2, 6)), torch.randn(
        2, 6, 3)
    weights = torch.full((2, 6), scale, dtype=dtype)
    for balanced in (False, True):
        torch.testing.assert_close(
            cross_entropy_loss(logits, y, 3, balanced=balanced, sample_weight=weights),
            cross_entropy_loss(logits, y, 3, balanced=balanced))
    torch.testing.assert_close(mse_loss(logits, target, sample_weight=weights),
                               mse_loss(logits, target))


def test_a_task_of_weight_zero_adds_nothing_and_bad_weights_are_refused():
    """A task whose weights were all 0 made the batch's loss NaN; negative or
    NaN weights were taken silently (a sign-flipped prototype)."""
    torch.manual_seed(0)
    logits = torch.randn(3, 6, 3, requires_grad=True)
    y = torch.randint(0, 3, (3, 6))
    weights = torch.ones(3, 6)
    weights[1] = 0
    loss = cross_entropy_loss(logits, y, 3, sample_weight=weights)
    loss.backward()
    torch.testing.assert_close(loss, cross_entropy_loss(logits[[0, 2]], y[[0, 2]], 3))
    assert torch.isfinite(logits.grad).all() and not logits.grad[1].any()
    target = torch.randn(3, 6, 3)
    torch.testing.assert_close(mse_loss(logits, target, sample_weight=weights),
                               mse_loss(logits[[0, 2]], target[[0, 2]]))
    for bad in (-torch.ones(3, 6), torch.full((3, 6), float("nan"))):
        with pytest.raises(ValueError, match="finite, non-negative weights"):
            cross_entropy_loss(logits, y, 3, sample_weight=bad)
        with pytest.raises(ValueError, match="finite, non-negative weights"):
            prototype_head(logits.detach(), y, 3, sample_weight=bad)
    with pytest.raises(TypeError, match="sample_weight must be a tensor of shape "
                                        r"\(B, n_samples\), got ndarray"):
        mse_loss(logits, target, sample_weight=np.ones((3, 6)))


def test_weighted_functional_losses_run_under_vmap():
    torch.manual_seed(0)
    logits, y = torch.randn(4, 2, 6, 3), torch.randint(0, 3, (4, 2, 6))
    weights = torch.rand(4, 2, 6)
    batched = torch.func.vmap(
        lambda z, t, w: cross_entropy_loss(z, t, 3, sample_weight=w))(
            logits, y, weights)
    looped = torch.stack([cross_entropy_loss(logits[i], y[i], 3,
                                             sample_weight=weights[i])
                          for i in range(4)])
    torch.testing.assert_close(batched, looped)


def test_dates_and_device_less_tensors_are_refused_as_weights():
    with pytest.raises(ValueError, match="sample_weight has dtype datetime64"):
        MAMLClassifier(hidden_layer_sizes=(16,)).fit(
            X_SUPPORT, Y_SUPPORT, sample_weight=np.array(["2020-01-01"] * 15,
                                                         "datetime64[D]"))
    with pytest.raises(ValueError,
                       match="sample_weight: a tensor on the .meta. device holds"):
        MAMLClassifier(hidden_layer_sizes=(16,)).fit(
            X_SUPPORT, Y_SUPPORT, sample_weight=torch.ones(15, device="meta"))


def test_weighted_functional_losses_keep_the_outputs_dtype():
    torch.manual_seed(0)
    logits, y = torch.randn(3, 8, 4), torch.randint(0, 4, (3, 8))
    weights = torch.ones(3, 8, dtype=torch.float64)
    assert cross_entropy_loss(logits, y, 4, sample_weight=weights).dtype == (
        torch.float32)
    assert mse_loss(logits, logits + 1, sample_weight=weights).dtype == torch.float32
    half = logits.to(torch.bfloat16)
    assert cross_entropy_loss(half, y, 4, sample_weight=weights.float()).dtype == (
        torch.bfloat16)


class _BatchNormNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(64, 16),
                                        torch.nn.BatchNorm1d(16), torch.nn.ReLU())
        self.out = torch.nn.Linear(16, 3)

    def forward(self, x):
        return self.out(self.body(x))


def test_one_row_of_positive_weight_under_batch_norm_says_which_rows_are_left():
    sampler = EpisodeSampler(X_DIGITS, Y_DIGITS, 3, 3, 3, classes=range(3, 10),
                             random_state=0)
    clf = MAMLClassifier(module=_BatchNormNet, n_meta_iter=2, random_state=0).meta_fit(
        sampler)
    weights = np.zeros(15)
    weights[0] = 1
    with pytest.raises(ValueError, match="the support set's rows of positive "
                                         "sample_weight has a single sample"):
        clf.fit(X_SUPPORT, Y_SUPPORT, sample_weight=weights)


# -- what the third hostile pass on weights found --------------------------------------

@pytest.mark.parametrize("meta_trained", [False, True])
def test_to_skorch_after_a_class_of_weight_zero_predicts_as_the_estimator(
        meta_trained, meta_fitted):
    """The exported net mapped output i to classes_[i]: with a class of
    weight 0 left out of the fit, skorch's code 0 was really class 1."""
    weights = np.where(Y_SUPPORT == 0, 0.0, 1.0)
    clf = (meta_fitted[FOMAMLClassifier] if meta_trained else
           FOMAMLClassifier(hidden_layer_sizes=(16,), random_state=0))
    clf.fit(X_SUPPORT, Y_SUPPORT, sample_weight=weights)
    net = clf.to_skorch()
    query = X_QUERY.astype(np.float32)
    np.testing.assert_allclose(net.predict_proba(query), clf.predict_proba(query),
                               atol=1e-6)
    np.testing.assert_array_equal(clf.classes_[net.predict(query)], clf.predict(query))


def test_a_file_with_classes_of_weight_zero_is_one_older_versions_refuse():
    """Older versions drop the unknown class_codes and predict the wrong
    classes: such a file carries the next format version (their "written
    by a newer sk_meta"), every other file the old one."""
    clf = MAMLClassifier(hidden_layer_sizes=(16,), random_state=0)
    versions = []
    for weights in (WEIGHTS, np.where(Y_SUPPORT == 0, 0.0, 1.0)):
        buffer = io.BytesIO()
        clf.fit(X_SUPPORT, Y_SUPPORT, sample_weight=weights).save(buffer)
        buffer.seek(0)
        versions.append(torch.load(buffer, weights_only=True)["version"])
        buffer.seek(0)
        np.testing.assert_array_equal(sk_meta.load(buffer).predict_proba(X_QUERY),
                                      clf.predict_proba(X_QUERY))
    assert versions == [2, 3]


def test_equal_weights_are_no_weights_even_under_inner_adam():
    """Reptile's inner Adam amplified the rounding of the weighted mean:
    weights all 1, or 0 and 1, gave up to 0.13 in probability against the
    fit without weights (or without the rows)."""
    def fitted(*args, **kwargs):
        return ReptileClassifier(hidden_layer_sizes=(16,), inner_optimizer="adam",
                                 random_state=2).fit(*args, **kwargs).predict_proba(
                                     X_QUERY)

    plain = fitted(X_SUPPORT, Y_SUPPORT)
    np.testing.assert_array_equal(fitted(X_SUPPORT, Y_SUPPORT,
                                         sample_weight=np.full(15, 4.0)), plain)
    # equal in float32, as the network sees them
    np.testing.assert_array_equal(fitted(X_SUPPORT, Y_SUPPORT, sample_weight=np.r_[
        1 + 1e-12, np.ones(14)]), plain)
    kept = WEIGHTS > 0
    np.testing.assert_array_equal(
        fitted(X_SUPPORT, Y_SUPPORT, sample_weight=kept.astype(float)),
        fitted(X_SUPPORT[kept], Y_SUPPORT[kept]))


def test_labels_of_numpy_strings_in_an_object_array_save():
    labels = np.array([np.str_(name) for name in np.array(["cat", "dog", "emu"])[
        Y_SUPPORT]], dtype=object)
    clf = MAMLClassifier(hidden_layer_sizes=(16,), random_state=0).fit(
        X_SUPPORT, labels)
    buffer = io.BytesIO()
    clf.save(buffer)
    buffer.seek(0)
    loaded = sk_meta.load(buffer)
    assert list(loaded.classes_) == ["cat", "dog", "emu"]
    np.testing.assert_array_equal(loaded.predict(X_QUERY), clf.predict(X_QUERY))


def test_too_many_classes_counts_the_classes_of_positive_weight(meta_fitted):
    clf = meta_fitted[MAMLClassifier]  # meta-trained with 3 outputs
    y = Y_SUPPORT.copy()
    y[:2] = [7, 8]
    weights = np.ones(15)
    weights[0] = 0  # 4 classes of positive weight, 5 in all
    with pytest.raises(ValueError, match="The support set's rows of positive "
                                         "sample_weight has 4 classes"):
        clf.fit(X_SUPPORT, y, sample_weight=weights)
    weights[1] = 0  # 3 of positive weight: it fits
    assert list(clf.fit(X_SUPPORT, y, sample_weight=weights).classes_) == [
        0, 1, 2, 7, 8]
