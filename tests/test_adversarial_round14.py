"""What the fourteenth pass found: a generator that ran out ended meta_fit
without a word."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits

from sk_meta import FOMAMLClassifier, MAMLRegressor, ReptileClassifier
from sk_meta.exceptions import TasksExhaustedWarning
from sk_meta.tasks import EpisodeSampler

X_DIGITS, Y_DIGITS = load_digits(return_X_y=True)


def _sampler(n_tasks=None):
    return EpisodeSampler(X_DIGITS / 16, Y_DIGITS, 3, 2, 3, classes=range(7),
                          n_tasks=n_tasks, random_state=0)


@pytest.mark.parametrize("Estimator", [FOMAMLClassifier, ReptileClassifier])
def test_a_generator_that_runs_out_before_n_meta_iter_warns(Estimator):
    """10 tasks in meta-batches of 2 are 5 meta-iterations of n_meta_iter=20:
    meta_fit stopped there silently."""
    est = Estimator(hidden_layer_sizes=(8,), n_meta_iter=20, meta_batch_size=2,
                    random_state=0)
    with pytest.warns(TasksExhaustedWarning,
                      match="ran out after 5 meta-iterations of n_meta_iter=20"):
        est.meta_fit(task for task in _sampler(n_tasks=10))
    assert est.n_meta_iter_ == 5


def test_a_regressor_warns_too():
    rng = np.random.RandomState(0)
    tasks = ((rng.randn(4, 1), rng.randn(4), rng.randn(4, 1), rng.randn(4))
             for _ in range(3))
    with pytest.warns(TasksExhaustedWarning, match="after 3 meta-iterations"):
        MAMLRegressor(hidden_layer_sizes=(8,), n_meta_iter=4, meta_batch_size=1,
                      random_state=0).meta_fit(tasks)


@pytest.mark.parametrize("make_tasks", [
    lambda: list(_sampler(n_tasks=3)),                    # cycled
    lambda: _sampler(n_tasks=3),                          # iterated again
    lambda: (task for task in _sampler(n_tasks=8)),       # exactly enough
    lambda: (task for task in _sampler(n_tasks=50)),      # more than enough
])
def test_tasks_that_last_or_cycle_do_not_warn(make_tasks):
    est = FOMAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=4, meta_batch_size=2,
                           random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TasksExhaustedWarning)
        est.meta_fit(make_tasks())
    assert est.n_meta_iter_ == 4


def test_meta_partial_fit_runs_its_one_pass_without_a_warning():
    """meta_partial_fit's pass over its tasks is meant to end."""
    est = FOMAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=20, meta_batch_size=2,
                           random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TasksExhaustedWarning)
        est.meta_partial_fit(list(_sampler(n_tasks=4)))
        est.meta_partial_fit(task for task in _sampler(n_tasks=4))
    assert est.n_meta_iter_ == 4


def _frame(X, names):
    import pandas as pd

    return pd.DataFrame(X, columns=names)


def test_feature_name_messages_name_the_difference_not_every_column():
    """With 64 columns the warnings and errors printed both lists in full
    (619 characters); now they name what differs, and at most five names of
    a list."""
    names = [f"pixel_{i}" for i in range(64)]
    tasks = [(_frame(t.X_support, names), t.y_support, _frame(t.X_query, names),
              t.y_query) for t in _sampler(n_tasks=4)]
    est = FOMAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=2, random_state=0)
    est.meta_fit(tasks)
    X = tasks[0][0]
    renamed = X.rename(columns={"pixel_3": "px3"})
    with pytest.raises(ValueError, match=r"names not seen in meta-training: \['px3'\]; "
                                         r"names missing: \['pixel_3'\]$") as caught:
        est.fit(renamed, tasks[0][1])
    assert len(str(caught.value)) < 250
    swapped = X[[names[1], names[0], *names[2:]]]
    with pytest.raises(ValueError, match="another order \\(column 0 is 'pixel_1' "
                                         "where 'pixel_0' was\\)"):
        est.fit(swapped, tasks[0][1])
    # meta_fit: a task whose query lacks the names
    mixed = [tasks[0], (tasks[1][0], tasks[1][1], tasks[1][2].to_numpy(), tasks[1][3])]
    with pytest.warns(UserWarning, match=r"X_support has \['pixel_0', 'pixel_1', "
                                         r"'pixel_2', 'pixel_3', 'pixel_4', \.\.\.\] "
                                         r"\(64 names\)") as record:
        FOMAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=2,
                         random_state=0).meta_fit(mixed)
    assert all(len(str(w.message)) < 300 for w in record)
    # a task of other names: the difference, not both lists
    other = [tasks[0], (renamed, tasks[1][1], renamed, tasks[1][3])]
    with pytest.raises(ValueError, match=r"task 1: X_support's feature names differ "
                                         r"from those task 0 has .*names not among "
                                         r"them: \['px3'\]") as caught:
        FOMAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=2, meta_batch_size=2,
                         random_state=0).meta_partial_fit(other)
    assert len(str(caught.value)) < 300
    # within one task: the query against its own support
    inside = [(X, tasks[0][1], renamed, tasks[0][3])]
    with pytest.raises(ValueError, match=r"task 0: X_query's feature names differ "
                                         r"from those X_support has"):
        FOMAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=1,
                         random_state=0).meta_partial_fit(inside)


