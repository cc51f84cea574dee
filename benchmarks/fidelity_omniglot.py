# SPDX-License-Identifier: BSD-3-Clause
"""Omniglot N-way K-shot: the MAML and Reptile papers' protocol with sk_meta.

Data: ``load_omniglot(path, rotations=(90, 180, 270))``: 1,200 meta-training
characters (seeded shuffle, not the papers' unrecorded split) plus their
three rotations as extra classes (4,800 classes), 423 meta-test characters.
Network: ``Conv4`` (64 filters, 2x2 max-pooling: the papers' Omniglot
network uses stride-2 convolutions instead, ``Conv4(downsample="stride")``;
BatchNorm with the statistics of the batch at
hand: transductive, as in the MAML code and Reptile's ``--transductive``
runs). Accuracy over 600 test tasks (5 query images per class) with a 95%
interval.

Settings (per algorithm and N-way; ``--n-meta-iter`` and ``--time-budget``
override the length):

maml / fomaml (Finn et al. 2017; cbfinn/maml ``main.py`` commands)
    5-way: inner SGD lr 0.4, 1 inner step in meta-training, 3 at test (the
    paper; the code's test default of 10 steps is reported too), meta-batch
    32. 20-way: lr 0.1, 5 inner steps in training and at test (10 reported
    too), meta-batch 16. Adam 1e-3, K query images per class in training
    (the code's ``update_batch_size * 2`` images per class), 60,000
    meta-iterations (the paper; the code's final header says 40,000).
reptile (Nichol et al. 2018; openai/supervised-reptile README commands)
    Inner Adam with β1 = 0, fresh per task (the code keeps Adam's moments
    across tasks); outer SGD step ε annealed
    linearly to 0. 5-way 1-shot: the transductive command (15 train shots,
    3 inner steps, lr 1e-3, meta-batch 10, ε = 1, 100k iterations, 5 test
    steps). 5-way 5-shot: 10 shots, 5 steps, lr 1.5e-3, meta-batch 5,
    ε = 0.7, 100k, 100 test steps. 20-way: 9 (1-shot) or 12 (5-shot)
    shots, 12 steps, lr 4.6e-4, meta-batch 3, ε = 1, 200k, 97 test steps.
    Differences: sk_meta's inner steps are full-batch on all the task's
    images, where the paper takes minibatches (``--inner-batch``) of them;
    meta-training runs in chunks here (see "Time budget" below) that
    raise ``n_meta_iter`` each time, over which
    ``meta_lr_schedule="linear"`` would decay, so this script anneals ε
    piecewise instead:
    meta-fit runs in chunks with ``warm_start=True`` and ``meta_lr`` set
    before each chunk to ε·(1 - progress) (progress = the larger of the
    fractions of iterations and of the time budget used), with
    ``meta_lr_schedule`` left constant. ``--epsilon-schedule constant`` keeps
    ε fixed.

Labels: by default the tasks keep the original class ids, which sk_meta maps
to output units in sorted order; ``--shuffle-labels`` gives each
meta-training task a random assignment of its classes to output units, as
both papers' code does (``_workloads.ShuffledLabels``, the relabelling that
``EpisodeSampler(shuffle_labels=True)`` now offers).

Time budget: meta-training runs in chunks, so that progress is printed and
the results are written as it goes (``max_time`` would bound a single
``meta_fit``): ``warm_start=True``, ``n_meta_iter`` raised by a chunk of
about ``--report-every`` seconds each time, until ``--n-meta-iter`` or
``--time-budget`` seconds are reached. Progress lines carry timestamps; the
results JSON is rewritten after every chunk and every configuration, and
SIGTERM (e.g. ``timeout``) stops training at the end of the current
meta-iteration and still evaluates and writes the results.

Evaluation adapts the test tasks in batches with sk_meta's functional core
(``sk_meta.functional.adapt`` and ``batched_forward`` on ``est.module_``: the
same code ``fit`` runs, for many tasks at once); the first 20 test tasks are
also run through ``est.fit`` / ``est.predict`` and the script reports the
largest difference in their accuracies (it should be 0).

Examples (from the repository root)::

    python -m benchmarks.fidelity_omniglot --quick          # CPU, ~2 min
    python -m benchmarks.fidelity_omniglot --device cuda --time-budget 300 \\
        --algorithm maml fomaml reptile --n-way 5 20 --k-shot 1 5
"""

