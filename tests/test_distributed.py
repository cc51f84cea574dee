"""Distributed meta-training on a torch.distributed group, and Dask model selection.

Each group is 2 or 3 processes on the CPU (gloo), launched as torchrun
launches them: this file run as a script, with its rank, the world size
and a free port. One launch runs many checks, since starting the processes
costs more than the checks. Each process saves what it found to a file;
the test compares it with the same checks run in this one process.
"""

import contextlib
import datetime
import os
import re
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import sk_meta
from sk_meta import (
    FOMAMLRegressor,
    MAMLClassifier,
    MAMLRegressor,
    ReptileClassifier,
)
from sk_meta.exceptions import DivergenceError, InterruptedWarning
from sk_meta.tasks import EpisodeSampler, SinusoidTasks

TOLERANCE = 1e-5
SMALL = dict(hidden_layer_sizes=(8,), random_state=0)


# -- the tasks and checks every process runs -----------------------------------------

def _classification_tasks(n_tasks=30, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(120, 4)).astype(np.float32)
    y = np.repeat(np.arange(6), 20)
    X[:, 0] += y
    sampler = EpisodeSampler(X, y, n_way=3, k_shot=2, n_query=3, random_state=seed)
    return [sampler.sample(i) for i in range(n_tasks)]


def _regression_tasks(n_tasks=20, seed=0):
    return list(SinusoidTasks(k_shot=5, n_query=5, n_tasks=n_tasks, random_state=seed))


def _weights(estimator):
    weights = {f"param.{k}": v.detach().clone()
               for k, v in estimator.meta_params_.items()}
    for k, v in (estimator.inner_lrs_ or {}).items():
        weights[f"lr.{k}"] = v.detach().clone()
    return weights


def _record(estimator, **extra):
    return {"weights": _weights(estimator), "n_meta_iter": estimator.n_meta_iter_,
            "loss_curve": list(estimator.meta_loss_curve_), **extra}


class _OnRank:
    """Tasks that do something to one process when its ``at``-th task is drawn."""

    def __init__(self, tasks, rank, action, at):
        self.tasks, self.rank, self.action, self.at = tasks, rank, action, at
        self.n_drawn = 0

    def __iter__(self):
        for task in self.tasks:
            self.n_drawn += 1
            if _RANK == self.rank and self.n_drawn == self.at:
                self.action()
            yield task


def _maml_classifier(rank=None):
    return _record(MAMLClassifier(meta_batch_size=5, n_meta_iter=6, **SMALL)
                   .meta_fit(_classification_tasks()))


def _fomaml_regressor(rank=None):
    return _record(FOMAMLRegressor(meta_batch_size=5, n_meta_iter=6, **SMALL)
                   .meta_fit(_regression_tasks()))


def _reptile_classifier(rank=None):
    return _record(ReptileClassifier(meta_batch_size=5, n_meta_iter=6, **SMALL)
                   .meta_fit(_classification_tasks()))


def _auto_network(rank=None):
    """hidden_layer_sizes="auto": the class folds meta-train in the group too,
    and every process chooses the same network (on rings, one per class,
    the pretrained MLP, which every process pretrains alike)."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(8), 20)
    angle = rng.uniform(0, 2 * np.pi, len(y))
    radius = 0.5 + 0.5 * y + rng.normal(0, 0.08, len(y))
    X = np.c_[radius * np.cos(angle), radius * np.sin(angle)].astype(np.float32)
    clf = MAMLClassifier(meta_batch_size=5, n_meta_iter=6, validation_interval=3,
                         random_state=0)
    clf.meta_fit(EpisodeSampler(X, y, n_way=3, k_shot=2, n_query=3, random_state=0))
    search = clf.hidden_layer_sizes_search_
    return _record(clf, chosen=search["chosen"], scores=search["scores"])


def _reptile_many_classes(rank=None):
    """Reptile's "auto" with 16 classes: the (128, 128) MLP pretrained alike
    in every process, not meta-trained."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(16), 10)
    X = (rng.normal(size=(len(y), 4)) + y[:, None]).astype(np.float32)
    clf = ReptileClassifier(n_meta_iter=6, random_state=0)
    clf.meta_fit(EpisodeSampler(X, y, n_way=3, k_shot=2, n_query=3, random_state=0))
    return _record(clf, pretrained=clf._meta.pretrained,
                   sizes=clf.hidden_layer_sizes_)