def test_the_feature_names_difference_names_the_columns_and_is_total():
    """It rebuilt a set per name (31 s for 20,000 columns; the sets are now
    built once) and raised StopIteration for lists that differ only by a
    repeated name."""
    from sk_meta.tasks._validation import feature_names_difference

    names = [f"f{i}" for i in range(20_000)]
    message = feature_names_difference(names, [*names[:-1], "x"])
    assert message == ("names not seen in meta-training: ['x']; "
                       "names missing: ['f19999']")
    assert feature_names_difference(["a", "b"], ["a", "b", "a"]) == (
        "3 names where there were 2")
    assert feature_names_difference(["a", "b"], ["a", "b"]) == (
        "2 names where there were 2")


def test_the_samplers_repr_counts_the_rows_of_its_classes():
    """It counted the whole table's rows (1797) for a sampler of 7 classes."""
    n_rows = int(np.isin(Y_DIGITS, range(7)).sum())
    assert n_rows < len(Y_DIGITS)
    assert repr(_sampler()).startswith(f"EpisodeSampler(<{n_rows} samples, 7 classes>")
    assert repr(EpisodeSampler(X_DIGITS, Y_DIGITS, 3, 2, 3)).startswith(
        f"EpisodeSampler(<{len(Y_DIGITS)} samples, 10 classes>")


def _head_modules():
    import torch
    import torch.nn.functional as F
    from torch import nn

    class UnusedLayer(nn.Module):
        def __init__(self):
            super().__init__()
            self.hidden, self.out = nn.Linear(64, 16), nn.Linear(16, 3)
            self.unused = nn.Linear(16, 3)

        def forward(self, x):
            return self.out(torch.relu(self.hidden(x)))

    class ThroughFLinear(UnusedLayer):
        def forward(self, x):
            return F.linear(torch.relu(self.hidden(x)), self.out.weight, self.out.bias)

    class UnusedLayerAndAScale(UnusedLayer):
        def forward(self, x):
            return 2 * self.out(torch.relu(self.hidden(x))) + 1

    return ThroughFLinear, UnusedLayerAndAScale, UnusedLayer


def test_an_output_layer_applied_through_f_linear_is_named():
    """The refusal named the hidden layer as 'the last nn.Linear layer'
    (the hook never saw the output layer run) and quoted a shape error."""
    through_f_linear, unused_and_scale, unused = _head_modules()
    with pytest.raises(ValueError, match=r"out never ran as one on a probe batch.*"
                                         r"call it \(self.out\(x\)\)"):
        FOMAMLClassifier(module=through_f_linear(), n_meta_iter=2,
                         random_state=0).meta_fit(_sampler())
    # an unused layer is not blamed for what comes after the real one
    with pytest.raises(ValueError, match=r"layer \(out\) applied last") as caught:
        FOMAMLClassifier(module=unused_and_scale(), n_meta_iter=2,
                         random_state=0).meta_fit(_sampler())
    assert "never ran" not in str(caught.value)
    # and a network that splits is taken as before
    est = FOMAMLClassifier(module=unused(), n_meta_iter=2, random_state=0)
    assert est.meta_fit(_sampler()).n_meta_iter_ == 2
    # head_init="meta" needs no split
    assert FOMAMLClassifier(module=through_f_linear(), n_meta_iter=2, head_init="meta",
                            random_state=0).meta_fit(_sampler()).n_meta_iter_ == 2


