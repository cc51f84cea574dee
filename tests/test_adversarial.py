"""A hostile user's cases: data loss, silent wrong results, unsafe files.

Each test is a case that once went wrong (the docstring says how) or a
neighbour of one; together they pin down that a failed call leaves the
estimator as it was, that files never arm writes or run code, and that
interrupted or resumed runs equal uninterrupted ones.
"""

import os
import stat
import types

import numpy as np
import pytest
import torch

import sk_meta
from sk_meta import MAMLClassifier, MAMLRegressor
from sk_meta.tasks import EpisodeSampler, SinusoidTasks


def _classification_tasks(n_tasks=8, n_features=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(120, n_features))
    y = np.repeat(np.arange(6), 20)
    X[:, 0] += y
    sampler = EpisodeSampler(X, y, n_way=3, k_shot=3, n_query=3, random_state=seed)
    return [sampler.sample(i) for i in range(n_tasks)]


def _classifier(**params):
    defaults = dict(hidden_layer_sizes=(8,), meta_batch_size=4, n_meta_iter=2,
                    random_state=0)
    return MAMLClassifier(**{**defaults, **params})


def _weights(estimator):
    return {k: v.clone() for k, v in estimator.meta_params_.items()}


# -- persistence: files never arm writes, never run code ---------------------------

def test_a_loaded_file_does_not_arm_a_checkpoint_write(tmp_path):
    """A saved checkpoint_path used to be restored by load: warm-starting the
    loaded estimator then overwrote whatever file the saved path named."""
    victim = tmp_path / "precious.txt"
    victim.write_text("do not overwrite")
    crafted = tmp_path / "crafted.pt"
    clf = _classifier(checkpoint_path=str(victim), checkpoint_every=1)
    # what an attacker would ship: a valid file whose stored path names the victim
    clf.set_params(checkpoint_path=None).meta_fit(_classification_tasks())
    clf.set_params(checkpoint_path=str(victim)).save(crafted)

    with pytest.warns(UserWarning, match="checkpoint_path .*is not restored"):
        loaded = sk_meta.load(crafted)
    assert loaded.checkpoint_path is None
    loaded.set_params(warm_start=True, n_meta_iter=4).meta_fit(_classification_tasks())
    assert loaded.n_meta_iter_ == 4
    assert victim.read_text() == "do not overwrite"


def test_a_checkpoint_in_a_missing_directory_is_refused_before_training(tmp_path):
    """The missing directory used to be found at the first checkpoint, after
    which the whole run was rolled back."""
    calls = []

    def tasks():
        calls.append(1)
        yield from _classification_tasks()

    clf = _classifier(checkpoint_path=str(tmp_path / "missing" / "run.pt"))
    with pytest.raises(ValueError, match="checkpoint_path=.*the directory .* does "
                                         "not exist"):
        clf.meta_fit(tasks())
    assert not calls  # refused before a single task was drawn
    assert not hasattr(clf, "module_")


def test_a_checkpoint_path_that_is_a_directory_is_refused(tmp_path):
    with pytest.raises(ValueError, match="is a directory, not a file"):
        _classifier(checkpoint_path=str(tmp_path)).meta_fit(_classification_tasks())


def test_array_hidden_layer_sizes_are_saved_and_checkpointed(tmp_path):
    """hidden_layer_sizes=np.array([8]) trained, then failed the run at its
    first checkpoint: it could not be stored in the weights-only format."""
    path = tmp_path / "run.pt"
    clf = _classifier(hidden_layer_sizes=np.array([8]), checkpoint_path=path,
                      checkpoint_every=1)
    clf.meta_fit(_classification_tasks())
    with pytest.warns(UserWarning, match="checkpoint_path"):
        loaded = sk_meta.load(path)
    assert loaded.n_meta_iter_ == 2
    assert list(loaded.hidden_layer_sizes) == [8]
    for name, value in _weights(clf).items():
        assert torch.equal(loaded.meta_params_[name], value)


def test_an_unsaveable_parameter_is_refused_before_training(tmp_path):
    clf = _classifier(checkpoint_path=str(tmp_path / "run.pt"),
                      module=torch.nn.Linear, module_params={"in_features": 4,
                                                             "out_features": 3,
                                                             "bias": object()})
    with pytest.raises(ValueError, match="checkpoint_path is set, but parameter "
                                         "module_params=.*cannot be saved"):
        clf.meta_fit(_classification_tasks())
    assert not os.listdir(tmp_path)


def _saved_file(tmp_path):
    path = tmp_path / "model.pt"
    _classifier().meta_fit(_classification_tasks()).save(path)
    return path


