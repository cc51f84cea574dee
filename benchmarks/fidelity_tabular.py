# SPDX-License-Identifier: BSD-3-Clause
"""Few-shot tabular classification: when does meta-learning beat the support set alone?

Every method sees the same test tasks: N-way K-shot episodes (15 query rows
per class) drawn from classes that no method saw before (held-out classes).

Data sets (all offline):

digits
    scikit-learn's ``load_digits`` (64 pixels / 16): meta-training on digits
    0-6, 3-way tasks on the held-out digits 7, 8, 9.
omniglot
    Omniglot's pixels as a table with many classes: 28x28 images average-
    pooled 2x2 to 196 features; 1,200 meta-training characters plus their
    rotations (4,800 classes), 5-way tasks on the 423 held-out characters.
    Skipped when ``omniglot28.npz`` is not found.
synthetic
    A rich task family with a shared structure: 1,000 classes, each a
    Gaussian blob (std 0.5) around a random centre in an 8-d latent space,
    seen through one fixed random non-linear map (8 -> 64 tanh -> 24
    features) plus 64 pure-noise features, columns shuffled. The map and
    the noise columns are the same for every class, so what a model learns
    about them on meta-training classes transfers; a model fitted on a
    support set alone cannot tell signal from noise with 5 or 25 rows.
    5-way tasks on 200 held-out classes; ``--n-train-classes`` sweeps the
    number of meta-training classes (10, 50, 200, 800 in full mode).

Methods:

logreg, 1-nn, random forest
    ``LogisticRegression()``, ``KNeighborsClassifier(1)``,
    ``RandomForestClassifier(100)`` fitted on the support set alone.
pretrain + head
    One MLP (same hidden layers as MAML's) trained with cross-entropy on
    all meta-training classes at once (plain torch, Adam 1e-3, batches of
    256, as many steps as MAML has meta-iterations), then frozen; for each
    task a new linear head (``LogisticRegression``) is fitted on the support
    set's hidden features (the "Baseline" of Chen et al., ICLR 2019).
maml
    ``MAMLClassifier(hidden_layer_sizes=(128, 128), inner_lr=0.1,
    inner_steps=5, meta_batch_size=16)``, meta-trained for each K with K
    support and 10 query rows per class, on ``EpisodeSampler`` tasks as they
    come: the estimators map a task's labels to output units in sorted
    order, so a meta-training class tends to land on the same output unit in
    every task (always, when the pool has as few classes as digits' 7).
maml shuffled
    The same, on tasks whose labels are replaced by a random permutation of
    0..N-1 for every task (the papers' protocol: output units carry no class
    identity, so the init cannot memorise "this digit is unit 2"), with
    ``_workloads.ShuffledLabels``: the relabelling that
    ``EpisodeSampler(shuffle_labels=True)`` now offers, kept here so that
    the recorded numbers reproduce.
reptile shuffled (full mode)
    ``ReptileClassifier`` on the same MLP and shuffled tasks: 5 inner SGD
    steps at lr 0.1 on support + query rows, ε = 1 on meta-batches of 16 (a
    constant step: the average of the adapted weights), 10 SGD steps at lr
    0.1 for ``fit``.

Run from the repository root::

    python -m benchmarks.fidelity_tabular --quick      # ~4 min of CPU
    python -m benchmarks.fidelity_tabular              # ~45 min of CPU

Accuracy: mean over test tasks with a 95% interval; ``maml shuffled - best
support`` is the paired difference between MAML (shuffled labels) and the
best support-only baseline on the same tasks (positive: meta-learning
helps); the JSON has the same for plain ``maml``. Meta-training runs 2,000
meta-iterations (500 with ``--quick``); the pretrained network takes as many
Adam steps.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from torch import nn

from benchmarks._harness import set_threads
from benchmarks._report import Timer, environment, format_table, write_results
from benchmarks._stats import format_ci, summary
from benchmarks._workloads import DEFAULT_OMNIGLOT_PATH, ShuffledLabels
from sk_meta import MAMLClassifier, ReptileClassifier
from sk_meta.datasets import load_omniglot
from sk_meta.tasks import EpisodeSampler

HIDDEN = (128, 128)


# -- data sets -----------------------------------------------------------------
# A data set is a loader in DATASETS: it takes the parsed arguments and returns
# a dict with X (float32, one row per sample), y (class ids), train and test
# (the meta-training and the held-out class ids), n_way, and optionally
# sweep_train_classes (True: one setting per --n-train-classes, taking the
# first n of ``train``). It raises DatasetUnavailable when its data is missing.
class DatasetUnavailable(Exception):
    """The data set cannot be loaded here (the run skips it)."""


def load_digits_family(args):
    X, y = load_digits(return_X_y=True)
    return dict(X=(X / 16.0).astype(np.float32), y=y, train=np.arange(7),
                test=np.array([7, 8, 9]), n_way=3)


def load_omniglot_family(args):
    if not Path(args.omniglot_path).is_file():
        raise DatasetUnavailable(f"no file at {args.omniglot_path}")
    data = load_omniglot(args.omniglot_path, rotations=(90, 180, 270))
    images = data.data[:, 0]
    pooled = images.reshape(len(images), 14, 2, 14, 2).mean(axis=(2, 4))
    return dict(X=pooled.reshape(len(images), -1).astype(np.float32),
                y=data.target, train=data.train_classes, test=data.test_classes,
                n_way=5)


def make_synthetic_family(n_classes=1000, n_per_class=30, n_latent=8,
                          n_informative=24, n_noise=64, spread=0.5, seed=0):
    """Blobs in a latent space, a shared non-linear map, and noise columns."""
    rng = np.random.default_rng(seed)
    W1 = rng.normal(size=(n_latent, 64)) / np.sqrt(n_latent)
    W2 = rng.normal(size=(64, n_informative)) / np.sqrt(64)
    centres = rng.normal(size=(n_classes, n_latent))
    y = np.repeat(np.arange(n_classes), n_per_class)
    z = centres[y] + spread * rng.normal(size=(len(y), n_latent))
    informative = np.tanh(z @ W1) @ W2
    informative /= informative.std(axis=0)
    X = np.hstack([informative, rng.normal(size=(len(y), n_noise))])
    X = X[:, rng.permutation(X.shape[1])].astype(np.float32)
    return dict(X=X, y=y, train=np.arange(800), test=np.arange(800, 1000),
                n_way=5)


def load_synthetic_family(args):
    return dict(make_synthetic_family(seed=args.seed), sweep_train_classes=True)


DATASETS = {
    "digits": load_digits_family,
    "omniglot": load_omniglot_family,
    "synthetic": load_synthetic_family,
}


# -- the pretrained baseline ---------------------------------------------------------
def pretrain_embedding(X, y, classes, n_steps, seed):
    """Train an MLP on all ``classes`` jointly; return its frozen hidden layers."""
    rows = np.flatnonzero(np.isin(y, classes))
    X_train = torch.from_numpy(X[rows])
    codes = torch.from_numpy(np.searchsorted(np.sort(classes), y[rows]))
    torch.manual_seed(seed)
    layers, width = [], X.shape[1]
    for h in HIDDEN:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    body = nn.Sequential(*layers)
    head = nn.Linear(width, len(classes))
    optimizer = torch.optim.Adam([*body.parameters(), *head.parameters()], lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(n_steps):
        batch = torch.randint(len(rows), (256,), generator=generator)
        loss = nn.functional.cross_entropy(head(body(X_train[batch])), codes[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    body.eval()

    def embed(X_new):
        with torch.no_grad():
            return body(torch.from_numpy(np.asarray(X_new, dtype=np.float32))).numpy()

    return embed


# -- methods -----------------------------------------------------------------------
# Support-only methods: name -> factory(seed) of a scikit-learn classifier,
# fitted on each test task's support set alone.
SUPPORT_ONLY = {
    "logreg": lambda seed: LogisticRegression(max_iter=1000),
    "1-nn": lambda seed: KNeighborsClassifier(n_neighbors=1),
    "random forest": lambda seed: RandomForestClassifier(
        n_estimators=100, random_state=seed, n_jobs=1),
}


def make_maml(n_meta_iter, seed):
    return MAMLClassifier(hidden_layer_sizes=HIDDEN, inner_lr=0.1, inner_steps=5,
                          meta_batch_size=16, n_meta_iter=n_meta_iter,
                          random_state=seed)


def make_reptile(n_meta_iter, seed):
    return ReptileClassifier(hidden_layer_sizes=HIDDEN, inner_lr=0.1, inner_steps=10,
                             meta_inner_steps=5, meta_batch_size=16, meta_lr=1.0,
                             n_meta_iter=n_meta_iter, random_state=seed)


# Meta-learners: name -> (factory(n_meta_iter, seed), meta-train on tasks
# with shuffled labels?). "maml" always runs: the paired differences use it.
META_LEARNERS = {
    "maml": (make_maml, False),
    "maml shuffled": (make_maml, True),
    "reptile shuffled": (make_reptile, True),
}


def accuracies(fit_predict, tasks):
    return np.array([np.mean(fit_predict(t) == t.y_query) for t in tasks])


def run_setting(data, dataset, k_shot, train_classes, args, timer, baseline_cache):
    """All methods on one (data set, K, meta-training classes) setting."""
    n_way = data["n_way"]
    tasks = list(EpisodeSampler(data["X"], data["y"], n_way, k_shot, 15,
                                classes=data["test"], n_tasks=args.n_test_tasks,
                                random_state=10_000 + args.seed))
    label = f"{dataset} {n_way}-way {k_shot}-shot, {len(train_classes)} train classes"
    results, seconds = {}, {}
    key = (dataset, k_shot)
    if key not in baseline_cache:  # support-only methods ignore the train classes
        cached = {}
        for name in SUPPORT_ONLY:
            start = time.perf_counter()
            acc = accuracies(lambda t, name=name: SUPPORT_ONLY[name](args.seed).fit(
                t.X_support, t.y_support).predict(t.X_query), tasks)
            cached[name] = (acc, time.perf_counter() - start)
        baseline_cache[key] = cached
    for name, (acc, sec) in baseline_cache[key].items():
        results[name], seconds[name] = acc, sec

    start = time.perf_counter()
    embed = pretrain_embedding(data["X"], data["y"], train_classes,
                               args.n_meta_iter, args.seed)

    def head_fit_predict(t):
        head = LogisticRegression(max_iter=1000).fit(embed(t.X_support), t.y_support)
        return head.predict(embed(t.X_query))

    results["pretrain + head"] = accuracies(head_fit_predict, tasks)
    seconds["pretrain + head"] = time.perf_counter() - start

    meta_tasks = EpisodeSampler(data["X"], data["y"], n_way, k_shot, 10,
                                classes=train_classes, random_state=args.seed)
    for name in args.meta:
        start = time.perf_counter()
        make, shuffled = META_LEARNERS[name]
        tasks_for = ShuffledLabels(meta_tasks, args.seed) if shuffled else meta_tasks
        est = make(args.n_meta_iter, args.seed).meta_fit(tasks_for)
        results[name] = accuracies(
            lambda t: est.fit(t.X_support, t.y_support).predict(t.X_query), tasks)
        seconds[name] = time.perf_counter() - start

    best_support = max(SUPPORT_ONLY, key=lambda n: results[n].mean())
    record = {
        "dataset": dataset, "n_way": n_way, "k_shot": k_shot,
        "n_train_classes": int(len(train_classes)),
        "n_test_classes": int(len(data["test"])), "n_test_tasks": len(tasks),
        "n_meta_iter": args.n_meta_iter,
        "accuracy": {name: summary(acc) for name, acc in results.items()},
        "seconds": seconds, "best_support_only": best_support,
        "maml_minus_best_support": summary(results["maml"] - results[best_support]),
        "maml_minus_pretrain": summary(results["maml"] - results["pretrain + head"]),
    }
    if "maml shuffled" in results:
        record["maml_shuffled_minus_best_support"] = summary(
            results["maml shuffled"] - results[best_support])
        record["maml_shuffled_minus_pretrain"] = summary(
            results["maml shuffled"] - results["pretrain + head"])
    timer.log(label + ": " + ", ".join(
        f"{name} {format_ci(summary(acc), percent=True, digits=1)}"
        for name, acc in results.items()))
    return record


def table(records, methods):
    best_meta = "maml shuffled" if "maml shuffled" in methods else "maml"
    suffix = "" if best_meta == "maml" else "_shuffled"
    header = ["data set", "N-way K-shot", "train classes", *methods,
              f"{best_meta} - best support", f"{best_meta} - pretrain"]
    rows = []
    for r in records:
        best = max(r["accuracy"][m]["mean"] for m in methods)
        cells = []
        for m in methods:
            text = format_ci(r["accuracy"][m], percent=True, digits=1)
            cells.append(f"**{text}**" if r["accuracy"][m]["mean"] == best else text)
        rows.append([r["dataset"], f"{r['n_way']}-way {r['k_shot']}-shot",
                     r["n_train_classes"], *cells,
                     format_ci(r[f"maml{suffix}_minus_best_support"], percent=True,
                               digits=1),
                     format_ci(r[f"maml{suffix}_minus_pretrain"], percent=True,
                               digits=1)])
    return format_table(rows, columns=header)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="digits and synthetic (800 train classes), MAML "
                             "(sorted and shuffled labels), 500 meta-iterations, "
                             "200 test tasks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--datasets", nargs="+", default=None,
                        choices=list(DATASETS))
    parser.add_argument("--k-shot", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--n-train-classes", type=int, nargs="+", default=None,
                        help="synthetic: numbers of meta-training classes")
    parser.add_argument("--meta", nargs="+", default=None,
                        choices=list(META_LEARNERS),
                        help="meta-learners (quote the names with spaces)")
    parser.add_argument("--n-meta-iter", type=int, default=None)
    parser.add_argument("--n-test-tasks", type=int, default=None)
    parser.add_argument("--omniglot-path", default=str(DEFAULT_OMNIGLOT_PATH))
    parser.add_argument("--name", default=None, help="results file name")
    args = parser.parse_args(argv)
    quick = dict(datasets=["digits", "synthetic"], n_train_classes=[800],
                 meta=["maml", "maml shuffled"], n_meta_iter=500, n_test_tasks=200)
    full = dict(datasets=["digits", "omniglot", "synthetic"],
                n_train_classes=[10, 50, 200, 800],
                meta=["maml", "maml shuffled", "reptile shuffled"],
                n_meta_iter=2000, n_test_tasks=600)
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if "maml" not in args.meta:
        args.meta = ["maml", *args.meta]
    mode = "quick" if args.quick else "full"
    name = args.name or f"tabular_{mode}_seed{args.seed}"
    set_threads(1)
    timer = Timer()

    records = []
    for dataset in args.datasets:
        try:
            data = DATASETS[dataset](args)
        except DatasetUnavailable as exc:
            timer.log(f"{dataset}: {exc}, skipped")
            continue
        if data.get("sweep_train_classes"):
            pools = [data["train"][:n] for n in sorted(args.n_train_classes)]
        else:
            pools = [data["train"]]
        cache = {}
        for k_shot in args.k_shot:
            for train_classes in pools:
                records.append(run_setting(data, dataset, k_shot, train_classes,
                                           args, timer, cache))
                write_results(name, {
                    "benchmark": "tabular", "mode": mode, "seed": args.seed,
                    "args": vars(args), "environment": environment(),
                    "records": records,
                })
    methods = [*SUPPORT_ONLY, "pretrain + head", *args.meta]
    print()
    print("Accuracy % on held-out classes (mean ± 95% interval over "
          f"{args.n_test_tasks} test tasks, 15 query rows per class)")
    print()
    print(table(records, methods))
    print(f"\nresults: benchmarks/results/{name}.json, total {timer.elapsed():.0f} s")


if __name__ == "__main__":
    main()