def test_the_group_samplers_repr_counts_the_rows_of_its_groups():
    from sk_meta.tasks import GroupTaskSampler

    groups = np.arange(len(Y_DIGITS)) % 10
    sampler = GroupTaskSampler(X_DIGITS, Y_DIGITS.astype(float), groups, 2, 3,
                               group_labels=[0, 1])
    n_rows = int(np.isin(groups, [0, 1]).sum())
    assert repr(sampler).startswith(f"GroupTaskSampler(<{n_rows} samples, 2 groups>")


def test_one_class_tasks_are_refused():
    """n_way=1 spent the whole budget learning nothing (loss 0), silently."""
    with pytest.raises(ValueError, match="n_way=1: a task of one class"):
        EpisodeSampler(X_DIGITS, Y_DIGITS, 1, 5, 10, classes=range(7))
    one_class = [(X_DIGITS[Y_DIGITS == c][:3], Y_DIGITS[Y_DIGITS == c][:3],
                  X_DIGITS[Y_DIGITS == c][3:6], Y_DIGITS[Y_DIGITS == c][3:6])
                 for c in range(4)]
    est = FOMAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=3, random_state=0)
    with pytest.raises(ValueError, match="the tasks of the list have one class each"):
        est.meta_fit(one_class)
    assert not hasattr(est, "n_meta_iter_")


def test_a_failed_set_params_changes_nothing():
    """scikit-learn's set_params sets the names before a misspelled one: a
    search's estimator took inner_steps=0 while best_estimator_ kept 20."""
    from sk_meta.model_selection import MetaGridSearch

    est = FOMAMLClassifier(hidden_layer_sizes=(8,), inner_steps=3)
    with pytest.raises(ValueError, match="inner_stpes"):
        est.set_params(inner_steps=5, inner_lr=0.5, inner_stpes=4)
    assert (est.inner_steps, est.inner_lr) == (3, FOMAMLClassifier().inner_lr)
    search = MetaGridSearch(
        FOMAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=4, validation_interval=2,
                         random_state=0),
        {"meta_lr": [1e-3, 1e-2]}, n_val_tasks=3, random_state=0)
    search.meta_fit(_sampler())
    steps = search.best_estimator_.inner_steps
    for bad in ({"estimator__inner_steps": 0, "estimator__inner_stpes": 0},
                {"cv": 2, "estimator__inner_steps": 0, "nope": 1}):
        with pytest.raises(ValueError):
            search.set_params(**bad)
        assert search.get_params()["estimator__inner_steps"] == steps
        assert search.best_estimator_.inner_steps == steps
        assert search.cv == MetaGridSearch(search.estimator, {}).cv
    search.set_params(estimator__inner_steps=2)
    assert search.best_estimator_.inner_steps == 2


def test_the_default_network_computes_in_float32_under_a_float64_default():
    """torch.set_default_dtype(torch.float64) built the default MLP in
    float64, which failed on sk_meta's float32 inputs in torch."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        est = FOMAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=2, random_state=0)
        est.meta_fit(_sampler())
        task = next(iter(EpisodeSampler(X_DIGITS / 16, Y_DIGITS, 3, 2, 3,
                                        classes=[7, 8, 9], random_state=1)))
        proba = est.fit(task.X_support, task.y_support).predict_proba(task.X_query)
        assert np.allclose(proba.sum(1), 1)
        assert all(p.dtype == torch.float32 for p in est.module_.parameters())
    finally:
        torch.set_default_dtype(previous)


def _fitted():
    est = FOMAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=2, random_state=0)
    return est.meta_fit(_sampler())


def test_save_writes_through_a_symbolic_link_and_keeps_permissions(tmp_path):
    """save replaced the link by a file (the file it named kept the old
    model) and gave a replaced file the umask's permissions (0o600 became
    0o644)."""
    import os
    import stat

    import sk_meta

    est = _fitted()
    target, link = tmp_path / "v1.skm", tmp_path / "latest.skm"
    est.save(target)
    os.symlink(target.name, link)
    est.set_params(warm_start=True, n_meta_iter=4).meta_fit(_sampler())
    est.save(link)
    assert link.is_symlink()
    assert sk_meta.load(target).n_meta_iter_ == 4
    os.chmod(target, 0o600)
    est.save(target)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600


def test_save_writes_into_a_path_that_is_no_regular_file(tmp_path):
    """A device or a named pipe was replaced by a regular file (as root,
    est.save(os.devnull) would have replaced /dev/null)."""
    import io
    import os
    import stat
    import threading

    import sk_meta

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()),
                              daemon=True)
    reader.start()
    _fitted().save(fifo)
    reader.join(timeout=30)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert sk_meta.load(io.BytesIO(received[0])).n_meta_iter_ == 2


def test_save_and_load_take_binary_file_objects(tmp_path):
    """They raised Python's 'expected str, bytes or os.PathLike object, not
    BytesIO', where torch.save and joblib.dump take file objects."""
    import io

    import sk_meta

    est = _fitted()
    buffer = io.BytesIO()
    est.save(buffer)
    buffer.seek(0)
    loaded = sk_meta.load(buffer)
    task = next(iter(EpisodeSampler(X_DIGITS / 16, Y_DIGITS, 3, 2, 3, classes=[7, 8, 9],
                                    random_state=1)))
    np.testing.assert_array_equal(
        loaded.fit(task.X_support, task.y_support).predict_proba(task.X_query),
        est.fit(task.X_support, task.y_support).predict_proba(task.X_query))
    with open(tmp_path / "model.skm", "wb") as file:
        est.save(file)
    with open(tmp_path / "model.skm", "rb") as file:
        assert sk_meta.load(file).n_meta_iter_ == 2
    with pytest.raises(TypeError, match="binary mode"):
        est.save(io.StringIO())
    with pytest.raises(TypeError, match="binary mode"):
        sk_meta.load(io.StringIO("text"))
    with pytest.raises(ValueError, match="the BytesIO is not a valid sk_meta file: "
                                         "it is empty"):
        sk_meta.load(io.BytesIO())


