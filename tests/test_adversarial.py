"""A hostile user's cases: data loss, silent wrong results, unsafe files.

Each test is a case that once went wrong (the docstring says how) or a
neighbour of one; together they pin down that a failed call leaves the
estimator as it was, that files never arm writes or run code, and that
interrupted or resumed runs equal uninterrupted ones.
"""

import os
import stat

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