def _auto_network_without_a_seed(rank=None):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(160, 4)).astype(np.float32), np.repeat(np.arange(8), 20)
    clf = MAMLClassifier(n_meta_iter=2, random_state=None)
    return _refusal(lambda: clf.meta_fit(EpisodeSampler(X, y, 3, 2, 3,
                                                        random_state=0)))


def _learned_rates_with_idle_processes(rank=None):
    # 2 tasks per meta-batch: with 3 processes, one gets none
    return _record(MAMLClassifier(meta_batch_size=2, n_meta_iter=5,
                                  inner_lr_mode="per_parameter", **SMALL)
                   .meta_fit(_classification_tasks()))


def _early_stopping_and_checkpoints(rank=None):
    tasks = _classification_tasks()
    path = None if rank is None else _OUT / f"checkpoint_{_WORLD}_{rank}.skm"
    clf = MAMLClassifier(meta_batch_size=5, n_meta_iter=40, validation_interval=2,
                         early_stopping=True, n_iter_no_change=2, tol=0.5,
                         checkpoint_path=path, checkpoint_every=3, **SMALL)
    clf.meta_fit(tasks[:20], validation_tasks=tasks[20:27])
    return _record(clf, validation_scores=list(clf.validation_scores_))


def _warm_start(rank=None):
    reg = MAMLRegressor(meta_batch_size=5, n_meta_iter=3, **SMALL)
    reg.meta_fit(_regression_tasks())
    reg.set_params(n_meta_iter=7, warm_start=True).meta_fit(_regression_tasks())
    return _record(reg)


def _partial_fit(rank=None):
    # meta-batches of 3, 3 and 1 task
    return _record(MAMLRegressor(meta_batch_size=3, **SMALL)
                   .meta_partial_fit(_regression_tasks(7)))


def _divergence(rank=None):
    # the task that overflows is the second of the third meta-batch: only
    # process 1 computes it
    tasks = _regression_tasks(9)
    tasks[7] = tasks[7]._replace(y_query=np.full_like(tasks[7].y_query, 1e25))
    reg = MAMLRegressor(meta_batch_size=3, **SMALL)
    try:
        reg.meta_partial_fit(tasks)
    except DivergenceError as exc:
        return _record(exc.estimator, error=str(exc))
    return {"error": None}


def _reads_back_every_3(rank=None):
    # the GPU's path: losses checked and stop flags agreed every 3 iterations
    with _patched("sk_meta._training.check_interval", lambda device: 3):
        return _maml_classifier()


def _max_time(rank=None):
    # process 1's clock runs 20 times faster: without agreeing, it would stop
    # long before the others
    clock = time.perf_counter
    if rank == 1:
        start = clock()

        def clock():
            return start + (time.perf_counter() - start) * 20

    with _patched("sk_meta._training.time", _Clock(clock)):
        # 1.0 and 1 are one setting: the processes compare values, not types
        clf = MAMLClassifier(meta_batch_size=5, n_meta_iter=10_000,
                             max_time=1.0 if rank == 0 else 1, **SMALL)
        return _record(clf.meta_fit(_classification_tasks()))


class _Clock:
    def __init__(self, perf_counter):
        self.perf_counter = perf_counter


def _ctrl_c(rank=None):
    # Ctrl-C reaches process 1 alone, while it draws the 4th meta-batch
    tasks = _OnRank(_classification_tasks(), 1,
                    lambda: os.kill(os.getpid(), signal.SIGINT), at=17)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = MAMLClassifier(meta_batch_size=5, n_meta_iter=10, **SMALL).meta_fit(tasks)
    return _record(clf, interrupted=any(issubclass(w.category, InterruptedWarning)
                                        for w in caught))


def _not_distributed(rank=None):
    # distributed=False: each process meta-trains alone, here from its own seed
    seed = 0 if rank is None else rank
    clf = MAMLClassifier(meta_batch_size=5, n_meta_iter=4, hidden_layer_sizes=(8,),
                         random_state=seed, distributed=False)
    return _record(clf.meta_fit(_classification_tasks()))


def _refusal(call):
    try:
        call()
    except ValueError as exc:
        return {"error": str(exc)}
    return {"error": None}


def _validation_on_the_first_process_only(rank=None):
    # the first process's validation collectives were paired with the
    # others' stop flags: a loss read as a Ctrl-C nobody pressed
    tasks = _classification_tasks()
    return _refusal(lambda: MAMLClassifier(
        meta_batch_size=5, n_meta_iter=6, validation_interval=2, **SMALL).meta_fit(
            tasks[:20], validation_tasks=tasks[20:26] if rank == 0 else None))


