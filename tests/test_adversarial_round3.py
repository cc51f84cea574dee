"""A hostile user's cases, third round: custom modules' outputs, N-D inputs
at predict, the support set kept by ``fit``, frozen parameters, overflow,
files, meta_fit refusing what fit refuses, and the pipeline helper.

Each test is one case that once went wrong (its docstring says how).
"""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

import sk_meta
from sk_meta import MAMLClassifier, MAMLRegressor
from sk_meta.exceptions import FrozenParametersWarning
from sk_meta.pipeline import meta_fit_pipeline
from sk_meta.tasks import EpisodeSampler, class_splits, split_classes

RNG = np.random.RandomState(0)
X6 = RNG.randn(6, 4)
Y6 = np.array([0, 1, 2] * 2)


class _OneDimensionalOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, X):
        return self.linear(X)[:, 0]


def test_a_module_with_1d_outputs_learns_targets_given_as_a_column():
    """Outputs of shape (n,) against y of shape (n, 1) were broadcast into an
    (n, n) loss: fit trained to a constant, meta_fit raised torch's error."""
    X = np.random.RandomState(0).randn(20, 4)
    y = X @ np.array([1.0, 2, 3, 4])
    options = {"inner_steps": 20, "inner_lr": 0.02, "random_state": 0}
    flat = MAMLRegressor(_OneDimensionalOutput, **options).fit(X, y)
    column = MAMLRegressor(_OneDimensionalOutput, **options).fit(X, y[:, None])
    assert column.predict(X).shape == (20, 1)
    np.testing.assert_allclose(column.predict(X).ravel(), flat.predict(X), rtol=1e-5)
    assert np.std(column.predict(X)) > 1.0  # not a constant
    task = (X[:10], y[:10, None], X[10:], y[10:, None])
    meta = MAMLRegressor(_OneDimensionalOutput, n_meta_iter=2, random_state=0)
    meta.meta_fit([task, task]).fit(X[:10], y[:10, None])
    assert np.isfinite(meta.predict(X)).all()


class _PooledConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.out = nn.Linear(4, 3)

    def forward(self, X):
        return self.out(self.conv(X).relu().mean((2, 3)))


@pytest.mark.parametrize("shape", [(1, 40, 7), (1, 16)])
def test_predict_refuses_samples_of_another_shape_than_fit_saw(shape):
    """predict checked only n_features_in_ (the channels): other image sizes
    returned labels, or raised from inside torch's convolution."""
    X = np.random.RandomState(0).rand(9, 1, 16, 16).astype(np.float32)
    clf = MAMLClassifier(_PooledConv(), random_state=0).fit(X, np.repeat([0, 1, 2], 3))
    with pytest.raises(ValueError, match=r"samples of shape .* fitted on samples of "
                                         r"shape \(1, 16, 16\)"):
        clf.predict(np.random.rand(3, *shape))
    assert clf.predict(X).shape == (9,)


def test_changing_the_support_array_after_fit_does_not_change_predictions():
    """fit kept the caller's float32 array itself, which BatchNorm modules read
    at predict: scaling it afterwards changed the fitted model."""
    rng = np.random.RandomState(0)
    X_support = rng.randn(9, 4).astype(np.float32)
    X_query = rng.randn(1, 4)
    module = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(),
                           nn.Linear(8, 3))
    clf = MAMLClassifier(module=module, random_state=0).fit(
        X_support, np.repeat([0, 1, 2], 3))
    before = clf.predict_proba(X_query)
    X_support *= 100
    np.testing.assert_array_equal(clf.predict_proba(X_query), before)


def test_a_module_with_frozen_parameters_gets_a_warning():
    """requires_grad=False was silently ignored: the frozen layer changed."""
    module = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    module[0].weight.requires_grad_(False)
    with pytest.warns(FrozenParametersWarning, match=r"requires_grad=False \(0.weight"):
        MAMLClassifier(module=module, n_meta_iter=2, random_state=0).meta_fit(
            [(X6, Y6, X6, Y6)])
    with pytest.warns(FrozenParametersWarning):
        MAMLClassifier(module=module, random_state=0).fit(X6, Y6)


def test_a_module_without_frozen_parameters_gets_no_warning(recwarn):
    module = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    MAMLClassifier(module=module, random_state=0).fit(X6, Y6)
    assert not [w for w in recwarn if w.category is FrozenParametersWarning]


def test_outputs_that_overflow_are_refused_not_returned_as_nan():
    """Finite float32 inputs of 3e38 gave NaN probabilities and label 0."""
    clf = MAMLClassifier(random_state=0).fit(X6, Y6)
    for method in (clf.predict, clf.predict_proba):
        with pytest.raises(ValueError, match="outputs on X are not finite"):
            method(np.full((2, 4), 3e38))
    assert np.isfinite(clf.predict_proba(X6)).all()


