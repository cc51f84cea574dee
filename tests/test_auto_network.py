"""hidden_layer_sizes="auto", the classifiers' default: with an EpisodeSampler
of fewer than 10 classes, class folds choose between the
MLP, the model without hidden layers and (with adapt_layers="auto") the
pretrained MLP; with more, it is the (128, 128) MLP (pretrained for
Reptile); otherwise the (64, 64) MLP. The pretrained MLP: test_pretrained_choice.py."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits

import sk_meta._fitting
import sk_meta.model_selection
from sk_meta import (
    FOMAMLClassifier,
    MAMLClassifier,
    MAMLRegressor,
    ReptileClassifier,
    load,
)
from sk_meta.model_selection import MetaGridSearch
from sk_meta.tasks import EpisodeSampler

FAST = dict(n_meta_iter=60, validation_interval=20, random_state=0)


def _digits(n_classes=7):
    """Pixel digits: the support set alone separates new classes."""
    X, y = load_digits(return_X_y=True)
    keep = y < n_classes
    return X[keep] / 16, y[keep]


def _rings(n_classes=8, n_per_class=60, seed=0):
    """Concentric rings, one per class: every class has the same mean, so a
    linear model started from the class means cannot tell them apart."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    angle = rng.uniform(0, 2 * np.pi, len(y))
    radius = 0.5 + 0.5 * y + rng.normal(0, 0.08, len(y))
    return np.c_[radius * np.cos(angle), radius * np.sin(angle)], y


def _sampler(X, y, **kwargs):
    return EpisodeSampler(X, y, 3, 1, 5, shuffle_labels=True, random_state=0,
                          **kwargs)


@pytest.fixture(scope="module")
def digits_choice():
    sampler = _sampler(*_digits())
    return MAMLClassifier(**FAST).meta_fit(sampler), sampler


@pytest.fixture(scope="module")
def rings_choice():
    # adapt_layers set: the MLP against the linear model alone (the
    # pretrained MLP, a candidate with adapt_layers="auto", wins here)
    sampler = _sampler(*_rings())
    return MAMLClassifier(adapt_layers="all", **FAST).meta_fit(sampler), sampler


def _same_params(a, b):
    return (a.keys() == b.keys()
            and all(torch.equal(a[name], b[name]) for name in a))


def test_the_classifiers_default_to_auto():
    for cls in (MAMLClassifier, FOMAMLClassifier, ReptileClassifier):
        assert cls().hidden_layer_sizes == "auto"
    assert MAMLRegressor().hidden_layer_sizes == (64, 64)


def test_digits_choose_the_model_without_hidden_layers(digits_choice):
    est, _ = digits_choice
    search = est.hidden_layer_sizes_search_
    assert est.hidden_layer_sizes_ == ()
    assert est.meta_architecture_["hidden_layer_sizes"] == ()
    assert search["candidates"] == [
        {"hidden_layer_sizes": (64, 64)}, {"hidden_layer_sizes": ()},
        {"hidden_layer_sizes": (64, 64), "pretrained": True}]
    assert search["n_folds"] == 3
    assert all(len(fold) == 3 for fold in search["fold_scores"])
    assert search["scores"][1] > search["scores"][0]
    # the score of a candidate is its folds' mean at one validation
    np.testing.assert_allclose(search["scores"],
                               [np.mean(fold) for fold in search["fold_scores"]])


def test_rings_keep_the_mlp(rings_choice):
    est, _ = rings_choice
    assert est.hidden_layer_sizes_ == (64, 64)
    scores = est.hidden_layer_sizes_search_["scores"]
    assert scores[0] > scores[1] + 0.1


@pytest.mark.parametrize("which", ["digits", "rings"])
def test_the_chosen_network_meta_trains_as_if_it_had_been_set(
        which, digits_choice, rings_choice):
    """The folds draw neither from the sampler nor from the estimator's
    seeds: the init is the one the chosen sizes, set by hand, give."""
    est, sampler = digits_choice if which == "digits" else rings_choice
    by_hand = MAMLClassifier(hidden_layer_sizes=est.hidden_layer_sizes_,
                             adapt_layers=est.adapt_layers, **FAST)
    by_hand.meta_fit(sampler)
    assert _same_params(est.meta_params_, by_hand.meta_params_)
    assert by_hand.hidden_layer_sizes_search_ is None