import argparse
import copy
import functools
import math
import signal
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from benchmarks._cli import (
    check_results_name,
    non_negative_int,
    parse_device,
    positive_float,
    positive_int,
)
from benchmarks._harness import set_threads
from benchmarks._report import (
    RESULTS_DIR,
    Timer,
    environment,
    format_table,
    write_results,
)
from benchmarks._stats import format_ci, summary
from benchmarks._workloads import DEFAULT_OMNIGLOT_PATH, ShuffledLabels
from sk_meta import FOMAMLClassifier, MAMLClassifier, ReptileClassifier
from sk_meta.datasets import load_omniglot
from sk_meta.functional import (
    adapt,
    batched_forward,
    cross_entropy_loss,
    expand_params,
    outputs_beside_support,
    prepare_module,
)
from sk_meta.models import Conv4
from sk_meta.tasks import EpisodeSampler

ALGORITHMS = ("maml", "fomaml", "reptile")

# Test accuracies (%) of the papers: MAML and first-order MAML from Finn et al.
# (2017, Table 1); Reptile from Nichol et al. (2018, Table 1), without and with
# transduction (sk_meta's BatchNorm is transductive, as MAML's).
PAPER = {
    "maml": {(5, 1): 98.7, (5, 5): 99.9, (20, 1): 95.8, (20, 5): 98.9},
    "fomaml": {(5, 1): 98.3, (5, 5): 99.2, (20, 1): 89.4, (20, 5): 97.9},
    "reptile": {(5, 1): 95.39, (5, 5): 98.90, (20, 1): 88.14, (20, 5): 96.65},
}
PAPER_REPTILE_TRANSDUCTIVE = {(5, 1): 97.68, (5, 5): 99.48, (20, 1): 89.43,
                              (20, 5): 97.12}


def settings(algorithm, n_way, k_shot, train_shots=None):
    """The paper's hyperparameters for one configuration.

    ``train_shots`` overrides Reptile's images per class in meta-training.
    """
    if algorithm in ("maml", "fomaml"):
        five = n_way <= 5
        return dict(
            inner_lr=0.4 if five else 0.1,
            meta_inner_steps=1 if five else 5,
            test_steps=[3, 10] if five else [5, 10],
            meta_batch_size=32 if five else 16,
            meta_lr=1e-3, meta_optimizer="adam", inner_optimizer=None,
            k_train=k_shot, n_query_train=k_shot, n_meta_iter=60_000,
            epsilon_schedule=None, ink=1,
        )
    table = {  # train shots, inner steps, lr, meta-batch, epsilon, iters, test steps
        (5, 1): (15, 3, 1e-3, 10, 1.0, 100_000, 5),
        (5, 5): (10, 5, 1.5e-3, 5, 0.7, 100_000, 100),
        (20, 1): (9, 12, 4.6e-4, 3, 1.0, 200_000, 97),
        (20, 5): (12, 12, 4.6e-4, 3, 1.0, 200_000, 97),
    }
    key = (5 if n_way <= 5 else 20, 1 if k_shot == 1 else 5)
    shots, steps, lr, batch, epsilon, iters, test_steps = table[key]
    shots = max(train_shots or shots, k_shot + 1)
    return dict(
        inner_lr=lr, meta_inner_steps=steps, test_steps=[test_steps],
        meta_batch_size=batch, meta_lr=epsilon, meta_optimizer="sgd",
        inner_optimizer="adam", k_train=k_shot, n_query_train=shots - k_shot,
        n_meta_iter=iters, epsilon_schedule="linear", ink=0,
    )


