"""The third network of hidden_layer_sizes="auto": the (64, 64) MLP pretrained
on all meta-training classes at once (cross-entropy), not meta-trained, whose
output layer alone adapts (adapt_layers="auto") from the scaled class
prototypes (prototype_scale="auto" is 0.1 for it)."""

import pickle
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone

from sk_meta import FOMAMLClassifier, MAMLClassifier, ReptileClassifier, load
from sk_meta._pretraining import pretrain_body, sampler_rows
from sk_meta.models import MLP
from sk_meta.tasks import EpisodeSampler

FAST = dict(n_meta_iter=60, validation_interval=20, random_state=0)
PRETRAINED = {"hidden_layer_sizes": (64, 64), "pretrained": True}


@pytest.fixture(scope="module", autouse=True)
def pretrained_mlp_alone():
    """The pretrained MLP as the folds' choice, as Reptile takes it: MAML and
    FOMAML average it with the meta-trained MLP instead
    (tests/test_averaged_default.py), so here they run without the average."""
    import sk_meta.model_selection as model_selection

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(model_selection, "AUTO_AVERAGE_ALGORITHMS", ())
        yield


def _rings(n_classes=8, n_per_class=60, seed=0, first_radius=0.5):
    """Concentric rings, one per class: a network trained to tell all the
    classes apart has features that separate new rings too."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    angle = rng.uniform(0, 2 * np.pi, len(y))
    radius = first_radius + 0.5 * y + rng.normal(0, 0.08, len(y))
    return np.c_[radius * np.cos(angle), radius * np.sin(angle)], y


def _sampler(X, y):
    return EpisodeSampler(X, y, 3, 1, 5, shuffle_labels=True, random_state=0)


def _new_task():
    """A 3-way task of rings meta-training never saw: radii 1.25, 2.25 and
    3.25, between those of its rings."""
    X, y = _rings(n_classes=6, seed=1, first_radius=0.75)
    rng = np.random.default_rng(2)
    support = np.r_[[rng.choice(np.flatnonzero(y == c), 2, replace=False)
                     for c in (1, 3, 5)]].ravel()
    query = np.flatnonzero(np.isin(y, (1, 3, 5)))
    return X[support], y[support], X[query], y[query]


@pytest.fixture(scope="module")
def chosen():
    X, y = _rings()
    X_before = X.copy()
    est = MAMLClassifier(**FAST).meta_fit(_sampler(X, y))
    np.testing.assert_array_equal(X, X_before)  # the rows are read, not changed
    return est


def _body(params):
    return {name: p for name, p in params.items() if not name.startswith("layers.2")}


def test_rings_choose_the_pretrained_mlp(chosen):
    search = chosen.hidden_layer_sizes_search_
    assert search["candidates"][search["chosen"]] == PRETRAINED
    assert search["scores"][2] == max(search["scores"])
    assert search["scored_at_meta_iter"][2] == 0  # scored as pretrained
    assert chosen.hidden_layer_sizes_ == (64, 64)
    assert chosen.n_meta_iter_ == 0
    assert chosen.meta_loss_curve_ == []
    assert chosen.pretrained_ is True


def test_the_pretrained_body_is_a_hand_written_pretraining(chosen):
    """Adam at 1e-3 on batches of 256 rows drawn with the init seed, 300
    steps (30 epochs of 480 rows, at least 300), through an output layer of
    one unit per class started as torch.nn.Linear starts one (uniform in
    +-1/sqrt(64), drawn first from the same generator). In float32, as the
    package: Adam divides by the root of tiny second moments, so float64
    drifts by a few steps of 1e-3 on the weights whose gradients are near
    zero."""
    X, y = _rings()
    seed = chosen._meta.training_state.init_seed
    torch.manual_seed(seed)  # the MLP as meta_fit builds it at that seed
    built = MLP(2, (64, 64), 3)
    body = torch.nn.Sequential(built.layers[0], torch.nn.ReLU(), built.layers[1],
                               torch.nn.ReLU(), torch.nn.Linear(64, 8))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        body[4].weight.copy_(torch.rand(8, 64, generator=generator) / 4 - 0.125)
        body[4].bias.copy_(torch.rand(8, generator=generator) / 4 - 0.125)
    rows = np.concatenate([np.flatnonzero(y == c) for c in range(8)])
    inputs = torch.from_numpy(X[rows].astype(np.float32))
    codes = torch.from_numpy(y[rows])
    optimizer = torch.optim.Adam(body.parameters(), lr=1e-3)
    for _ in range(300):
        batch = torch.randint(len(rows), (256,), generator=generator)
        loss = torch.nn.functional.cross_entropy(body(inputs[batch]), codes[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    expected = {"layers.0.weight": body[0].weight, "layers.0.bias": body[0].bias,
                "layers.1.weight": body[2].weight, "layers.1.bias": body[2].bias}
    params = _body(chosen.meta_params_)
    assert params.keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(params[name], value.detach(),
                                   rtol=1e-5, atol=1e-6)
    # far from the network as built
    assert not torch.allclose(params["layers.1.weight"],
                              MLP(2, (64, 64), 3).layers[1].weight, atol=1e-2)


def test_fit_adapts_the_output_layer_alone_from_a_tenth_of_the_prototypes(chosen):
    X_support, y_support, X_query, _ = _new_task()
    chosen.fit(X_support, y_support)
    meta_body, adapted = _body(chosen.meta_params_), chosen.params_
    for name, value in meta_body.items():
        assert torch.equal(adapted[name], value), name
    assert not torch.equal(adapted["layers.2.weight"],
                           chosen.meta_params_["layers.2.weight"])
    # the same as ANIL at prototype_scale=0.1 from that network, set by hand
    network = MLP(2, (64, 64), 3)
    network.load_state_dict(chosen.meta_params_)
    by_hand = MAMLClassifier(network, adapt_layers="head", prototype_scale=0.1,
                             random_state=0).fit(X_support, y_support)
    np.testing.assert_allclose(chosen.predict_proba(X_query),
                               by_hand.predict_proba(X_query), rtol=1e-5, atol=1e-6)
    at_a_third = MAMLClassifier(network, adapt_layers="head", prototype_scale=0.3,
                                random_state=0).fit(X_support, y_support)
    assert not np.allclose(chosen.predict_proba(X_query),
                           at_a_third.predict_proba(X_query), atol=1e-3)


def test_adapt_layers_set_after_the_choice_adapts_every_layer(chosen):
    assert chosen._meta.pretrained  # "auto" adapts its output layer alone
    X_support, y_support, _, _ = _new_task()
    every = clone(chosen).set_params(adapt_layers="all").fit(X_support, y_support)
    assert not torch.equal(every.params_["layers.0.weight"],
                           chosen.meta_params_["layers.0.weight"])


def test_the_choice_survives_save_pickle_and_clone(chosen, tmp_path):
    X_support, y_support, X_query, _ = _new_task()
    expected = chosen.fit(X_support, y_support).predict_proba(X_query)
    chosen.save(tmp_path / "est.pt")
    for copy in (load(tmp_path / "est.pt"), pickle.loads(pickle.dumps(chosen)),
                 clone(chosen)):
        assert copy.adapt_layers == "auto"
        assert copy.hidden_layer_sizes_search_ == chosen.hidden_layer_sizes_search_
        assert copy.pretrained_ is True
        np.testing.assert_allclose(
            copy.fit(X_support, y_support).predict_proba(X_query), expected,
            rtol=1e-5, atol=1e-6)
        assert torch.equal(copy.params_["layers.0.weight"],
                           chosen.meta_params_["layers.0.weight"])


@pytest.mark.parametrize("cls", [FOMAMLClassifier, ReptileClassifier])
def test_every_algorithm_takes_the_pretrained_mlp(cls, chosen):
    est = cls(**FAST).meta_fit(_sampler(*_rings()))
    search = est.hidden_layer_sizes_search_
    assert search["candidates"][search["chosen"]] == PRETRAINED
    # no meta-training: MAML's network, from the same seed
    for name, value in chosen.meta_params_.items():
        assert torch.equal(est.meta_params_[name], value), name
    X_support, y_support, X_query, y_query = _new_task()
    assert est.fit(X_support, y_support).score(X_query, y_query) > 0.9


def test_a_warm_start_meta_trains_the_pretrained_mlp_with_anil(chosen):
    warm = clone(chosen).set_params(warm_start=True, n_meta_iter=20)
    warm.meta_fit(_sampler(*_rings()))
    assert warm.n_meta_iter_ == 20
    assert warm.pretrained_ is True  # its body started pretrained; its head adapts
    assert warm.hidden_layer_sizes_search_ == chosen.hidden_layer_sizes_search_
    assert not torch.equal(warm.meta_params_["layers.0.weight"],
                           chosen.meta_params_["layers.0.weight"])
    X_support, y_support, _, _ = _new_task()
    warm.fit(X_support, y_support)  # still adapts the output layer alone
    assert torch.equal(warm.params_["layers.0.weight"],
                       warm.meta_params_["layers.0.weight"])


def test_reptile_refuses_to_meta_train_it_further_and_says_why():
    est = ReptileClassifier(**FAST).meta_fit(_sampler(*_rings()))
    before = est.meta_params_
    est.set_params(warm_start=True, n_meta_iter=80)
    with pytest.raises(ValueError, match="Reptile cannot meta-train the pretrained "
                                         "MLP.*adapt_layers='all'"):
        est.meta_fit(_sampler(*_rings()))
    assert est.n_meta_iter_ == 0
    assert all(torch.equal(before[k], v) for k, v in est.meta_params_.items())
    est.set_params(adapt_layers="all").meta_fit(_sampler(*_rings()))
    assert est.n_meta_iter_ == 80


@pytest.mark.parametrize("params", [
    {"adapt_layers": "all"}, {"adapt_layers": "head"}, {"head_init": "zero"},
    {"inner_lr_mode": "per_layer_step"}])
def test_a_candidate_only_where_it_was_measured(params):
    """The prototype head rebuilds the output layer of each task (the
    pretrained one has a unit per meta-training class), at a fixed inner
    rate; adapt_layers set by the user is kept."""
    est = MAMLClassifier(**params, **FAST).meta_fit(_sampler(*_rings()))
    assert PRETRAINED not in est.hidden_layer_sizes_search_["candidates"]
    assert not est._meta.pretrained


def test_frames_are_pretrained_on_and_their_names_kept():
    X, y = _rings()
    frame = pd.DataFrame(X, columns=["a", "b"])
    est = MAMLClassifier(**FAST).meta_fit(_sampler(frame, y))
    from_array = MAMLClassifier(**FAST).meta_fit(_sampler(X, y))
    assert est._meta.pretrained
    assert list(est._meta.feature_names) == ["a", "b"]
    for name, value in est.meta_params_.items():
        assert torch.equal(value, from_array.meta_params_[name]), name


def test_pretraining_stops_at_max_time():
    X, y = _rings()
    module = MLP(2, (8,), 3)
    steps = pretrain_body(module, X.astype(np.float32), y, seed=0,
                          device=torch.device("cpu"), max_time=1e-9)
    assert steps == 1
    assert pretrain_body(MLP(2, (8,), 3), X.astype(np.float32), y, seed=0,
                         device=torch.device("cpu")) == 300


def test_verbose_gives_the_validation_score_of_the_init_that_was_not_meta_trained(
        capsys):
    X, y = _many_rings()
    ReptileClassifier(verbose=1, **FAST).meta_fit(
        _sampler(X, y), validation_tasks=[_sampler(X, y).sample()])
    assert re.search(r"\nMeta-iteration 0, validation score = \d\.\d{4}, ",
                     capsys.readouterr().out)


def test_verbose_says_max_time_stopped_the_pretraining(capsys):
    ReptileClassifier(verbose=1, max_time=1e-9, random_state=0).meta_fit(
        _sampler(*_many_rings()))
    assert re.search(r"pretrained the MLP \(128, 128\) on 640 rows of 16 classes: "
                     r"1 step, \d+\.\d s, stopped by max_time\n",
                     capsys.readouterr().out)


def test_the_folds_score_every_candidate_as_it_will_be_used():
    """At its last validation, without early stopping: the chosen candidate
    meta-trains for all of n_meta_iter, whatever n_iter_no_change says."""
    est = MAMLClassifier(n_iter_no_change=1, **FAST).meta_fit(_sampler(*_rings()))
    search = est.hidden_layer_sizes_search_
    assert search["scored_at_meta_iter"] == [60, 1, 0]


def test_meta_trained_in_every_layer_it_is_no_longer_the_pretrained_mlp(chosen):
    X_support, y_support, _, _ = _new_task()
    warm = clone(chosen).set_params(warm_start=True, n_meta_iter=5,
                                    adapt_layers="all")
    warm.meta_fit(_sampler(*_rings()))
    assert warm.pretrained_ is False
    warm.set_params(adapt_layers="auto").fit(X_support, y_support)
    assert not torch.equal(warm.params_["layers.0.weight"],
                           warm.meta_params_["layers.0.weight"])


def test_a_missing_value_only_the_pretraining_reads_is_named():
    """A row no task has drawn yet is read whole by the pretraining."""
    X, y = _rings()
    X[-1, 0] = np.nan
    sampler = EpisodeSampler(X, y, 3, 1, 5, shuffle_labels=True, random_state=0)
    with pytest.raises(ValueError, match="rows of its classes the pretrained MLP "
                                         "trains on.*NaN"):
        sampler_rows(sampler)


def _scoring(scores):
    """A stand-in for the class folds that scores the candidates ``scores``."""
    def scored(estimator, grid, folds, *args, **kwargs):
        best = int(np.nanargmax(scores))
        results = {"validation_score": list(scores),
                   "fold_validation_scores": [[s] * len(folds) for s in scores],
                   "best_meta_iter": [60, 1, 0]}
        return results, (best, scores[best], None, None), None

    return scored


@pytest.mark.parametrize("scores, chosen", [
    ([0.60, 0.605, 0.609], 0),   # within the margin of the meta-trained MLP
    ([0.60, 0.609, 0.62], 2),
    ([0.60, 0.62, 0.605], 1),
    ([0.70, 0.65, 0.69], 0)])
def test_another_network_replaces_the_mlp_only_by_more_than_a_point(
        scores, chosen, monkeypatch):
    """Held-out margins of 0.004 to 0.007 are noise on tables of 6 to 10
    classes (FIDELITY.md, twentieth run): the meta-trained MLP stays."""
    import sk_meta.model_selection as model_selection

    monkeypatch.setattr(model_selection, "_score_candidates", _scoring(scores))
    est = MAMLClassifier(**FAST).meta_fit(_sampler(*_rings()))
    search = est.hidden_layer_sizes_search_
    assert search["chosen"] == chosen
    assert est._meta.pretrained == (chosen == 2)
    assert est.hidden_layer_sizes_ == ((), (64, 64))[chosen != 1]


@pytest.mark.parametrize("scores, chosen", [
    ([0.609, 0.60, 0.60], 2),   # within the margin of the pretrained MLP
    ([0.62, 0.60, 0.60], 0),
    ([0.60, 0.62, 0.605], 1),
    ([0.60, 0.605, 0.609], 2),
    ([0.70, 0.60, float("nan")], 0)])  # a NaN does not hold its place
def test_reptile_keeps_the_pretrained_mlp_unless_another_is_a_point_above(
        scores, chosen, monkeypatch, capsys):
    """Reptile's meta-trained MLP is the weaker of the two on the tables of
    6 to 10 classes (FIDELITY.md, thirty-third and thirty-fourth runs): there
    the pretrained MLP holds the place the meta-trained one holds for MAML."""
    import sk_meta.model_selection as model_selection

    monkeypatch.setattr(model_selection, "_score_candidates", _scoring(scores))
    est = ReptileClassifier(verbose=1, **FAST).meta_fit(_sampler(*_rings()))
    search = est.hidden_layer_sizes_search_
    assert search["chosen"] == chosen
    assert est._meta.pretrained == (chosen == 2)
    assert est.n_meta_iter_ == (FAST["n_meta_iter"] if chosen == 0 else 0)
    assert ("another network replaces the pretrained MLP (64, 64) only when more "
            "than 0.01 above it" in capsys.readouterr().out)


def test_maml_names_the_meta_trained_mlp_as_the_one_to_replace(capsys):
    MAMLClassifier(verbose=1, **FAST).meta_fit(_sampler(*_rings()))
    assert ("another network replaces the meta-trained MLP (64, 64) only when "
            "more than 0.01 above it" in capsys.readouterr().out)


def test_a_nan_score_of_the_mlp_does_not_hold_its_place(monkeypatch):
    """Validation outputs that overflow score NaN: the margin is not
    measured from it."""
    import sk_meta.model_selection as model_selection

    monkeypatch.setattr(model_selection, "_score_candidates",
                        _scoring([float("nan"), 0.7, 0.9]))
    est = MAMLClassifier(**FAST).meta_fit(_sampler(*_rings()))
    assert est.hidden_layer_sizes_search_["chosen"] == 2
    assert est._meta.pretrained


# -- Reptile with many classes: the (128, 128) MLP pretrained, not meta-trained
#    (FIDELITY.md, twenty-fifth run) -------------------------------------------------

def _many_rings():
    return _rings(n_classes=16, n_per_class=40)


def _no_folds(*args, **kwargs):
    raise AssertionError("the class folds ran")


def test_reptile_takes_the_wide_mlp_pretrained_with_many_classes(monkeypatch, capsys):
    import sk_meta.model_selection as model_selection

    monkeypatch.setattr(model_selection, "_score_candidates", _no_folds)
    X, y = _many_rings()
    sampler = _sampler(X, y)
    est = ReptileClassifier(verbose=1, **FAST).meta_fit(sampler)
    out = capsys.readouterr().out
    assert "pretrained MLP (128, 128), for the sampler's 16 classes (10 or more: " \
           "no class folds, not meta-trained)" in out
    # 30 epochs of 640 rows in batches of 256 are 75 steps, raised to the least
    assert re.search(r"pretrained the MLP \(128, 128\) on 640 rows of 16 classes: "
                     r"300 steps, \d+\.\d s\n", out)
    assert "Meta-iteration" not in out  # none ran: no progress line
    assert est.hidden_layer_sizes_ == (128, 128)
    assert est.hidden_layer_sizes_search_ is None
    assert est.pretrained_ is True
    assert est.n_meta_iter_ == 0 and est.meta_loss_curve_ == []
    # its body is the pretraining of the MLP meta_fit builds at the init seed
    # on all the sampler's rows (the pretraining itself: checked by hand above)
    seed = est._meta.training_state.init_seed
    torch.manual_seed(seed)
    built = MLP(2, (128, 128), 3)
    pretrain_body(built, *sampler_rows(sampler), seed=seed,
                  device=torch.device("cpu"))
    for name, value in built.state_dict().items():
        if name.startswith("layers.2"):
            continue
        torch.testing.assert_close(est.meta_params_[name], value,
                                   rtol=1e-5, atol=1e-6)
    # fit: the output layer alone, from a tenth of the prototypes, with the
    # line search of Reptile's fit, and chosen per task against a logistic
    # regression (head_solver="auto"); as ANIL set by hand on that network
    X_support, y_support, X_query, y_query = _new_task()
    network = MLP(2, (128, 128), 3)
    network.load_state_dict(est.meta_params_)
    for solver in ("auto", "steps"):
        est.set_params(head_solver=solver).fit(X_support, y_support)
        for name, value in _body(est.meta_params_).items():
            assert torch.equal(est.params_[name], value), name
        by_hand = MAMLClassifier(network, adapt_layers="head", prototype_scale=0.1,
                                 backtracking=True, random_state=0,
                                 head_solver="choose" if solver == "auto" else solver)
        by_hand.fit(X_support, y_support)
        np.testing.assert_allclose(est.predict_proba(X_query),
                                   by_hand.predict_proba(X_query), rtol=1e-5,
                                   atol=1e-6)
    # the pretraining is what separates the new rings: the network as built,
    # adapted the same way, does not
    torch.manual_seed(seed)
    as_built = MAMLClassifier(MLP(2, (128, 128), 3), adapt_layers="head",
                              prototype_scale=0.1, backtracking=True,
                              random_state=0).fit(X_support, y_support)
    assert est.score(X_query, y_query) > as_built.score(X_query, y_query) + 0.2


@pytest.mark.parametrize("params", [
    {"adapt_layers": "all"}, {"head_init": "zero"}, {"head_init": "meta"}])
def test_reptile_meta_trains_the_wide_mlp_where_the_pretrained_one_was_not_measured(
        params):
    est = ReptileClassifier(**params, **FAST).meta_fit(_sampler(*_many_rings()))
    assert est.hidden_layer_sizes_ == (128, 128)
    assert not est._meta.pretrained
    assert est.n_meta_iter_ == FAST["n_meta_iter"]


def test_reptile_meta_partial_fit_meta_trains_the_wide_mlp():
    """One pass of meta-training: it cannot go on from the pretrained MLP
    (Reptile would move no weight of it), so it meta-trains (128, 128)."""
    X, y = _many_rings()
    sampler = EpisodeSampler(X, y, 3, 1, 5, n_tasks=8, random_state=0)
    est = ReptileClassifier(meta_batch_size=4, random_state=0)
    est.meta_partial_fit(sampler)
    assert est.hidden_layer_sizes_ == (128, 128)
    assert not est._meta.pretrained
    assert est.n_meta_iter_ == 2


@pytest.mark.parametrize("cls", [MAMLClassifier, FOMAMLClassifier])
def test_maml_and_fomaml_meta_train_the_wide_mlp_with_many_classes(cls):
    est = cls(**FAST).meta_fit(_sampler(*_many_rings()))
    assert est.hidden_layer_sizes_ == (128, 128)
    assert not est._meta.pretrained
    assert est.n_meta_iter_ == FAST["n_meta_iter"]


def test_reptile_refuses_a_warm_start_from_the_wide_pretrained_mlp():
    est = ReptileClassifier(**FAST).meta_fit(_sampler(*_many_rings()))
    before = {k: v.clone() for k, v in est.meta_params_.items()}
    est.set_params(warm_start=True)
    with pytest.raises(ValueError, match="Reptile cannot meta-train the pretrained"):
        est.meta_fit(_sampler(*_many_rings()))
    assert all(torch.equal(before[k], v) for k, v in est.meta_params_.items())
    est.set_params(adapt_layers="all").meta_fit(_sampler(*_many_rings()))
    assert est.n_meta_iter_ == FAST["n_meta_iter"]
    assert not est._meta.pretrained


def test_reptile_meta_trains_the_pretrained_mlps_meta_head_further():
    """With head_init="meta" the output layer is not rebuilt for each task:
    adapting it alone moves it, so the warm start is not refused."""
    est = ReptileClassifier(**FAST).meta_fit(_sampler(*_many_rings()))
    head = est.meta_params_["layers.2.weight"].clone()
    est.set_params(warm_start=True, head_init="meta", n_meta_iter=5)
    est.meta_fit(_sampler(*_many_rings()))
    assert est.n_meta_iter_ == 5
    assert not torch.equal(est.meta_params_["layers.2.weight"], head)


def test_meta_partial_fit_on_the_pretrained_mlp_is_refused_with_the_way_out():
    X, y = _many_rings()
    est = ReptileClassifier(**FAST).meta_fit(_sampler(X, y))
    # meta_partial_fit goes on from the init whatever warm_start says: the
    # way out is a meta_fit that starts afresh
    with pytest.raises(ValueError, match="Reptile cannot meta-train the pretrained "
                       ".*call meta_fit with warm_start=False to start afresh"):
        est.meta_partial_fit(EpisodeSampler(X, y, 3, 1, 5, n_tasks=4, random_state=0))


def test_pretraining_reads_a_float32_frame_without_torchs_warning():
    X, y = _many_rings()
    frame = pd.DataFrame(X.astype(np.float32), columns=["a", "b"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = ReptileClassifier(**FAST).meta_fit(_sampler(frame, y))
    assert est._meta.pretrained


def test_a_value_beyond_float32_only_the_pretraining_reads_is_refused_cleanly():
    X, y = _many_rings()
    X[-1, 0] = 1e300  # a row no task has drawn yet
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="pretrained MLP trains on.*too large"):
            sampler_rows(_sampler(X, y))


def test_a_python_int_beyond_float_only_the_pretraining_reads_is_named():
    X, y = _many_rings()
    X = X.astype(object)
    X[-1, 0] = 10 ** 400
    with pytest.raises(ValueError, match="pretrained MLP trains on.*too large"):
        sampler_rows(_sampler(X, y))


def test_pretraining_reads_an_arrays_rows_with_one_copy():
    import tracemalloc

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(20), 1000)
    X = rng.standard_normal((len(y), 50), dtype=np.float32)
    tracemalloc.start()
    try:
        rows, _ = sampler_rows(EpisodeSampler(X, y, 3, 1, 5, random_state=0))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rows.flags.writeable and not np.shares_memory(rows, X)
    assert peak < 1.5 * X.nbytes  # the rows once, not twice (and codes)


@pytest.mark.parametrize("head_init", ["prototype", "zero"])
def test_reptiles_refusal_names_the_pretrained_mlp_for_every_head_that_restarts(
        head_init):
    est = ReptileClassifier(**FAST).meta_fit(_sampler(*_many_rings()))
    est.set_params(warm_start=True, head_init=head_init)
    with pytest.raises(ValueError, match=f"the pretrained MLP.*head_init='{head_init}' "
                                         "starts afresh for each task"):
        est.meta_fit(_sampler(*_many_rings()))
    assert est.n_meta_iter_ == 0
