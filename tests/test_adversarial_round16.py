"""What the sixteenth pass found: candidates of a search wrote the user's
checkpoint, a skorch export of a BatchNorm network predicted otherwise than
the estimator, a module swapped for one of the same shapes went unnoticed,
and a pipeline over a sparse sampler lost the choice of network."""

import warnings

import numpy as np
import pytest
import torch
from scipy import sparse
from sklearn.datasets import load_digits
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from torch import nn

from sk_meta import FOMAMLClassifier, MAMLClassifier, MAMLRegressor, load
from sk_meta.model_selection import MetaGridSearch
from sk_meta.pipeline import meta_fit_pipeline
from sk_meta.tasks import EpisodeSampler

X_DIGITS, Y_DIGITS = load_digits(return_X_y=True)
X_SCALED = (X_DIGITS / 16).astype(np.float32)


def _train(**kwargs):
    return EpisodeSampler(X_SCALED, Y_DIGITS, 3, 3, 5, classes=range(7),
                          shuffle_labels=True, random_state=0, **kwargs)


def _new_task(seed=2):
    return EpisodeSampler(X_SCALED, Y_DIGITS, 3, 3, 5, classes=[7, 8, 9],
                          random_state=seed).sample()


# -- MetaGridSearch and checkpoint_path -----------------------------------------------

def test_search_candidates_do_not_write_the_checkpoint(tmp_path):
    """With validation_tasks there is no refit: the file held whichever
    candidate ran last, not the chosen one."""
    path = tmp_path / "search.skm"
    val = list(EpisodeSampler(X_SCALED, Y_DIGITS, 3, 3, 5, classes=[7, 8, 9],
                              n_tasks=5, random_state=1))
    est = FOMAMLClassifier(hidden_layer_sizes=(16,), n_meta_iter=6,
                           validation_interval=2, checkpoint_path=path, random_state=0)
    search = MetaGridSearch(est, {"meta_lr": [3e-2, 1e-3]}).meta_fit(
        _train(), validation_tasks=val)
    assert search.best_params_ == {"meta_lr": 3e-2}  # not the last candidate
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # checkpoint_path is not restored
        saved = load(path)
    assert saved.meta_lr == search.best_params_["meta_lr"]
    for name, p in search.best_estimator_.meta_params_.items():
        assert torch.equal(saved.meta_params_[name], p)
    assert search.best_estimator_.checkpoint_path == path


def test_search_candidates_leave_an_existing_checkpoint_until_the_refit(
        tmp_path, monkeypatch):
    """The class folds' candidates meta-train on part of the classes: none
    of them may replace the user's file; the refit on every class does."""
    path = tmp_path / "search.skm"
    path.write_bytes(b"the user's earlier checkpoint")
    writes = []
    real_save = MAMLClassifier._save_checkpoint

    def recording_save(self, result):
        writes.append(self.get_params()["meta_lr"])
        return real_save(self, result)

    monkeypatch.setattr(MAMLClassifier, "_save_checkpoint", recording_save)
    est = MAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=4, checkpoint_path=path,
                         validation_interval=2, random_state=0)
    search = MetaGridSearch(est, {"meta_lr": [1e-2, 1e-3]}, cv=2, val_size=2,
                            random_state=0).meta_fit(
        EpisodeSampler(X_SCALED, Y_DIGITS, 2, 2, 3, classes=range(7), random_state=0))
    # the refit alone wrote: the candidates of the other meta_lr never did
    assert writes and set(writes) == {search.best_params_["meta_lr"]}
    assert len(writes) <= search.best_estimator_.n_meta_iter_
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert load(path).n_meta_iter_ == search.best_estimator_.n_meta_iter_


def test_a_misspelled_nested_grid_name_is_refused_before_any_candidate():
    est = MAMLClassifier(n_meta_iter=1)
    with pytest.raises(ValueError, match="module_param__width"):
        MetaGridSearch(est, {"module_param__width": [8, 16]}).meta_fit(_train())


# -- to_skorch with BatchNorm --------------------------------------------------------

class _BatchNormNet(nn.Module):
    def __init__(self, n_outputs=3):
        super().__init__()
        self.hidden = nn.Linear(64, 16)
        self.norm = nn.BatchNorm1d(16)
        self.out = nn.Linear(16, n_outputs)

    def forward(self, X):
        return self.out(torch.relu(self.norm(self.hidden(X))))


