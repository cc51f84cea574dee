"""What the eighteenth pass found."""

import warnings

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV
from torch import nn

from sk_meta import MAMLClassifier, MAMLRegressor, ReptileClassifier
from sk_meta.model_selection import tasks_to_cv

RNG = np.random.default_rng(0)


def _task(n_support=6, n_query=6, n_features=4):
    return (RNG.normal(size=(n_support, n_features)).astype(np.float32),
            np.arange(n_support) % 2,
            RNG.normal(size=(n_query, n_features)).astype(np.float32),
            np.arange(n_query) % 2)


def _one_row_support():
    X_support, y_support, X_query, _ = _task()
    return X_support[:1], y_support[:1], X_query, np.zeros(len(X_query), int)


def _batch_norm_net():
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(),
                         nn.Linear(8, 2))


@pytest.mark.parametrize("cls", [MAMLClassifier, ReptileClassifier])
def test_one_row_validation_support_is_refused_by_index_before_training(cls):
    # torch's "Expected more than 1 value per channel" came at the first
    # validation, validation_interval meta-iterations in
    tasks = [_task() for _ in range(4)]
    clf = cls(module=_batch_norm_net(), n_meta_iter=50, meta_batch_size=2,
              validation_interval=25, random_state=0)
    validation = [_task(), _one_row_support(), _task(), _one_row_support()]
    message = (r"validation_tasks: the support sets of tasks 1, 3 have a single "
               r"sample.*BatchNorm.*fit refuses it")
    with pytest.raises(ValueError, match=message):
        clf.meta_fit(tasks, validation_tasks=validation)
    assert not hasattr(clf, "n_meta_iter_")
    with pytest.raises(ValueError, match="validation_tasks: the support set of "
                                         "task 0 has a single sample"):
        clf.meta_fit(tasks, validation_tasks=[_one_row_support()])


def test_one_row_validation_support_is_taken_where_batch_norm_takes_it():
    # a convolution's map gives BatchNorm more than one value per channel
    net = nn.Sequential(nn.Unflatten(1, (1, 2, 2)), nn.Conv2d(1, 3, 1),
                        nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(12, 2))
    clf = MAMLClassifier(module=net, n_meta_iter=4, meta_batch_size=2,
                         validation_interval=2, random_state=0)
    clf.meta_fit([_task() for _ in range(4)], validation_tasks=[_one_row_support()])
    assert len(clf.validation_scores_) == 2


def _regression_tasks(n_tasks=4):
    tasks = []
    for index in range(n_tasks):
        X_support, _, X_query, _ = _task()
        y_support = RNG.normal(size=len(X_support))
        y_query = RNG.normal(size=len(X_query))
        if index % 2:  # (n, 1) beside (n,)
            y_support, y_query = y_support[:, None], y_query[:, None]
        tasks.append((X_support, y_support, X_query, y_query))
    return tasks


@pytest.mark.parametrize("first_column", [False, True])
def test_tasks_to_cv_takes_column_targets_beside_flat_ones_as_meta_fit_does(
        first_column):
    tasks = _regression_tasks()
    if first_column:
        tasks = tasks[1:] + tasks[:1]
    reg = MAMLRegressor(n_meta_iter=2, meta_batch_size=2, random_state=0)
    reg.meta_fit(tasks)  # one output either way
    X, y, cv = tasks_to_cv(tasks)
    assert y.shape == ((len(X), 1) if first_column else (len(X),))
    assert len(cv) == 4
    expected = np.concatenate([np.ravel(part) for task in tasks
                               for part in (task[1], task[3])])
    np.testing.assert_array_equal(np.ravel(y), expected)
    search = GridSearchCV(reg, {"inner_steps": [1, 2]}, cv=cv, refit=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search.fit(X, y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_tasks_to_cv_takes_a_column_query_beside_a_flat_support():
    X_support, _, X_query, _ = _task()
    task = (X_support, RNG.normal(size=6), X_query, RNG.normal(size=(6, 1)))
    X, y, cv = tasks_to_cv([task])
    assert y.shape == (12,)
    np.testing.assert_array_equal(y[6:], task[3].ravel())


def test_tasks_to_cv_still_refuses_two_outputs_beside_one():
    tasks = _regression_tasks(2)
    tasks[1] = tasks[1][:3] + (np.zeros((6, 2)),)
    with pytest.raises(ValueError, match="task 1: y_query has per-sample shape"):
        tasks_to_cv(tasks)


class _BatchNormNet(nn.Module):
    def __init__(self, n_features=4, n_outputs=2):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_features, 8), nn.BatchNorm1d(8),
                                 nn.ReLU(), nn.Linear(8, n_outputs))

    def forward(self, X):
        return self.net(X)