def _networks_that_differ(rank=None):
    # the backend aborted the first process with a collective mismatch
    sizes = (8,) if rank == 0 else (9,)
    return _refusal(lambda: MAMLClassifier(
        meta_batch_size=5, n_meta_iter=3, hidden_layer_sizes=sizes,
        random_state=0).meta_fit(_classification_tasks()))


def _meta_lr_that_differs(rank=None):
    # the processes ended with other weights (process 0 saves its own)
    return _refusal(lambda: MAMLClassifier(
        meta_batch_size=5, n_meta_iter=3, meta_lr=1e-3 if rank == 0 else 1e-2,
        **SMALL).meta_fit(_classification_tasks()))


def _validation_tasks_that_differ(rank=None):
    # each process scored other tasks: the summed score was no one's
    tasks = _classification_tasks()
    return _refusal(lambda: MAMLClassifier(
        meta_batch_size=5, n_meta_iter=4, validation_interval=2, **SMALL).meta_fit(
            tasks[:20], validation_tasks=tasks[20:26] if rank == 0 else tasks[20:24]))


def _validation_tasks_in_another_order(rank=None):
    # each process validates the tasks at its positions: two were scored
    # twice and two never
    tasks = _classification_tasks()
    val = tasks[20:26] if rank == 0 else tasks[20:26][::-1]
    return _refusal(lambda: MAMLClassifier(
        meta_batch_size=5, n_meta_iter=4, validation_interval=2, **SMALL).meta_fit(
            tasks[:20], validation_tasks=val))


def _partial_passes_that_differ(rank=None):
    # the shorter pass ended while the others waited for it
    tasks = _classification_tasks()
    return _refusal(lambda: MAMLClassifier(
        meta_batch_size=5, **SMALL).meta_partial_fit(
            tasks[:20] if rank == 0 else tasks[:15]))


def _checkpoint_directory_on_the_first_process_only(rank=None):
    # as on other machines: only the writing process needs the directory
    directory = _OUT / f"checkpoints_{_WORLD}" if rank == 0 else _OUT / "absent"
    directory.mkdir(exist_ok=True) if rank == 0 else None
    clf = MAMLClassifier(meta_batch_size=5, n_meta_iter=3,
                         checkpoint_path=directory / "maml.skm", **SMALL)
    return _record(clf.meta_fit(_classification_tasks()),
                   written=(directory / "maml.skm").exists())


def _grid_search_without_a_seed(rank=None, random_state=None):
    # each process held out other classes and meta-trained on the others'
    from sk_meta.model_selection import MetaGridSearch

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(240, 4)).astype(np.float32), np.repeat(np.arange(12), 20)
    search = MetaGridSearch(MAMLClassifier(n_meta_iter=2, **SMALL),
                            {"inner_lr": [0.1]}, random_state=random_state)
    return _refusal(lambda: search.meta_fit(
        EpisodeSampler(X, y, 3, 2, 3, random_state=0)))


def _grid_search_with_an_unseeded_random_state(rank=None):
    return _grid_search_without_a_seed(rank, np.random.RandomState())


# the same as in one process
EQUAL = {f.__name__: f for f in (
    _maml_classifier, _fomaml_regressor, _reptile_classifier,
    _learned_rates_with_idle_processes, _early_stopping_and_checkpoints, _warm_start,
    _partial_fit, _divergence, _reads_back_every_3, _auto_network,
    _reptile_many_classes,
)}
# the same on every process
AGREED = {f.__name__: f for f in (_max_time, _ctrl_c)}


def _last_process_fails(rank=None):
    """The last process is killed (3 processes) or hangs (2 processes)."""
    if _WORLD == 3:
        def fail():
            os.kill(os.getpid(), signal.SIGKILL)
    else:
        def fail():
            time.sleep(120)
    tasks = _OnRank(_classification_tasks(), _WORLD - 1, fail, at=12)
    start = time.perf_counter()
    try:
        MAMLClassifier(meta_batch_size=5, n_meta_iter=10, **SMALL).meta_fit(tasks)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}",
                "seconds": time.perf_counter() - start}
    return {"error": None}


# refused alike on every process, without waiting for a timeout
REFUSED = {f.__name__: f for f in (
    _validation_on_the_first_process_only, _networks_that_differ,
    _meta_lr_that_differs, _validation_tasks_that_differ,
    _validation_tasks_in_another_order, _partial_passes_that_differ,
    _grid_search_without_a_seed, _grid_search_with_an_unseeded_random_state,
    _auto_network_without_a_seed)}
