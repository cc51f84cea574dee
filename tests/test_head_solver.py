"""head_solver: per task, the output layer that adapts alone is either the
inner steps' or a logistic regression on the body's features, whichever
leave one shot out on the support set prefers by log-loss ("choose");
"auto" chooses on ReptileClassifier's pretrained MLP, the steps elsewhere.

The reference is written by hand from public pieces: ``fit`` with
``head_solver="steps"`` on the rows a fold keeps, scikit-learn's
``LogisticRegression`` on features captured by a forward hook."""

import copy

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

import sk_meta
from sk_meta import MAMLClassifier, ReptileClassifier
from sk_meta._head_choice import leave_one_shot_out, logistic_head
from sk_meta.tasks import EpisodeSampler

FAST = dict(n_meta_iter=60, validation_interval=20, random_state=0)


def _rings(n_classes, n_per_class, seed, first_radius=0.5, noise=0.08):
    """Concentric rings, one per class."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    angle = rng.uniform(0, 2 * np.pi, len(y))
    radius = first_radius + 0.5 * y + rng.normal(0, noise, len(y))
    return np.c_[radius * np.cos(angle), radius * np.sin(angle)], y


@pytest.fixture(scope="module")
def pretrained():
    """ReptileClassifier's default with 15 classes or more: the (128, 128)
    MLP pretrained on all of them, its output layer alone adapted."""
    X, y = _rings(16, 40, seed=0)
    est = ReptileClassifier(**FAST).meta_fit(
        EpisodeSampler(X, y, 3, 1, 5, shuffle_labels=True, random_state=0))
    assert est.pretrained_ and est.n_meta_iter_ == 0
    return est


def _new_tasks(n_tasks, k_shot, n_way=3, seed=1):
    """Tasks of rings meta-training never saw, noisier than its own, so that
    the steps and the regression part ways."""
    X, y = _rings(8, 40, seed=seed, first_radius=0.75, noise=0.3)
    rng = np.random.default_rng(seed)
    for _ in range(n_tasks):
        classes = rng.choice(8, n_way, replace=False)
        support = np.concatenate([rng.choice(np.flatnonzero(y == c), k_shot,
                                             replace=False) for c in classes])
        query = np.flatnonzero(np.isin(y, classes))
        yield X[support], y[support], X[query], y[query]


def _features(est, X):
    """The input of the network's last nn.Linear, captured by a hook on a
    copy of the init (the body does not move in fit)."""
    network = copy.deepcopy(est.module_)
    network.load_state_dict(est.meta_params_)
    captured = []
    layer = [m for m in network.modules() if isinstance(m, torch.nn.Linear)][-1]
    handle = layer.register_forward_hook(lambda m, inputs, out: captured.append(
        inputs[0].detach().double().numpy()))
    with torch.no_grad():
        network(torch.as_tensor(X, dtype=torch.float32))
    handle.remove()
    return captured[0]


def _by_hand(est, X_support, y_support, X_query, sample_weight=None):
    """The choice written out: returns (probabilities, chose the regression)."""
    classes = np.unique(y_support)
    # fit holds the weights in float32 (the ratios; lbfgs stops elsewhere
    # on weights 1e-7 apart)
    weights = (np.ones(len(y_support)) if sample_weight is None else
               (sample_weight / sample_weight.max()).astype(np.float32).astype(float))
    features = _features(est, X_support)

    def regression(rows):
        # as fit weighs: only the ratios (a mean of 1), and each class's sum
        # of weights counts alike ("balanced")
        y, w = y_support[rows], weights[rows] * (rows.sum() / weights[rows].sum())
        totals = {c: w[y == c].sum() for c in classes}
        balanced = w * np.array([w.sum() / (len(classes) * totals[c]) for c in y])
        return LogisticRegression(max_iter=1000).fit(features[rows], y,
                                                     sample_weight=balanced)

    steps = est.set_params(head_solver="steps")
    losses = {"steps": [], "logistic": []}
    n_folds = min(5, *(np.sum(y_support == c) for c in classes))
    for j in range(n_folds):
        held = np.zeros(len(y_support), dtype=bool)
        for c in classes:
            held[np.flatnonzero(y_support == c)[j]] = True
        probas = {
            "steps": steps.fit(X_support[~held], y_support[~held],
                               sample_weight=weights[~held]).predict_proba(
                X_support[held]),
            "logistic": regression(~held).predict_proba(features[held]),
        }
        true = np.searchsorted(classes, y_support[held])
        for name, proba in probas.items():
            nll = -np.log(proba[np.arange(len(true)), true])
            losses[name].append(np.average(nll, weights=weights[held]))
    chose = n_folds > 1 and np.mean(losses["logistic"]) < np.mean(losses["steps"])
    if chose:
        every = np.ones(len(y_support), dtype=bool)
        return regression(every).predict_proba(_features(est, X_query)), True
    return steps.fit(X_support, y_support,
                     sample_weight=sample_weight).predict_proba(X_query), False


# -- the pieces --------------------------------------------------------------------

def test_leave_one_shot_out_holds_out_one_sample_of_every_class_per_fold():
    y = np.array(["b", "a", "c", "a", "b", "c", "a", "b", "c", "a"])
    folds = leave_one_shot_out(y)
    assert len(folds) == 3  # "b" and "c" have three samples
    for fold in folds:
        assert sorted(y[fold]) == ["a", "b", "c"]
    # no sample held out twice; "a"'s fourth sample is never held out
    assert np.sum(folds, axis=0).tolist() == [1, 1, 1, 1, 1, 1, 1, 1, 1, 0]
    assert leave_one_shot_out(np.array([0, 0, 1])) == []
    assert leave_one_shot_out(np.array([], dtype=int)) == []
    # many shots: the first five of every class, one per fold
    many = np.repeat([0, 1], 40)
    folds = leave_one_shot_out(many)
    assert len(folds) == 5
    assert np.flatnonzero(np.sum(folds, axis=0)).tolist() == [0, 1, 2, 3, 4,
                                                              40, 41, 42, 43, 44]


def test_leave_one_shot_out_leaves_no_fold_a_regression_cannot_fit_or_score():
    # one class: a regression needs two
    assert leave_one_shot_out(np.zeros(5, dtype=int)) == []
    y = np.array([0, 1, 0, 1, 0, 1])
    assert len(leave_one_shot_out(y)) == 3
    # a class without weight: the regression would not see it
    assert leave_one_shot_out(y, np.array([1, 0, 1, 0, 1, 0.0])) == []
    # class 1's weight is its first row's: the fold holding it out goes
    weights = np.array([1, 2, 1, 0, 1, 0.0])
    folds = leave_one_shot_out(y, weights)
    assert len(folds) == 2
    assert not any(fold[1] for fold in folds)
    # the third rows of both classes weigh nothing: that fold scores nothing
    folds = leave_one_shot_out(y, np.array([1, 1, 1, 1, 0, 0.0]))
    assert [np.flatnonzero(fold).tolist() for fold in folds] == [[0, 1], [2, 3]]
    # weights that leave every fold in place change nothing
    np.testing.assert_array_equal(leave_one_shot_out(y, np.full(6, 0.5)),
                                  leave_one_shot_out(y))


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("class_weight", [None, "balanced"])
@pytest.mark.parametrize("weighted", [False, True])
def test_the_logistic_head_gives_scikit_learns_probabilities(n_classes, class_weight,
                                                             weighted):
    rng = np.random.default_rng(n_classes)
    features = rng.normal(size=(30, 6))
    y = np.r_[np.arange(n_classes), rng.integers(0, n_classes, 30 - n_classes)]
    weights = rng.uniform(0.2, 3.0, 30) if weighted else None
    weight, bias = logistic_head(features, y, n_classes, class_weight=class_weight,
                                 sample_weight=weights)
    assert weight.shape == (n_classes, 6) and bias.shape == (n_classes,)
    logits = torch.as_tensor(features @ weight.T + bias)
    if weighted:
        # only the ratios count, as in fit's weighted mean: rescaled to a
        # mean of 1; "balanced": each class's sum of weights counts alike
        weights = weights * (30 / weights.sum())
        if class_weight == "balanced":
            weights = weights * (30 / (n_classes * np.bincount(y, weights=weights)))[y]
        reference = LogisticRegression(max_iter=1000).fit(features, y,
                                                          sample_weight=weights)
        scaled = logistic_head(features, y, n_classes, class_weight=class_weight,
                               sample_weight=weights * 1e3)
        np.testing.assert_allclose(scaled[0], weight, rtol=1e-6, atol=1e-8)
    else:
        # scikit-learn's own "balanced" counts rows: the same without weights
        reference = LogisticRegression(max_iter=1000, class_weight=class_weight).fit(
            features, y)
    expected = reference.predict_proba(features)
    np.testing.assert_allclose(torch.softmax(logits, 1).numpy(), expected,
                               rtol=1e-10, atol=1e-12)


# -- fit ---------------------------------------------------------------------------

@pytest.mark.parametrize("k_shot", [4, 8])  # 8: five folds of the first five
def test_choose_is_the_hand_written_leave_one_shot_out(pretrained, k_shot):
    chose = []
    for X_s, y_s, X_q, _ in _new_tasks(10, k_shot=k_shot):
        expected, chose_logistic = _by_hand(pretrained, X_s, y_s, X_q)
        got = pretrained.set_params(head_solver="choose").fit(X_s, y_s)
        np.testing.assert_allclose(got.predict_proba(X_q), expected, atol=2e-5)
        chose.append(chose_logistic)
    assert any(chose) and not all(chose)  # both occur on these tasks


def test_choose_weighs_samples_as_fit_does(pretrained):
    rng = np.random.default_rng(3)
    chose = []
    for X_s, y_s, X_q, _ in _new_tasks(6, k_shot=3, seed=4):
        weights = rng.uniform(0.3, 3.0, len(y_s))
        expected, chose_logistic = _by_hand(pretrained, X_s, y_s, X_q, weights)
        got = pretrained.set_params(head_solver="choose").fit(
            X_s, y_s, sample_weight=weights)
        np.testing.assert_allclose(got.predict_proba(X_q), expected, atol=2e-5)
        chose.append(chose_logistic)
    assert any(chose)


def test_two_classes_take_the_regressions_probabilities(pretrained):
    for X_s, y_s, X_q, _ in _new_tasks(6, k_shot=4, n_way=2, seed=5):
        expected, chose_logistic = _by_hand(pretrained, X_s, y_s, X_q)
        got = pretrained.set_params(head_solver="choose").fit(X_s, y_s)
        np.testing.assert_allclose(got.predict_proba(X_q), expected, atol=2e-5)
        if chose_logistic:
            break
    else:
        pytest.fail("no two-class task chose the regression")


def test_one_shot_keeps_the_steps(pretrained):
    for X_s, y_s, X_q, _ in _new_tasks(3, k_shot=1):
        steps = pretrained.set_params(head_solver="steps").fit(X_s, y_s)
        expected = steps.predict_proba(X_q)
        chosen = pretrained.set_params(head_solver="choose").fit(X_s, y_s)
        np.testing.assert_array_equal(chosen.predict_proba(X_q), expected)


@pytest.mark.filterwarnings("ignore:the support set")
def test_support_sets_a_regression_cannot_fit_take_the_steps(pretrained):
    """One class, or every class but one without weight: scikit-learn's
    regression refuses them, fit's steps fit them."""
    X_s, y_s, X_q, _ = next(_new_tasks(1, k_shot=4))
    one_class = y_s == y_s[0]
    weights = one_class.astype(float)
    for args, kwargs in [((X_s[one_class], y_s[one_class]), {}),
                         ((X_s, y_s), {"sample_weight": weights}),
                         ((X_s, y_s), {"sample_weight": weights + 1e-3 * ~one_class}),
                         ]:
        expected = pretrained.set_params(head_solver="steps").fit(
            *args, **kwargs).predict_proba(X_q)
        for solver in ("choose", "auto"):
            got = pretrained.set_params(head_solver=solver).fit(*args, **kwargs)
            np.testing.assert_array_equal(got.predict_proba(X_q), expected)