def test_a_sparse_preprocessing_output_is_named_as_the_pipelines():
    """meta_fit_pipeline with OneHotEncoder (sparse by default) blamed the
    user's dense tasks: 'task 0: X_support is a sparse matrix'."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from sk_meta.pipeline import meta_fit_pipeline

    rng = np.random.RandomState(0)
    X = rng.randint(0, 4, size=(300, 3)).astype(float)
    y = np.arange(300) % 6
    sampler = EpisodeSampler(X, y, 3, 2, 3, classes=range(4), random_state=0)
    for tasks in (sampler, list(EpisodeSampler(X, y, 3, 2, 3, classes=range(4),
                                               n_tasks=4, random_state=0))):
        with pytest.raises(TypeError, match="the pipeline's preprocessing outputs "
                                            "a sparse matrix.*sparse_output=False"):
            meta_fit_pipeline(make_pipeline(OneHotEncoder(), FOMAMLClassifier(
                hidden_layer_sizes=(8,), n_meta_iter=2)), tasks)
    pipe = meta_fit_pipeline(make_pipeline(
        OneHotEncoder(sparse_output=False, handle_unknown="ignore"),
        FOMAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=2, random_state=0)),
        sampler)
    assert pipe[-1].n_meta_iter_ == 2


def test_nan_let_through_by_assume_finite_is_named():
    """Under scikit-learn's assume_finite=True, NaN in a support set gave a
    DivergenceError that blamed the learning rate, and in X at predict a
    message saying to scale the features."""
    import sklearn

    from sk_meta.exceptions import DivergenceError

    est = _fitted()
    task = next(iter(EpisodeSampler(X_DIGITS / 16, Y_DIGITS, 3, 2, 3, classes=[7, 8, 9],
                                    random_state=1)))
    X_support, X_query = task.X_support.copy(), task.X_query.copy()
    X_support[0, 0] = X_query[0, 0] = np.nan
    with sklearn.config_context(assume_finite=True):
        with pytest.raises(DivergenceError, match="holds NaN, infinite values or "
                                                  "values too large for float32, "
                                                  "which scikit-learn's assume_finite"
                           ) as caught:
            est.fit(X_support, task.y_support)
        assert "inner_lr" not in str(caught.value)  # the data, not the steps
        est.fit(task.X_support, task.y_support)
        with pytest.raises(ValueError, match="X holds NaN, infinite values"):
            est.predict(X_query)


def test_checkpoint_path_is_checked_through_links_and_refused_off_files(tmp_path):
    """The check before meta-training looked at a link's own directory (every
    checkpoint then failed); a named pipe blocked the first checkpoint until
    someone read it."""
    import os

    dangling = tmp_path / "link"
    os.symlink(tmp_path / "missing" / "checkpoint.skm", dangling)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for path, message in ((dangling, "does not exist"), (fifo, "no regular file")):
        est = FOMAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=2,
                               checkpoint_path=path, checkpoint_every=1)
        with pytest.raises(ValueError, match=message):
            est.meta_fit(_sampler())
    # a link to a file in a directory that exists is written through
    target = tmp_path / "checkpoint.skm"
    os.symlink(target, tmp_path / "latest")
    FOMAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=2,
                     checkpoint_path=tmp_path / "latest").meta_fit(_sampler())
    assert target.is_file() and (tmp_path / "latest").is_symlink()


def test_file_objects_of_the_wrong_mode_or_position_are_named(tmp_path):
    import io

    import sk_meta

    est = _fitted()
    path = tmp_path / "model.skm"
    est.save(path)
    with open(path, "rb") as file, pytest.raises(TypeError, match="opened for writing"):
        est.save(file)
    with open(tmp_path / "other", "wb") as file, pytest.raises(
            TypeError, match="opened for reading"):
        sk_meta.load(file)
    with open(path) as file, pytest.raises(TypeError, match="binary mode"):
        sk_meta.load(file)  # a text file: refused before it is read
    buffer = io.BytesIO(path.read_bytes())
    buffer.seek(0, io.SEEK_END)
    with pytest.raises(ValueError, match="nothing is left to read from its current "
                                         "position"):
        sk_meta.load(buffer)


def test_a_replaced_file_of_another_owner_keeps_its_owner_or_loses_setuid(tmp_path):
    """As root, a file of another user came back owned by root, and one with
    the setuid bit became a setuid-root file."""
    import os
    import stat

    est = _fitted()
    path = tmp_path / "model.skm"
    est.save(path)
    if os.geteuid() == 0:
        os.chown(path, 65534, 65534)  # nobody
        os.chmod(path, 0o4750)  # after chown, which clears setuid
        est.save(path)
        info = os.stat(path)
        assert (info.st_uid, info.st_gid) == (65534, 65534)
        assert stat.S_IMODE(info.st_mode) == 0o4750
    else:  # one's own file keeps its bits
        os.chmod(path, 0o4750)
        est.save(path)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o4750


def test_the_default_network_draws_the_same_weights_under_a_float64_default():
    """Its weights were drawn in float64 and cast: another model for the same
    random_state."""
    import torch

    def trained():
        est = FOMAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=2, random_state=0)
        return {k: v.clone() for k, v in est.meta_fit(_sampler()).meta_params_.items()}

    as_float32 = trained()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        as_float64 = trained()
    finally:
        torch.set_default_dtype(previous)
    for name, value in as_float32.items():
        torch.testing.assert_close(as_float64[name], value, rtol=0, atol=0)


def test_set_params_undoes_nested_names_too():
    """The rollback restored the estimator's own parameters, not those of
    the objects inside it (a pipeline in a search)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sk_meta.model_selection import MetaGridSearch

    search = MetaGridSearch(make_pipeline(StandardScaler(), FOMAMLClassifier()),
                            {"fomamlclassifier__inner_lr": [0.1]})
    with pytest.raises(ValueError):
        search.set_params(estimator__standardscaler__with_mean=False,
                          estimator__fomamlclassifier__tpyo=1)
    assert search.estimator.steps[0][1].with_mean is True