@pytest.mark.parametrize("module", [_BatchNormNet, _BatchNormNet()],
                         ids=["class", "instance"])
def test_one_row_support_met_by_the_build_probe_is_named(module):
    # the probe that builds the network met it first: "module failed on
    # inputs of shape (1, 4): ValueError: Expected more than 1 value per
    # channel ..." without the task
    tasks = [_one_row_support()] + [_task() for _ in range(3)]
    clf = MAMLClassifier(module=module, n_meta_iter=4, meta_batch_size=2,
                         random_state=0)
    with pytest.raises(ValueError, match=r"^the support set of task 0 has a single "
                                         r"sample.*BatchNorm"):
        clf.meta_fit(tasks)
    X_support, y_support = _one_row_support()[:2]
    with pytest.raises(ValueError, match=r"^the support set has a single sample"):
        MAMLClassifier(module=module, random_state=0).fit(X_support, y_support)


# -- scikit-learn's conventions (pass SS) --------------------------------------------

def _digits_sampler():
    from sklearn.datasets import load_digits

    from sk_meta.tasks import EpisodeSampler

    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    train = EpisodeSampler(X, y, 3, 5, 5, classes=range(7), shuffle_labels=True,
                           random_state=0)
    support_query = EpisodeSampler(X, y, 3, 5, 5, classes=[7, 8, 9],
                                   random_state=1).sample()
    return train, support_query


def test_module_params_beside_an_instance_are_refused_by_fit_after_meta_fit():
    from sklearn.base import clone

    train, (X_support, y_support, X_query, _) = _digits_sampler()
    net = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))
    clf = MAMLClassifier(module=net, n_meta_iter=2, random_state=0).meta_fit(train)
    fitted = clone(clf).fit(X_support, y_support)
    before = fitted.predict_proba(X_query)
    fitted.set_params(module_params={"width": 1})
    with pytest.raises(ValueError, match="module_params only applies when module "
                                         "is a class"):
        fitted.fit(X_support, y_support)  # was taken, the value ignored
    np.testing.assert_array_equal(fitted.predict_proba(X_query), before)


def test_meta_fit_pipeline_keeps_every_setting_of_the_pipeline():
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from sk_meta.pipeline import meta_fit_pipeline

    train, _ = _digits_sampler()
    for steps in ([("scale", StandardScaler())], []):
        pipeline = Pipeline([*steps, ("maml", MAMLClassifier(
            n_meta_iter=2, hidden_layer_sizes=(8,), random_state=0))],
            transform_input=["X_val"], verbose=False)
        fitted = meta_fit_pipeline(pipeline, train)
        assert fitted.transform_input == ["X_val"]  # was None
        assert fitted.get_params(deep=False).keys() == pipeline.get_params(
            deep=False).keys()


def test_save_and_load_keep_the_metadata_requests(tmp_path):
    import sklearn

    import sk_meta

    train, (X_support, y_support, X_query, y_query) = _digits_sampler()
    with sklearn.config_context(enable_metadata_routing=True):
        clf = MAMLClassifier(n_meta_iter=2, hidden_layer_sizes=(8,), random_state=0)
        clf.meta_fit(train).set_fit_request(sample_weight=True)
        clf.set_score_request(sample_weight="query_weight")
        clf.fit(X_support, y_support)
        clf.save(tmp_path / "clf.skm")
        loaded = sk_meta.load(tmp_path / "clf.skm")
        routing = loaded.get_metadata_routing()
        assert routing.fit.requests == {"sample_weight": True}
        assert routing.score.requests == {"sample_weight": "query_weight"}
        # routed through a search's scoring as the original would be
        from sklearn.model_selection import cross_validate

        from sk_meta.model_selection import tasks_to_cv
        X, y, cv = tasks_to_cv([(X_support, y_support, X_query, y_query)])
        weights = np.ones(len(y))
        scores = [cross_validate(est, X, y, cv=cv, params={
            "sample_weight": weights, "query_weight": weights})["test_score"]
            for est in (clf, loaded)]
    np.testing.assert_array_equal(*scores)
    # nothing set: nothing saved, and routing stays off for it
    plain = MAMLClassifier(n_meta_iter=1, hidden_layer_sizes=(8,), random_state=0)
    plain.meta_fit(train).save(tmp_path / "plain.skm")
    assert sk_meta.load(tmp_path / "plain.skm").get_metadata_routing(
    ).fit.requests == {"sample_weight": None}