def test_targets_too_large_for_float32_are_refused_by_fit_as_by_meta_fit():
    """fit cast 1e39 to inf and blamed inner_lr (DivergenceError)."""
    with pytest.raises(ValueError, match="too large for float32"):
        MAMLRegressor(random_state=0).fit(X6, np.full(6, 1e39))
    with pytest.raises(ValueError, match="too large for float32"):
        MAMLRegressor(n_meta_iter=1).meta_fit([(X6, np.full(6, 1e39), X6, Y6)])


@pytest.mark.parametrize("task, message", [
    ((X6, Y6 + 0j, X6, Y6 + 0j), "labels of dtype complex"),
    ((X6, Y6.astype("S1"), X6, Y6.astype("S1")), "labels of dtype"),
    ((X6[:, :0], Y6, X6[:, :0], Y6), "no features"),
    ((pd.DataFrame(X6, columns=["a", 1, "c", "d"]), Y6, X6, Y6), "must all be strings"),
    ((pd.DataFrame(X6, columns=list("aacd")), Y6, X6, Y6),
     "unique; repeated: \\['a'\\]"),
])
def test_meta_fit_refuses_for_a_task_what_fit_refuses(task, message):
    """meta_fit accepted complex and bytes labels, tasks without features and
    malformed column names, all of which fit refuses."""
    with pytest.raises((TypeError, ValueError)):
        MAMLClassifier(random_state=0).fit(task[0], task[1])
    with pytest.raises((TypeError, ValueError), match=f"task 0: .*{message}"):
        MAMLClassifier(n_meta_iter=1, random_state=0).meta_fit([task])


def test_meta_fit_compares_query_feature_names_when_the_support_set_has_none():
    named = pd.DataFrame(X6, columns=list("abcd"))
    renamed = pd.DataFrame(X6, columns=list("wxyz"))
    tasks = [(named, Y6, named, Y6), (X6, Y6, renamed, Y6)]
    # meta_fit shuffles the tasks: either may be the one blamed
    with pytest.raises(ValueError, match=r"task \d: X_\w+'s feature names differ"):
        MAMLClassifier(n_meta_iter=2, random_state=0).meta_fit(tasks)


def test_a_regressor_task_without_target_columns_is_refused():
    """meta_fit raised DivergenceError (NaN loss) instead of a ValueError."""
    with pytest.raises(ValueError, match="y_support must be numeric of shape"):
        MAMLRegressor(n_meta_iter=1).meta_fit([(X6, np.zeros((6, 0)), X6,
                                                np.zeros((6, 0)))])


@pytest.mark.parametrize("options, error", [
    ({"concat_input": True, "module": nn.Linear(4, 3)}, ValueError),
    ({"hidden_layer_sizes": (True,)}, ValueError),
    ({"hidden_layer_sizes": (0,)}, ValueError),
    ({"module": nn.Linear(4, 3), "module_params": {"in_features": 4}}, ValueError),
    ({"module": dict}, TypeError),
])
def test_a_refusal_that_depends_on_parameters_only_draws_no_task(options, error):
    """Such refusals came after the first meta-batch was drawn: 16 tasks of
    the user's iterator were lost."""
    X = np.random.RandomState(0).randn(60, 4)
    y = np.repeat(np.arange(6), 10)
    tasks = iter(EpisodeSampler(X, y, 3, 3, 3, n_tasks=40, random_state=0))
    with pytest.raises(error):
        MAMLClassifier(n_meta_iter=2, **options).meta_fit(tasks)
    assert len(list(tasks)) == 40


def test_empty_validation_tasks_are_named_as_such():
    """The message said that tasks, not validation_tasks, was empty."""
    for empty in ([], iter([])):
        with pytest.raises(ValueError, match="validation_tasks"):
            MAMLClassifier(n_meta_iter=2).meta_fit([(X6, Y6, X6, Y6)],
                                                   validation_tasks=empty)


def test_predict_after_an_invalid_set_params_names_the_parameter():
    """predict raised torch's RuntimeError for n_threads=0, and a device
    that is no device."""
    clf = MAMLClassifier(random_state=0).fit(X6, Y6)
    clf.set_params(n_threads=0)
    with pytest.raises(ValueError, match="n_threads must be a positive int"):
        clf.predict(X6)
    clf.set_params(n_threads=1, device="garbage")
    with pytest.raises(ValueError, match="device='garbage' is not a device"):
        clf.predict(X6)


@pytest.mark.parametrize("content", [b"a,b\n1,2\n", b"hello", b"\x80\x03K\x01."])
def test_load_refuses_a_file_of_another_kind(tmp_path, content):
    """A text file gave the unpickler's IndexError or KeyError."""
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not a valid sk_meta file|not an sk_meta"):
        sk_meta.load(path)


def test_load_refuses_a_file_with_invalid_parameters(tmp_path):
    """A hand-edited device loaded, then predict failed inside torch."""
    path = tmp_path / "model.skm"
    MAMLClassifier(random_state=0).fit(X6, Y6).save(path)
    state = torch.load(path, weights_only=True)
    state["params"]["inner_lr"] = "abc"
    torch.save(state, path)
    with pytest.raises(ValueError, match="not a valid sk_meta file.*inner_lr"):
        sk_meta.load(path)