def test_save_goes_through_when_the_owner_cannot_be_given_back(tmp_path, monkeypatch):
    """In a user namespace chown fails with EINVAL, not EPERM: the save
    failed where it had worked."""
    import errno
    import os
    import stat

    import sk_meta

    est = _fitted()
    path = tmp_path / "model.skm"
    est.save(path)
    os.chmod(path, 0o2770)
    real_stat = os.stat

    def foreign_owner(target, *args, **kwargs):
        info = real_stat(target, *args, **kwargs)
        if str(target) == str(path):
            values = list(info)
            values[stat.ST_UID] = values[stat.ST_GID] = 54321
            return os.stat_result(values)
        return info

    def unmapped(*args, **kwargs):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "stat", foreign_owner)
    monkeypatch.setattr(os, "chown", unmapped)
    est.save(path)
    monkeypatch.undo()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o770  # setgid dropped
    assert sk_meta.load(path).n_meta_iter_ == 2


def test_a_checkpoint_path_in_a_loop_of_links_is_refused(tmp_path):
    import os

    first, second = tmp_path / "first", tmp_path / "second"
    os.symlink(second, first)
    os.symlink(first, second)
    for path in (first, str(first)):
        est = FOMAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=2,
                               checkpoint_path=path)
        with pytest.raises(ValueError, match="symbolic links form a loop"):
            est.meta_fit(_sampler())
    est = FOMAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=2,
                           checkpoint_path=tmp_path / ("x" * 300))
    with pytest.raises(ValueError, match="the name is too long"):
        est.meta_fit(_sampler())