def test_auto_chooses_on_reptiles_pretrained_mlp(pretrained):
    differ = 0
    for X_s, y_s, X_q, _ in _new_tasks(6, k_shot=4):
        auto = pretrained.set_params(head_solver="auto").fit(X_s, y_s)
        by_auto = auto.predict_proba(X_q)
        np.testing.assert_array_equal(
            by_auto, pretrained.set_params(head_solver="choose").fit(
                X_s, y_s).predict_proba(X_q))
        steps = pretrained.set_params(head_solver="steps").fit(X_s, y_s)
        differ += not np.array_equal(by_auto, steps.predict_proba(X_q))
    assert differ > 0
    assert ReptileClassifier().head_solver == "auto"  # the default


def test_auto_keeps_the_steps_elsewhere():
    """MAML's head-only network, meta-trained: "auto" is the steps, and
    "choose" (the user's) chooses there too."""
    X, y = _rings(8, 40, seed=0)
    est = MAMLClassifier(hidden_layer_sizes=(16,), adapt_layers="head",
                         **FAST).meta_fit(EpisodeSampler(X, y, 3, 4, 5,
                                                         random_state=0))
    differ = 0
    for X_s, y_s, X_q, _ in _new_tasks(6, k_shot=4):
        auto = est.set_params(head_solver="auto").fit(X_s, y_s).predict_proba(X_q)
        steps = est.set_params(head_solver="steps").fit(X_s, y_s).predict_proba(X_q)
        np.testing.assert_array_equal(auto, steps)
        expected, _ = _by_hand(est, X_s, y_s, X_q)
        chosen = est.set_params(head_solver="choose").fit(X_s, y_s).predict_proba(X_q)
        np.testing.assert_allclose(chosen, expected, atol=2e-5)
        differ += not np.array_equal(chosen, steps)
    assert differ > 0