def test_save_and_load_take_bytes_paths_and_refuse_an_empty_one(tmp_path):
    clf = MAMLClassifier(random_state=0).fit(X6, Y6)
    path = bytes(tmp_path / "model.skm")
    clf.save(path)
    np.testing.assert_array_equal(sk_meta.load(path).predict(X6), clf.predict(X6))
    with pytest.raises(FileNotFoundError, match="empty path"):
        clf.save("")


@pytest.mark.parametrize("labels", [
    np.array(["2024-01-01", "2024-01-02", "2024-01-03"] * 2, dtype="datetime64[D]"),
    np.array([1, 2, 3] * 2, dtype="timedelta64[s]"),
])
def test_date_labels_survive_save_and_load(tmp_path, labels):
    """save wrote dates as Python objects, which load then refused."""
    clf = MAMLClassifier(random_state=0).fit(X6, labels)
    clf.save(tmp_path / "model.skm")
    loaded = sk_meta.load(tmp_path / "model.skm")
    assert loaded.classes_.dtype == labels.dtype
    np.testing.assert_array_equal(loaded.predict(X6), clf.predict(X6))


def test_meta_fit_pipeline_with_the_estimator_alone():
    """A pipeline without preprocessing said "The pipeline is empty"."""
    pipe = meta_fit_pipeline(make_pipeline(MAMLClassifier(n_meta_iter=2,
                                                          random_state=0)),
                             [(X6, Y6, X6, Y6)] * 3)
    assert pipe.fit(X6, Y6).predict(X6).shape == (6,)


@pytest.mark.parametrize("tasks, n, error, message", [
    ([(X6, Y6, X6)] * 3, 10, TypeError, "task 0: expected a 4-tuple"),
    ([(X6, Y6, X6, Y6), (X6[:, :2], Y6, X6[:, :2], Y6)], 10, ValueError,
     "task 1: X_support has samples of shape"),
    ([(X6, Y6, X6, Y6)] * 3, -1, ValueError, "at least 1"),
    ([(X6, Y6, X6, Y6)] * 3, 2.5, TypeError, "must be an int"),
])
def test_meta_fit_pipeline_names_the_bad_task_or_size(tasks, n, error, message):
    """Malformed tasks gave pandas' or numpy's concatenation errors; -1 read
    all tasks but the last."""
    pipe = make_pipeline(StandardScaler(), MAMLClassifier(n_meta_iter=2))
    with pytest.raises(error, match=message):
        meta_fit_pipeline(pipe, tasks, n_preprocessing_tasks=n)


@pytest.mark.parametrize("split", [
    lambda y: split_classes(y, train_size=2),
    lambda y: class_splits(y, 2, train_size=2),
])
def test_class_splits_refuse_missing_labels_as_the_sampler_does(split):
    """split_classes made NaN a class."""
    with pytest.raises(ValueError, match="missing or infinite labels"):
        split(np.array([0.0, 1, 2, np.nan]))


def test_meta_fit_reads_pandas_nullable_columns_as_fit_does():
    """A Float64 DataFrame worked in fit but meta_fit called it dtype object."""
    X = pd.DataFrame(X6, columns=list("abcd")).astype("Float64")
    clf = MAMLClassifier(n_meta_iter=2, random_state=0).meta_fit([(X, Y6, X, Y6)])
    assert clf.fit(X, Y6).predict(X).shape == (6,)
    X_missing = X.copy()
    X_missing.iloc[0, 0] = pd.NA
    with pytest.raises(ValueError, match="task 0: X_support contains NaN"):
        MAMLClassifier(n_meta_iter=2).meta_fit([(X_missing, Y6, X, Y6)])


def test_fit_judges_its_last_step_without_running_samples_beside_the_support_set(
        monkeypatch):
    """The check of the last step ran predict's path: with BatchNorm and
    transductive=False each support row ran beside the whole support set
    (3,000 rows: 8 s instead of 0.06 s)."""
    from sk_meta import _inner_loop

    calls = []
    original = _inner_loop.outputs_beside_support

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(_inner_loop, "outputs_beside_support", counted)
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(),
                           nn.Linear(8, 3))
    X = np.random.RandomState(0).randn(30, 4).astype(np.float32)
    clf = MAMLClassifier(module, transductive=False, random_state=0)
    clf.fit(X, np.arange(30) % 3)
    assert calls == []
    clf.predict(X[:2])
    assert calls  # predict does run them beside it


def test_validation_tasks_whose_outputs_overflow_score_nan_never_best():
    """Validation scored NaN outputs as class 0 (1/3 on 3-way tasks) and
    marked that score the best; MetaGridSearch chose on it."""
    X = np.random.RandomState(0).randn(12, 4).astype(np.float32)
    y = np.arange(12) % 3
    good = (X[:6], y[:6], X[6:], y[6:])
    bad = (X[:6], y[:6], np.full((6, 4), 3e38, np.float32), y[6:])
    clf = MAMLClassifier(n_meta_iter=4, meta_batch_size=2, inner_steps=2,
                         validation_interval=2, early_stopping=True, random_state=0)
    clf.meta_fit([good] * 3, validation_tasks=[bad])
    row = clf.history_[0]
    assert np.isnan(row["valid_score"]) and not row["valid_score_best"]
    assert clf.best_validation_score_ is None
    clf.meta_fit([good] * 3, validation_tasks=[good])
    assert clf.history_[0]["valid_score_best"]