def test_meta_grid_search_is_fitted_as_its_best_estimator_is():
    import pandas as pd
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    from sk_meta.model_selection import MetaGridSearch

    train, (X_support, y_support, _, _) = _digits_sampler()
    search = MetaGridSearch(
        MAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=4, validation_interval=2,
                       random_state=0),
        {"concat_input": [False, True]}, n_val_tasks=3, random_state=0)
    with pytest.raises(NotFittedError):
        check_is_fitted(search)
    search.meta_fit(train)
    with pytest.raises(NotFittedError):  # meta-trained, not adapted: as estimators
        check_is_fitted(search)
    assert not hasattr(search, "n_features_in_")
    search.fit(X_support, y_support)
    check_is_fitted(search)
    assert search.n_features_in_ == 64
    assert not hasattr(search, "feature_names_in_")
    columns = [f"pixel{i}" for i in range(64)]
    search.fit(pd.DataFrame(X_support, columns=columns), y_support)
    assert list(search.feature_names_in_) == columns


def test_predict_names_pandas_na_as_fit_does():
    import pandas as pd

    train, (X_support, y_support, X_query, _) = _digits_sampler()
    clf = MAMLClassifier(n_meta_iter=2, hidden_layer_sizes=(8,), random_state=0)
    clf.meta_fit(train).fit(pd.DataFrame(X_support), y_support)
    query = pd.DataFrame(X_query).astype(object)
    query.iloc[0, 3] = pd.NA
    for method in (clf.predict, clf.predict_proba):
        with pytest.raises(ValueError, match="X contains NaN or None: a missing "
                                             "value"):
            method(query)  # was pandas' TypeError from float()


def test_reptile_meta_gradient_refuses_unknown_reinitialized_names():
    import functools

    import torch

    from sk_meta.functional import (
        TaskBatch,
        batched_forward,
        cross_entropy_loss,
        prepare_module,
        reptile_meta_gradient,
    )
    from sk_meta.models import MLP

    module = prepare_module(MLP(n_features=3, hidden_layer_sizes=(4,), n_outputs=2))
    params = {k: p.detach() for k, p in module.named_parameters()}
    batch = TaskBatch(torch.randn(2, 4, 3), torch.tensor([[0, 0, 1, 1]] * 2),
                      torch.randn(2, 3, 3), torch.tensor([[0, 1, 1]] * 2), 2)
    options = dict(loss_fn=functools.partial(cross_entropy_loss, n_classes=2),
                   lr=0.1, n_steps=1)
    head = [name for name in params if name.endswith("weight")][-1]
    with pytest.raises(ValueError, match="reinitialized names parameters that "
                                         "params lacks"):
        reptile_meta_gradient(batched_forward(module), params, batch,
                              reinitialized={head.replace("weight", "weigth")},
                              **options)
    grads, _ = reptile_meta_gradient(batched_forward(module), params, batch,
                                     reinitialized={head}, **options)
    assert not grads[head].any()


# -- tasks (pass VV) -------------------------------------------------------------------