def make_estimator(algorithm, config, n_way, n_filters, device, seed,
                   compile=False):
    common = dict(
        module=Conv4, module_params=dict(n_outputs=n_way, n_filters=n_filters),
        inner_lr=config["inner_lr"], inner_steps=config["test_steps"][0],
        meta_inner_steps=config["meta_inner_steps"],
        head_init="meta",  # the papers' meta-learned output layer
        # the papers' tasks, meta-gradients and steps: no task interpolation,
        # clipping or line search, whatever the classifiers' defaults are
        task_interpolation=0.0, meta_grad_max_norm=None, backtracking=False,
        meta_batch_size=config["meta_batch_size"], meta_lr=config["meta_lr"],
        meta_optimizer=config["meta_optimizer"], n_meta_iter=1,
        validation_interval=10**9, warm_start=True, device=device,
        random_state=seed, compile=compile,
    )
    if algorithm == "maml":
        return MAMLClassifier(**common)
    if algorithm == "fomaml":
        return FOMAMLClassifier(**common)
    return ReptileClassifier(inner_optimizer=config["inner_optimizer"], **common)


class StopFlag:
    """Set by SIGTERM: training ends after the current meta-iteration.

    During ``meta_fit`` the signal is passed on as SIGINT, which sk_meta
    defers to the end of the meta-iteration and then commits; the script
    then evaluates what it has, writes the results and runs no further
    configuration.
    """

    def __init__(self):
        self.stop = False
        self.training = False

    def install(self):
        def handler(signum, frame):
            self.stop = True
            if self.training:
                signal.raise_signal(signal.SIGINT)

        signal.signal(signal.SIGTERM, handler)
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            # a background job (`nohup ... &`) starts with SIGINT ignored:
            # sk_meta then leaves it so, and the passed-on signal is lost
            signal.signal(signal.SIGINT, signal.default_int_handler)


def _meta_iterations_run(est):
    """``n_meta_iter_``, or 0 before the first meta-iteration (a fitted
    attribute served from the estimator's record, not its ``__dict__``)."""
    return getattr(est, "n_meta_iter_", 0)


def train_with_budget(est, sampler, *, n_meta_iter, time_budget, config, args,
                      timer, label, on_progress, stop_flag):
    """meta_fit in warm-started chunks until n_meta_iter or the time budget."""
    start = time.perf_counter()
    chunk, rate = 5, None
    epsilon0 = config["meta_lr"]
    while not stop_flag.stop:
        done = _meta_iterations_run(est)
        if done >= n_meta_iter:
            break
        used = time.perf_counter() - start
        if time_budget is not None and (
                used >= time_budget
                or (rate is not None and (time_budget - used) * rate < 5)):
            break  # spent, or too little left for a useful chunk
        if rate is not None:
            seconds = args.report_every
            if time_budget is not None:  # a margin for a slower machine
                seconds = min(seconds, 0.8 * (time_budget - used))
            chunk = max(1, int(rate * seconds))
        chunk = min(chunk, n_meta_iter - done)
        if config["epsilon_schedule"] == "linear" and args.epsilon_schedule == "linear":
            # progress at the middle of this chunk, by iterations or by time
            progress = (done + chunk / 2) / n_meta_iter
            if time_budget is not None and rate is not None:
                progress = max(progress, (used + chunk / rate / 2) / time_budget)
            est.set_params(meta_lr=max(epsilon0 * (1 - min(progress, 1.0)), 1e-6))
        est.set_params(n_meta_iter=done + chunk)
        chunk_start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="meta-training interrupted")
            stop_flag.training = True
            try:
                est.meta_fit(sampler)
            except KeyboardInterrupt:  # before sk_meta's handler was installed
                stop_flag.stop = True
            finally:
                stop_flag.training = False
        chunk_s = time.perf_counter() - chunk_start
        n_new = _meta_iterations_run(est) - done
        if n_new <= 0:  # stopped before the chunk's first meta-iteration
            break
        rate = n_new / chunk_s
        loss = float(np.mean(est.meta_loss_curve_[-n_new:]))
        timer.log(f"{label}: meta-iter {est.n_meta_iter_}, {rate:.2f} it/s, "
                  f"meta-loss {loss:.4f}, meta_lr {est.meta_lr:.3g}, "
                  f"{time.perf_counter() - start:.0f} s")
        on_progress(est, time.perf_counter() - start)
    return time.perf_counter() - start