@pytest.mark.parametrize("transductive", [True, False])
def test_skorch_export_of_a_batch_norm_network_predicts_as_the_estimator(transductive):
    clf = FOMAMLClassifier(module=_BatchNormNet, n_meta_iter=3,
                           transductive=transductive, random_state=0)
    task = _new_task()
    clf.meta_fit(_train()).fit(task.X_support, task.y_support)
    net = clf.to_skorch()
    rows = X_SCALED[np.isin(Y_DIGITS, [7, 8, 9])]
    # 300 rows: skorch's batches of 128 had their own statistics; 1 row was
    # normalized alone (or raised inside torch for BatchNorm1d)
    for X in (task.X_query, rows[:300], rows[:1], rows[:129]):
        np.testing.assert_allclose(net.predict_proba(X), clf.predict_proba(X),
                                   rtol=1e-5, atol=1e-6)


def test_skorch_export_of_a_batch_norm_regressor_predicts_as_the_estimator():
    rng = np.random.RandomState(0)
    tasks = [(rng.randn(6, 64).astype(np.float32), rng.randn(6),
              rng.randn(6, 64).astype(np.float32), rng.randn(6)) for _ in range(4)]
    reg = MAMLRegressor(module=_BatchNormNet, module_params={"n_outputs": 1},
                        n_meta_iter=2, transductive=False, random_state=0)
    reg.meta_fit(tasks).fit(tasks[0][0], tasks[0][1])
    X = rng.randn(200, 64).astype(np.float32)
    np.testing.assert_allclose(reg.to_skorch().predict(X).ravel(), reg.predict(X),
                               rtol=1e-5, atol=1e-5)


def test_skorch_export_of_a_batch_norm_network_still_trains():
    clf = FOMAMLClassifier(module=_BatchNormNet, n_meta_iter=2, random_state=0)
    task = _new_task()
    clf.meta_fit(_train()).fit(task.X_support, task.y_support)
    net = clf.to_skorch(max_epochs=1, lr=0.1, train_split=None)
    before = {n: p.detach().clone() for n, p in net.module_.named_parameters()}
    net.partial_fit(task.X_support, clf.classes_.searchsorted(task.y_support))
    after = dict(net.module_.named_parameters())
    assert any(not torch.equal(before[n], after[n]) for n in before)
    assert not any("support" in n for n in before)  # the support set is not trained


# -- a module swapped after meta_fit --------------------------------------------------

def _seeded(activation):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 16), activation, nn.Linear(16, 3))


def test_a_module_of_the_same_shapes_but_other_layers_is_refused_by_fit():
    clf = FOMAMLClassifier(module=_seeded(nn.ReLU()), n_meta_iter=2,
                           random_state=0).meta_fit(_train())
    task = _new_task()
    clf.set_params(module=_seeded(nn.Tanh()))
    with pytest.raises(ValueError, match="architecture changed since meta_fit"):
        clf.fit(task.X_support, task.y_support)


def test_the_same_module_instance_or_an_equal_copy_is_accepted():
    import copy

    module = _seeded(nn.ReLU())
    clf = FOMAMLClassifier(module=module, n_meta_iter=2, random_state=0)
    clf.meta_fit(_train())
    task = _new_task()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.fit(task.X_support, task.y_support)
        clf.set_params(module=copy.deepcopy(module)).fit(task.X_support,
                                                        task.y_support)


def test_an_older_record_without_the_layer_types_is_accepted():
    clf = FOMAMLClassifier(module=_seeded(nn.ReLU()), n_meta_iter=2,
                           random_state=0).meta_fit(_train())
    # as pickled by an older version: no layer types, the class itself
    clf._meta.architecture.pop("layer types")
    clf._meta.architecture["module"] = nn.Sequential
    task = _new_task()
    clf.fit(task.X_support, task.y_support)


# -- meta_fit_pipeline and hidden_layer_sizes="auto" ----------------------------------

def _digits_sampler(X, classes):
    return EpisodeSampler(X, Y_DIGITS, 3, 3, 5, classes=classes, shuffle_labels=True,
                          random_state=0)