def test_the_whole_network_adapting_takes_the_steps_whatever_head_solver():
    X, y = _rings(8, 40, seed=0)
    est = MAMLClassifier(hidden_layer_sizes=(16,), **FAST).meta_fit(
        EpisodeSampler(X, y, 3, 4, 5, random_state=0))
    assert not est.pretrained_
    for X_s, y_s, X_q, _ in _new_tasks(2, k_shot=4):
        steps = est.set_params(head_solver="steps").fit(X_s, y_s).predict_proba(X_q)
        chosen = est.set_params(head_solver="choose").fit(X_s, y_s).predict_proba(X_q)
        np.testing.assert_array_equal(chosen, steps)


# -- validation, files, parameters -------------------------------------------------

@pytest.mark.filterwarnings("ignore:the support set holds one class")
def test_validation_scores_choose_as_fit_does():
    X, y = _rings(8, 40, seed=0)
    train = list(EpisodeSampler(X, y, 3, 4, 5, n_tasks=8, random_state=0))
    validation = list(_new_tasks(4, k_shot=4))
    # a task of one class: the regression cannot fit it, the steps can
    X_s, y_s, X_q, y_q = validation[0]
    validation.append((X_s[y_s == y_s[0]], y_s[y_s == y_s[0]],
                       X_q[y_q == y_s[0]], y_q[y_q == y_s[0]]))
    scores = {}
    for solver in ("choose", "steps"):
        est = MAMLClassifier(hidden_layer_sizes=(16,), adapt_layers="head",
                             head_solver=solver, meta_batch_size=4, n_meta_iter=4,
                             validation_interval=4, random_state=0).meta_fit(
            train, validation_tasks=validation)
        expected = np.mean([copy.deepcopy(est).fit(X_s, y_s).score(X_q, y_q)
                            for X_s, y_s, X_q, y_q in validation])
        assert est.validation_scores_[-1] == pytest.approx(expected, abs=1e-6)
        scores[solver] = est.validation_scores_[-1]
    assert scores["choose"] != scores["steps"]