def test_the_chosen_linear_model_is_not_meta_trained(digits_choice):
    """With the prototype head and a fixed rate, the model without hidden
    layers rebuilds its one layer for each task: meta-training would move no
    weight, so the chosen one skips it (set by hand, it meta-trains, to the
    same init: test above)."""
    est, sampler = digits_choice
    assert est.hidden_layer_sizes_ == ()
    assert est.n_meta_iter_ == 0 and est.meta_loss_curve_ == []
    assert est.pretrained_ is False
    by_hand = MAMLClassifier(hidden_layer_sizes=(), **FAST).meta_fit(sampler)
    assert by_hand.n_meta_iter_ == FAST["n_meta_iter"]


@pytest.mark.parametrize("params", [{"head_init": "zero"},
                                    {"inner_lr_mode": "per_layer_step"}])
def test_a_chosen_linear_model_that_meta_training_moves_is_meta_trained(
        params, monkeypatch):
    monkeypatch.setattr(
        sk_meta.model_selection, "_choose_network",
        lambda *args, **kwargs: ({"hidden_layer_sizes": ()}, None))
    est = MAMLClassifier(**params, **FAST).meta_fit(_sampler(*_digits()))
    assert est.hidden_layer_sizes_ == ()
    assert est.n_meta_iter_ == FAST["n_meta_iter"]


def test_auto_prototype_scale_without_hidden_layers_is_a_tenth():
    X, y = _digits(10)
    sampler = _sampler(X[y < 7], y[y < 7])
    X_new, y_new = X[y >= 7], y[y >= 7]
    support = np.r_[[np.flatnonzero(y_new == c)[0] for c in (7, 8, 9)]]

    def proba(scale):
        est = MAMLClassifier(hidden_layer_sizes=(), prototype_scale=scale,
                             n_meta_iter=2, random_state=0).meta_fit(sampler)
        return est.fit(X_new[support], y_new[support]).predict_proba(X_new)

    auto = proba("auto")
    np.testing.assert_allclose(auto, proba(0.1), rtol=1e-5, atol=1e-6)
    assert not np.allclose(auto, proba(0.3), atol=1e-3)


def _fails_if_called(*args, **kwargs):
    raise AssertionError("the class folds ran")


@pytest.mark.parametrize("case", [
    "15 classes", "too few classes for two folds", "a list of tasks",
    "a sampler subclass", "a module", "meta_partial_fit", "sizes set"])
def test_no_folds_where_they_do_not_apply(case, monkeypatch):
    monkeypatch.setattr(sk_meta.model_selection, "_score_candidates",
                        _fails_if_called)
    # 15 classes, where a classifier's meta_fit on an EpisodeSampler takes
    # the wide MLP: none of these cases does
    X, y = _rings(n_classes=15, n_per_class=12)
    params = dict(n_meta_iter=2, random_state=0)
    tasks = _sampler(X, y)
    if case == "too few classes for two folds":
        keep = y < 4  # 2 held out of 4 leave 2, fewer than n_way=3
        tasks = _sampler(X[keep], y[keep])
    elif case == "a list of tasks":
        tasks = list(_sampler(X, y, n_tasks=4))
    elif case == "a sampler subclass":
        class Sampler(EpisodeSampler):
            pass

        tasks = Sampler(X, y, 3, 1, 5, random_state=0)
    elif case == "a module":
        params["module"] = torch.nn.Linear(2, 3)
    elif case == "sizes set":
        params["hidden_layer_sizes"] = (8,)
    est = MAMLClassifier(**params)
    if case == "meta_partial_fit":
        est.meta_partial_fit(_sampler(X, y, n_tasks=4))
    else:
        est.meta_fit(tasks)
    assert est.hidden_layer_sizes_search_ is None
    expected = {"a module": None, "sizes set": (8,), "15 classes": (128, 128),
                "meta_partial_fit": (128, 128)}.get(case, (64, 64))
    assert est.hidden_layer_sizes_ == expected
    if expected is not None:  # the network meta-trained is that one
        widths = [p.shape[0] for name, p in est.meta_params_.items()
                  if name.endswith("weight")][:-1]
        assert tuple(widths) == expected