def test_a_truncated_file_is_a_clear_error(tmp_path):
    path = _saved_file(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a valid sk_meta file .*truncated"):
        sk_meta.load(path)


def test_an_empty_file_is_a_clear_error(tmp_path):
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="not a valid sk_meta file: it is empty"):
        sk_meta.load(path)


@pytest.mark.parametrize("change, message", [
    (lambda s: s.update(estimator="EvilClassifier"), "unknown estimator 'Evil"),
    (lambda s: s.pop("version"), "no format version"),
    (lambda s: s.update(version="1"), "no format version"),
    (lambda s: s.pop("params"), "no estimator name or parameters"),
    (lambda s: s["params"].update(evil=1), r"unknown parameters \['evil'\]"),
    (lambda s: s["meta"].pop("n_outputs"), "KeyError: 'n_outputs'"),
])
def test_a_crafted_file_is_a_clear_error(tmp_path, change, message):
    path = _saved_file(tmp_path)
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)
    with pytest.raises(ValueError, match=message):
        sk_meta.load(path)


def test_saved_files_have_the_permissions_of_torch_save(tmp_path):
    clf = _classifier().meta_fit(_classification_tasks())
    clf.save(tmp_path / "ours.pt")
    torch.save({"a": torch.zeros(1)}, tmp_path / "torch.pt")
    mode = stat.S_IMODE(os.stat(tmp_path / "ours.pt").st_mode)
    assert mode == stat.S_IMODE(os.stat(tmp_path / "torch.pt").st_mode)