def _stack(tasks):
    """Stack tasks of equal shapes; labels coded 0..n-1 per task (sorted)."""
    Xs = np.stack([t.X_support for t in tasks])
    Xq = np.stack([t.X_query for t in tasks])
    ys, yq = [], []
    for t in tasks:
        classes, codes = np.unique(t.y_support, return_inverse=True)
        ys.append(codes)
        yq.append(np.searchsorted(classes, t.y_query))
    return Xs, np.stack(ys), Xq, np.stack(yq), len(classes)


def evaluate(est, tasks, n_steps, *, device, batch_size, module=None,
             transductive=True):
    """Per-task query accuracy after ``n_steps`` adaptation steps (batched).

    Adapts from ``est.module_`` (or from ``module``) with ``est``'s inner
    learning rate and inner optimizer. ``transductive=False`` classifies
    each query image in one batch with the support set (the Reptile paper's
    non-transductive evaluation) instead of the whole query batch at once.
    """
    device = torch.device(device)
    module = copy.deepcopy(est.module_ if module is None else module).to(device)
    forward = batched_forward(module, dict(module.named_buffers()),
                              "native" if hasattr(module, "forward_batched")
                              else "vmap")
    params = {k: p.detach() for k, p in module.named_parameters()}
    options = ({"optimizer": est.inner_optimizer}
               if hasattr(est, "inner_optimizer") else {})
    accuracies = []
    for start in range(0, len(tasks), batch_size):
        Xs, ys, Xq, yq, n_classes = _stack(tasks[start:start + batch_size])
        Xs, ys, Xq, yq = (torch.from_numpy(a).to(device) for a in (Xs, ys, Xq, yq))
        loss_fn = functools.partial(cross_entropy_loss, n_classes=n_classes)
        module.train()
        adapted, _ = adapt(forward, expand_params(params, len(Xs)), Xs, ys,
                           loss_fn=loss_fn, lr=est.inner_lr, n_steps=n_steps,
                           detach=True, **options)
        module.eval()
        with torch.no_grad():
            if transductive:
                outputs = forward(adapted, Xq)
            else:
                outputs = torch.stack([
                    outputs_beside_support(
                        module, dict(module.named_buffers()),
                        {k: p[i] for k, p in adapted.items()}, Xs[i], Xq[i])
                    for i in range(len(Xs))
                ])
            predicted = outputs[..., :n_classes].argmax(-1)
        accuracies.append((predicted == yq).float().mean(1).cpu().numpy())
    return np.concatenate(accuracies)


def evaluate_with_estimator(est, tasks, n_steps):
    """The same through ``fit`` / ``predict``, task by task."""
    est.set_params(inner_steps=n_steps)
    return np.array([
        np.mean(est.fit(t.X_support, t.y_support).predict(t.X_query) == t.y_query)
        for t in tasks
    ])


