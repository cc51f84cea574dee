"""MAML's and FOMAML's hidden_layer_sizes="auto" with class folds that keep an
MLP: the meta-trained (64, 64) MLP and the (64, 64) MLP pretrained on all
meta-training classes, each adapted to the support set, their predicted
probabilities averaged (FIDELITY.md, twenty-ninth and thirtieth runs), unless
the meta-trained MLP scores above the pretrained one on the folds' validation
tasks beyond a 95 % interval (thirty-first run)."""

import io
import itertools
import pickle
import statistics

import joblib
import numpy as np
import pytest
import scipy.stats
import torch
from sklearn.base import clone

import sk_meta.model_selection as model_selection
from sk_meta import FOMAMLClassifier, MAMLClassifier, ReptileClassifier, load
from sk_meta.tasks import EpisodeSampler

FAST = dict(n_meta_iter=60, validation_interval=20, random_state=0)


def _rings(n_classes=8, n_per_class=60, seed=0, first_radius=0.5):
    """Concentric rings, one per class: the folds keep an MLP (the linear
    model cannot tell rings of one mean apart)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    angle = rng.uniform(0, 2 * np.pi, len(y))
    radius = first_radius + 0.5 * y + rng.normal(0, 0.08, len(y))
    return np.c_[radius * np.cos(angle), radius * np.sin(angle)], y


def _sampler():
    return EpisodeSampler(*_rings(), 3, 1, 5, shuffle_labels=True, random_state=0)


def _new_task():
    """A 3-way task of rings meta-training never saw."""
    X, y = _rings(n_classes=6, seed=1, first_radius=0.75)
    rng = np.random.default_rng(2)
    support = np.r_[[rng.choice(np.flatnonzero(y == c), 2, replace=False)
                     for c in (1, 3, 5)]].ravel()
    query = np.flatnonzero(np.isin(y, (1, 3, 5)))
    return X[support], y[support], X[query], y[query]


@pytest.fixture(scope="module")
def averaged():
    return MAMLClassifier(**FAST).meta_fit(_sampler())


@pytest.fixture(scope="module")
def mlp_alone():
    """The meta-trained member, as hidden_layer_sizes=(64, 64) meta-trains it."""
    return MAMLClassifier(hidden_layer_sizes=(64, 64), **FAST).meta_fit(_sampler())


@pytest.fixture(scope="module")
def pretrained_alone():
    """The pretrained member, as the folds' choice without the average."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(model_selection, "AUTO_AVERAGE_ALGORITHMS", ())
        return MAMLClassifier(**FAST).meta_fit(_sampler())


def _same_params(module, params):
    got = dict(module.named_parameters())
    assert got.keys() == params.keys()
    return all(torch.equal(got[name].detach(), value) for name, value in params.items())


def test_the_folds_keep_an_mlp_and_both_are_averaged(averaged, mlp_alone,
                                                     pretrained_alone):
    search = averaged.hidden_layer_sizes_search_
    assert search["averaged"] is True
    assert search["chosen"] != 1  # not the linear model
    assert averaged.hidden_layer_sizes_ == (64, 64)
    assert averaged.pretrained_ is False
    assert averaged.n_meta_iter_ == 60  # the MLP is meta-trained
    # the members are the two networks the folds compared, as each is built
    assert _same_params(averaged.module_, mlp_alone.meta_params_)
    assert pretrained_alone.pretrained_ and pretrained_alone.averaged_module_ is None
    assert _same_params(averaged.averaged_module_, pretrained_alone.meta_params_)
    assert mlp_alone.averaged_module_ is None