def test_meta_grid_search_with_groups_validates_on_n_way_tasks_of_the_held_out_classes(
        monkeypatch):
    # held-out groups of two classes each: validation tasks were
    # min(n_way, number of groups) = 2-way for 3-way meta-training
    from sklearn.datasets import load_digits

    from sk_meta.model_selection import MetaGridSearch
    from sk_meta.tasks import EpisodeSampler

    X, y = load_digits(return_X_y=True)
    ways = []
    meta_fit = MAMLClassifier.meta_fit

    def recording(self, tasks, validation_tasks=None):
        if validation_tasks is not None:
            ways.extend(len(np.unique(task[1])) for task in validation_tasks)
        return meta_fit(self, tasks, validation_tasks)

    monkeypatch.setattr(MAMLClassifier, "meta_fit", recording)
    sampler = EpisodeSampler(X / 16, y, n_way=3, k_shot=2, n_query=3,
                             shuffle_labels=True, random_state=0)
    search = MetaGridSearch(
        MAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=2, validation_interval=1,
                       random_state=0),
        {"inner_lr": [0.1]}, val_size=2, n_val_tasks=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search.meta_fit(sampler, groups=y // 2)
    assert len(search.val_classes_) == 4
    assert ways and set(ways) == {3}


def _sampler(n_tasks):
    from sk_meta.tasks import EpisodeSampler

    X = RNG.random((100, 2))
    y = np.repeat(np.arange(5), 20)
    return EpisodeSampler(X, y, 2, 1, 1, n_tasks=n_tasks, random_state=0)


def test_a_sampler_of_too_many_tasks_is_refused_before_any_is_adapted():
    from sk_meta.model_selection import evaluate_tasks

    fits = []

    class Counting(MAMLClassifier):
        def fit(self, X, y, sample_weight=None):
            fits.append(1)
            return super().fit(X, y, sample_weight=sample_weight)

    with pytest.raises(ValueError, match=r"at most 10000 tasks, got 10001 \(this "
                                         r"EpisodeSampler's n_tasks\)"):
        evaluate_tasks(Counting(), _sampler(10001))
    assert not fits  # was 10,000 fits, then the refusal
    with pytest.raises(ValueError, match="got 10001"):
        tasks_to_cv(_sampler(10001))
    assert len(tasks_to_cv(_sampler(3))[2]) == 3


def test_evaluate_tasks_notes_the_task_and_model_of_other_errors():
    from sk_meta.exceptions import DivergenceError
    from sk_meta.model_selection import evaluate_tasks

    tasks = list(_sampler(3))
    clf = MAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=2, random_state=0)
    clf.meta_fit(_sampler(None)).set_params(inner_lr=1e30)
    with pytest.raises(DivergenceError) as info:
        evaluate_tasks(clf, tasks, baselines=[])
    assert "in evaluate_tasks, task 0: MAMLClassifier" in getattr(
        info.value, "__notes__", [])


def test_a_batching_data_loader_is_refused_with_the_remedy():
    import torch

    class Episodes(torch.utils.data.Dataset):
        def __init__(self):
            self.tasks = list(_sampler(4))

        def __len__(self):
            return len(self.tasks)

        def __getitem__(self, index):
            return self.tasks[index]

    clf = MAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=2, random_state=0)
    loader = torch.utils.data.DataLoader(Episodes(), batch_size=1)
    with pytest.raises(ValueError, match=r"tasks is a torch DataLoader with "
                                         r"batch_size=1.*batch_size=None"):
        clf.meta_fit(loader)  # was "task 0: y_support must be 1-D class labels"
    assert not hasattr(clf, "n_meta_iter_")
    clf.meta_fit(torch.utils.data.DataLoader(Episodes(), batch_size=None))
    assert clf.n_meta_iter_ == 2


def test_an_object_array_of_tasks_is_told_to_pass_tuples():
    tasks = np.empty((3, 4), dtype=object)
    for row, task in zip(tasks, _sampler(3)):
        row[:] = list(task)  # arrays, one per cell
    clf = MAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=2, random_state=0)
    with pytest.raises(TypeError, match=r"a row of an object array: pass each task "
                                        r"as a tuple"):
        clf.meta_fit(tasks)


# -- long runs (pass XX) ---------------------------------------------------------------


def _two_way_tasks(n_tasks):
    return [_task() for _ in range(n_tasks)]


def test_a_loaded_estimator_warm_started_on_a_generator_says_it_cannot_resume_exactly(
        tmp_path):
    import sk_meta

    tasks = _two_way_tasks(12)

    def generator():  # rebuilt in a new process: from its first task again
        yield from tasks

    clf = MAMLClassifier(hidden_layer_sizes=(8,), meta_batch_size=2, n_meta_iter=3,
                         random_state=0)
    clf.meta_fit(generator())
    clf.save(tmp_path / "checkpoint.skm")
    loaded = sk_meta.load(tmp_path / "checkpoint.skm")
    loaded.set_params(warm_start=True, n_meta_iter=6)
    with pytest.warns(UserWarning, match=r"warm start of a loaded or copied "
                                         r"estimator on a one-shot iterator "
                                         r"\(generator\)"):
        loaded.meta_fit(generator())  # was silent, trained on tasks 0-5 again
    assert loaded.n_meta_iter_ == 6
    # in the process that drew: the same generator, another one (the
    # caller's choice), a list, meta_partial_fit: no word
    same = generator()
    clf = MAMLClassifier(hidden_layer_sizes=(8,), meta_batch_size=2, n_meta_iter=3,
                         random_state=0).meta_fit(same)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for source in (same, generator(), tasks):
            clf.set_params(warm_start=True, n_meta_iter=clf.n_meta_iter_ + 1)
            clf.meta_fit(source)
        clf.meta_partial_fit(generator())
        clf.set_params(n_meta_iter=clf.n_meta_iter_ + 1).meta_fit(generator())


