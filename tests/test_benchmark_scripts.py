"""The benchmark scripts' own bookkeeping, where a slip loses a long run's result."""

import argparse
import csv
import json
import signal
import warnings
from pathlib import Path

import numpy as np
import pytest

from benchmarks import (
    adaptation_curve,
    bench_distributed,
    fidelity_omniglot,
    fidelity_sinusoid,
    fidelity_tabular,
    head_choice,
    plot_tabular,
)
from sk_meta import MAMLClassifier
from sk_meta.tasks import EpisodeSampler

RESULTS_TABLE = (Path(__file__).resolve().parents[1] / "docs" / "user_guide"
                 / "tabular_defaults.csv")


class _SilentTimer:
    def log(self, message):
        pass


def test_chunked_meta_training_counts_the_iterations_already_run():
    # The Omniglot protocol meta-trains in warm-started chunks sized by the
    # measured rate; it must read how far the estimator got (a fitted
    # attribute served from its record), or it restarts its count at 0,
    # asks for fewer iterations than were run and reports none.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4)).astype(np.float32)
    y = np.repeat(np.arange(6), 10)
    sampler = EpisodeSampler(X, y, n_way=3, k_shot=2, n_query=3, random_state=0)
    est = MAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=1, meta_batch_size=2,
                         warm_start=True, random_state=0)
    progress = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a chunk that trains nothing warns
        seconds = _budget_run(est, sampler, fidelity_omniglot.StopFlag(), progress)
    assert est.n_meta_iter_ == 23
    assert progress[-1] == 23 and progress == sorted(progress)
    assert seconds < 30.0


def _budget_run(est, sampler, stop_flag, progress):
    return fidelity_omniglot.train_with_budget(
        est, sampler, n_meta_iter=23, time_budget=30.0,
        config={"meta_lr": 1e-3, "epsilon_schedule": "none"},
        args=argparse.Namespace(report_every=0.05, epsilon_schedule="none"),
        timer=_SilentTimer(), label="test",
        on_progress=lambda est, seconds: progress.append(est.n_meta_iter_),
        stop_flag=stop_flag)


def test_a_stop_before_the_first_meta_iteration_leaves_nothing_to_report():
    # Ctrl-C (or the SIGTERM passed on as one) while the first chunk is set
    # up: the estimator has no meta-iteration, and the script must say so
    # rather than fail reading attributes it does not have.
    def interrupted():
        raise KeyboardInterrupt
        yield

    est = MAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=1, warm_start=True)
    stop_flag, progress = fidelity_omniglot.StopFlag(), []
    _budget_run(est, interrupted(), stop_flag, progress)
    assert stop_flag.stop and progress == []
    assert getattr(est, "n_meta_iter_", 0) == 0


def test_the_stop_signal_reaches_a_background_run():
    # `nohup ... &` starts the script with SIGINT ignored; sk_meta leaves an
    # ignored SIGINT alone, so SIGTERM passed on as SIGINT would be lost and
    # the run would stop only at the end of its chunk.
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        fidelity_omniglot.StopFlag().install()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def test_the_omniglot_protocol_meta_trains_as_the_papers_do():
    # The classifiers' defaults mix tasks (MAML, FOMAML), clip MAML's
    # meta-gradient and line-search fit's steps; the papers' protocol does
    # none of these, whatever the defaults.
    for algorithm in ("maml", "fomaml", "reptile"):
        config = fidelity_omniglot.settings(algorithm, 5, 1)
        est = fidelity_omniglot.make_estimator(algorithm, config, n_way=5,
                                               n_filters=4, device="cpu", seed=0)
        assert est.task_interpolation == 0.0
        assert est.meta_grad_max_norm is None
        assert est.backtracking is False
        assert est.head_init == "meta"


# -- the command lines refuse what would waste a run or hang ------------------------