def _pretrained_member_by_hand(module, X_support, y_support, X_query, *,
                               scale=0.1, lr=0.1, n_steps=20):
    """ANIL from the scaled prototypes (w_k = 2 s c_k, b_k = -s ||c_k||^2) on
    the pretrained body's features, plain gradient descent on the mean
    cross-entropy, in float64."""
    params = {k: v.detach().double() for k, v in module.named_parameters()}

    def features(X):
        h = torch.from_numpy(X).double()
        h = torch.relu(h @ params["layers.0.weight"].T + params["layers.0.bias"])
        return torch.relu(h @ params["layers.1.weight"].T + params["layers.1.bias"])

    classes, codes = np.unique(y_support, return_inverse=True)
    support = features(X_support)
    codes = torch.from_numpy(codes)
    centers = torch.stack([support[codes == k].mean(0) for k in range(len(classes))])
    weight = (2 * scale * centers).requires_grad_()
    bias = (-scale * centers.square().sum(1)).requires_grad_()
    for _ in range(n_steps):
        loss = torch.nn.functional.cross_entropy(support @ weight.T + bias, codes)
        grad_w, grad_b = torch.autograd.grad(loss, (weight, bias))
        weight = (weight - lr * grad_w).detach().requires_grad_()
        bias = (bias - lr * grad_b).detach().requires_grad_()
    with torch.no_grad():
        return torch.softmax(features(X_query) @ weight.T + bias, 1).numpy()


def test_predictions_average_the_two_adapted_networks(averaged, mlp_alone):
    X_support, y_support, X_query, _ = _new_task()
    proba = clone(averaged).fit(X_support, y_support).predict_proba(X_query)
    meta_trained = clone(mlp_alone).fit(X_support, y_support).predict_proba(X_query)
    pretrained = _pretrained_member_by_hand(averaged.averaged_module_, X_support,
                                            y_support, X_query)
    np.testing.assert_allclose(proba, (meta_trained + pretrained) / 2, atol=1e-5)
    # the members differ: the average is neither of them
    assert np.abs(meta_trained - pretrained).max() > 0.05
    est = clone(averaged).fit(X_support, y_support)
    np.testing.assert_allclose(est.predict_log_proba(X_query), np.log(proba),
                               rtol=1e-6)
    np.testing.assert_array_equal(est.predict(X_query),
                                  est.classes_[proba.argmax(1)])


def test_a_class_of_weight_zero_has_probability_zero_in_the_average(averaged):
    X_support, y_support, X_query, _ = _new_task()
    weights = np.where(y_support == 5, 0.0, 1.0)
    est = clone(averaged).fit(X_support, y_support, sample_weight=weights)
    proba = est.predict_proba(X_query)
    assert list(est.classes_) == [1, 3, 5]
    assert (proba[:, 2] == 0).all()
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-12)
    assert set(est.predict(X_query)) <= {1, 3}


def test_the_average_survives_save_load_pickle_joblib_and_clone(averaged, tmp_path):
    X_support, y_support, X_query, _ = _new_task()
    fitted = clone(averaged).fit(X_support, y_support)
    expected = fitted.predict_proba(X_query)
    path = tmp_path / "est.pt"
    fitted.save(path)
    assert torch.load(path, weights_only=True)["version"] == 4
    buffer = io.BytesIO()
    joblib.dump(fitted, buffer)
    buffer.seek(0)
    for copy in (load(path), pickle.loads(pickle.dumps(fitted)), joblib.load(buffer)):
        assert copy.averaged_module_ is not None
        np.testing.assert_allclose(copy.predict_proba(X_query), expected, rtol=1e-6)
        np.testing.assert_allclose(clone(copy).fit(X_support, y_support)
                                   .predict_proba(X_query), expected, rtol=1e-6)
    # meta-fitted, not fitted: the file holds the init's two networks
    averaged.save(tmp_path / "init.pt")
    loaded = load(tmp_path / "init.pt")
    assert _same_params(loaded.averaged_module_,
                        dict(averaged.averaged_module_.named_parameters()))
    np.testing.assert_allclose(loaded.fit(X_support, y_support).predict_proba(X_query),
                               expected, rtol=1e-6)


def test_files_without_the_average_keep_their_format_version(mlp_alone, tmp_path):
    mlp_alone.save(tmp_path / "est.pt")
    assert torch.load(tmp_path / "est.pt", weights_only=True)["version"] == 2


def test_to_skorch_is_refused_with_the_way_out(averaged):
    X_support, y_support, _, _ = _new_task()
    for est in (averaged, clone(averaged).fit(X_support, y_support)):
        with pytest.raises(ValueError, match=r"averages the probabilities of "
                                             r"two networks.*=\(64, 64\)"):
            est.to_skorch()