@pytest.mark.parametrize("Estimator", [MAMLClassifier, FOMAMLClassifier,
                                       ReptileClassifier])
def test_many_classes_take_the_wide_mlp(Estimator, monkeypatch, capsys):
    sampler = _sampler(*_rings(n_classes=16, n_per_class=12))
    with monkeypatch.context() as patch:
        patch.setattr(sk_meta.model_selection, "_score_candidates",
                      _fails_if_called)
        est = Estimator(n_meta_iter=2, random_state=0, verbose=1).meta_fit(sampler)
    assert est.hidden_layer_sizes_ == (128, 128)
    assert est.hidden_layer_sizes_search_ is None
    # Reptile's is pretrained, not meta-trained (test_pretrained_choice.py)
    reptile = Estimator is ReptileClassifier
    assert est.n_meta_iter_ == (0 if reptile else 2)
    assert est.pretrained_ is reptile
    assert (f"{'pretrained ' if reptile else ''}MLP (128, 128), for the sampler's "
            "16 classes") in capsys.readouterr().out
    # what it meta-trained is what fit adapts, and a clone's fresh meta_fit
    # on fewer classes makes its own choice
    X, y = _rings(n_classes=3, n_per_class=12)
    assert est.fit(X, y).score(X, y) >= 0
    assert est.meta_params_["layers.0.weight"].shape == (128, 2)
    other = clone(est).set_params(verbose=0).meta_fit(
        _sampler(*_rings(n_classes=7, n_per_class=12)))
    assert other.hidden_layer_sizes_ in {(64, 64), ()}
    assert other.hidden_layer_sizes_search_ is not None


class _FoldsRan(Exception):
    pass


def _raise_folds_ran(*args, **kwargs):
    raise _FoldsRan


@pytest.mark.parametrize("Estimator, n_classes, folds", [
    (MAMLClassifier, 9, True), (MAMLClassifier, 10, False),
    (FOMAMLClassifier, 9, True), (FOMAMLClassifier, 10, False),
    (ReptileClassifier, 9, True), (ReptileClassifier, 10, False)])
def test_the_wide_mlp_starts_at_the_algorithms_class_count(
        Estimator, n_classes, folds, monkeypatch):
    """MAML's and FOMAML's wider MLP gains from 10 meta-training classes
    (FIDELITY.md, twenty-third run), Reptile's, pretrained, from 10 too
    (thirty-fifth run)."""
    monkeypatch.setattr(sk_meta.model_selection, "_score_candidates",
                        _raise_folds_ran)
    est = Estimator(n_meta_iter=2, random_state=0)
    sampler = _sampler(*_rings(n_classes=n_classes, n_per_class=12))
    if folds:
        with pytest.raises(_FoldsRan):
            est.meta_fit(sampler)
        assert not hasattr(est, "hidden_layer_sizes_")
    else:
        est.meta_fit(sampler)
        assert est.hidden_layer_sizes_ == (128, 128)
        assert est.hidden_layer_sizes_search_ is None
        assert est.pretrained_ == (Estimator is ReptileClassifier)


@pytest.mark.parametrize("n_classes, folds", [(14, True), (15, False)])
def test_reptile_meta_trains_the_wide_mlp_from_15_classes(n_classes, folds,
                                                           monkeypatch):
    """Where Reptile cannot take the wide MLP pretrained (here the whole
    network adapts), it meta-trains it from 15 classes, as before: with 10
    and 12 its meta-trained wide MLP lost up to 7 points (twenty-second
    run)."""
    monkeypatch.setattr(sk_meta.model_selection, "_score_candidates",
                        _raise_folds_ran)
    est = ReptileClassifier(adapt_layers="all", n_meta_iter=2, random_state=0)
    sampler = _sampler(*_rings(n_classes=n_classes, n_per_class=12))
    if folds:
        with pytest.raises(_FoldsRan):
            est.meta_fit(sampler)
    else:
        est.meta_fit(sampler)
        assert est.hidden_layer_sizes_ == (128, 128)
        assert not est.pretrained_ and est.n_meta_iter_ == 2