@pytest.mark.parametrize("main, argv, message", [
    # no worker process was started, and the parent waited for one forever
    (bench_distributed.main, ["--nprocs", "0"], "--nprocs: must be at least 1"),
    (fidelity_tabular.main, ["--k-shot", "-1"], "--k-shot: must be at least 1"),
    (fidelity_tabular.main, ["--max-time", "nan"], "--max-time: must be above 0"),
    (fidelity_tabular.main, ["--clip", "-1"], "--clip: must be above 0"),
    (fidelity_tabular.main, ["--n-test-tasks", "x"], "--n-test-tasks: not an int"),
    (fidelity_sinusoid.main, ["--steps", "-1"], "--steps: must be at least 0"),
    # the results file landed outside the results directory
    (fidelity_sinusoid.main, ["--name", "../../escape"], "a file name, without"),
    (fidelity_omniglot.main, ["--quick", "--path", "/nonexistent/omniglot.npz"],
     "no such file"),
    (fidelity_omniglot.main, ["--quick", "--device", "nodevice"], "--device"),
    (adaptation_curve.main, ["--dataset", "digits", "--method", "bogus"],
     "unknown method 'bogus'"),

    (plot_tabular.main, ["--table", "/nonexistent/table.csv"], "--table: "),
    (plot_tabular.main, ["--table", __file__], "has no column 'data set'"),
])
def test_bad_arguments_are_one_line_errors(main, argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_a_run_whose_data_sets_are_all_missing_fails(tmp_path, capsys):
    """It exited 0 and printed the summary of earlier runs."""
    with pytest.raises(SystemExit, match="none of the data sets"):
        fidelity_tabular.main(["--datasets", "vowel", "--tabular-dir", str(tmp_path),
                               "--splits", "0", "--k-shot", "1", "--methods", "maml"])
    assert "vowel: no file" in capsys.readouterr().out


def test_the_average_of_a_method_with_itself_is_that_method(tmp_path, monkeypatch):
    # "avg A & B" meta-trains each member as its name says and averages their
    # probabilities: with A = B, the predictions, so the accuracies, are A's
    monkeypatch.setattr(fidelity_tabular, "OUT_DIR", tmp_path)
    fidelity_tabular.main([
        "--datasets", "digits", "--splits", "0", "--k-shot", "1",
        "--n-test-tasks", "4", "--max-time", "2", "--test-steps", "5",
        "--methods", "maml it=3 h=8", "avg maml it=3 h=8 & maml it=3 h=8"])
    folder = tmp_path / "test" / "digits" / "split0_k1"
    single = json.loads((folder / "maml_it=3_h=8.json").read_text())
    average = json.loads((folder / "avg_maml_it=3_h=8_maml_it=3_h=8.json").read_text())
    assert average["members"] == ["maml it=3 h=8", "maml it=3 h=8"]
    assert average["accuracy"]["20"] == single["accuracy"]["20"]
    assert len(average["accuracy"]["20"]) == 4


# small settings and results in tmp_path: a refusal that fails runs nothing long
_TINY_RUN = ["--datasets", "digits", "--splits", "0", "--k-shot", "1",
             "--n-test-tasks", "2", "--max-time", "1"]


def test_an_average_of_an_unknown_method_is_refused_before_running(
        capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(fidelity_tabular, "OUT_DIR", tmp_path)
    with pytest.raises(SystemExit):
        fidelity_tabular.main([*_TINY_RUN, "--methods", "avg maml & bogus"])
    assert "unknown method 'bogus'" in capsys.readouterr().err


@pytest.mark.parametrize("name, message", [
    ("avg maml it=1 h=4", "needs two methods or more"),
    ("avg maml it=1 h=4 & ", "needs two methods or more"),
    ("avg", "needs two methods or more"),
    ("avg pretrain+LR & maml it=1 h=4", "'pretrain+LR' is no meta-learner"),
])
def test_an_average_of_other_than_meta_learners_is_refused(name, message, capsys,
                                                           tmp_path, monkeypatch):
    monkeypatch.setattr(fidelity_tabular, "OUT_DIR", tmp_path)
    with pytest.raises(SystemExit):
        fidelity_tabular.main([*_TINY_RUN, "--methods", name])
    assert message in capsys.readouterr().err


def test_an_average_takes_a_search_first_and_one_spelling(tmp_path, monkeypatch):
    # a MetaGridSearch member is used through its best estimator (it failed
    # after meta-training), and spacing variants share one result file
    monkeypatch.setattr(fidelity_tabular, "OUT_DIR", tmp_path)
    fidelity_tabular.main([*_TINY_RUN, "--methods",
                           "avg maml searchlr it=3 h=8 &  maml it=3   h=8"])
    path = (tmp_path / "test" / "digits" / "split0_k1"
            / "avg_maml_searchlr_it=3_h=8_maml_it=3_h=8.json")
    record = json.loads(path.read_text())
    assert record["method"] == "avg maml searchlr it=3 h=8 & maml it=3 h=8"
    assert [m["n_meta_iter"] for m in record["member_records"]][1] == 3


def test_method_names_have_one_spelling_in_runs_and_reports(tmp_path, monkeypatch,
                                                             capsys):
    # a plain method spelt with two spaces, or an average after a tab, found
    # the other spelling's file and reported an empty column
    monkeypatch.setattr(fidelity_tabular, "OUT_DIR", tmp_path)
    fidelity_tabular.main([*_TINY_RUN, "--methods", "maml  it=2 h=4",
                           "avg\tmaml it=2 h=4&maml it=2 h=4"])
    folder = tmp_path / "test" / "digits" / "split0_k1"
    assert json.loads((folder / "maml_it=2_h=4.json").read_text())["method"] == (
        "maml it=2 h=4")
    capsys.readouterr()
    fidelity_tabular.main(["--stage", "test", "--report", "--methods",
                           "maml it=2  h=4", "avg maml it=2 h=4 &maml  it=2 h=4"])
    report = capsys.readouterr().out
    header, *rows = [line for line in report.splitlines() if line.startswith("|")]
    row = next(line for line in rows if "digits" in line)
    cells = dict(zip([c.strip() for c in header.split("|")],
                     [c.strip() for c in row.split("|")]))
    assert cells["maml it=2 h=4"] and cells["maml it=2 h=4"] != "—"
    assert cells["avg maml it=2 h=4 & maml it=2 h=4"] == cells["maml it=2 h=4"]


# -- head_choice: the per-task output layer ------------------------------------

def test_head_choice_keeps_the_steps_where_nothing_can_be_held_out():
    args = argparse.Namespace(datasets=["digits"], splits=[0], k_shot=[1, 2],
                              n_test_tasks=3, stage="test")
    rows = head_choice.run(args)
    assert len(rows) == 6
    for row in rows:
        assert row["chosen"] == row["logistic" if row["chose_logistic"] else "steps"]
        assert row["sk_meta_agrees"]  # head_solver="choose" predicts the same
        if row["k_shot"] == 1:
            assert not row["chose_logistic"]


# -- the Results page's table of the current defaults, and its figure ---------

def _results_table():
    with open(RESULTS_TABLE, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def _number(cell):
    return float(cell.replace("\u2212", "-"))


def test_the_results_table_has_every_cell_and_its_differences_follow_from_its_means():
    # The page's table is edited by hand after each run: a cell lost in an
    # edit, or a difference left from an earlier run, shows here.
    rows = _results_table()
    assert {(row["data set"], row["task"].split()[1]) for row in rows} == {
        (name, shots) for name in ("digits", "flavia", "led7digit", "letter",
                                   "marketing", "movement_libras", "omniglot", "vowel")
        for shots in ("1s", "5s")}
    for row in rows:
        assert all(cell.strip() for cell in row.values()), row
        for method in ("MAML", "Reptile"):
            difference = _number(row[f"{method} \u2212 best baseline"])
            # the differences are of unrounded means: 0.1 apart at most
            from_means = _number(row[method]) - _number(row["%"])
            assert abs(difference - from_means) <= 0.15, (
                row["data set"], row["task"], method)


def test_the_figure_draws_the_results_table(tmp_path, capsys):
    rows = plot_tabular.rows_from_table(RESULTS_TABLE)
    table = _results_table()
    assert len(rows) == len(table)
    for row, line in zip(rows, table):
        assert (row["dataset"], row["n_train_classes"]) == (
            line["data set"], int(line["train cl."]))
        assert f"{row['n_way']}w {row['k_shot']}s" == line["task"]
        for column, label in plot_tabular.TABLE_METHODS.items():
            assert row["methods"][label]["mean"] == pytest.approx(
                _number(line[column]) / 100)
    out = tmp_path / "figure.png"
    plot_tabular.main(["--table", str(RESULTS_TABLE), "--out", str(out)])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(out) in capsys.readouterr().out
    # a row that is not numbers is named, with its line
    broken = tmp_path / "broken.csv"
    text = RESULTS_TABLE.read_text(encoding="utf-8").splitlines()
    broken.write_text("\n".join([text[0], text[1].replace("75.9", "n/a", 1)]),
                      encoding="utf-8")
    with pytest.raises(SystemExit):
        plot_tabular.main(["--table", str(broken), "--out", str(tmp_path / "b.png")])
    assert "line 2: not a row of numbers" in capsys.readouterr().err