def test_a_warm_start_meta_trains_the_mlp_and_keeps_the_pretrained_one(averaged):
    warm = clone(averaged).set_params(warm_start=True, n_meta_iter=80)
    warm.meta_fit(_sampler())
    assert warm.n_meta_iter_ == 80
    assert warm.averaged_module_ is averaged.averaged_module_
    assert not _same_params(warm.module_, averaged.meta_params_)
    X_support, y_support, X_query, _ = _new_task()
    pretrained = _pretrained_member_by_hand(warm.averaged_module_, X_support,
                                            y_support, X_query)
    alone = clone(warm)
    alone._meta = type(warm._meta)(**{**vars(warm._meta), "averaged_with": None})
    meta_trained = alone.fit(X_support, y_support).predict_proba(X_query)
    np.testing.assert_allclose(
        warm.fit(X_support, y_support).predict_proba(X_query),
        (meta_trained + pretrained) / 2, atol=1e-5)
    # meta_partial_fit goes on from it too
    warm.meta_partial_fit(list(itertools.islice(_sampler(), 8)))
    assert warm.n_meta_iter_ == 81 and warm.averaged_module_ is not None


def test_checkpoints_hold_both_networks(tmp_path):
    path = tmp_path / "checkpoint.pt"
    est = MAMLClassifier(checkpoint_path=path, checkpoint_every=20, **FAST)
    est.meta_fit(_sampler())
    with pytest.warns(UserWarning, match="checkpoint_path"):
        loaded = load(path)
    assert loaded.averaged_module_ is not None
    assert _same_params(loaded.averaged_module_,
                        dict(est.averaged_module_.named_parameters()))


def test_fomaml_averages_and_reptile_takes_one_network():
    fomaml = FOMAMLClassifier(**FAST).meta_fit(_sampler())
    assert fomaml.hidden_layer_sizes_search_["averaged"]
    assert fomaml.averaged_module_ is not None
    reptile = ReptileClassifier(**FAST).meta_fit(_sampler())
    assert not reptile.hidden_layer_sizes_search_["averaged"]
    assert reptile.hidden_layer_sizes_search_["paired"] is None
    assert reptile.averaged_module_ is None


@pytest.mark.parametrize("params", [
    {"adapt_layers": "all"}, {"head_init": "zero"}, {"inner_lr_mode": "per_layer_step"},
    {"hidden_layer_sizes": (64, 64)}])
def test_no_average_where_the_pretrained_mlp_was_not_measured(params):
    est = MAMLClassifier(**{**FAST, "n_meta_iter": 2}, **params).meta_fit(_sampler())
    assert est.averaged_module_ is None
    search = est.hidden_layer_sizes_search_
    assert search is None or not search["averaged"]


def test_no_average_where_the_folds_choose_the_linear_model():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    sampler = EpisodeSampler(X[y < 7] / 16, y[y < 7], 3, 1, 5, shuffle_labels=True,
                             random_state=0)
    est = MAMLClassifier(**FAST).meta_fit(sampler)
    assert est.hidden_layer_sizes_ == ()
    assert est.hidden_layer_sizes_search_["averaged"] is False
    assert est.hidden_layer_sizes_search_["paired"] is None  # nothing to compare
    assert est.averaged_module_ is None


def test_no_average_without_class_folds():
    est = MAMLClassifier(**{**FAST, "n_meta_iter": 2}).meta_partial_fit(
        list(itertools.islice(_sampler(), 8)))
    assert est.averaged_module_ is None
    est = MAMLClassifier(**{**FAST, "n_meta_iter": 2}).meta_fit(
        list(itertools.islice(_sampler(), 8)))
    assert est.averaged_module_ is None


def test_verbose_says_both_networks_are_used(capsys, monkeypatch):
    monkeypatch.setattr(model_selection, "AUTO_CHOICE_MARGIN", 1.0)  # as above
    MAMLClassifier(**{**FAST, "verbose": 1}).meta_fit(_sampler())
    out = capsys.readouterr().out
    assert ("the meta-trained MLP (64, 64) and the pretrained one, their "
            "probabilities averaged") in out
    assert "to average with the meta-trained one" in out
    assert "per task, the meta-trained MLP minus the pretrained one" in out
    assert "not above it, averaged" in out