def test_the_wide_mlp_survives_save_pickle_and_a_pipeline(tmp_path):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sk_meta.pipeline import meta_fit_pipeline

    X, y = _rings(n_classes=16, n_per_class=12)
    est = MAMLClassifier(n_meta_iter=2, random_state=0).meta_fit(_sampler(X, y))
    est.save(tmp_path / "wide.pt")
    support = X[np.isin(y, [0, 5, 9])], y[np.isin(y, [0, 5, 9])]
    expected = est.fit(*support).predict_proba(support[0])
    for copy in (load(tmp_path / "wide.pt"), pickle.loads(pickle.dumps(est))):
        assert copy.hidden_layer_sizes_ == (128, 128)
        np.testing.assert_allclose(copy.fit(*support).predict_proba(support[0]),
                                   expected, rtol=1e-5, atol=1e-6)
    pipe = meta_fit_pipeline(make_pipeline(StandardScaler(), MAMLClassifier(
        n_meta_iter=2, random_state=0)), _sampler(X, y))
    assert pipe[-1].hidden_layer_sizes_ == (128, 128)


def test_regressors_take_auto_as_the_mlp(monkeypatch):
    monkeypatch.setattr(sk_meta.model_selection, "_score_candidates",
                        _fails_if_called)
    rng = np.random.default_rng(0)
    tasks = [(rng.normal(size=(5, 2)), rng.normal(size=5),
              rng.normal(size=(5, 2)), rng.normal(size=5)) for _ in range(4)]
    est = MAMLRegressor(hidden_layer_sizes="auto", n_meta_iter=2,
                        random_state=0).meta_fit(tasks)
    assert est.hidden_layer_sizes_ == (64, 64)


def test_warm_start_keeps_the_choice_and_a_new_meta_fit_makes_its_own(
        digits_choice, monkeypatch):
    est, sampler = digits_choice
    warm = clone(est).set_params(warm_start=True, n_meta_iter=80)
    with monkeypatch.context() as patch:
        patch.setattr(sk_meta.model_selection, "_score_candidates",
                      _fails_if_called)
        warm.meta_fit(sampler)
    assert warm.n_meta_iter_ == 80
    assert warm.hidden_layer_sizes_ == ()
    assert warm.hidden_layer_sizes_search_ == est.hidden_layer_sizes_search_
    # a fresh meta-training of the same estimator on 15 classes: the wide MLP
    fresh = clone(est).set_params(n_meta_iter=2)
    fresh.meta_fit(_sampler(*_rings(n_classes=15, n_per_class=12)))
    assert fresh.hidden_layer_sizes_ == (128, 128)
    assert fresh.hidden_layer_sizes_search_ is None


def test_the_choice_survives_save_pickle_and_clone(digits_choice, tmp_path):
    est, _ = digits_choice
    X, y = _digits(10)
    support = np.r_[[np.flatnonzero(y == c)[0] for c in (7, 8, 9)]]
    X_query = X[y >= 7]
    expected = est.fit(X[support], y[support]).predict_proba(X_query)
    est.save(tmp_path / "est.pt")
    copies = [load(tmp_path / "est.pt"), pickle.loads(pickle.dumps(est)), clone(est)]
    for copy in copies:
        assert copy.hidden_layer_sizes == "auto"
        assert copy.hidden_layer_sizes_ == ()
        assert copy.hidden_layer_sizes_search_ == est.hidden_layer_sizes_search_
        np.testing.assert_allclose(
            copy.fit(X[support], y[support]).predict_proba(X_query), expected,
            rtol=1e-5, atol=1e-6)


def test_setting_other_sizes_after_the_choice_is_refused(digits_choice):
    est, _ = digits_choice
    X, y = _digits(10)
    other = clone(est).set_params(hidden_layer_sizes=(64, 64))
    with pytest.raises(ValueError, match="architecture changed.*hidden_layer_sizes"):
        other.fit(X[:6], y[:6])