@pytest.mark.parametrize("n_classes, sizes, folds", [(7, (64, 64), True),
                                                     (10, (128, 128), False)])
def test_a_pipeline_over_a_sparse_sampler_chooses_the_network(n_classes, sizes, folds):
    est = FOMAMLClassifier(n_meta_iter=3, random_state=0)
    sparse_X = sparse.csr_matrix(X_DIGITS)
    piped = meta_fit_pipeline(make_pipeline(StandardScaler(with_mean=False), est),
                              _digits_sampler(sparse_X, range(n_classes)))
    dense = meta_fit_pipeline(make_pipeline(StandardScaler(with_mean=False), est),
                              _digits_sampler(X_DIGITS, range(n_classes)))
    chosen, expected = piped.steps[-1][1], dense.steps[-1][1]
    assert (chosen.hidden_layer_sizes_search_ is not None) == folds
    assert chosen.hidden_layer_sizes_ == expected.hidden_layer_sizes_
    if not folds:
        assert chosen.hidden_layer_sizes_ == sizes
    # the same episodes and choice as the dense table: the same init
    for name, p in expected.meta_params_.items():
        torch.testing.assert_close(chosen.meta_params_[name], p)


def test_a_pipeline_over_a_sparse_sampler_feeds_a_search_its_folds():
    est = FOMAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=2, random_state=0)
    search = MetaGridSearch(est, {"meta_lr": [1e-2, 1e-3]}, random_state=0)
    train = _digits_sampler(sparse.csr_matrix(X_DIGITS), range(7))
    piped = meta_fit_pipeline(make_pipeline(StandardScaler(with_mean=False), search),
                              train, preprocessing_tasks=_five(train))
    assert piped.steps[-1][1].val_classes_ is not None


def _five(sampler):
    return [sampler.sample() for _ in range(5)]


def _centred(X):
    return X - X.mean(axis=0)  # by each set's own mean: not row by row


def test_a_step_that_is_not_row_by_row_warns_that_auto_cannot_choose():
    est = FOMAMLClassifier(n_meta_iter=2, random_state=0)
    with pytest.warns(UserWarning,
                      match="rows one by one.*hidden_layer_sizes='auto' does not"):
        meta_fit_pipeline(make_pipeline(FunctionTransformer(_centred), est),
                          _digits_sampler(X_DIGITS, range(7)))


def test_a_search_behind_a_step_that_is_not_row_by_row_says_why():
    search = MetaGridSearch(FOMAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=2),
                            {"meta_lr": [1e-2, 1e-3]}, random_state=0)
    train = _digits_sampler(X_DIGITS, range(7))
    with pytest.raises(TypeError, match="rows one by one.*pass validation_tasks"):
        meta_fit_pipeline(make_pipeline(FunctionTransformer(_centred), search),
                          train, preprocessing_tasks=_five(train))


# -- classes from a dict ---------------------------------------------------------------

@pytest.mark.parametrize("classes", [{1: "a", 2: "b", 3: "c"}.keys(),
                                     {"a": 1, "b": 2, "c": 3}.values()])
def test_a_dicts_keys_or_values_are_the_classes(classes):
    """dict_keys was read as one label: 'classes not found in y'."""
    sampler = EpisodeSampler(X_SCALED, Y_DIGITS, 3, 2, 2, classes=classes)
    assert list(sampler.class_labels) == [1, 2, 3]


# -- folds stopped at different meta-iterations ----------------------------------------

def test_fold_curves_are_averaged_at_the_same_meta_iterations():
    """A fold that max_time stopped validates last at meta-iteration 7; it
    was averaged with another fold's validation at 8."""
    from sk_meta.model_selection import _best_of_mean_curve

    stopped = [(2, 0.5), (4, 0.6), (6, 0.6), (7, 0.9)]
    full = [(2, 0.5), (4, 0.6), (6, 0.6), (8, 0.9), (10, 0.9)]
    meta_iter, score, fold_scores = _best_of_mean_curve([stopped, full], tol=0.0)
    assert (meta_iter, fold_scores) == (4, [0.6, 0.6])
    assert score == pytest.approx(0.6)
    # curves that share no meta-iteration are compared by position
    assert _best_of_mean_curve([[(1, 0.4)], [(2, 0.5), (4, 0.7)]], tol=0.0)[0] == 1