def test_the_interrupt_warning_says_which_init_is_kept(interrupting_list):
    tasks = _two_way_tasks(12)
    clf = MAMLClassifier(hidden_layer_sizes=(8,), meta_batch_size=4, n_meta_iter=10,
                         validation_interval=1, early_stopping=True,
                         n_iter_no_change=100, random_state=0)
    with pytest.warns(UserWarning, match=r"keeps the best init it scored "
                                         r"\(early_stopping\)\. Call meta_fit"):
        clf.meta_fit(interrupting_list(tasks, interrupt_at=15),
                     validation_tasks=tasks[:2])
    partial = MAMLClassifier(hidden_layer_sizes=(8,), meta_batch_size=4,
                             random_state=0)
    with pytest.warns(UserWarning, match=r"keeps that init\. The rest of this "
                                         r"call's tasks were not used.*press "
                                         r"Ctrl-C twice"):
        partial.meta_partial_fit(interrupting_list(tasks, interrupt_at=7))


# -- regressions of this session's own fixes (pass WW) ---------------------------------

def test_a_data_loader_whose_collate_fn_unbatches_is_taken():
    import torch

    from sk_meta.model_selection import evaluate_tasks

    tasks = list(_sampler(4))

    class Episodes(torch.utils.data.Dataset):
        def __len__(self):
            return len(tasks)

        def __getitem__(self, index):
            return tasks[index]

    def loader():
        return torch.utils.data.DataLoader(Episodes(), batch_size=1,
                                           collate_fn=lambda batch: batch[0])

    clf = MAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=2, random_state=0)
    clf.meta_fit(loader(), validation_tasks=loader())
    assert clf.n_meta_iter_ == 2
    assert len(tasks_to_cv(loader())[2]) == 4
    assert len(evaluate_tasks(clf, loader(), baselines=[])[
        "MAMLClassifier"].scores) == 4


def test_meta_fit_pipeline_of_a_pipeline_subclass_returns_a_pipeline():
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from sk_meta.pipeline import meta_fit_pipeline

    class TaggedPipeline(Pipeline):
        def __init__(self, steps, *, memory=None, verbose=False, tag="x"):
            super().__init__(steps, memory=memory, verbose=verbose)
            self.tag = tag

    train, (X_support, y_support, X_query, _) = _digits_sampler()
    pipeline = TaggedPipeline([("scale", StandardScaler()), ("maml", MAMLClassifier(
        n_meta_iter=2, hidden_layer_sizes=(8,), random_state=0))], tag="y")
    fitted = meta_fit_pipeline(pipeline, train)  # was Pipeline's TypeError on 'tag'
    assert type(fitted) is Pipeline
    assert fitted.fit(X_support, y_support).predict(X_query).shape == (15,)


