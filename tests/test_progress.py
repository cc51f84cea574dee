"""Progress output of meta_fit: quiet by default, a bar or lines when asked."""

import re
import sys

import numpy as np
import pytest

from sk_meta import MAMLClassifier
from sk_meta.tasks import EpisodeSampler


def _tasks(n_tasks=8, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(60, 4))
    y = np.repeat(np.arange(4), 15)
    sampler = EpisodeSampler(X, y, n_way=2, k_shot=2, n_query=2, random_state=seed)
    return [sampler.sample(i) for i in range(n_tasks)]


def _classifier(**params):
    defaults = dict(hidden_layer_sizes=(4,), meta_batch_size=2, n_meta_iter=40,
                    random_state=0)
    return MAMLClassifier(**{**defaults, **params})


def test_meta_fit_is_quiet_by_default(capsys):
    _classifier().meta_fit(_tasks(), validation_tasks=_tasks(2, seed=1))
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_verbose_1_prints_a_line_every_5_percent_off_a_terminal(capsys):
    _classifier(verbose=1, validation_interval=10).meta_fit(
        _tasks(), validation_tasks=_tasks(2, seed=1))
    lines = capsys.readouterr().out.strip().splitlines()
    assert 15 <= len(lines) <= 22  # every 2 of 40 meta-iterations, about
    pattern = (r"Meta-iteration (\d+)/40, meta-loss = [\d.]+, (validation score = "
               r"[\d.]+, )?[\d.e+]+ it/s, elapsed \d+:\d\d, left \d+:\d\d$")
    assert all(re.match(pattern, line) for line in lines), lines
    assert lines[-1].startswith("Meta-iteration 40/40")
    assert "validation score = " in lines[-1]


def test_verbose_2_prints_every_meta_iteration(capsys):
    _classifier(verbose=2, n_meta_iter=7).meta_fit(_tasks())
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(",")[0] for line in lines] == [
        f"Meta-iteration {i}/7" for i in range(1, 8)]


def test_a_terminal_gets_a_progress_bar(capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    _classifier(verbose=1).meta_fit(_tasks(), validation_tasks=_tasks(2, seed=1))
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing but the bar
    last = captured.err.replace("\r", "\n").strip().splitlines()[-1]
    assert re.search(r"meta_fit: 100%.*40/40.*meta_loss=[\d.]+, valid=[\d.]+", last)


def test_time_left_follows_max_time_when_it_comes_first():
    from sk_meta._progress import Progress

    progress = Progress(1, start=0, total=1000, max_time=10.0)
    # 10 it/s, 100 done after 10 s would leave 90 s by iterations; the
    # deadline leaves 5 s
    assert progress.time_left(100, rate=10.0, elapsed=5.0) == pytest.approx(5.0)
    assert progress.time_left(900, rate=10.0, elapsed=5.0) == pytest.approx(5.0)
    assert Progress(1, start=0, total=1000).time_left(900, 10.0, 5.0) == \
        pytest.approx(10.0)