CHECKS = {**EQUAL, **AGREED, **REFUSED, "_not_distributed": _not_distributed,
          "_checkpoint_directory_on_the_first_process_only":
              _checkpoint_directory_on_the_first_process_only}
# seconds: the collectives' timeout; a process that hangs is given up after it
TIMEOUT = 8
_RANK = _WORLD = _OUT = None


@contextlib.contextmanager
def _patched(target, value):
    module_name, name = target.rsplit(".", 1)
    module = sys.modules[module_name]
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


def _worker(rank, world_size, port, out):
    """One process of a group: run the checks, save what they gave, then fail."""
    global _RANK, _WORLD, _OUT
    _RANK, _WORLD, _OUT = rank, world_size, Path(out)
    # lazy imports first, then meet: the short timeout is for the checks
    MAMLClassifier(n_meta_iter=1, distributed=False).meta_fit(
        _classification_tasks(2))
    _barrier(_OUT, world_size, rank)
    torch.distributed.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
        world_size=world_size, timeout=datetime.timedelta(seconds=TIMEOUT))
    results = {}
    for name, check in CHECKS.items():
        start = time.perf_counter()
        results[name] = check(rank)
        print(f"{name}: {time.perf_counter() - start:.2f} s", flush=True)
    torch.save(results, _OUT / f"checks_{world_size}_{rank}.pt")
    failure = _last_process_fails(rank)
    torch.save(failure, _OUT / f"failure_{world_size}_{rank}.pt")
    os._exit(0)  # the group is broken: leave without a goodbye


def _barrier(out, world_size, rank):
    (out / f"ready_{world_size}_{rank}").touch()
    deadline = time.monotonic() + 300
    while not all((out / f"ready_{world_size}_{r}").exists()
                  for r in range(world_size)):
        assert time.monotonic() < deadline, "the other processes never started"
        time.sleep(0.05)


# -- launching groups ----------------------------------------------------------------

