"""
=================================================
Few-shot tabular data: when does MAML pay off?
=================================================

Meta-learning only helps when the meta-training classes teach something
that transfers to the new classes and that a handful of rows cannot reveal
on their own. This example compares MAML with two models fitted on the
support set alone (logistic regression and 1-nearest-neighbour) on held-out
classes of two data sets, for 1, 2, 5 and 10 examples per class:

* **a rich synthetic family**: 1,000 classes that share one hidden
  structure (blobs in an 8-d latent space seen through a fixed non-linear
  map, plus 64 pure-noise columns). 800 classes for meta-training, 5-way
  tasks on the other 200.
* **digits**: scikit-learn's 8x8 digits, meta-training on the digits 0-6,
  3-way tasks on 7, 8 and 9: only seven meta-training classes.

MAML is meta-trained once per data set, on 5-shot tasks whose labels are
shuffled (see below), then adapted with 1 to 10 shots.
``benchmarks/fidelity_tabular.py`` runs the full comparison (more tasks,
per-shot meta-training, Reptile, random forests and a pretrained-network
baseline).
"""

# %%
# Two task families
# -----------------
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from threadpoolctl import threadpool_limits

from sk_meta import MAMLClassifier
from sk_meta.model_selection import evaluate_tasks
from sk_meta.tasks import EpisodeSampler

threadpool_limits(1)  # tiny fits: one BLAS thread is the fastest


def make_family(n_classes=1000, n_per_class=30, n_latent=8, n_noise=64, seed=0):
    rng = np.random.default_rng(seed)
    W1 = rng.normal(size=(n_latent, 64)) / np.sqrt(n_latent)
    W2 = rng.normal(size=(64, 24)) / 8.0
    y = np.repeat(np.arange(n_classes), n_per_class)
    z = rng.normal(size=(n_classes, n_latent))[y]
    z += 0.5 * rng.normal(size=z.shape)
    informative = np.tanh(z @ W1) @ W2
    informative /= informative.std(axis=0)
    X = np.hstack([informative, rng.normal(size=(len(y), n_noise))])
    return X[:, rng.permutation(X.shape[1])].astype(np.float32), y


X_syn, y_syn = make_family()
X_dig, y_dig = load_digits(return_X_y=True)
families = {
    "synthetic family, 800 meta-training classes, 5-way":
        (X_syn, y_syn, np.arange(800), np.arange(800, 1000), 5),
    "digits, 7 meta-training classes, 3-way":
        ((X_dig / 16).astype(np.float32), y_dig, np.arange(7), np.array([7, 8, 9]), 3),
}

# %%
# Shuffled labels
# ---------------
# By default ``EpisodeSampler`` keeps the original labels, and the estimators
# map a task's labels to output units in sorted order: with few
# meta-training classes, a class then lands on the same output unit in most
# tasks and the init memorises it instead of learning to adapt.
# ``shuffle_labels=True`` relabels every episode ``0 .. n_way - 1`` in a
# random order, as the MAML and Reptile papers build meta-training tasks.
# %%
# Meta-training, then accuracy against the number of shots
# --------------------------------------------------------
SHOTS = (1, 2, 5, 10)
N_TASKS = 100
baselines = {
    "logistic regression": LogisticRegression(max_iter=1000),
    "1-NN": KNeighborsClassifier(n_neighbors=1),
}
results = {}
for title, (X, y, train_classes, test_classes, n_way) in families.items():
    maml = MAMLClassifier(hidden_layer_sizes=(64, 64), inner_lr=0.1, inner_steps=5,
                          meta_batch_size=16, n_meta_iter=500, random_state=0)
    maml.meta_fit(EpisodeSampler(X, y, n_way, 5, 10, classes=train_classes,
                                 shuffle_labels=True, random_state=0))
    curves = {name: [] for name in ("MAMLClassifier", *baselines)}
    for k_shot in SHOTS:
        tasks = EpisodeSampler(X, y, n_way, k_shot, 15, classes=test_classes,
                               n_tasks=N_TASKS, random_state=1)
        # every model on the same tasks: MAML adapted from its init, the
        # baselines fitted on each support set alone
        for name, scores in evaluate_tasks(maml, tasks, baselines=baselines).items():
            curves[name].append((scores.mean, scores.high - scores.mean))
    results[title] = curves
    print(title)
    for name, curve in curves.items():
        print(f"  {name:>20}: " + "  ".join(
            f"{k}-shot {100 * m:.1f}±{100 * h:.1f}" for k, (m, h) in zip(SHOTS, curve)))

# %%
# The picture
# -----------
# On the synthetic family the meta-learned init has learned something about
# which columns carry signal: it beats the models that start from nothing
# at every number of shots, by less as the support set grows (about 27
# points over logistic regression at 1 shot, 6 at 10). Even this short run (500
# meta-iterations) reaches about 90% at 1 shot, against about 62% for
# logistic regression. On digits, seven meta-training classes are too few to
# learn features that transfer, and the support-only models win at every
# number of shots.
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for ax, (title, curves) in zip(axes, results.items()):
    for (name, curve), marker in zip(curves.items(), "os^"):
        mean, half = (100 * np.array(v) for v in zip(*curve))
        ax.errorbar(SHOTS, mean, yerr=half, marker=marker, capsize=3, label=name)
    ax.set_xscale("log")
    ax.set_xticks(SHOTS, [str(k) for k in SHOTS])
    ax.set_xlabel("shots per class (support rows)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
axes[0].set_ylabel(f"query accuracy % ({N_TASKS} held-out tasks, 95% CI)")
axes[0].legend()
fig.tight_layout()
if "__file__" in globals():  # run as a script, not in the documentation
    fig.savefig(Path(__file__).resolve().parent / "plot_few_shot_tabular.png", dpi=100)