# -- the pass on these fixes -----------------------------------------------------------

def _spectral(seed=0):
    from torch.nn.utils import parametrizations

    torch.manual_seed(seed)
    return nn.Sequential(parametrizations.spectral_norm(nn.Linear(64, 16)), nn.ReLU(),
                         nn.Linear(16, 3))


def test_a_fresh_parametrized_module_of_the_same_layers_is_accepted():
    """torch makes a class per parametrized instance: compared by identity,
    an identical module was refused ('ParametrizedLinear at meta_fit, now
    ParametrizedLinear')."""
    clf = FOMAMLClassifier(module=_spectral(), n_meta_iter=2, meta_batch_size=2,
                           random_state=0).meta_fit(_train())
    task = _new_task()
    clf.set_params(module=_spectral()).fit(task.X_support, task.y_support)


def test_a_class_defined_again_is_the_same_layer():
    """A notebook's cell run again defines the class anew."""
    def block_class():
        class Block(nn.Module):
            def __init__(self):
                super().__init__()
                self.linear = nn.Linear(64, 16)

            def forward(self, X):
                return torch.relu(self.linear(X))
        return Block

    def network(Block):
        torch.manual_seed(0)
        return nn.Sequential(Block(), nn.Linear(16, 3))

    clf = FOMAMLClassifier(module=network(block_class()), n_meta_iter=2,
                           meta_batch_size=2, random_state=0).meta_fit(_train())
    task = _new_task()
    clf.set_params(module=network(block_class())).fit(task.X_support, task.y_support)


def test_the_skorch_export_does_not_share_the_support_set():
    clf = FOMAMLClassifier(module=_BatchNormNet, n_meta_iter=2, transductive=False,
                           random_state=0)
    task = _new_task()
    clf.meta_fit(_train()).fit(task.X_support, task.y_support)
    before = clf.predict_proba(task.X_query)
    net = clf.to_skorch()
    with torch.no_grad():
        net.module_.support_X.mul_(0)
    np.testing.assert_array_equal(clf.predict_proba(task.X_query), before)


@pytest.mark.parametrize("to_sparse", [sparse.coo_matrix, sparse.dia_matrix])
def test_a_step_with_sparse_output_without_row_slicing_is_said_clearly(to_sparse):
    est = FOMAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=2)
    with pytest.raises(TypeError, match="outputs a sparse matrix"):
        meta_fit_pipeline(make_pipeline(FunctionTransformer(to_sparse), est),
                          _digits_sampler(X_DIGITS, range(7)))


def test_a_sparse_table_whose_step_gives_coo_keeps_the_sampler():
    est = FOMAMLClassifier(n_meta_iter=2, random_state=0)
    step = FunctionTransformer(lambda X: sparse.coo_matrix(X) if sparse.issparse(X)
                               else X / 16)
    piped = meta_fit_pipeline(make_pipeline(step, est),
                              _digits_sampler(sparse.csr_matrix(X_DIGITS), range(7)))
    assert piped.steps[-1][1].hidden_layer_sizes_search_ is not None


def test_the_searchs_checkpoint_resumes_as_the_users_estimator(tmp_path):
    path = tmp_path / "search.skm"
    val = list(EpisodeSampler(X_SCALED, Y_DIGITS, 3, 3, 5, classes=[7, 8, 9],
                              n_tasks=4, random_state=1))
    est = FOMAMLClassifier(hidden_layer_sizes=(8,), meta_batch_size=2, n_meta_iter=4,
                           validation_interval=2, checkpoint_path=path,
                           random_state=0)
    MetaGridSearch(est, {"meta_lr": [3e-2, 1e-3]}).meta_fit(_train(),
                                                            validation_tasks=val)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resumed = load(path).set_params(warm_start=True, n_meta_iter=6)
    resumed.meta_fit(_train())  # was: early_stopping=True needs validation tasks
    assert resumed.n_meta_iter_ == 6


def test_a_grid_over_checkpoint_path_is_refused(tmp_path):
    est = FOMAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=2)
    grid = {"checkpoint_path": [tmp_path / "a.skm", tmp_path / "b.skm"]}
    with pytest.raises(ValueError, match="must not set checkpoint_path"):
        MetaGridSearch(est, grid).meta_fit(_train())
    assert not list(tmp_path.iterdir())