def test_bad_validation_tasks_are_refused_before_the_folds(monkeypatch):
    monkeypatch.setattr(sk_meta.model_selection, "_score_candidates",
                        _fails_if_called)
    X, y = _digits()
    bad = [(X[:3, :5], y[:3], X[3:6, :5], y[3:6]), (X[:3], y[:3], X[3:6], y[3:6])]
    with pytest.raises(ValueError, match="validation_tasks"):
        MAMLClassifier(**FAST).meta_fit(_sampler(X, y), validation_tasks=bad)


def test_validation_tasks_from_a_generator_are_read_once(rings_choice):
    # the rings keep the MLP, which is meta-trained (validated three times)
    est, sampler = rings_choice
    X, y = _rings(n_classes=11)
    held_out = EpisodeSampler(X, y, 3, 1, 5, classes=[8, 9, 10], n_tasks=4,
                              random_state=1)
    from_list = MAMLClassifier(adapt_layers="all", **FAST).meta_fit(
        sampler, validation_tasks=list(held_out))
    from_generator = MAMLClassifier(adapt_layers="all", **FAST).meta_fit(
        sampler, validation_tasks=(task for task in held_out))
    assert from_list.hidden_layer_sizes_ == (64, 64)
    assert from_generator.validation_scores_ == from_list.validation_scores_
    assert len(from_list.validation_scores_) == 3


def test_a_failed_meta_fit_leaves_the_choice(digits_choice, monkeypatch):
    est, sampler = digits_choice
    failing = clone(est)
    before = failing.meta_params_

    def interrupted(*args, **kwargs):
        raise ValueError("meta-training failed")

    monkeypatch.setattr(sk_meta._fitting, "meta_train", interrupted)
    with pytest.raises(ValueError, match="meta-training failed"):
        failing.meta_fit(_sampler(*_rings()))
    assert failing.hidden_layer_sizes_ == ()
    assert _same_params(failing.meta_params_, before)
    assert "_chosen_hidden_layer_sizes" not in failing.__dict__