def test_a_failed_fit_leaves_the_adapted_average(averaged):
    X_support, y_support, X_query, _ = _new_task()
    est = clone(averaged).fit(X_support, y_support)
    expected = est.predict_proba(X_query)
    with pytest.raises(ValueError, match="features"):
        est.fit(np.c_[X_support, X_support], y_support)
    np.testing.assert_array_equal(est.predict_proba(X_query), expected)


def test_a_file_stripped_of_the_averaged_network_is_refused(averaged, tmp_path):
    X_support, y_support, _, _ = _new_task()
    clone(averaged).fit(X_support, y_support).save(tmp_path / "est.pt")
    state = torch.load(tmp_path / "est.pt", weights_only=True)
    del state["meta"]["averaged_with"], state["fit"]["averaged_with"]
    torch.save(state, tmp_path / "stripped.pt")
    with pytest.raises(ValueError, match="averages two networks.*holds one"):
        load(tmp_path / "stripped.pt")
    state = torch.load(tmp_path / "est.pt", weights_only=True)
    del state["fit"]["averaged_with"]
    torch.save(state, tmp_path / "half.pt")
    with pytest.raises(ValueError, match="disagree on the averaged network"):
        load(tmp_path / "half.pt")
    state = torch.load(tmp_path / "est.pt", weights_only=True)
    del state["meta"]["averaged_with"]["module_state"]
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(ValueError, match="averaged network: KeyError: 'module_state'"):
        load(tmp_path / "broken.pt")


def test_validation_scores_the_average_the_estimator_predicts():
    X, y = _rings(n_classes=6, seed=1, first_radius=0.75)
    validation = list(itertools.islice(
        EpisodeSampler(X, y, 3, 2, 10, random_state=5), 5))
    est = MAMLClassifier(**FAST).meta_fit(_sampler(), validation_tasks=validation)
    assert est.averaged_module_ is not None
    scores = [clone(est).fit(t.X_support, t.y_support).score(t.X_query, t.y_query)
              for t in validation]
    assert est.validation_scores_[-1] == pytest.approx(np.mean(scores), abs=1e-12)
    # not the meta-trained network's alone
    alone = clone(est)
    alone._meta = type(est._meta)(**{**vars(est._meta), "averaged_with": None})
    alone_scores = [alone.fit(t.X_support, t.y_support).score(t.X_query, t.y_query)
                    for t in validation]
    assert np.mean(alone_scores) != pytest.approx(np.mean(scores), abs=1e-3)


def test_validation_tasks_of_more_classes_than_n_way_are_refused_before_the_folds(
        monkeypatch):
    """The sampler's n_way sizes the network: a 4-class validation task was
    refused only after the folds and the pretraining had run."""
    def folds_ran(*args, **kwargs):
        raise AssertionError("the class folds ran")

    monkeypatch.setattr(model_selection, "_score_candidates", folds_ran)
    X, y = _rings(n_classes=6, seed=1, first_radius=0.75)
    validation = list(itertools.islice(EpisodeSampler(X, y, 4, 1, 10,
                                                      random_state=5), 1))
    with pytest.raises(ValueError, match="validation_tasks: task 0: has 4 classes, "
                                         "but the network has 3 outputs"):
        MAMLClassifier(**FAST).meta_fit(_sampler(), validation_tasks=validation)


# -- which MLP: the two compared task by task on the folds ----------------------------
def test_paired_difference_is_the_interval_of_a_paired_t_test():
    rng = np.random.default_rng(0)
    second = rng.uniform(size=300)
    for shift, above in ((0.05, True), (0.0, False), (-0.05, False)):
        first = second + shift + rng.normal(0, 0.1, 300)
        got = model_selection._paired_difference(first, second, 0.95)
        interval = scipy.stats.ttest_rel(first, second).confidence_interval(0.95)
        differences = [float(a - b) for a, b in zip(first, second)]
        assert got["difference"] == pytest.approx(statistics.fmean(differences),
                                                   rel=1e-12)
        assert got["difference"] - got["half_width"] == pytest.approx(interval.low,
                                                                      rel=1e-9)
        assert got["n_tasks"] == 300
        assert got["above"] is above is bool(interval.low > 0)
    # equal scores, or a task without a score: never above
    assert not model_selection._paired_difference(second, second, 0.95)["above"]
    first = second + 1.0
    first[3] = np.nan
    assert not model_selection._paired_difference(first, second, 0.95)["above"]