def test_files_written_before_the_parameter_keep_the_steps(pretrained, tmp_path):
    X_s, y_s, X_q, _ = next(_new_tasks(1, k_shot=4))
    pretrained.set_params(head_solver="auto")
    path = tmp_path / "old.skmeta"
    pretrained.save(path)
    state = torch.load(path, weights_only=True)
    assert state["params"].pop("head_solver") == "auto"
    torch.save(state, path)
    loaded = sk_meta.load(path)
    assert loaded.get_params()["head_solver"] == "steps"
    steps = pretrained.set_params(head_solver="steps").fit(X_s, y_s)
    expected = steps.predict_proba(X_q)
    np.testing.assert_array_equal(loaded.fit(X_s, y_s).predict_proba(X_q), expected)


@pytest.mark.parametrize("value", ["lbfgs", "logistic", None, True])
def test_head_solver_refuses_other_values(value):
    X_s, y_s, _, _ = next(_new_tasks(1, k_shot=2))
    with pytest.raises(ValueError, match="'head_solver' parameter"):
        ReptileClassifier(head_solver=value).fit(X_s, y_s)


def test_regressors_have_no_head_solver():
    with pytest.raises(ValueError, match="head_solver"):
        sk_meta.ReptileRegressor().set_params(head_solver="choose")


def test_a_network_whose_output_layer_has_no_bias_takes_the_steps():
    X, y = _rings(8, 40, seed=0)
    network = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(),
                                  torch.nn.Linear(16, 3, bias=False))
    est = MAMLClassifier(network, adapt_layers="head", head_init="meta",
                         prototype_scale=1.0, **FAST).meta_fit(
        EpisodeSampler(X, y, 3, 4, 5, random_state=0))
    for X_s, y_s, X_q, _ in _new_tasks(2, k_shot=4):
        steps = est.set_params(head_solver="steps").fit(X_s, y_s).predict_proba(X_q)
        chosen = est.set_params(head_solver="choose").fit(X_s, y_s).predict_proba(X_q)
        np.testing.assert_array_equal(chosen, steps)
