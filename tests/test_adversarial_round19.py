"""What the nineteenth pass found: the messages a user meets."""

import functools
import itertools
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, default_collate

from sk_meta import MAMLClassifier, ReptileClassifier
from sk_meta.model_selection import tasks_to_cv
from sk_meta.tasks import EpisodeSampler, GroupTaskSampler

RNG = np.random.default_rng(0)


def _task(n_rows=6, n_features=3):
    X = RNG.normal(size=(n_rows, n_features)).astype(np.float32)
    y = np.arange(n_rows) % 2
    return X, y, X, y


def test_a_cpu_string_with_an_index_is_taken_as_torch_device_takes_it():
    # torch.device("cpu", 1) was taken and "cpu:1" refused
    X, y, _, _ = _task()
    for device in ("cpu:1", torch.device("cpu", 1)):
        clf = MAMLClassifier(device=device, hidden_layer_sizes=(4,), inner_steps=1,
                             random_state=0).fit(X, y)
        assert clf.device_ == torch.device("cpu")
    with pytest.raises(ValueError, match="'cpu:N'"):
        MAMLClassifier(device="cpu:x").fit(X, y)


def test_the_group_sampler_warns_when_a_frame_was_reordered_without_its_targets():
    import pandas as pd

    X = pd.DataFrame(RNG.random((40, 3)), columns=["a", "b", "c"])
    y = pd.Series(RNG.random(40))
    groups = pd.Series(np.repeat(np.arange(4), 10))
    shuffled = X.sample(frac=1, random_state=0)
    with pytest.warns(UserWarning, match=r"X and y hold the same index labels.*"
                                         r"y\.loc\[X\.index\]"):
        GroupTaskSampler(shuffled, y.loc[X.index], groups.loc[shuffled.index], 2, 2)
    with pytest.warns(UserWarning, match=r"X and groups hold the same index labels"
                                         r".*groups\.loc\[X\.index\]"):
        GroupTaskSampler(shuffled, y.loc[shuffled.index], groups, 2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GroupTaskSampler(shuffled, y.loc[shuffled.index], groups.loc[shuffled.index],
                         2, 2)
        GroupTaskSampler(X, y.to_numpy(), groups.to_list(), 2, 2)
    # shuffled with its targets, then X's index reset: paired as meant, and
    # told apart from a shuffle of y alone only by the user, so the warning
    # names both remedies
    reset = shuffled.reset_index(drop=True)
    for reset_X, labels in ((reset, groups.loc[shuffled.index]),
                            (X, groups.sample(frac=1, random_state=1))):
        with pytest.warns(UserWarning, match=r"y\.loc\[X\.index\] realigns them; if "
                                             r"they are paired as meant.*reset_index"):
            EpisodeSampler(reset_X, labels, 2, 2, 2)


def test_classes_of_mixed_kinds_are_named_as_passed():
    # numpy wrote [1, "2"] as ["1", "2"], and the message said string labels
    X, y = RNG.random((30, 2)), np.arange(30) % 3
    with pytest.raises(ValueError, match=r"classes mixes string and number labels "
                                         r"\(\[1, '2'\]\)"):
        EpisodeSampler(X, y, n_way=2, k_shot=1, n_query=1, classes=[1, "2"])
    with pytest.raises(ValueError, match=r"\(\[1, 'x'\]\), but y holds number"):
        EpisodeSampler(X, y, n_way=2, k_shot=1, n_query=1,
                       classes=(np.int64(1), "x"))
    with pytest.raises(ValueError, match=r"string labels \(\['1', '2'\]\)"):
        EpisodeSampler(X, y, n_way=2, k_shot=1, n_query=1, classes=["1", "2"])
    for classes in (["1", "2"], [1, "2"]):  # against strings, matched as text
        sampler = EpisodeSampler(X, y.astype(str), n_way=2, k_shot=1, n_query=1,
                                 classes=classes, random_state=0)
        assert set(next(iter(sampler)).y_support) == {"1", "2"}
    with pytest.raises(ValueError, match=r"classes holds string labels"):
        EpisodeSampler(X, y, n_way=2, k_shot=1, n_query=1, classes=[b"1", "2"])


def test_a_data_loader_collating_with_a_partial_of_torchs_own_is_refused():
    tasks = [_task() for _ in range(3)]
    loader = DataLoader(tasks, collate_fn=functools.partial(default_collate))
    with pytest.raises(ValueError, match="batch_size=None"):
        MAMLClassifier(hidden_layer_sizes=(4,), n_meta_iter=2).meta_fit(loader)
    with pytest.raises(ValueError, match="batch_size=None"):
        tasks_to_cv(loader)
    from torch.utils.data._utils.collate import collate, default_collate_fn_map

    as_torch_does = functools.partial(collate, collate_fn_map=default_collate_fn_map)
    with pytest.raises(ValueError, match="batch_size=None"):
        tasks_to_cv(DataLoader(tasks, collate_fn=functools.partial(as_torch_does)))
    unbatched = DataLoader(tasks, collate_fn=functools.partial(lambda batch: batch[0]))
    assert len(tasks_to_cv(unbatched)[2]) == 3


def test_fit_on_one_class_warns_what_the_fit_will_do():
    X, y, _, _ = _task()
    with pytest.warns(UserWarning, match=r"the support set holds one class \(7\): "
                                         "the adapted classifier predicts it"):
        clf = MAMLClassifier(hidden_layer_sizes=(4,)).fit(X, np.full(len(X), 7))
    assert (clf.predict(X) == 7).all()
    with pytest.warns(UserWarning, match=r"rows of positive sample_weight hold one "
                                         r"class \('b'\)"):
        MAMLClassifier(hidden_layer_sizes=(4,)).fit(
            X, np.array(["a", "b"] * 3), sample_weight=np.arange(6) % 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MAMLClassifier(hidden_layer_sizes=(4,)).fit(X, y)


def _digits_tasks():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    train = EpisodeSampler(X / 16, y, n_way=3, k_shot=2, n_query=5,
                           classes=range(6), random_state=0)
    valid = EpisodeSampler(X / 16, y, n_way=3, k_shot=2, n_query=5,
                           classes=range(6, 10), n_tasks=10, random_state=1)
    return train, valid


def test_verbose_says_when_early_stopping_ended_the_run(capsys):
    train, valid = _digits_tasks()
    clf = MAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=2000, inner_steps=1,
                         validation_interval=5, early_stopping=True,
                         n_iter_no_change=2, tol=10.0, verbose=1, random_state=0)
    clf.meta_fit(train, valid)
    assert clf.n_meta_iter_ == 15  # tol=10: no validation can improve on the first
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == (
        "Stopped early at meta-iteration 15: the validation score did not "
        "improve by more than tol=10 in the last 2 validations; the estimator "
        "keeps the init of meta-iteration 5 (validation score "
        f"{clf.validation_scores_[0]:.4f}).")
    # a warm start counts the meta-iterations and validations of both calls
    clf.set_params(warm_start=True, n_iter_no_change=1)
    clf.meta_fit(train, valid)
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith(
        "Stopped early at meta-iteration 20: the validation score did not improve "
        "by more than tol=10 in the last 3 validations;")


def test_the_stop_line_of_meta_partial_fit_says_the_call_ends(capsys):
    train, valid = _digits_tasks()
    clf = MAMLClassifier(hidden_layer_sizes=(8,), inner_steps=1, validation_interval=5,
                         early_stopping=True, n_iter_no_change=1, tol=10.0, verbose=1,
                         meta_batch_size=2, random_state=0)
    clf.meta_partial_fit(list(itertools.islice(train, 40)), valid)
    assert clf.n_meta_iter_ == 10
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        "Stopped early at meta-iteration 10: the validation score did not improve "
        "by more than tol=10 in the last 1 validation; the estimator keeps the "
        f"init of meta-iteration 5 (validation score {clf.validation_scores_[0]:.4f})"
        "; the call ends here, and tasks it had left are not used.")