def run_config(algorithm, n_way, k_shot, data, args, timer, stop_flag, save):
    config = settings(algorithm, n_way, k_shot, args.reptile_train_shots)
    n_meta_iter = args.n_meta_iter or config["n_meta_iter"]
    if args.meta_batch_size:
        config["meta_batch_size"] = args.meta_batch_size
    label = f"{algorithm} {n_way}-way {k_shot}-shot"
    sampler = EpisodeSampler(
        data.data, data.target, n_way, config["k_train"], config["n_query_train"],
        classes=data.train_classes, random_state=args.seed,
    )
    if args.shuffle_labels:
        sampler = ShuffledLabels(sampler, args.seed)
    est = make_estimator(algorithm, config, n_way, args.n_filters, args.device,
                         args.seed, compile=args.compile)
    record = {
        "algorithm": algorithm, "n_way": n_way, "k_shot": k_shot,
        "shuffle_labels": args.shuffle_labels,
        "n_filters": args.n_filters, "settings": config,
        "n_meta_iter_target": n_meta_iter, "time_budget": args.time_budget,
        "paper": PAPER[algorithm].get((n_way, k_shot)),
        "status": "training",
    }

    def on_progress(est, seconds):
        record.update(n_meta_iter=est.n_meta_iter_, train_seconds=seconds,
                      meta_loss_last=float(np.mean(est.meta_loss_curve_[-50:])))
        save(record)

    timer.log(f"{label}: meta-training (target {n_meta_iter} iterations, budget "
              f"{args.time_budget} s, meta-batch {config['meta_batch_size']})")
    train_s = train_with_budget(
        est, sampler, n_meta_iter=n_meta_iter, time_budget=args.time_budget,
        config=config, args=args, timer=timer, label=label,
        on_progress=on_progress, stop_flag=stop_flag,
    )
    record.update(n_meta_iter=int(_meta_iterations_run(est)),
                  train_seconds=train_s, status="evaluating",
                  stopped_by_signal=stop_flag.stop)
    if not record["n_meta_iter"]:
        record["status"] = "no meta-iteration ran"
        save(record)
        return record
    record["meta_loss_curve_every_100"] = [
        float(np.mean(est.meta_loss_curve_[i:i + 100]))
        for i in range(0, len(est.meta_loss_curve_), 100)]
    save(record)

    test_tasks = list(EpisodeSampler(
        data.data, data.target, n_way, k_shot, args.n_query_test,
        classes=data.test_classes, n_tasks=args.n_test_tasks,
        random_state=10_000 + args.seed,
    ))
    eval_start = time.perf_counter()
    record["accuracy"] = {}
    for n_steps in config["test_steps"]:
        acc = evaluate(est, test_tasks, n_steps, device=args.device,
                       batch_size=args.eval_batch_size)
        record["accuracy"][str(n_steps)] = summary(acc)
        timer.log(f"{label}: {n_steps} test steps: accuracy "
                  f"{format_ci(summary(acc), percent=True, digits=2)} %")
    if args.non_transductive:
        n_steps = config["test_steps"][0]
        acc = evaluate(est, test_tasks, n_steps, device=args.device,
                       batch_size=args.eval_batch_size, transductive=False)
        record["accuracy_non_transductive"] = {str(n_steps): summary(acc)}
        timer.log(f"{label}: {n_steps} test steps, non-transductive: accuracy "
                  f"{format_ci(summary(acc), percent=True, digits=2)} %")
    # the same adaptation from the untrained initialization: what the
    # network and the test-time steps give without any meta-training
    with torch.random.fork_rng():
        torch.manual_seed(args.seed)
        random_init = prepare_module(Conv4(n_outputs=n_way, n_filters=args.n_filters))
    record["accuracy_random_init"] = {}
    for n_steps in config["test_steps"]:
        acc = evaluate(est, test_tasks, n_steps, device=args.device,
                       batch_size=args.eval_batch_size, module=random_init)
        record["accuracy_random_init"][str(n_steps)] = summary(acc)
    timer.log(f"{label}: from a random init instead: " + ", ".join(
        f"{k} steps {format_ci(v, percent=True, digits=2)} %"
        for k, v in record["accuracy_random_init"].items()))
    n_check = min(20, len(test_tasks))
    steps0 = config["test_steps"][0]
    check = evaluate_with_estimator(est, test_tasks[:n_check], steps0)
    batched = evaluate(est, test_tasks[:n_check], steps0, device=args.device,
                       batch_size=args.eval_batch_size)
    record["fit_predict_check"] = {
        "n_tasks": n_check, "max_abs_accuracy_difference":
        float(np.max(np.abs(check - batched))),
    }
    record["eval_seconds"] = time.perf_counter() - eval_start
    record["status"] = "done"
    save(record)
    if args.save_model:
        path = Path(args.results_dir) / (
            f"omniglot_{algorithm}_{n_way}w{k_shot}s_seed{args.seed}.pt")
        est.save(path)
        record["model_path"] = str(path)
    return record