def test_text_mode_temporary_files_and_odd_readers_are_named():
    import io
    import tempfile

    import sk_meta

    est = _fitted()
    with tempfile.NamedTemporaryFile(mode="w+") as file, pytest.raises(
            TypeError, match="binary mode"):
        est.save(file)
    with tempfile.SpooledTemporaryFile(mode="w+") as file, pytest.raises(
            TypeError, match="binary mode"):
        est.save(file)

    class ReadsNothing(io.RawIOBase):
        def readable(self):
            return True

        def read(self, size=-1):
            return None

    with pytest.raises(TypeError, match="whose read\\(\\) returns bytes; it "
                                        "returned NoneType"):
        sk_meta.load(ReadsNothing())


def test_learned_rates_are_float32_under_a_float64_default():
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        est = FOMAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=2,
                               inner_lr_mode="per_layer_step", random_state=0)
        est.meta_fit(_sampler())
    finally:
        torch.set_default_dtype(previous)
    assert {torch.as_tensor(r).dtype for r in est.inner_lrs_.values()} == {
        torch.float32}


def test_sparse_tasks_through_a_pipeline_are_named_not_a_numpy_error():
    """Sparse task inputs failed in numpy ('zero-dimensional arrays cannot be
    concatenated') before any step ran."""
    from scipy import sparse
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MaxAbsScaler

    from sk_meta.pipeline import meta_fit_pipeline

    tasks = [(sparse.csr_matrix(t.X_support), t.y_support,
              sparse.csr_matrix(t.X_query), t.y_query)
             for t in EpisodeSampler(X_DIGITS, Y_DIGITS, 3, 2, 3, classes=range(7),
                                     n_tasks=4, random_state=0)]
    with pytest.raises(TypeError, match="the pipeline's preprocessing outputs a "
                                        "sparse matrix"):
        meta_fit_pipeline(make_pipeline(MaxAbsScaler(), FOMAMLClassifier(
            hidden_layer_sizes=(8,), n_meta_iter=2)), tasks)


def test_an_mlp_dtype_in_module_params_is_saved_by_name():
    """MLP(dtype=...) through module_params could not be saved ('parameter
    module_params=torch.float32 cannot be saved'), and dtype names gave
    torch's raw error."""
    import io

    import torch

    import sk_meta
    from sk_meta.models import MLP

    assert MLP(3, (4,), 2, dtype="float32").layers[0].weight.dtype == torch.float32
    assert MLP(3, (4,), 2, dtype="torch.float64").layers[0].weight.dtype == (
        torch.float64)
    for bad in ("int32", np.float32, "float"[:3]):
        with pytest.raises(TypeError, match="torch floating dtype"):
            MLP(3, (4,), 2, dtype=bad)
    est = FOMAMLClassifier(module=MLP, module_params={
        "n_features": 64, "hidden_layer_sizes": (8,), "n_outputs": 3,
        "dtype": torch.float32}, n_meta_iter=2, random_state=0).meta_fit(_sampler())
    buffer = io.BytesIO()
    est.save(buffer)
    buffer.seek(0)
    loaded = sk_meta.load(buffer, module=MLP)
    assert loaded.module_params["dtype"] is torch.float32  # the dtype, not a name
    task = next(iter(_sampler()))
    np.testing.assert_array_equal(
        loaded.fit(task.X_support, task.y_support).predict_proba(task.X_query),
        est.fit(task.X_support, task.y_support).predict_proba(task.X_query))
    # a module that hands the dtype to torch loads too, and warm-starts
    est = FOMAMLClassifier(module=torch.nn.Linear, module_params={
        "in_features": 64, "out_features": 3, "dtype": torch.float32},
        n_meta_iter=2, random_state=0).meta_fit(_sampler())
    buffer = io.BytesIO()
    est.save(buffer)
    buffer.seek(0)
    loaded = sk_meta.load(buffer, module=torch.nn.Linear)
    loaded.set_params(warm_start=True, n_meta_iter=3,
                      module_params=est.module_params).meta_fit(_sampler())
    assert loaded.n_meta_iter_ == 3
    with pytest.raises(TypeError, match="torch floating dtype"):
        MLP(3, (4,), 2, dtype="float8_e4m3fn")