def test_the_comparison_scores_each_task_as_the_folds_validation_did(monkeypatch):
    scored = []

    def task_scores(estimator, tasks):
        scores = real(estimator, tasks)
        scored.append((bool(estimator._meta.pretrained), scores))
        return scores

    real = model_selection._task_scores
    monkeypatch.setattr(model_selection, "_task_scores", task_scores)
    # the folds keep the meta-trained MLP (on the rings they take the
    # pretrained one by more than the margin), so the comparison runs
    monkeypatch.setattr(model_selection, "AUTO_CHOICE_MARGIN", 1.0)
    search = MAMLClassifier(**FAST).meta_fit(_sampler()).hidden_layer_sizes_search_
    n_folds = search["n_folds"]
    # the meta-trained MLP's folds, then the pretrained MLP's
    assert [pretrained for pretrained, _ in scored] == ([False] * n_folds
                                                        + [True] * n_folds)
    for index, member in enumerate((0, 2)):
        means = [float(np.mean(scores))
                 for _, scores in scored[index * n_folds:(index + 1) * n_folds]]
        np.testing.assert_allclose(means, search["fold_scores"][member], atol=1e-12)
    differences = np.concatenate([s for _, s in scored[:n_folds]]) - np.concatenate(
        [s for _, s in scored[n_folds:]])
    assert search["paired"]["candidates"] == [0, 2]
    assert search["paired"]["n_tasks"] == len(differences)
    assert search["paired"]["difference"] == pytest.approx(differences.mean())


@pytest.mark.parametrize("meta_trained_ahead", [True, False])
def test_the_meta_trained_mlp_alone_where_it_is_clearly_above(
        monkeypatch, mlp_alone, meta_trained_ahead):
    real = model_selection._task_scores

    def task_scores(estimator, tasks):
        scores = real(estimator, tasks)
        if estimator._meta.pretrained:  # as far below as asked, or level
            return scores * 0.5 if meta_trained_ahead else scores
        return scores if meta_trained_ahead else scores * 0.5

    monkeypatch.setattr(model_selection, "_task_scores", task_scores)
    # the folds keep the meta-trained MLP (on the rings they take the
    # pretrained one by more than the margin)
    monkeypatch.setattr(model_selection, "AUTO_CHOICE_MARGIN", 1.0)
    est = MAMLClassifier(**FAST).meta_fit(_sampler())
    search = est.hidden_layer_sizes_search_
    assert search["chosen"] == 0
    assert search["paired"]["above"] is meta_trained_ahead
    assert search["averaged"] is not meta_trained_ahead
    assert est.hidden_layer_sizes_ == (64, 64) and not est.pretrained_
    # the meta-trained MLP either way, exactly as (64, 64) meta-trains it
    assert _same_params(est.module_, mlp_alone.meta_params_)
    assert (est.averaged_module_ is None) is meta_trained_ahead
    X_support, y_support, X_query, _ = _new_task()
    proba = est.fit(X_support, y_support).predict_proba(X_query)
    alone = clone(mlp_alone).fit(X_support, y_support).predict_proba(X_query)
    assert np.array_equal(proba, alone) is meta_trained_ahead


def test_the_pretrained_mlp_chosen_by_the_folds_is_averaged_and_not_compared(
        monkeypatch):
    # the comparison decides nothing there: it is not run, and per-task
    # scores that disagreed with the folds' means could not leave the
    # pretrained MLP alone
    real = model_selection._task_scores
    calls = []

    def task_scores(estimator, tasks):
        calls.append(estimator)
        scores = real(estimator, tasks)
        return scores * 0.5 if estimator._meta.pretrained else scores

    monkeypatch.setattr(model_selection, "_task_scores", task_scores)
    est = MAMLClassifier(**FAST).meta_fit(_sampler())
    search = est.hidden_layer_sizes_search_
    assert search["chosen"] == 2 and search["paired"] is None and not calls
    assert search["averaged"] is True
    assert not est.pretrained_ and est.averaged_module_ is not None