def table(records):
    header = ["method", "N-way", "K-shot", "filters", "meta-iter (target)",
              "train s", "test steps", "accuracy % (95% CI)",
              "non-transductive %", "same steps from random init %", "paper %"]
    rows = []
    for r in records:
        paper = r.get("paper")
        paper_text = f"{paper:.2f}" if paper is not None else "—"
        if r["algorithm"] == "reptile":
            trans = PAPER_REPTILE_TRANSDUCTIVE.get((r["n_way"], r["k_shot"]))
            if trans is not None:
                paper_text += f" ({trans:.2f} transductive)"
        for steps, acc in (r.get("accuracy") or {"—": None}).items():
            rows.append([
                r["algorithm"], r["n_way"], r["k_shot"], r["n_filters"],
                f"{r.get('n_meta_iter', 0)} ({r['n_meta_iter_target']})",
                f"{r.get('train_seconds', 0):.0f}", steps,
                format_ci(acc, percent=True, digits=2) if acc else r["status"],
                format_ci(r["accuracy_non_transductive"][steps], percent=True,
                          digits=2)
                if steps in r.get("accuracy_non_transductive", {}) else "",
                format_ci(r["accuracy_random_init"][steps], percent=True, digits=2)
                if acc and "accuracy_random_init" in r else "",
                paper_text,
            ])
    return format_table(rows, columns=header)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--path", default=None,
                        help="omniglot28.npz (default ../shared/data/omniglot/"
                             "omniglot28.npz beside the repository)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    parser.add_argument("--algorithm", nargs="+", default=None, choices=ALGORITHMS)
    parser.add_argument("--n-way", type=positive_int, nargs="+", default=None)
    parser.add_argument("--k-shot", type=positive_int, nargs="+", default=None)
    parser.add_argument("--n-meta-iter", type=positive_int, default=None,
                        help="meta-iterations (default: each paper's)")
    parser.add_argument("--time-budget", type=positive_float, default=None,
                        help="seconds of meta-training per configuration")
    parser.add_argument("--n-filters", type=positive_int, default=None)
    parser.add_argument("--meta-batch-size", type=positive_int, default=None,
                        help="override the paper's meta-batch size")
    parser.add_argument("--n-test-tasks", type=positive_int, default=None)
    parser.add_argument("--n-query-test", type=positive_int, default=5,
                        help="query images per class in test tasks")
    parser.add_argument("--eval-batch-size", type=positive_int, default=None,
                        help="test tasks adapted at once")
    parser.add_argument("--epsilon-schedule", choices=("linear", "constant"),
                        default="linear", help="Reptile's outer step size")
    parser.add_argument("--report-every", type=positive_float, default=None,
                        help="seconds per warm-started chunk (progress line)")
    parser.add_argument("--reptile-train-shots", type=positive_int, default=None,
                        help="Reptile's images per class in meta-training "
                             "(default: the paper's, 9 to 15)")
    parser.add_argument("--shuffle-labels", action="store_true",
                        help="meta-train on tasks whose labels are a random "
                             "permutation of 0..N-1 in each task (the papers' "
                             "protocol) instead of the original class ids, "
                             "which sk_meta maps to output units in sorted order")
    parser.add_argument("--split-seed", type=non_negative_int, default=0,
                        help="random_state of load_omniglot's character split")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="CPU minutes: MAML 5-way 1-shot, 16 filters, "
                             "meta-batch 8, 90 s of meta-training, 100 test "
                             "tasks (with --algorithm reptile: 5 train shots)")
    parser.add_argument("--compile", action="store_true",
                        help="compile=True (CUDA graphs on a GPU)")
    parser.add_argument("--non-transductive", action="store_true",
                        help="also evaluate each query image beside the support "
                             "set (the Reptile paper's non-transductive figures)")
    parser.add_argument("--results-dir", default=None)
    parser.add_argument("--save-model", action="store_true")
    parser.add_argument("--name", default=None, help="results file name")
    args = parser.parse_args(argv)

    if args.quick:
        defaults = dict(algorithm=["maml"], n_way=[5], k_shot=[1],
                        n_filters=16, meta_batch_size=8, time_budget=90.0,
                        n_test_tasks=100, report_every=30.0,
                        reptile_train_shots=5)
    else:
        defaults = dict(algorithm=["maml"], n_way=[5], k_shot=[1], n_filters=64,
                        meta_batch_size=None, time_budget=None,
                        n_test_tasks=600, report_every=60.0,
                        reptile_train_shots=None)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.eval_batch_size is None:
        args.eval_batch_size = 100 if str(args.device).startswith("cuda") else 25
    args.results_dir = args.results_dir or str(RESULTS_DIR)
    path = args.path or (DEFAULT_OMNIGLOT_PATH if DEFAULT_OMNIGLOT_PATH.is_file()
                         else None)
    if path is not None and not Path(path).is_file():
        parser.error(f"--path {str(path)!r}: no such file (sk_meta never downloads "
                     "data: see the data set's README for where it comes from)")
    args.device = str(parse_device(parser, args.device))
    check_results_name(parser, args.name)
    mode = "quick" if args.quick else "full"
    device_kind = str(args.device).split(":")[0]
    name = args.name or f"omniglot_{mode}_{device_kind}_seed{args.seed}"
    set_threads(1)
    torch.manual_seed(args.seed)
    timer = Timer()
    stop_flag = StopFlag()
    stop_flag.install()

    records = []
    env = environment(args.device)

    def save(current=None):
        done = [r for r in records if r is not current]
        write_results(name, {
            "benchmark": "omniglot", "mode": mode, "seed": args.seed,
            "args": vars(args), "environment": env,
            "records": done + ([current] if current is not None else []),
        }, directory=args.results_dir)

    cache = {}
    timer.log(f"device {args.device} ({env.get('gpu', env['cpu'])}), torch "
              f"{env['torch']}, data {path}")
    for algorithm in args.algorithm:
        for n_way in args.n_way:
            for k_shot in args.k_shot:
                if stop_flag.stop:
                    break
                ink = settings(algorithm, n_way, k_shot)["ink"]
                if ink not in cache:
                    cache.clear()  # one copy of the images at a time
                    cache[ink] = load_omniglot(path, rotations=(90, 180, 270),
                                               ink=ink, random_state=args.split_seed)
                    data = cache[ink]
                    timer.log(f"loaded Omniglot (ink={ink}): {data.data.shape}, "
                              f"{len(data.train_classes)} meta-training classes, "
                              f"{len(data.test_classes)} meta-test characters")
                record = run_config(algorithm, n_way, k_shot, cache[ink], args,
                                    timer, stop_flag, save)
                records.append(record)
                save()
    print()
    print(f"Omniglot test accuracy over {args.n_test_tasks} tasks "
          f"({args.n_query_test} query images per class), mean ± 95% interval")
    print()
    print(table(records))
    print(f"\nresults: {Path(args.results_dir) / (name + '.json')}, "
          f"total {timer.elapsed():.0f} s")
    return 0 if not math.isnan(timer.elapsed()) else 1


if __name__ == "__main__":
    sys.exit(main())