def test_an_endless_sampler_as_validation_tasks_gets_the_value_error():
    """A len() check for empty validation tasks raised the sampler's
    TypeError (no len) instead of the ValueError about finite collections."""
    rng = np.random.RandomState(0)
    sampler = EpisodeSampler(rng.randn(200, 5), rng.randint(0, 8, 200), 3, 4, 4,
                             classes=range(5), random_state=0)
    with pytest.raises(ValueError, match="finite collection"):
        MAMLClassifier(n_meta_iter=3, meta_batch_size=2).meta_fit(
            sampler, validation_tasks=sampler)


def test_an_empty_checkpoint_path_is_refused_before_any_task_is_drawn():
    """It was refused at the first checkpoint, after the training before it."""
    tasks = iter([(X6, Y6, X6, Y6)] * 5)
    with pytest.raises(ValueError, match="checkpoint_path is empty"):
        MAMLClassifier(n_meta_iter=300, checkpoint_path="",
                       checkpoint_every=250).meta_fit(tasks)
    assert len(list(tasks)) == 5


@pytest.mark.parametrize("labels", [
    pd.Series(list("abcd") + [None, "f"], dtype="string"),
    np.array(list("abcd") + [np.float32("nan"), "f"], dtype=object),
    np.array(["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-04", "NaT",
              "2020-01-06"], "datetime64[D]"),
])
def test_every_kind_of_missing_label_is_refused_by_the_class_splits(labels):
    """pandas' NA, float32 NaN among objects and NaT got through: bare
    TypeErrors, or NaT as a class."""
    for split in (lambda y: split_classes(y, train_size=3),
                  lambda y: class_splits(y, 2, train_size=3)):
        with pytest.raises(ValueError, match="missing or infinite labels"):
            split(labels)


def test_parameter_names_are_read_per_class_also_for_subclasses():
    """The names are cached (scikit-learn reads the signature on every
    get_params); a subclass with a parameter of its own must still see it."""
    from sklearn.base import clone

    class WithExtra(MAMLClassifier):
        def __init__(self, extra=1, **kwargs):
            super().__init__(**kwargs)
            self.extra = extra

    assert "extra" not in MAMLClassifier().get_params()
    assert WithExtra(extra=3).get_params()["extra"] == 3
    assert clone(WithExtra(extra=3)).extra == 3
    params = MAMLClassifier().get_params()
    params.pop("inner_lr")  # the caller's copy: the cache is not changed
    assert "inner_lr" in MAMLClassifier().get_params()


# -- third pass: models, samplers, model selection, datasets -------------------------

def _sampler_tasks(n_tasks=8):
    X = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
    y = np.repeat(np.arange(6), 10)
    return X, y, list(EpisodeSampler(X, y, 2, 2, 2, random_state=0, n_tasks=n_tasks))


@pytest.mark.parametrize("resume", ["warm_start", "partial"])
def test_resuming_with_another_meta_optimizer_is_refused_before_drawing(resume):
    """The saved Adam state went into SGD: torch's KeyError 'momentum', after
    two of the user's one-shot tasks were drawn."""
    from sk_meta import FOMAMLClassifier

    _, _, tasks = _sampler_tasks()
    clf = FOMAMLClassifier(meta_batch_size=2, n_meta_iter=1, random_state=0)
    clf.meta_fit(tasks[:2])
    before = clf.predict_proba(tasks[0][2]) if hasattr(clf, "classes_") else None
    clf.set_params(meta_optimizer="sgd", warm_start=True, n_meta_iter=3)
    rest = iter(tasks[2:])
    with pytest.raises(ValueError, match="meta_optimizer changed since meta_fit"):
        if resume == "partial":
            clf.meta_partial_fit(rest)
        else:
            clf.meta_fit(rest)
    assert len(list(rest)) == 6
    assert before is None


def test_evaluate_tasks_refuses_two_baselines_of_one_name():
    """The first of two LogisticRegression baselines was silently dropped."""
    from sklearn.linear_model import LogisticRegression

    from sk_meta.model_selection import evaluate_tasks

    X, y, _ = _sampler_tasks()
    tasks = EpisodeSampler(X, y, 2, 2, 2, n_tasks=3, random_state=1)
    with pytest.raises(ValueError, match="two baselines are named 'LogisticRegr"):
        evaluate_tasks(MAMLClassifier(random_state=0), tasks,
                       baselines=[LogisticRegression(C=1e-3), LogisticRegression()])