def test_batch_norm_on_a_pooled_row_is_not_blamed_on_a_one_sample_support():
    class Pooling(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(4, 8)
            self.norm = nn.BatchNorm1d(8)
            self.out = nn.Linear(8, 2)

        def forward(self, X):
            pooled = self.norm(self.embed(X).mean(0, keepdim=True))
            return self.out(self.embed(X) + pooled)

    X_support, y_support = _task()[:2]
    with pytest.raises(ValueError, match=r"module failed on inputs of shape \(6, "
                                         r"4\).*Expected more than 1 value"):
        MAMLClassifier(module=Pooling(), random_state=0).fit(X_support, y_support)


def test_predict_says_other_columns_before_what_they_hold():
    import pandas as pd

    train, (X_support, y_support, X_query, _) = _digits_sampler()
    columns = [f"c{i}" for i in range(64)]
    clf = MAMLClassifier(n_meta_iter=2, hidden_layer_sizes=(8,), random_state=0)
    clf.meta_fit(train).fit(pd.DataFrame(X_support, columns=columns), y_support)
    query = pd.DataFrame(X_query, columns=["z", *columns[1:]])
    query["z"] = "text"
    with pytest.raises(ValueError, match="feature names should match"):
        clf.predict(query)


def test_tasks_to_cv_keeps_a_series_beside_a_one_column_frame():
    import pandas as pd

    X_support, _, X_query, _ = _task()
    task = (pd.DataFrame(X_support), pd.Series(RNG.normal(size=6), name="target"),
            pd.DataFrame(X_query), pd.DataFrame({"target": RNG.normal(size=6)}))
    X, y, _ = tasks_to_cv([task])
    assert isinstance(y, pd.Series) and y.shape == (12,)


def test_a_loaded_file_with_a_bad_request_is_not_a_valid_file(tmp_path):
    import torch

    import sk_meta

    train, _ = _digits_sampler()
    clf = MAMLClassifier(n_meta_iter=1, hidden_layer_sizes=(8,), random_state=0)
    clf.meta_fit(train).save(tmp_path / "clf.skm")
    state = torch.load(tmp_path / "clf.skm", weights_only=True)
    state["metadata_requests"] = {"fit": {"sample_weight": "not an identifier"}}
    torch.save(state, tmp_path / "edited.skm")
    with pytest.raises(ValueError, match=r"is not a valid sk_meta file.*"
                                         r"metadata_requests\['fit'\]"):
        sk_meta.load(tmp_path / "edited.skm")


def test_another_network_is_said_before_module_params():
    train, (X_support, y_support, _, _) = _digits_sampler()

    class Net(nn.Module):
        def __init__(self, width=8):
            super().__init__()
            self.layers = nn.Sequential(nn.Linear(64, width), nn.ReLU(),
                                        nn.Linear(width, 3))

        def forward(self, X):
            return self.layers(X)

    clf = MAMLClassifier(module=Net, module_params={"width": 8}, n_meta_iter=1,
                         random_state=0).meta_fit(train)
    clf.set_params(module=Net(4))
    with pytest.raises(ValueError, match="architecture changed since meta_fit"):
        clf.fit(X_support, y_support)


def test_tasks_to_cv_names_the_targets_whose_columns_differ():
    import pandas as pd

    tasks = []
    for name in ("a", "b"):
        X_support, _, X_query, _ = _task()
        tasks.append((X_support, pd.DataFrame({name: RNG.normal(size=6)}),
                      X_query, pd.DataFrame({name: RNG.normal(size=6)})))
    with pytest.raises(ValueError, match=r"task 1: y_support's columns differ from "
                                         r"task 0's y_support"):
        tasks_to_cv(tasks)  # said X_support


# -- a new user's table (pass AB) ------------------------------------------------------

def test_the_sampler_warns_when_a_frame_was_reordered_without_its_labels():
    import pandas as pd

    from sk_meta.tasks import EpisodeSampler

    X = pd.DataFrame(RNG.random((40, 3)), columns=["a", "b", "c"])
    y = pd.Series(np.repeat(np.arange(4), 10))
    shuffled = X.sample(frac=1, random_state=0)
    with pytest.warns(UserWarning, match=r"same index labels in another order.*"
                                         r"y\.loc\[X\.index\]"):
        EpisodeSampler(shuffled, y, 2, 2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for X_, y_ in ((X, y), (shuffled, y.loc[shuffled.index]),
                       (shuffled.reset_index(drop=True), y), (shuffled, y.to_numpy())):
            EpisodeSampler(X_, y_, 2, 2, 2)


def test_missing_values_and_large_features_name_their_columns():
    import pandas as pd

    from sk_meta.exceptions import FeatureScaleWarning
    from sk_meta.tasks import EpisodeSampler

    X = pd.DataFrame(RNG.random((40, 4)), columns=["a", "b", "income", "d"])
    y = np.repeat(np.arange(4), 10)
    with_nan = X.copy()
    with_nan.loc[:, "b"] = np.nan
    clf = MAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=2, random_state=0)
    with pytest.raises(ValueError, match=r"contains NaN or None: a missing value in "
                                         r"column\(s\) 'b'; impute them first"):
        clf.meta_fit(EpisodeSampler(with_nan, y, 2, 2, 2, random_state=0))
    with pytest.raises(ValueError, match=r"in feature\(s\) 1; impute"):
        clf.meta_fit(EpisodeSampler(with_nan.to_numpy(), y, 2, 2, 2, random_state=0))
    scaled = X.assign(income=X["income"] * 1e5)
    with pytest.warns(FeatureScaleWarning, match=r"values up to .* \(in column\(s\) "
                                                 r"'income'\)"):
        clf.meta_fit(EpisodeSampler(scaled, y, 2, 2, 2, random_state=0))
    with pytest.warns(FeatureScaleWarning, match=r"The support set has values up "
                                                 r"to .* \(in feature\(s\) 2\)"):
        MAMLClassifier(hidden_layer_sizes=(8,), random_state=0).fit(
            scaled.to_numpy()[:8], y[:8] % 2)


# -- regressors and samplers (pass ZZ) -------------------------------------------------

def test_large_validation_targets_warn_as_fit_would():
    from sk_meta.exceptions import TargetScaleWarning
    from sk_meta.tasks import Task

    X = RNG.normal(size=(6, 2))

    def tasks(value):
        return [Task(X[:3], np.full(3, value), X[3:], np.full(3, value))] * 4

    reg = MAMLRegressor(hidden_layer_sizes=(4,), n_meta_iter=2, meta_batch_size=2,
                        validation_interval=1, random_state=0)
    with pytest.warns(TargetScaleWarning, match="validation_tasks has targets up to "
                                                "500"):
        reg.meta_fit(tasks(0.5), validation_tasks=tasks(500.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reg.meta_fit(tasks(0.5), validation_tasks=tasks(0.5))


def test_an_empty_list_of_string_labels_is_refused_as_empty():
    from sk_meta.tasks import GroupTaskSampler

    groups = np.array(list("aabbbcccc") * 4)
    X, y = np.arange(36.0)[:, None], np.arange(36.0)
    with pytest.raises(ValueError, match="group_labels is empty"):
        GroupTaskSampler(X, y, groups, 1, 1, group_labels=[])  # said "number labels"


def test_a_task_drawn_twice_into_a_meta_batch_is_named_once():
    X_support, y_support, X_query, y_query = _task()
    task = (X_support, y_support, X_query[:1], y_query[:1])
    clf = MAMLClassifier(module=_batch_norm_net(), n_meta_iter=2, meta_batch_size=2,
                         random_state=0)
    with pytest.raises(ValueError, match=r"the support or query set of task 0 has "
                                         r"a single sample"):
        clf.meta_fit([task])  # said "tasks 0, 0"


# -- the last commits (pass AC) --------------------------------------------------------

def test_the_reorder_check_takes_lists_and_unsortable_indexes():
    import pandas as pd

    from sk_meta.tasks import EpisodeSampler

    X = pd.DataFrame(RNG.random((40, 3)), columns=["a", "b", "c"])
    labels = [0, 1, 2, 3] * 10
    mixed = pd.Index([i if i % 2 else f"s{i}" for i in range(40)], dtype=object)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for y in (labels, tuple(labels), np.array(labels)):
            EpisodeSampler(X, y, 2, 2, 2)  # a list: AttributeError on list.index
            EpisodeSampler(X["a"], y, 2, 2, 2)
        EpisodeSampler(X.set_axis(mixed), pd.Series(labels), 2, 2, 2)  # TypeError
    permuted = mixed[RNG.permutation(40)]
    with pytest.warns(UserWarning, match="same index labels in another order"):
        EpisodeSampler(X.set_axis(permuted), pd.Series(labels, index=mixed), 2, 2, 2)


def test_one_reordered_table_warns_once_not_once_per_fold():
    import pandas as pd

    from sk_meta.model_selection import MetaGridSearch
    from sk_meta.tasks import EpisodeSampler

    X = pd.DataFrame(RNG.random((120, 3)), columns=["a", "b", "c"])
    y = pd.Series(np.repeat(np.arange(6), 20))
    with pytest.warns(UserWarning, match="another order"):
        sampler = EpisodeSampler(X.sample(frac=1, random_state=0), y, 2, 2, 2,
                                 random_state=0)
    search = MetaGridSearch(
        MAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=2, validation_interval=1,
                       random_state=0),
        {"inner_lr": [0.1]}, cv=2, n_val_tasks=2, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        search.meta_fit(sampler)
    assert not [w for w in caught if "another order" in str(w.message)]