def test_checkpoints_are_written_by_the_meta_training_alone(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    written = []
    original = MAMLClassifier._save_checkpoint

    def recorded(self, result):
        written.append(result.hidden_layer_sizes)
        original(self, result)

    monkeypatch.setattr(MAMLClassifier, "_save_checkpoint", recorded)
    # the rings keep the MLP, which is meta-trained
    MAMLClassifier(adapt_layers="all", checkpoint_path=path, checkpoint_every=30,
                   **FAST).meta_fit(_sampler(*_rings()))
    assert load(path).hidden_layer_sizes_ == (64, 64)
    chosen, written[:] = list(written), []
    MAMLClassifier(adapt_layers="all", hidden_layer_sizes=(64, 64),
                   checkpoint_path=path, checkpoint_every=30,
                   **FAST).meta_fit(_sampler(*_rings()))
    # as many as without the folds: none of them wrote one
    assert chosen == written
    assert len(written) >= 2


def test_verbose_says_what_was_chosen(capsys):
    MAMLClassifier(verbose=1, **FAST).meta_fit(_sampler(*_digits()))
    out = capsys.readouterr().out
    # before the folds, which may take minutes, then their outcome
    assert out.index("meta-training MLP (64, 64), linear (), pretrained MLP "
                     "(64, 64) on 3 folds of the 7 classes") \
        < out.index("hidden_layer_sizes='auto': linear (), not meta-trained, by "
                    "the mean validation score over 3 class folds")
    assert "3 class folds" in out
    assert "Meta-iteration" not in out  # none ran: no progress line


def test_metagridsearch_says_when_auto_stands_for_the_mlp_alone():
    X, y = _digits()
    grids = {"no candidate sets it": ({"inner_lr": [0.1]}, True),
             "one does": ([{"inner_lr": [0.1]}, {"hidden_layer_sizes": [()]}], False)}
    for grid, warns in grids.values():
        search = MetaGridSearch(MAMLClassifier(n_meta_iter=2, random_state=0), grid,
                                n_val_tasks=2, random_state=0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            search.meta_fit(_sampler(X, y))
        said = [w for w in caught if "in every candidate" in str(w.message)]
        assert bool(said) == warns
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        MetaGridSearch(MAMLClassifier(hidden_layer_sizes=(64, 64), n_meta_iter=2,
                                      random_state=0), {"inner_lr": [0.1]},
                       n_val_tasks=2, random_state=0).meta_fit(_sampler(X, y))


def test_to_skorch_before_fit_says_the_head_is_not_trained():
    est = MAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=2, random_state=0)
    est.meta_fit(_sampler(*_digits()))
    with pytest.warns(UserWarning, match="the output layer is built from a task's "
                                         "support set by fit"):
        est.to_skorch()
    X, y = _digits(10)
    support = np.r_[[np.flatnonzero(y == c)[0] for c in (7, 8, 9)]]
    est.fit(X[support], y[support])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        est.to_skorch()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        MAMLClassifier(head_init="meta", hidden_layer_sizes=(8,), n_meta_iter=2,
                       random_state=0).meta_fit(_sampler(*_digits())).to_skorch()


def test_metagridsearch_candidates_do_not_run_folds_of_their_own(monkeypatch):
    calls = []
    original = sk_meta.model_selection._score_candidates

    def counted(*args, **kwargs):
        calls.append(kwargs["searcher"])
        return original(*args, **kwargs)

    monkeypatch.setattr(sk_meta.model_selection, "_score_candidates", counted)
    search = MetaGridSearch(MAMLClassifier(n_meta_iter=20, validation_interval=10,
                                           random_state=0),
                            {"inner_lr": [0.1]}, n_val_tasks=5, random_state=0)
    with pytest.warns(UserWarning, match="hidden_layer_sizes='auto' is \\(64, 64\\) "
                                         "in every candidate") as caught:
        search.meta_fit(_sampler(*_digits()))
    # it names both choices the estimator's own meta_fit would make
    message = str(caught[0].message)
    assert ("(128, 128) with 10 classes or more (for Reptile pretrained from 10, "
            "meta-trained from 15 where it cannot take it pretrained)") in message
    assert "class folds with fewer" in message
    assert calls == ["MetaGridSearch"]
    assert search.best_estimator_.hidden_layer_sizes_ == (64, 64)


def _old_file(tmp_path, est):
    """``est`` saved as a file written before the network and the scale of
    ``prototype_scale="auto"`` were recorded."""
    est.save(tmp_path / "new.pt")
    state = torch.load(tmp_path / "new.pt", weights_only=True)
    for field in ("hidden_layer_sizes", "hidden_layer_sizes_search",
                  "auto_prototype_scale"):
        del state["meta"][field]
    torch.save(state, tmp_path / "old.pt")
    return tmp_path / "old.pt"


def test_files_from_before_the_choice_keep_their_prototype_scale(tmp_path):
    """An init without hidden layers saved before ``"auto"`` meant 0.1 for
    it was meta-trained, and is adapted, at 0.3."""
    X, y = _digits(10)
    sampler = _sampler(X[y < 7], y[y < 7])
    support = np.r_[[np.flatnonzero(y == c)[0] for c in (7, 8, 9)]]
    est = MAMLClassifier(hidden_layer_sizes=(), head_init="prototype",
                         n_meta_iter=2, random_state=0).meta_fit(sampler)
    old, new = load(_old_file(tmp_path, est)), load(tmp_path / "new.pt")
    assert old.hidden_layer_sizes_ == new.hidden_layer_sizes_ == ()

    def proba(model, **params):
        model = clone(model).set_params(**params)
        return model.fit(X[support], y[support]).predict_proba(X[y >= 7])

    np.testing.assert_allclose(proba(old), proba(est, prototype_scale=0.3),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(proba(new), proba(est, prototype_scale=0.1),
                               rtol=1e-5, atol=1e-6)


def test_validation_tasks_unlike_the_sampler_are_refused_before_the_folds(
        monkeypatch):
    import pandas as pd

    monkeypatch.setattr(sk_meta.model_selection, "_score_candidates",
                        _fails_if_called)
    X, y = _digits()
    narrow = [(X[:3, :5], y[:3], X[3:6, :5], y[3:6])] * 2
    with pytest.raises(ValueError, match="meta-training sampler's X has"):
        MAMLClassifier(**FAST).meta_fit(_sampler(X, y), validation_tasks=narrow)
    columns = [f"pixel{i}" for i in range(64)]
    frame = pd.DataFrame(X, columns=columns)
    renamed = frame.rename(columns={"pixel0": "other"})
    other_names = [(renamed[:3], y[:3], renamed[3:6], y[3:6])]
    with pytest.raises(ValueError, match="feature names|pixel0"):
        MAMLClassifier(**FAST).meta_fit(_sampler(frame, y),
                                        validation_tasks=other_names)


def test_an_error_in_a_fold_says_where_and_holds_no_fold_estimator():
    from sk_meta.exceptions import DivergenceError

    X, y = _digits()
    X = X.copy()
    X[np.flatnonzero(y == 5)[:3]] = np.nan
    # the data's problem first, then where it showed
    with pytest.raises(ValueError, match=r"NaN.*\(a task drawn from its .* classes, "
                                         r"in hidden_layer_sizes='auto', meta-training "
                                         r"\{'hidden_layer_sizes': \(64, 64\)\} on "
                                         r"class fold 1 of 3\)$"):
        MAMLClassifier(**FAST).meta_fit(_sampler(X, y))
    with pytest.raises(DivergenceError) as caught:
        FOMAMLClassifier(meta_lr=1e12, meta_optimizer="sgd", **FAST).meta_fit(
            _sampler(*_digits()))
    assert caught.value.estimator is None
    assert getattr(caught.value, "result", None) is None
    assert str(caught.value).startswith("hidden_layer_sizes='auto', meta-training "
                                        "{'hidden_layer_sizes': (64, 64)} on class "
                                        "fold 1 of 3: meta-training diverged")
    assert "exc.estimator" not in str(caught.value)


def test_metagridsearch_refuses_auto_in_its_grid():
    search = MetaGridSearch(MAMLClassifier(**FAST),
                            {"hidden_layer_sizes": ["auto", ()]}, random_state=0)
    with pytest.raises(ValueError, match="must not set hidden_layer_sizes='auto'.*"
                       r"\(128, 128\) with 10 classes or more \(for Reptile "
                       r"pretrained from 10, meta-trained from 15 where it cannot "
                       r"take it pretrained\)"):
        search.meta_fit(_sampler(*_digits()))


def test_the_folds_do_not_draw_from_the_samplers_generator():
    X, y = _digits()

    def sampler():
        return EpisodeSampler(X, y, 3, 1, 5, shuffle_labels=True,
                              random_state=np.random.default_rng(0))

    params = dict(head_init="meta", **FAST)
    auto = MAMLClassifier(**params).meta_fit(sampler())
    by_hand = MAMLClassifier(hidden_layer_sizes=auto.hidden_layer_sizes_,
                             **params).meta_fit(sampler())
    assert auto.hidden_layer_sizes_search_ is not None
    assert _same_params(auto.meta_params_, by_hand.meta_params_)


def test_one_meta_iteration_scores_the_model_without_hidden_layers():
    """What lets the folds meta-train it for one meta-iteration: with the
    prototype head its score does not move with more."""
    from sk_meta.model_selection import _choose_network

    for cls in (MAMLClassifier, ReptileClassifier):
        _, search = _choose_network(
            cls(**FAST), _sampler(*_digits()),
            [{"hidden_layer_sizes": ()},
             {"hidden_layer_sizes": (), "n_meta_iter": 1}])
        assert search["scores"][0] == search["scores"][1]
        assert search["fold_scores"][0] == search["fold_scores"][1]


@pytest.mark.parametrize("params, shortened", [
    ({}, True), ({"inner_lr_mode": "per_layer_step"}, False),
    ({"head_init": "meta"}, False)])
def test_the_folds_shorten_only_a_model_that_learns_nothing(
        params, shortened, monkeypatch):
    grids = []

    def recorded(estimator, grid, folds, *args, **kwargs):
        grids.append(grid)
        raise KeyboardInterrupt  # enough seen

    monkeypatch.setattr(sk_meta.model_selection, "_score_candidates", recorded)
    with pytest.raises(KeyboardInterrupt):
        MAMLClassifier(**params, **FAST).meta_fit(_sampler(*_digits()))
    assert grids[0][0] == {"hidden_layer_sizes": (64, 64)}
    expected = {"hidden_layer_sizes": ()}
    assert grids[0][1] == ({**expected, "n_meta_iter": 1} if shortened else expected)


def _scales_used(monkeypatch):
    """The prototype scales the inner loop is built with, in order."""
    import sk_meta._inner_loop as inner_loop

    used = []
    original = inner_loop.InnerLoopSettings.from_estimator.__func__

    def recorded(cls, estimator, **kwargs):
        settings = original(cls, estimator, **kwargs)
        used.append(settings.prototype_scale)
        return settings

    monkeypatch.setattr(inner_loop.InnerLoopSettings, "from_estimator",
                        classmethod(recorded))
    return used


def test_an_old_init_goes_on_at_its_scale_and_a_new_one_at_the_new(
        tmp_path, monkeypatch):
    X, y = _digits(10)
    sampler = _sampler(X[y < 7], y[y < 7])
    support = np.r_[[np.flatnonzero(y == c)[0] for c in (7, 8, 9)]]
    est = MAMLClassifier(hidden_layer_sizes=(), n_meta_iter=2,
                         random_state=0).meta_fit(sampler)
    path = _old_file(tmp_path, est)
    used = _scales_used(monkeypatch)
    warm = load(path).set_params(warm_start=True, n_meta_iter=4).meta_fit(sampler)
    warm.fit(X[support], y[support])
    assert set(used) == {0.3}  # meta-trained and adapted at the old scale
    warm.save(tmp_path / "warm.pt")
    used.clear()
    load(tmp_path / "warm.pt").fit(X[support], y[support])
    assert set(used) == {0.3}
    used.clear()
    fresh = load(path).set_params(n_meta_iter=2).meta_fit(sampler)
    fresh.fit(X[support], y[support])
    assert set(used) == {0.1}  # a new init: the new scale, in both


def test_an_old_files_network_is_the_one_it_was_loaded_with(tmp_path):
    est = MAMLClassifier(hidden_layer_sizes=(), n_meta_iter=2,
                         random_state=0).meta_fit(_sampler(*_digits()))
    old = load(_old_file(tmp_path, est))
    for sizes in [(32,), "auto"]:
        assert old.set_params(hidden_layer_sizes=sizes).hidden_layer_sizes_ == ()


def test_the_folds_do_not_repeat_warnings():
    from sk_meta.exceptions import FeatureScaleWarning

    X, y = _digits()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MAMLClassifier(n_meta_iter=2, validation_interval=1, random_state=0).meta_fit(
            _sampler(X * 1e5, y))
    scale = [w for w in caught if issubclass(w.category, FeatureScaleWarning)]
    assert len(scale) == 1


def test_a_fold_error_names_the_candidate_as_the_user_knows_it():
    X, y = _digits()
    calls = []
    original = sk_meta.model_selection._fresh

    def cannot_build(*args, **kwargs):
        raise ValueError("cannot build it")

    def failing_linear(estimator, params, **fixed):
        calls.append(params)
        candidate = original(estimator, params, **fixed)
        if params["hidden_layer_sizes"] == ():
            candidate.meta_fit = cannot_build
        return candidate

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sk_meta.model_selection, "_fresh", failing_linear)
        with pytest.raises(ValueError, match=r"meta-training \{'hidden_layer_sizes': "
                                             r"\(\)\} on class fold 1 of 3: cannot"):
            MAMLClassifier(**FAST).meta_fit(_sampler(X, y))
    assert calls[-1] == {"hidden_layer_sizes": (), "n_meta_iter": 1}