def test_load_omniglot_refuses_files_of_other_kinds(tmp_path):
    """Text, empty, .npy and truncated files gave numpy's or zipfile's errors
    (a text file: "contains pickled data ... allow_pickle")."""
    from sk_meta.datasets import load_omniglot

    (tmp_path / "text.npz").write_text("hello\n")
    (tmp_path / "empty.npz").write_bytes(b"")
    np.save(tmp_path / "array.npy", np.zeros(3))
    buffer = tmp_path / "archive.npz"
    np.savez(buffer, images=np.zeros((4, 28, 28), np.uint8))
    (tmp_path / "truncated.npz").write_bytes(buffer.read_bytes()[:300])
    for name in ("text.npz", "empty.npz", "array.npy", "truncated.npz"):
        with pytest.raises(ValueError, match="is not a.* omniglot28 archive"):
            load_omniglot(tmp_path / name)


@pytest.mark.parametrize("task, message", [
    ((X6[:4], Y6[:4], X6[:4, :3], Y6[:4]), "X_query has per-sample shape \\(3,\\), "
                                          "but X_support has \\(4,\\)"),
    # (n, 1) beside (n,) is one output, as meta_fit reads it; two are not
    ((X6[:4], Y6[:4], X6[:4], np.stack([Y6[:4]] * 2, 1)),
     "y_query has per-sample shape"),
    ((X6[:2], np.array(["a", "b"]), X6[:2], np.array([1, 2])),
     "y_query mixes numeric and string labels"),
])
def test_tasks_to_cv_checks_the_query_against_the_support_set(task, message):
    """numpy's concatenation error came out, or integer labels silently
    became strings ('1')."""
    from sk_meta.model_selection import tasks_to_cv

    with pytest.raises(ValueError, match=f"task 0: {message}"):
        tasks_to_cv([task])


@pytest.mark.parametrize("build, message", [
    (lambda: sk_meta.models.MLP(-1), "n_features must be a positive integer"),
    (lambda: sk_meta.models.MLP(3, 8), "hidden_layer_sizes must be a sequence"),
    (lambda: sk_meta.models.MLP(3, (4, True)), "hidden_layer_sizes\\[1\\]"),
    (lambda: sk_meta.models.MLP(3, (4,), n_outputs=0), "n_outputs must be"),
    (lambda: sk_meta.models.Conv4(image_size=15), "image_size must be at least 16"),
    (lambda: sk_meta.models.Conv4(n_filters=0), "n_filters must be"),
    (lambda: sk_meta.models.FTTransformer(3, ffn_factor=float("inf")),
     "ffn_factor must be positive \\(a finite number\\)"),
    (lambda: sk_meta.models.FTTransformer(3, ffn_factor=None), "ffn_factor"),
    (lambda: sk_meta.models.FTTransformer(3, attention_dropout=None),
     "attention_dropout"),
])
def test_the_ready_made_networks_name_a_bad_argument(build, message):
    """MLP and Conv4 took any value: torch's RuntimeError, a network with no
    outputs, or a Conv4 that could never run."""
    import sk_meta.models  # noqa: F401

    with pytest.raises(ValueError, match=message):
        build()


class _Widths(nn.Module):
    def __init__(self, width=8):
        super().__init__()
        self.layer = nn.Linear(4, width)  # torch's RuntimeError for width < 0

    def forward(self, X):
        return self.layer(X)


def test_a_module_class_whose_constructor_fails_in_torch_is_named():
    with pytest.raises(ValueError, match=r"_Widths\(\*\*module_params\) failed"):
        MAMLClassifier(_Widths, module_params={"width": -2}).fit(X6, Y6)


def test_module_params_without_a_module_class_is_said_to_be_ignored(tmp_path):
    """With module=None, module_params was silently ignored. A warning, not an
    error: a grid over module may hold None, and a file saved so must load
    and resume (a refusal broke both)."""
    with pytest.warns(UserWarning, match="module_params=.* is ignored"):
        clf = MAMLClassifier(module_params={"hidden_layer_sizes": (2,)},
                             n_meta_iter=2, random_state=0).meta_fit([(X6, Y6, X6, Y6)])
    clf.save(tmp_path / "model.skm")
    loaded = sk_meta.load(tmp_path / "model.skm")
    loaded.set_params(warm_start=True, n_meta_iter=3).meta_fit([(X6, Y6, X6, Y6)])
    assert loaded.n_meta_iter_ == 3
    with pytest.warns(UserWarning, match="is ignored"):
        MAMLClassifier(module_params={"width": 3}, random_state=0).fit(X6, Y6)


class _AuxiliaryAfterTheHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.head = nn.Linear(8, 3)
        self.auxiliary = nn.Linear(8, 1)  # called after the head, output unused

    def forward(self, X):
        hidden = torch.relu(self.body(X))
        out = self.head(hidden)
        self.auxiliary(hidden)
        return out


def test_a_linear_layer_called_after_the_head_is_not_taken_for_it():
    """The last layer called was taken for the head even when the module
    returns another layer's output."""
    from sk_meta.functional import find_output_layer, prepare_module

    module = prepare_module(_AuxiliaryAfterTheHead())
    assert find_output_layer(module, "vmap", torch.randn(5, 4)).weight == "head.weight"