def test_files_inside_zip_archives_and_buffer_readers_load(tmp_path):
    """A zip member's file object says mode 'r' (no 'b') and was refused as
    a text file; a read() returning another buffer of bytes was refused."""
    import array
    import io
    import zipfile

    import sk_meta

    est = _fitted()
    path = tmp_path / "model.skm"
    est.save(path)
    with zipfile.ZipFile(tmp_path / "models.zip", "w") as archive:
        archive.write(path, "model.skm")
    with zipfile.ZipFile(tmp_path / "models.zip") as archive:
        assert sk_meta.load(archive.open("model.skm")).n_meta_iter_ == 2

    class ArrayReader(io.RawIOBase):
        def readable(self):
            return True

        def read(self, size=-1):
            return array.array("B", path.read_bytes())

    assert sk_meta.load(ArrayReader()).n_meta_iter_ == 2


def test_a_file_saved_over_in_a_setgid_directory_keeps_its_group(tmp_path):
    """The new file took the directory's group (the owner check compared the
    old owner with the process's, not with the new file's)."""
    import os

    est = _fitted()
    if os.geteuid() != 0:
        pytest.skip("needs root to give the directory another group")
    directory = tmp_path / "shared"
    directory.mkdir()
    os.chown(directory, 0, 65534)
    os.chmod(directory, 0o2775)
    path = directory / "model.skm"
    est.save(path)
    os.chown(path, 0, 0)
    os.chmod(path, 0o640)
    est.save(path)
    info = os.stat(path)
    assert (info.st_uid, info.st_gid, info.st_mode & 0o7777) == (0, 0, 0o640)


def test_save_and_load_name_a_trailing_separator_and_a_link_to_nothing(tmp_path):
    """save('dir/new.skm/') named its temporary file; load of a looping link
    said only 'No such file'."""
    import os

    import sk_meta

    est = _fitted()
    with pytest.raises(IsADirectoryError, match="ends with a separator") as caught:
        est.save(f"{tmp_path}/model.skm/")
    assert ".tmp" not in str(caught.value)
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    with pytest.raises(FileNotFoundError, match="symbolic link that leads to no file"):
        sk_meta.load(loop)


def test_dict_keys_in_module_params_come_back_as_they_were_saved():
    """Keys were saved as strings: a module given {0: 8, 1: 4} got {"0": 8,
    "1": 4} back from load. Numbers, None and tuples now stay as they are;
    a key the file cannot hold is refused by name."""
    import io

    import torch

    import sk_meta

    class _Table(torch.nn.Module):
        def __init__(self, widths=None):
            super().__init__()
            self.widths = widths
            self.fc = torch.nn.Linear(64, widths[0])

        def forward(self, x):
            return self.fc(x)

    widths = {0: 3, 1.5: None, None: "x", (2, "a"): [1], True: 2, "name": 0}
    est = FOMAMLClassifier(module=_Table, module_params={"widths": widths},
                           n_meta_iter=2, random_state=0).meta_fit(_sampler())
    buffer = io.BytesIO()
    est.save(buffer)
    buffer.seek(0)
    loaded = sk_meta.load(buffer, module=_Table)
    assert loaded.module_params["widths"] == widths
    assert [type(k) for k in loaded.module_params["widths"]] == [
        type(k) for k in widths]
    est.set_params(module_params={"widths": {0: 3, frozenset({1}): 2}})
    with pytest.raises(TypeError, match=r"dict key frozenset\(\{1\}\), which cannot "
                                        "be saved in the weights-only format"):
        est.save(io.BytesIO())


def test_subclasses_of_plain_values_and_marker_like_dicts_load_back():
    """np.str_, enum and longdouble keys or values were saved as they were,
    and load refused the file that save had written over a good one; a
    user's dict shaped like the file's dtype marker came back as a dtype;
    a namedtuple failed with an opaque TypeError."""
    import collections
    import enum
    import io

    import torch

    import sk_meta

    class _Config(torch.nn.Module):
        def __init__(self, config=None):
            super().__init__()
            self.config = config
            self.fc = torch.nn.Linear(64, 3)

        def forward(self, x):
            return self.fc(x)

    class _Level(enum.IntEnum):
        LOW = 1

    labels = dict(zip(np.unique(np.array(["cat", "dog"])), [0, 1]))
    config = {"labels": labels, _Level.LOW: _Level.LOW, np.longdouble(0.5): 1,
              (np.str_("a"), 1): np.str_("b"),
              "marker": {"sk_meta:torch.dtype": "float32"},
              "wrapped": {"sk_meta:dict": {"a": 1}}}
    est = FOMAMLClassifier(module=_Config, module_params={"config": config},
                           n_meta_iter=2, random_state=0).meta_fit(_sampler())
    buffer = io.BytesIO()
    est.save(buffer)
    buffer.seek(0)
    loaded = sk_meta.load(buffer, module=_Config).module_params["config"]
    assert loaded == {"labels": {"cat": 0, "dog": 1}, 1: 1, 0.5: 1, ("a", 1): "b",
                      "marker": {"sk_meta:torch.dtype": "float32"},
                      "wrapped": {"sk_meta:dict": {"a": 1}}}
    assert type(next(iter(loaded["labels"]))) is str
    assert type(loaded[1]) is int
    point = collections.namedtuple("Point", "x y")
    for value in (point(1, 2), {point(1, 2): 0}):
        est.set_params(module_params={"config": value})
        with pytest.raises(TypeError, match="cannot be saved in the weights-only "
                                            "format"):
            est.save(io.BytesIO())