@pytest.mark.parametrize("cls", [MAMLClassifier, ReptileClassifier])
def test_verbose_says_when_max_time_ended_the_run(capsys, cls):
    train, _ = _digits_tasks()
    clf = cls(hidden_layer_sizes=(8,), n_meta_iter=10**6, inner_steps=1,
              max_time=0.2, verbose=1, random_state=0)
    clf.meta_fit(train)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == (f"Stopped at meta-iteration {clf.n_meta_iter_}: "
                    "max_time=0.2 s was reached.")


def test_no_stop_line_when_the_budget_ends_the_run_or_verbose_is_0(capsys):
    train, valid = _digits_tasks()
    MAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=10, inner_steps=1,
                   validation_interval=5, early_stopping=True, n_iter_no_change=1,
                   tol=10.0, verbose=1, random_state=0).meta_fit(train, valid)
    MAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=2000, inner_steps=1,
                   validation_interval=5, early_stopping=True, n_iter_no_change=1,
                   tol=10.0, verbose=0, random_state=0).meta_fit(train, valid)
    out = capsys.readouterr().out
    assert "Meta-iteration 10/10" in out
    assert "Stopped" not in out


def test_a_pipeline_rebuilding_an_aligned_sampler_does_not_warn_of_reordering():
    # meta_fit_pipeline transforms the sampler's rows once; a transform that
    # gives them a new index paired them with labels of the old one, and the
    # rebuilt sampler warned of a reordering the user never made
    import pandas as pd
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    from sk_meta.pipeline import meta_fit_pipeline

    X = pd.DataFrame(RNG.normal(size=(80, 3)), columns=list("abc"))
    y = pd.Series(np.repeat(np.arange(8), 10))
    order = RNG.permutation(80)
    sampler = EpisodeSampler(X.iloc[order], y.iloc[order], 2, 2, 2, n_tasks=5,
                             random_state=0)
    new_index = FunctionTransformer(
        lambda frame: pd.DataFrame(np.asarray(frame) * 2.0, columns=list("abc")))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        meta_fit_pipeline(make_pipeline(new_index, MAMLClassifier(
            hidden_layer_sizes=(4,), n_meta_iter=2, random_state=0)), sampler)


def test_the_reorder_warning_reads_for_groups():
    import pandas as pd

    X = pd.DataFrame(RNG.random((40, 2)))
    groups = pd.Series(np.repeat(np.arange(4), 10)).sample(frac=1, random_state=0)
    with pytest.warns(UserWarning, match=r"each row of X takes the value at its "
                                         r"position in groups, not"):
        GroupTaskSampler(X, RNG.random(40), groups, 2, 2)