def test_meta_grid_search_refuses_a_parameter_name_the_estimator_lacks():
    """A typo counted as a candidate that failed to meta-train (a warning and
    a NaN score) instead of an error."""
    from sk_meta.model_selection import MetaGridSearch

    X, y, _ = _sampler_tasks()
    sampler = EpisodeSampler(X, y, 2, 2, 2, random_state=0)
    search = MetaGridSearch(MAMLClassifier(n_meta_iter=2),
                            [{"meta_lr": [0.01]}, {"metalr": [0.1]}], n_val_tasks=2)
    with pytest.raises(ValueError, match="does not have: \\['metalr'\\]"):
        search.meta_fit(sampler)


def test_groups_may_be_missing_for_rows_outside_the_samplers_classes():
    """Missing groups were refused on every row, also on the rows of classes
    the sampler never draws."""
    from sk_meta.model_selection import MetaGridSearch

    X = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32)
    y = np.repeat(np.arange(10), 10)
    sampler = EpisodeSampler(X, y, 2, 2, 2, classes=range(8), random_state=0)
    groups = (y // 2).astype(float)
    groups[y >= 8] = np.nan
    search = MetaGridSearch(MAMLClassifier(n_meta_iter=2, meta_batch_size=2,
                                           random_state=0),
                            {"inner_lr": [0.1]}, n_val_tasks=2, val_size=2,
                            random_state=0).meta_fit(sampler, groups=groups)
    assert len(search.val_classes_) == 4


def test_meta_grid_search_blames_groups_for_missing_groups():
    """NaN groups were reported as missing labels of y."""
    from sk_meta.model_selection import MetaGridSearch

    X, y, _ = _sampler_tasks()
    sampler = EpisodeSampler(X, y, 2, 2, 2, random_state=0)
    with pytest.raises(ValueError, match="groups .*contains 10 missing"):
        MetaGridSearch(MAMLClassifier(n_meta_iter=2), {}, n_val_tasks=2).meta_fit(
            sampler, groups=np.where(y < 5, y, np.nan))


@pytest.mark.parametrize("options, error, message", [
    ({"random_state": -1}, ValueError, "random_state must be non-negative"),
    ({"classes": [1, None]}, ValueError, "classes contains 1 missing"),
    ({"classes": [[1, 2], [3, 4]]}, ValueError, "1-D list of labels"),
])
def test_episode_sampler_refuses_bad_classes_and_seeds_at_construction(
        options, error, message):
    X, y, _ = _sampler_tasks()
    with pytest.raises(error, match=message):
        EpisodeSampler(X, y, 2, 2, 2, **options)


@pytest.mark.parametrize("classes", [{1, 2, 3}, (c for c in [1, 2, 3])])
def test_episode_sampler_reads_classes_from_a_set_or_a_generator(classes):
    """They were read as one label: "classes not found in y: [{1, 2, 3}]"."""
    X, y, _ = _sampler_tasks()
    sampler = EpisodeSampler(X, y, 2, 2, 2, classes=classes, random_state=0)
    np.testing.assert_array_equal(sampler.class_labels, [1, 2, 3])


@pytest.mark.parametrize("build", [
    lambda: sk_meta.tasks.SinusoidTasks().make_task(np.nan, 0),
    lambda: sk_meta.tasks.SinusoidTasks().make_task("a", 0),
    lambda: sk_meta.tasks.SinusoidTasks(amplitude_range=(1e39, 1e40)),
])
def test_sinusoid_tasks_refuse_values_that_would_make_garbage_targets(build):
    """make_task(nan) gave an all-NaN task, ranges beyond float32 infinite
    targets, make_task('a') numpy's UFuncTypeError."""
    import sk_meta.tasks  # noqa: F401

    with pytest.raises(ValueError, match="finite number"):
        build()


# -- fourth pass: the functional core ---------------------------------------------

class _HeadRegisteredFirst(nn.Module):
    def __init__(self):
        super().__init__()
        self.out = nn.Linear(8, 3)  # registered first, applied last
        self.first = nn.Linear(4, 8)

    def forward(self, X):
        return self.out(torch.relu(self.first(X)))


def test_the_output_layer_is_the_linear_layer_applied_last():
    """It was the one registered last: torch's shape error under the default
    prototype head."""
    from sk_meta.functional import find_output_layer, prepare_module

    torch.manual_seed(0)
    module = prepare_module(_HeadRegisteredFirst())
    assert find_output_layer(module, "vmap", torch.randn(5, 4)).weight == "out.weight"
    clf = MAMLClassifier(_HeadRegisteredFirst, n_meta_iter=2, random_state=0)
    clf.meta_fit([(X6, Y6, X6, Y6)] * 2).fit(X6, Y6)
    assert clf.predict_proba(X6).shape == (6, 3)


def test_an_output_layer_with_a_computed_weight_is_refused_with_the_way_out():
    """weight_norm on the output layer gave a bare KeyError."""
    from torch.nn.utils import parametrizations

    module = nn.Sequential(nn.Linear(4, 8), nn.ReLU(),
                           parametrizations.weight_norm(nn.Linear(8, 3)))
    with pytest.raises(ValueError, match="parametrization.*head_init='meta'"):
        MAMLClassifier(module, random_state=0).fit(X6, Y6)
    MAMLClassifier(module, head_init="meta", random_state=0).fit(X6, Y6)


def test_inference_mode_is_refused_by_what_takes_gradients_only():
    """fit, meta_fit and adapt raised autograd's "does not require grad"."""
    from sk_meta.functional import adapt, batched_forward, expand_params, prepare_module
    from sk_meta.functional import mse_loss as functional_mse

    clf = MAMLClassifier(random_state=0).fit(X6, Y6)
    expected = clf.predict(X6)
    module = prepare_module(nn.Linear(4, 1))
    params = expand_params({k: p.detach() for k, p in module.named_parameters()}, 2)
    with torch.inference_mode():
        X, y = torch.randn(2, 5, 4), torch.randn(2, 5)
        for call in (lambda: clf.fit(X6, Y6),
                     lambda: MAMLClassifier(n_meta_iter=1).meta_fit([(X6, Y6, X6, Y6)]),
                     lambda: adapt(batched_forward(module), params, X, y,
                                   loss_fn=functional_mse, lr=0.1, n_steps=1)):
            with pytest.raises(RuntimeError, match="inference_mode"):
                call()
        np.testing.assert_array_equal(clf.predict(X6), expected)


@pytest.mark.parametrize("outputs, targets", [((2, 5, 2), (2, 2, 5)),
                                              ((2, 5, 1), (1, 10))])
def test_mse_loss_refuses_shapes_it_would_only_reshape(outputs, targets):
    """Any outputs and targets of one size were reshaped into each other."""
    from sk_meta.functional import mse_loss as functional_mse

    with pytest.raises(ValueError, match="one shape"):
        functional_mse(torch.randn(*outputs), torch.randn(*targets))
    one_output = functional_mse(torch.ones(2, 5), torch.zeros(2, 5, 1))
    assert float(one_output) == pytest.approx(2.0)  # a sum over tasks of means


@pytest.mark.parametrize("rate, error", [(float("inf"), ValueError),
                                         ("0.1", TypeError)])
def test_a_rate_dict_with_a_bad_rate_is_refused(rate, error):
    """A dict of infinite rates gave non-finite weights, of strings torch's
    "only integer tensors ... converted to an index"."""
    from sk_meta.functional import adapt, batched_forward, expand_params, prepare_module
    from sk_meta.functional import mse_loss as functional_mse

    module = prepare_module(nn.Linear(4, 1))
    params = expand_params({k: p.detach() for k, p in module.named_parameters()}, 2)
    with pytest.raises(error, match=r"lr\['(weight|bias)'\]"):
        adapt(batched_forward(module), params, torch.randn(2, 5, 4), torch.randn(2, 5),
              loss_fn=functional_mse, lr=dict.fromkeys(params, rate), n_steps=1)


# -- fifth pass: regressors and variants ---------------------------------------------

def test_validation_scores_regression_tasks_as_score_does():
    """R² of a constant query target (one query row) was -inf or -1e37: early
    stopping kept no init, one such task swamped the mean."""
    from sklearn.metrics import r2_score

    from sk_meta.tasks import SinusoidTasks

    train = list(SinusoidTasks(k_shot=5, n_query=5, n_tasks=20, random_state=0))
    one_row = list(SinusoidTasks(k_shot=5, n_query=1, n_tasks=4, random_state=3))
    reg = MAMLRegressor(hidden_layer_sizes=(8,), n_meta_iter=4, meta_batch_size=4,
                        validation_interval=2, early_stopping=True, random_state=0)
    reg.meta_fit(train, validation_tasks=one_row)
    assert reg.validation_scores_ == [0.0, 0.0]
    assert reg.best_validation_score_ == 0.0
    # on ordinary tasks, multi-output too: the mean of score() over the tasks
    rng = np.random.RandomState(0)
    tasks = [(rng.randn(5, 2), rng.randn(5, 2), rng.randn(6, 2), rng.randn(6, 2))
             for _ in range(3)]
    reg = MAMLRegressor(hidden_layer_sizes=(8,), n_meta_iter=1, meta_batch_size=3,
                        validation_interval=1, random_state=0)
    reg.meta_fit(tasks, validation_tasks=tasks)
    # validated after the one meta-iteration: the init reg ends with
    expected = [r2_score(y_q, reg.fit(X_s, y_s).predict(X_q))
                for X_s, y_s, X_q, y_q in tasks]
    assert reg.validation_scores_[0] == pytest.approx(np.mean(expected), abs=1e-5)


@pytest.mark.parametrize("name", ["tasks_per_chunk", "inner_steps", "meta_batch_size",
                                  "prototype_scale"])
def test_a_number_parameter_given_a_bool_is_refused(name):
    """scikit-learn's Interval took True for 1: tasks_per_chunk=True failed
    inside torch's split."""
    from sklearn.utils._param_validation import InvalidParameterError

    with pytest.raises(InvalidParameterError, match=f"'{name}'.*not a bool"):
        MAMLClassifier(**{name: True}).fit(X6, Y6)


@pytest.mark.parametrize("change", [{"multi_step_loss": True}, {"head_init": "zero"},
                                    {"inner_lr_mode": "per_layer_step"}])
def test_predict_is_not_stopped_by_a_meta_training_option_set_after_fit(change):
    """predict re-checked every inner-loop setting, so an adapted Reptile
    regressor could not predict after set_params(multi_step_loss=True)."""
    from sk_meta import ReptileRegressor

    X = np.random.RandomState(0).randn(10, 1)
    reg = ReptileRegressor(hidden_layer_sizes=(8,), random_state=0).fit(X, X[:, 0])
    expected = reg.predict(X)
    reg.set_params(**change)
    np.testing.assert_array_equal(reg.predict(X), expected)
    with pytest.raises(ValueError):
        reg.fit(X, X[:, 0])  # fit does refuse the combination


def test_numbers_given_as_numpy_or_torch_scalars_are_numbers():
    """The new argument checks refused 0-d arrays, torch scalars and
    Fractions that worked before them."""
    from fractions import Fraction

    from sk_meta.models import MLP, FTTransformer
    from sk_meta.tasks import SinusoidTasks

    FTTransformer(4, ffn_dropout=np.array(0.1), ffn_factor=torch.tensor(2.0))
    assert MLP(torch.tensor(5), torch.tensor([8, 4])).layers[0].in_features == 5
    tasks = SinusoidTasks(k_shot=2, n_query=2)
    assert tasks.make_task(np.array(1.5), 0.0, 0).y_query.shape == (2,)
    assert tasks.make_task(Fraction(3, 2), 0, 0).y_query.shape == (2,)
    X, y, _ = _sampler_tasks()
    # one class read from the 0-d array (one-class tasks are refused since)
    with pytest.raises(ValueError, match="n_way=2 is more than the 1 eligible"):
        EpisodeSampler(X, y, 2, 2, 2, classes=np.int64(5))


@pytest.mark.parametrize("call, error, message", [
    (lambda F: F.expand_params({"w": torch.zeros(2)}, -1), ValueError, "n_tasks"),
    (lambda F: F.expand_params({"w": torch.zeros(2)}, 2.0), TypeError, "n_tasks"),
    (lambda F: F.zero_head(torch.zeros(3, 2), None, 0), ValueError, "n_tasks"),
    (lambda F: F.cross_entropy_loss(torch.zeros(2, 5, 3), torch.zeros(2, 5).long(), 6),
     ValueError, "n_classes=6, but the logits have 3 outputs"),
    (lambda F: F.cross_entropy_loss(torch.zeros(2, 5, 3), torch.zeros(10).long(), 3),
     ValueError, "y of shape \\(B, n_samples\\)"),
])
def test_functional_helpers_name_a_bad_argument(call, error, message):
    """They failed inside torch ("shape '[10, 6]' is invalid", "not enough
    values to unpack", negative sizes)."""
    import sk_meta.functional as functional

    with pytest.raises(error, match=message):
        call(functional)


def _linear_meta_problem():
    from sk_meta.functional import (
        TaskBatch,
        batched_forward,
        expand_params,
        mse_loss,
        prepare_module,
    )

    module = prepare_module(nn.Linear(3, 1))
    params = {k: p.detach() for k, p in module.named_parameters()}
    batch = TaskBatch(torch.randn(2, 4, 3), torch.randn(2, 4), torch.randn(2, 4, 3),
                      torch.randn(2, 4))
    return batched_forward(module), params, expand_params, batch, mse_loss


def test_step_weights_need_one_weight_per_step():
    """A list gave an AttributeError, one weight for two steps was broadcast."""
    from sk_meta.functional import maml_meta_loss

    forward, params, _, batch, loss_fn = _linear_meta_problem()
    options = {"loss_fn": loss_fn, "lr": 0.1, "n_steps": 2}
    with pytest.raises(ValueError, match="one weight per step \\(2\\)"):
        maml_meta_loss(forward, params, batch, step_weights=torch.ones(1), **options)
    listed = maml_meta_loss(forward, params, batch, step_weights=[0.0, 1.0], **options)
    plain = maml_meta_loss(forward, params, batch, **options)
    torch.testing.assert_close(listed, plain)


def test_reinitialized_given_as_one_string_is_refused():
    """'weight' was read as the set of its characters."""
    from sk_meta.functional import reptile_meta_gradient

    forward, params, _, batch, loss_fn = _linear_meta_problem()
    with pytest.raises(TypeError, match="not one string"):
        reptile_meta_gradient(forward, params, batch, loss_fn=loss_fn, lr=0.1,
                              n_steps=1, reinitialized="weight")