def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(world_size, out):
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return [subprocess.Popen(
        [sys.executable, __file__, str(rank), str(world_size), str(port), str(out)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for rank in range(world_size)]


def _wait(processes, timeout):
    """The processes' output once all but the last (which fails) have ended."""
    outputs = []
    deadline = time.monotonic() + timeout
    for rank, process in enumerate(processes):
        if rank == len(processes) - 1:
            process.kill()
        try:
            output, _ = process.communicate(
                timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        outputs.append(output.decode(errors="replace"))
    return outputs


def _load(out, what, world_size, rank, outputs):
    path = out / f"{what}_{world_size}_{rank}.pt"
    assert path.exists(), f"process {rank} of {world_size} saved nothing:\n" + \
        "\n".join(outputs)
    return torch.load(path, weights_only=False)


def _assert_close(a, b, what):
    assert a.keys() == b.keys(), what
    for name in a:
        np.testing.assert_allclose(a[name].numpy(), b[name].numpy(), rtol=0,
                                   atol=TOLERANCE, err_msg=f"{what}: {name}")


@pytest.fixture(scope="module")
def groups(tmp_path_factory):
    """What the processes of a 2- and a 3-process group found, by world size.

    Both groups start at once (they mostly wait for imports). Returns
    ``(checks, failures, out)``: by world size, each process's results of
    the checks, and what the processes other than the last one saw when it
    failed.
    """
    out = tmp_path_factory.mktemp("distributed")
    launched = {n: _launch(n, out) for n in (2, 3)}
    checks, failures = {}, {}
    for n, processes in launched.items():
        outputs = _wait(processes, timeout=300)
        checks[n] = [_load(out, "checks", n, rank, outputs) for rank in range(n)]
        failures[n] = [_load(out, "failure", n, rank, outputs)
                       for rank in range(n - 1)]
    return checks, failures, out


@pytest.fixture(scope="module")
def alone():
    """The same checks in this one process, without a process group."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InterruptedWarning)
        return {name: check() for name, check in EQUAL.items()}


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("check", sorted(EQUAL))
def test_processes_meta_learn_the_weights_of_one_process(groups, alone, world_size,
                                                          check):
    found, _, _ = groups
    expected = alone[check]
    assert expected.get("error", "") is not None
    for rank, results in enumerate(found[world_size]):
        got = results[check]
        what = f"{check}, process {rank} of {world_size}"
        _assert_close(got["weights"], expected["weights"], what)
        assert got["n_meta_iter"] == expected["n_meta_iter"], what
        np.testing.assert_allclose(got["loss_curve"], expected["loss_curve"],
                                   rtol=1e-5, err_msg=what)
        # and identical across processes, to the bit
        first = found[world_size][0][check]["weights"]
        assert all(torch.equal(got["weights"][k], first[k]) for k in first), what


def test_the_checks_exercise_what_they_claim(alone):
    assert alone["_early_stopping_and_checkpoints"]["n_meta_iter"] < 40
    assert alone["_divergence"]["error"].startswith(
        "meta-training diverged at meta-iteration 3")
    assert alone["_divergence"]["n_meta_iter"] == 2
    assert alone["_warm_start"]["n_meta_iter"] == 7
    assert alone["_partial_fit"]["n_meta_iter"] == 3
    assert any(k.startswith("lr.")
               for k in alone["_learned_rates_with_idle_processes"]["weights"])
    assert len(alone["_auto_network"]["scores"]) == 3
    assert alone["_auto_network"]["chosen"] == 2  # the pretrained MLP
    many = alone["_reptile_many_classes"]
    assert many["pretrained"] and many["sizes"] == (128, 128)
    assert many["n_meta_iter"] == 0


@pytest.mark.parametrize("world_size", [2, 3])
def test_every_process_chooses_the_network_one_process_chooses(groups, alone,
                                                              world_size):
    checks, _, _ = groups
    expected = alone["_auto_network"]
    for found in checks[world_size]:
        assert found["_auto_network"]["chosen"] == expected["chosen"]
        np.testing.assert_allclose(found["_auto_network"]["scores"],
                                   expected["scores"], rtol=1e-5)


@pytest.mark.parametrize("world_size", [2, 3])
def test_every_process_raises_the_divergence(groups, world_size):
    found, _, _ = groups
    for results in found[world_size]:
        assert results["_divergence"]["error"].startswith(
            "meta-training diverged at meta-iteration 3")


@pytest.mark.parametrize("world_size", [2, 3])
def test_validation_scores_and_early_stopping_agree(groups, alone, world_size):
    found, _, _ = groups
    expected = alone["_early_stopping_and_checkpoints"]["validation_scores"]
    for results in found[world_size]:
        np.testing.assert_allclose(
            results["_early_stopping_and_checkpoints"]["validation_scores"],
            expected, atol=1e-6)


@pytest.mark.filterwarnings("ignore::sk_meta.exceptions.PersistenceWarning")
@pytest.mark.parametrize("world_size", [2, 3])
def test_only_the_first_process_writes_checkpoints(groups, world_size):
    found, _, out = groups
    assert not any((out / f"checkpoint_{world_size}_{rank}.skm").exists()
                   for rank in range(1, world_size))
    saved = sk_meta.load(out / f"checkpoint_{world_size}_0.skm")
    expected = found[world_size][0]["_early_stopping_and_checkpoints"]
    assert saved.n_meta_iter_ == expected["n_meta_iter"]
    _assert_close(_weights(saved), expected["weights"], "checkpoint")


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("check", sorted(AGREED))
def test_processes_agree_when_to_stop(groups, world_size, check):
    found, _, _ = groups
    results = [r[check] for r in found[world_size]]
    n_meta_iter = results[0]["n_meta_iter"]
    assert 1 <= n_meta_iter < (10 if check == "_ctrl_c" else 10_000)
    for got in results:
        assert got["n_meta_iter"] == n_meta_iter
        assert all(torch.equal(got["weights"][k], results[0]["weights"][k])
                   for k in got["weights"])
    if check == "_ctrl_c":
        assert all(r["interrupted"] for r in results)
        # as in one process: the meta-batch being drawn is the last one used
        assert n_meta_iter == 4
        # tasks in the same order (a list would be shuffled)
        tasks = _OnRank(_classification_tasks(), None, None, at=0)
        clf = MAMLClassifier(meta_batch_size=5, n_meta_iter=4, **SMALL)
        expected = _weights(clf.meta_fit(tasks))
        _assert_close(results[0]["weights"], expected, "Ctrl-C")


def test_distributed_false_ignores_the_group(groups):
    found, _, _ = groups
    for rank, results in enumerate(found[2]):
        got = results["_not_distributed"]
        expected = _not_distributed(rank)
        assert all(torch.equal(got["weights"][k], expected["weights"][k])
                   for k in got["weights"])
    first, second = (r["_not_distributed"]["weights"] for r in found[2])
    assert not all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("check, message", [
    ("_validation_on_the_first_process_only",
     "the processes differ in whether validation_tasks were passed"),
    ("_networks_that_differ",
     "the processes differ in the network's parameter names and shapes"),
    ("_meta_lr_that_differs",
     r"the processes differ in the meta-training settings \(meta_lr, inner_lr"),
    ("_validation_tasks_that_differ",
     "the processes differ in the validation tasks and their order"),
    ("_validation_tasks_in_another_order",
     "the processes differ in the validation tasks and their order"),
    ("_partial_passes_that_differ",
     r"the processes differ in the number of tasks \(meta_partial_fit's pass\)"),
    ("_grid_search_without_a_seed", r"MetaGridSearch\(random_state=None\) in a "
                                    "distributed job"),
    ("_grid_search_with_an_unseeded_random_state",
     r"MetaGridSearch\(random_state=RandomState.*in a distributed job"),
    ("_auto_network_without_a_seed",
     r"hidden_layer_sizes='auto' with 8 classes .* in a distributed job"),
])
def test_setups_that_differ_between_processes_are_refused_on_all(
        groups, world_size, check, message):
    """Validation tasks on one process only ended as a fake interruption on
    the others; networks of other shapes aborted the backend; MetaGridSearch
    without a seed held out other classes on each process."""
    checks, _, _ = groups
    for rank, found in enumerate(checks[world_size]):
        assert found[check]["error"] is not None, (check, rank)
        assert re.search(message, found[check]["error"]), found[check]["error"]


@pytest.mark.parametrize("world_size", [2, 3])
def test_only_the_writing_process_needs_the_checkpoint_directory(groups, world_size):
    """Every process checked checkpoint_path's directory, so a directory
    present only on the first machine refused the whole job."""
    checks, _, _ = groups
    found = [r["_checkpoint_directory_on_the_first_process_only"]
             for r in checks[world_size]]
    assert [r["n_meta_iter"] for r in found] == [3] * world_size
    assert found[0]["written"] and not any(r["written"] for r in found[1:])
    _assert_close(found[0]["weights"], found[-1]["weights"], "checkpointed run")


@pytest.mark.parametrize("world_size", [2, 3])
def test_a_failed_process_makes_the_others_fail_within_the_timeout(groups,
                                                                  world_size):
    # with 3 processes the last is killed, with 2 it hangs
    _, failures, _ = groups
    for rank, found in enumerate(failures[world_size]):
        assert found["error"] is not None
        assert found["error"].startswith(
            f"RuntimeError: distributed meta-training: process {rank} of "
            f"{world_size} could not reduce")
        assert "timeout=" in found["error"]
        assert found["seconds"] < TIMEOUT + 10


# -- model selection with joblib's Dask backend -------------------------------------

def test_grid_search_on_a_dask_cluster_scores_as_in_one_process():
    distributed = pytest.importorskip("dask.distributed")
    import joblib
    from sklearn.model_selection import GridSearchCV, cross_val_score

    from sk_meta.model_selection import tasks_to_cv

    tasks = _classification_tasks(40)
    clf = MAMLClassifier(meta_batch_size=5, n_meta_iter=20, **SMALL).meta_fit(
        tasks[:30])
    X, y, cv = tasks_to_cv(tasks[30:])
    grid = {"inner_lr": [0.05, 0.2], "inner_steps": [1, 5]}
    expected = GridSearchCV(clf, grid, cv=cv, refit=False, n_jobs=1).fit(X, y)
    expected_scores = cross_val_score(clf, X, y, cv=cv, n_jobs=1)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster), joblib.parallel_backend("dask"):
        search = GridSearchCV(clf, grid, cv=cv, refit=False, n_jobs=-1).fit(X, y)
        scores = cross_val_score(clf, X, y, cv=cv, n_jobs=-1)
    for key in expected.cv_results_:
        if key.startswith(("split", "mean_test", "std_test", "rank")):
            np.testing.assert_array_equal(search.cv_results_[key],
                                          expected.cv_results_[key], err_msg=key)
    np.testing.assert_array_equal(scores, expected_scores)
    assert len(set(expected_scores)) > 1  # the scores tell the tasks apart


if __name__ == "__main__":
    # A shell that starts pytest in the background makes it ignore SIGINT,
    # and the workers inherit that; _ctrl_c needs Python's Ctrl-C handling.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _worker(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
