"""
========================================
Few-shot sine regression: MAML's figure
========================================

The MAML paper's first experiment: every task is a sine curve
``y = A sin(x - phase)`` with a random amplitude and phase, and the model
sees only K = 10 points of a new curve. MAML meta-learns an initialization
from which one or a few gradient steps on those points recover the whole
curve. A network pretrained on all tasks jointly, fine-tuned with the same
steps, cannot: it learns the average curve (about ``-1.6 cos x`` for phases
in [0, pi]), and a few small steps from there barely move toward the task.

This example reproduces the paper's figure (Finn et al. 2017, Fig. 2) with
a short meta-training run (3,000 meta-iterations instead of 70,000); see
``benchmarks/fidelity_sinusoid.py`` for the full protocol and numbers.
"""

# %%
# Meta-training MAML
# ------------------
# The paper's settings: an MLP with two hidden layers of 40 ReLU units, one
# inner SGD step of size 0.01 during meta-training, meta-batches of 25
# tasks and Adam at 1e-3 for the outer update.
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from sk_meta import MAMLRegressor, ReptileRegressor
from sk_meta.tasks import SinusoidTasks

K = 10
N_META_ITER = 3000
train_tasks = SinusoidTasks(k_shot=K, n_query=K, random_state=0)

maml = MAMLRegressor(hidden_layer_sizes=(40, 40), inner_lr=0.01, meta_inner_steps=1,
                     meta_batch_size=25, n_meta_iter=N_META_ITER, random_state=0)
maml.meta_fit(train_tasks)

# %%
# The pretrained baseline
# -----------------------
# One network regressed on all tasks jointly. Reptile with a single inner
# SGD step of size 1 turns ``θ - φ`` into the gradient of each task's loss,
# so with Adam as the outer optimizer it *is* joint training; for fine-tuning
# the inner learning rate is set back to 0.01, as for MAML.
pretrained = ReptileRegressor(hidden_layer_sizes=(40, 40), inner_lr=1.0,
                              meta_inner_steps=1, meta_optimizer="adam",
                              meta_lr=1e-3, meta_batch_size=25,
                              n_meta_iter=N_META_ITER, random_state=0)
pretrained.meta_fit(train_tasks).set_params(inner_lr=0.01)

# %%
# A new curve, ten points
# -----------------------
# ``sample_with_params`` returns the task with its amplitude and phase, to
# draw the true curve. ``module_`` is the meta-learned network itself: its
# output is the prediction *before* adaptation. ``fit`` then takes
# ``inner_steps`` SGD steps on the ten points from a copy of that init.
task, amplitude, phase = SinusoidTasks(k_shot=K, n_query=K).sample_with_params(
    random_state=10)
x = np.linspace(-5, 5, 200, dtype=np.float32).reshape(-1, 1)


def predictions(est):
    with torch.no_grad():
        before = est.module_(torch.from_numpy(x)).numpy().ravel()
    after = {}
    for n_steps in (1, 10):
        est.set_params(inner_steps=n_steps).fit(task.X_support, task.y_support)
        after[n_steps] = est.predict(x)
    return before, after


fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
for ax, est, title in ((axes[0], maml, "MAML"),
                       (axes[1], pretrained, "pretrained, step size 0.01")):
    before, after = predictions(est)
    ax.plot(x, amplitude * np.sin(x.ravel() - phase), color="tab:red",
            label="ground truth")
    ax.plot(x, before, ":", color="tab:green", label="pre-update")
    ax.plot(x, after[1], "--", color="0.4", label="1 grad step")
    ax.plot(x, after[10], "-.", color="black", label="10 grad steps")
    ax.scatter(task.X_support, task.y_support, marker="^", color="tab:purple",
               zorder=3, label=f"{K} points used for the steps")
    ax.set_title(f"{title}, K={K}")
    ax.set_xlabel("x")
    ax.set_ylim(-6, 6)
axes[0].set_ylabel("y")
handles, labels = axes[0].get_legend_handles_labels()
fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=9)
fig.tight_layout(rect=(0, 0.08, 1, 1))
if "__file__" in globals():  # run as a script, not in the documentation
    fig.savefig(Path(__file__).resolve().parent / "plot_sinusoid.png", dpi=100)

# %%
# How good is the fit on average?
# -------------------------------
# Mean squared error on 100 points of each of 100 new curves.
test_tasks = list(SinusoidTasks(k_shot=K, n_query=100, n_tasks=100,
                                random_state=1))
for name, est in (("MAML", maml), ("pretrained", pretrained)):
    errors = []
    for n_steps in (1, 10):
        est.set_params(inner_steps=n_steps)
        mse = np.mean([np.mean((est.fit(t.X_support, t.y_support)
                                .predict(t.X_query) - t.y_query) ** 2)
                       for t in test_tasks])
        errors.append(f"{n_steps} step{'s' * (n_steps > 1)}: {mse:.2f}")
    print(f"{name:>10}: MSE after " + ", ".join(errors))