def test_a_save_that_fails_while_writing_leaves_the_old_file_and_no_debris(
        tmp_path, monkeypatch):
    path = _saved_file(tmp_path)
    before = path.read_bytes()

    def failing_save(obj, f, *args, **kwargs):
        f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        _classifier(n_meta_iter=1).meta_fit(_classification_tasks()).save(path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.pt"]


# -- numbers that overflow float32 --------------------------------------------------

def test_values_too_large_for_float32_are_refused_as_fit_refuses_them():
    """Finite float64 values above float32's range became infinities and
    surfaced as a DivergenceError advising lower learning rates."""
    tasks = _classification_tasks()
    bad = tasks[1]._replace(X_query=np.full_like(tasks[1].X_query, 1e39))
    with pytest.raises(ValueError, match="too large for float32"):
        _classifier().meta_fit([tasks[0], bad])
    with pytest.raises(ValueError, match="too large for dtype"):
        _classifier().fit(bad.X_query, bad.y_query)


def test_regression_targets_too_large_for_float32_are_refused():
    task = SinusoidTasks(random_state=0).sample(0)
    bad = task._replace(y_support=task.y_support.astype(np.float64) * 1e300)
    with pytest.raises(ValueError, match="y_support contains .*too large for float32"):
        MAMLRegressor(n_meta_iter=1).meta_fit([bad])


# -- interruption and resuming --------------------------------------------------------


def _interrupted_then_resumed(make, tasks, interrupting_list, interrupt_at,
                              **fit_kwargs):
    est = make()
    with pytest.warns(UserWarning, match="interrupted"):
        est.meta_fit(interrupting_list(tasks, interrupt_at), **fit_kwargs)
    return est.set_params(warm_start=True).meta_fit(list(tasks), **fit_kwargs)


def _assert_same_run(a, b):
    assert a.n_meta_iter_ == b.n_meta_iter_
    for name, value in a.meta_params_.items():
        assert torch.equal(value, b.meta_params_[name]), name
    assert a.meta_loss_curve_ == b.meta_loss_curve_
    assert a.validation_scores_ == b.validation_scores_
    assert a.best_validation_score_ == b.best_validation_score_
    drop_time = [{k: v for k, v in row.items() if k != "dur"} for row in a.history_]
    assert drop_time == [{k: v for k, v in row.items() if k != "dur"}
                         for row in b.history_]


@pytest.mark.parametrize("interrupt_at", [9, 21, 37, 53])
def test_early_stopping_resumed_after_ctrl_c_equals_an_uninterrupted_run(
        interrupt_at, interrupting_list):
    """Interrupted after the best validation point and resumed, the kept init
    used to be the last one while best_validation_score_ reported the best."""
    tasks = _classification_tasks(16)
    validation = _classification_tasks(4, seed=1)

    def make():
        return _classifier(n_meta_iter=40, validation_interval=2, meta_lr=0.05,
                           early_stopping=True, n_iter_no_change=3, tol=0.0)

    uninterrupted = make().meta_fit(list(tasks), validation_tasks=validation)
    assert uninterrupted.n_meta_iter_ < 40  # early stopping did stop it
    resumed = _interrupted_then_resumed(make, tasks, interrupting_list,
                                        interrupt_at, validation_tasks=validation)
    _assert_same_run(resumed, uninterrupted)


class _DropoutNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = torch.nn.Linear(4, 16)
        self.dropout = torch.nn.Dropout(0.5)
        self.out = torch.nn.Linear(16, 3)

    def forward(self, X):
        return self.out(self.dropout(torch.relu(self.hidden(X))))


@pytest.mark.parametrize("interrupt_at", [7, 15])
def test_resume_with_dropout_and_validation_is_bit_identical(interrupt_at,
                                                              interrupting_list):
    """The validation pass at the interrupt consumed random numbers, so the
    resumed run drew other dropout masks than an uninterrupted one."""
    tasks = _classification_tasks(12)
    validation = _classification_tasks(3, seed=1)

    def make():
        return _classifier(module=_DropoutNet, n_meta_iter=8, validation_interval=3)

    uninterrupted = make().meta_fit(list(tasks), validation_tasks=validation)
    resumed = _interrupted_then_resumed(make, tasks, interrupting_list,
                                        interrupt_at, validation_tasks=validation)
    _assert_same_run(resumed, uninterrupted)


def test_validation_does_not_change_the_course_of_meta_training():
    tasks = _classification_tasks(12)
    with_validation = _classifier(module=_DropoutNet, n_meta_iter=6,
                                  validation_interval=2).meta_fit(
        tasks, validation_tasks=_classification_tasks(3, seed=1))
    without = _classifier(module=_DropoutNet, n_meta_iter=6).meta_fit(tasks)
    for name, value in without.meta_params_.items():
        assert torch.equal(with_validation.meta_params_[name], value), name


def test_meta_partial_fit_refuses_the_linear_schedule():
    """The linear rate reached 0 after n_meta_iter calls: learning silently
    stopped while n_meta_iter_ kept growing."""
    clf = _classifier(meta_lr_schedule="linear")
    with pytest.raises(ValueError, match="meta_lr_schedule='linear' .*budget that "
                                         "meta_partial_fit does not have"):
        clf.meta_partial_fit(_classification_tasks(4))
    assert not hasattr(clf, "module_")


def test_meta_partial_fit_refuses_an_endless_sampler():
    """meta_partial_fit(SinusoidTasks(random_state=0)) never returned."""
    reg = MAMLRegressor(hidden_layer_sizes=(4,), n_meta_iter=2)
    with pytest.raises(ValueError, match="has no end: meta_partial_fit runs one "
                                         "pass"):
        reg.meta_partial_fit(SinusoidTasks(random_state=0))
    finite = reg.meta_partial_fit(SinusoidTasks(n_tasks=32, random_state=0))
    assert finite.n_meta_iter_ == 2  # 32 tasks, meta-batches of 16


# -- one rule for fit and meta_fit ----------------------------------------------------

def test_labels_mixing_strings_and_numbers_are_refused_with_the_task_index():
    tasks = _classification_tasks(3)
    bad = tasks[2]._replace(y_query=tasks[2].y_query.astype(str))
    with pytest.raises(ValueError, match="task 2: the labels mix strings and "
                                         "numbers"):
        _classifier().meta_fit([tasks[0], tasks[1], bad])
    mixed = np.array([0, "a", 1, 0, "a", 1, 0, "a", 1], dtype=object)
    with pytest.raises(ValueError, match=r"y mixes strings and other labels"):
        _classifier().fit(tasks[0].X_support, mixed)
    within = tasks[1]._replace(y_support=mixed)
    with pytest.raises(ValueError, match=r"task 1: y_support mixes strings and other"):
        _classifier().meta_fit([tasks[0], within])


def test_continuous_labels_are_refused_in_tasks_as_in_fit():
    task = _classification_tasks(1)[0]
    bad = task._replace(y_support=task.y_support + 0.5, y_query=task.y_query + 0.5)
    with pytest.raises(ValueError, match="task 0: y_support holds continuous "
                                         "values"):
        _classifier().meta_fit([bad])
    with pytest.raises(ValueError, match="Unknown label type"):
        _classifier().fit(bad.X_support, bad.y_support)


def test_tensors_requiring_grad_work_in_tasks_and_fit_as_numpy_does():
    tasks = _classification_tasks(4)
    as_tensors = [tuple(torch.tensor(a, dtype=torch.float32, requires_grad=a is t[0])
                        if i % 2 == 0 else torch.as_tensor(a)
                        for i, a in enumerate(t)) for t in tasks]
    from_tensors = _classifier().meta_fit(as_tensors)
    from_arrays = _classifier().meta_fit(
        [tuple(np.asarray(a, dtype=np.float32) if i % 2 == 0 else a
               for i, a in enumerate(t)) for t in tasks])
    for name, value in from_arrays.meta_params_.items():
        assert torch.equal(from_tensors.meta_params_[name], value)
    X = torch.tensor(tasks[0].X_support, requires_grad=True)
    from_tensors.fit(X, torch.as_tensor(tasks[0].y_support))
    assert from_tensors.predict(torch.tensor(tasks[0].X_query)).shape == (9,)
    assert X.grad is None


def test_sparse_inputs_are_refused_clearly_in_tasks_and_fit():
    from scipy import sparse

    task = _classification_tasks(1)[0]
    bad = task._replace(X_support=sparse.csr_matrix(task.X_support))
    with pytest.raises(TypeError, match="task 0: X_support is a sparse matrix, "
                                        "but dense data is required"):
        _classifier().meta_fit([bad])
    with pytest.raises(TypeError, match="dense data is required"):
        _classifier().fit(bad.X_support, bad.y_support)


def test_dataframe_column_order_is_checked_between_meta_fit_and_fit():
    pd = pytest.importorskip("pandas")
    tasks = _classification_tasks(4)
    names = ["a", "b", "c", "d"]

    def frame(X, columns=names):
        return pd.DataFrame(X, columns=names)[columns]

    frames = [t._replace(X_support=frame(t.X_support), X_query=frame(t.X_query))
              for t in tasks]
    clf = _classifier().meta_fit(frames)
    clf.fit(frame(tasks[0].X_support), tasks[0].y_support)
    with pytest.raises(ValueError, match="feature names should match those of the "
                                         "meta-training tasks"):
        clf.fit(frame(tasks[0].X_support, ["d", "c", "b", "a"]), tasks[0].y_support)
    reordered = frames[1]._replace(X_query=frame(tasks[1].X_query, names[::-1]))
    with pytest.raises(ValueError, match="task 1: X_query's feature names differ "
                                         r"from those task 0 has \['a', 'b', 'c', "
                                         r"'d'\] .*column 0 is 'd' where 'a' was"):
        _classifier(meta_batch_size=2).meta_partial_fit([frames[0], reordered])


def test_files_written_before_head_init_existed_keep_the_meta_learned_head(tmp_path):
    # head_init's default became "prototype"; a file without the parameter was
    # written when every output layer was meta-learned, and must stay so
    path = _saved_file(tmp_path)
    state = torch.load(path, weights_only=True)
    assert state["params"].pop("head_init") == "prototype"
    torch.save(state, path)
    assert sk_meta.load(path).head_init == "meta"
    state["params"]["head_init"] = "zero"
    torch.save(state, path)
    assert sk_meta.load(path).head_init == "zero"


def test_an_unsupported_torch_device_is_a_clear_error():
    """device=torch.device("meta") passed validation and failed deep inside."""
    with pytest.raises(ValueError, match="device='meta' is not supported"):
        _classifier(device=torch.device("meta")).meta_fit(_classification_tasks())


def test_pickles_of_version_0_1_load_and_predict():
    clf = _classifier().meta_fit(_classification_tasks())
    task = _classification_tasks()[0]
    clf.fit(task.X_support, task.y_support)
    expected = clf.predict_proba(task.X_query)
    # the layout of sk_meta 0.1: fitted attributes in the instance dictionary
    state = {k: v for k, v in clf.__dict__.items() if k not in ("_meta", "_fit")}
    meta, fit = clf._meta, clf._fit
    state.update(
        module_=meta.module, n_meta_iter_=meta.n_meta_iter,
        meta_loss_curve_=meta.loss_curve, meta_input_shape_=meta.input_shape,
        meta_n_outputs_=meta.n_outputs, meta_architecture_=meta.architecture,
        history_=meta.history, validation_scores_=meta.validation_scores,
        best_validation_score_=meta.best_validation_score,
        meta_params_=meta.params, _meta_y_shape=meta.y_shape,
        _meta_training_state=types.SimpleNamespace(**vars(meta.training_state)),
        params_=fit.params, classes_=fit.classes, n_outputs_=fit.n_outputs,
        _module=fit.module, _fit_input_shape=fit.input_shape,
        _support_X=fit.support_X, _n_fit_classes=len(fit.classes),
    )
    for name in ("inner_lr_mode", "adapt_layers", "head_init", "multi_step_loss",
                 "distributed"):  # parameters 0.1 did not have
        state.pop(name)
    old = type(clf).__new__(type(clf))
    old.__setstate__(state)
    np.testing.assert_array_equal(old.predict_proba(task.X_query), expected)
    assert old.head_init == "meta" and old.n_meta_iter_ == clf.n_meta_iter_