def test_a_warm_start_behind_a_step_that_is_not_row_by_row_does_not_warn():
    """The init is continued: nothing is chosen, so nothing is lost."""
    est = FOMAMLClassifier(n_meta_iter=2, random_state=0, warm_start=True)
    with pytest.warns(UserWarning, match="does not choose"):
        piped = meta_fit_pipeline(make_pipeline(FunctionTransformer(_centred), est),
                                  _digits_sampler(X_DIGITS, range(7)))
    final = piped.steps[-1][1].set_params(n_meta_iter=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        meta_fit_pipeline(make_pipeline(FunctionTransformer(_centred), final),
                          _digits_sampler(X_DIGITS, range(7)))


def test_a_nan_first_validation_does_not_hold_the_best_place():
    from sk_meta.model_selection import _best_of_mean_curve

    curve = [(2, float("nan")), (4, 0.6), (6, 0.5)]
    assert _best_of_mean_curve([curve, curve], tol=0.0)[:2] == (4, 0.6)


def test_a_module_class_edited_and_defined_again_is_refused():
    """Compared by name, a class edited in a notebook and run again took
    the old network's init (its network is not in the record)."""
    def net_class(width):
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Linear(64, width)
                self.b = nn.Linear(width, 3)

            def forward(self, X):
                return self.b(torch.relu(self.a(X)))
        return Net

    clf = FOMAMLClassifier(module=net_class(16), n_meta_iter=2, meta_batch_size=2,
                           random_state=0).meta_fit(_train())
    task = _new_task()
    with pytest.raises(ValueError, match="architecture changed since meta_fit"):
        clf.set_params(module=net_class(128)).fit(task.X_support, task.y_support)


def test_an_estimator_with_an_fx_module_pickles():
    """torch.fx makes a local class per traced module: the record held it."""
    import pickle

    torch.manual_seed(0)
    traced = torch.fx.symbolic_trace(nn.Sequential(nn.Linear(64, 16), nn.ReLU(),
                                                   nn.Linear(16, 3)))
    clf = FOMAMLClassifier(module=traced, n_meta_iter=2, meta_batch_size=2,
                           random_state=0).meta_fit(_train())
    task = _new_task()
    copy_ = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(
        copy_.fit(task.X_support, task.y_support).predict_proba(task.X_query),
        clf.fit(task.X_support, task.y_support).predict_proba(task.X_query))


def test_layers_in_another_order_are_the_same_network():
    """A ModuleDict built from a set orders its layers by the process's
    string hashes; the state dict matches them by name."""
    class Parts(nn.Module):
        def __init__(self, names):
            super().__init__()
            self.parts = nn.ModuleDict({name: nn.Linear(64, 8) for name in names})
            self.out = nn.Linear(8, 3)

        def forward(self, X):
            return self.out(sum(torch.relu(self.parts[name](X))
                                for name in sorted(self.parts)))

    def network(names):
        torch.manual_seed(0)
        return Parts(names)

    clf = FOMAMLClassifier(module=network(["a", "b"]), n_meta_iter=2,
                           meta_batch_size=2, random_state=0).meta_fit(_train())
    task = _new_task()
    clf.set_params(module=network(["b", "a"])).fit(task.X_support, task.y_support)


@pytest.mark.parametrize("before, after", [
    ("instance", None), ("instance", "class"), ("class", "instance"),
    (None, "instance"),
])
def test_another_kind_of_module_is_refused_by_name(before, after):
    """A bare KeyError ('layer types') replaced the architecture message."""
    kinds = {"instance": lambda: _seeded(nn.ReLU()), "class": lambda: _BatchNormNet,
             None: lambda: None}
    clf = FOMAMLClassifier(module=kinds[before](), n_meta_iter=2, meta_batch_size=2,
                           random_state=0).meta_fit(_train())
    task = _new_task()
    clf.set_params(module=kinds[after]())
    with pytest.raises(ValueError, match="architecture changed since meta_fit"):
        clf.fit(task.X_support, task.y_support)
    with pytest.raises(ValueError, match="architecture changed since meta_fit"):
        clf.set_params(warm_start=True).meta_fit(_train())