def test_numpy_settings_that_reach_the_records_save_loadable_files(tmp_path):
    """A numpy meta_lr landed in the optimizer's state and a numpy tol's
    comparisons in the history: save, and every checkpoint, wrote files
    that load refused. torch.Size sizes and path or device keys save too."""
    import io
    import pathlib

    import torch

    import sk_meta

    validation = EpisodeSampler(X_DIGITS / 16, Y_DIGITS, 3, 2, 3, classes=range(7),
                                n_tasks=2, random_state=5)
    small = {"hidden_layer_sizes": (8,), "n_meta_iter": 3, "random_state": 0}
    estimators = [
        FOMAMLClassifier(meta_lr=np.float32(1e-3), **small,
                         checkpoint_path=tmp_path / "lr.pt").meta_fit(_sampler()),
        FOMAMLClassifier(meta_lr=np.float16(1e-3), meta_optimizer="sgd",
                         **small).meta_fit(_sampler()),
        FOMAMLClassifier(tol=np.float64(1e-4), early_stopping=True,
                         validation_interval=1, n_iter_no_change=2,
                         **small).meta_fit(_sampler(), validation),
        FOMAMLClassifier(**{**small, "hidden_layer_sizes": torch.Size([8])}).meta_fit(
            _sampler()),
    ]
    from sk_meta.exceptions import PersistenceWarning

    with pytest.warns(PersistenceWarning, match="checkpoint_path"):
        sk_meta.load(tmp_path / "lr.pt")  # the checkpoint
    task = next(iter(_sampler()))
    estimators[0].set_params(checkpoint_path=None)  # (load would warn of it)
    for est in estimators:
        buffer = io.BytesIO()
        est.save(buffer)
        buffer.seek(0)
        loaded = sk_meta.load(buffer)
        np.testing.assert_array_equal(
            loaded.fit(task.X_support, task.y_support).predict_proba(task.X_query),
            est.fit(task.X_support, task.y_support).predict_proba(task.X_query))
    assert loaded.hidden_layer_sizes == torch.Size([8])
    from sk_meta._persistence import plain_value

    assert plain_value({pathlib.Path("a/b"): 1, torch.device("cpu"): 2}, "p") == {
        "a/b": 1, "cpu": 2}


def test_save_refuses_by_name_what_the_reader_would_refuse():
    """Whatever reaches the records: save checks the whole state before it
    writes, so a file it writes is one load reads."""
    import io

    est = FOMAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=2,
                           random_state=0).meta_fit(_sampler())
    est._meta.history[-1]["note"] = np.datetime64("2026-01-01")
    with pytest.raises(TypeError, match=r"cannot save: the estimator's state\['meta'\]"
                                        r"\['history'\]\[0\]\['note'\] is a "
                                        "numpy.datetime64"):
        est.save(io.BytesIO())


def test_dict_keys_saved_as_one_value_are_refused():
    """A path key and its string (or a device and its name) were saved as
    one key, and one entry was silently lost."""
    import io
    import pathlib

    import torch

    est = FOMAMLClassifier(module=torch.nn.Linear, module_params={
        "in_features": 64, "out_features": 3}, n_meta_iter=1, random_state=0)
    for keys in ({pathlib.Path("a"): 1, "a": 2}, {torch.device("cpu"): 1, "cpu": 2}):
        est.set_params(module_params={"in_features": 64, "out_features": 3,
                                      "device": None, "dtype": None, "bias": keys})
        with pytest.raises(TypeError, match="are saved as the same value"):
            est.save(io.BytesIO())
