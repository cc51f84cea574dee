"""
===================================================
Tuning the adaptation with a grid search over tasks
===================================================

After meta-training, two hyperparameters still decide how well the model
learns a new task: the step size ``inner_lr`` and the number of steps
``inner_steps`` that ``fit`` takes on the support set. Neither changes the
meta-learned initialization, so they can be tuned afterwards on held-out
*meta-validation* tasks, with scikit-learn's own ``GridSearchCV``:
:func:`sk_meta.model_selection.tasks_to_cv` turns each task into one split
whose training part is its support set and whose test part is its query
set. The chosen values are then checked once on *meta-test* tasks from yet
other classes.
"""

# %%
# A family of classification tasks with 300 classes
# -------------------------------------------------
# ``make_classification`` gives 300 classes around the vertices of a
# hypercube in a 10-d informative subspace, with 10 redundant and 20 noise
# columns. The classes are split three ways: 200 for meta-training, 50 for
# meta-validation (the grid search), 50 for the final test.
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from sk_meta import MAMLClassifier
from sk_meta.model_selection import tasks_to_cv
from sk_meta.tasks import EpisodeSampler, split_classes

threadpool_limits(1)  # tiny fits: one BLAS thread is the fastest

X, y = make_classification(n_samples=9000, n_features=40, n_informative=10,
                           n_redundant=10, n_classes=300, n_clusters_per_class=1,
                           class_sep=1.0, random_state=0)
train_classes, val_classes, test_classes = split_classes(
    y, train_size=200, val_size=50, random_state=0)
# scale with statistics of the meta-training rows only
scaler = StandardScaler().fit(X[np.isin(y, train_classes)])
X = scaler.transform(X).astype(np.float32)


def tasks(classes, n_tasks=None, random_state=0):
    return EpisodeSampler(X, y, n_way=5, k_shot=5, n_query=10, classes=classes,
                          n_tasks=n_tasks, random_state=random_state)


# %%
# Meta-training
# -------------
clf = MAMLClassifier(hidden_layer_sizes=(64, 64), inner_lr=0.1, inner_steps=5,
                     meta_batch_size=16, n_meta_iter=500, random_state=0)
clf.meta_fit(tasks(train_classes))

# %%
# Grid search on meta-validation tasks
# ------------------------------------
# Every candidate is a clone of ``clf`` that keeps its meta-learned init
# and adapts it to each support set; the score is the accuracy on the
# matching query set. ``refit=False``: refitting on all rows at once would
# mix the tasks' labels.
#
# The largest step size, 3.0, makes 20 steps diverge on some tasks:
# ``fit`` raises a one-line ``DivergenceError``, and the candidate gets
# ``error_score`` (NaN) for those tasks. scikit-learn would then print the
# whole traceback of every failure in a ``FitFailedWarning``; the two
# filters below keep the output to the list of candidates that diverged.
import warnings

from sklearn.exceptions import FitFailedWarning

X_cv, y_cv, cv = tasks_to_cv(tasks(val_classes, n_tasks=40, random_state=1))
grid = {"inner_lr": [0.01, 0.03, 0.1, 0.3, 1.0, 3.0],
        "inner_steps": [1, 3, 5, 10, 20]}
search = GridSearchCV(clf, grid, cv=cv, refit=False, error_score=np.nan)
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=FitFailedWarning)
    warnings.filterwarnings("ignore", message="One or more of the test scores")
    search.fit(X_cv, y_cv)
diverged = np.isnan(search.cv_results_["mean_test_score"])
for params in np.array(search.cv_results_["params"])[diverged]:
    print("diverged on some tasks:", params)
print("best on meta-validation tasks:", search.best_params_,
      f"accuracy {search.best_score_:.3f}")

# %%
# Final evaluation on meta-test tasks
# -----------------------------------
# The init never changes: ``set_params`` only changes how ``fit`` adapts it.
# :func:`~sk_meta.model_selection.evaluate_tasks` scores the estimator with
# its meta-training values, a clone with the values the search chose (which
# keeps the same init), and a support-only reference, a logistic regression
# fitted on the 25 support rows of each test task alone, on the same 100
# tasks.
from sklearn.base import clone

from sk_meta.model_selection import evaluate_tasks

test_tasks = tasks(test_classes, n_tasks=100, random_state=2)
print(evaluate_tasks(clf, test_tasks, baselines={
    f"grid search {search.best_params_}": clone(clf).set_params(
        **search.best_params_),
    "logistic regression": LogisticRegression(max_iter=1000),
}))

# %%
# Here the 200 meta-training classes share the informative subspace and the
# noise columns, and the meta-learned init beats the logistic regression;
# with few meta-training classes it often does not (see "When not to use it"
# in the user guide).

# %%
# The validation accuracy over the grid
# -------------------------------------
scores = search.cv_results_["mean_test_score"].reshape(
    len(grid["inner_lr"]), len(grid["inner_steps"]))
fig, ax = plt.subplots(figsize=(5.5, 4.2))
image = ax.imshow(scores, cmap="viridis", origin="lower")  # NaN: left blank
ax.set_xticks(range(len(grid["inner_steps"])), grid["inner_steps"])
ax.set_yticks(range(len(grid["inner_lr"])), grid["inner_lr"])
ax.set_xlabel("inner_steps")
ax.set_ylabel("inner_lr")
for (i, j), value in np.ndenumerate(scores):
    ax.text(j, i, "diverged" if np.isnan(value) else f"{value:.2f}", ha="center",
            va="center", fontsize=7 if np.isnan(value) else 8,
            color="white" if value < np.nanmean(scores) else "black")
fig.colorbar(image, label="mean query accuracy")
ax.set_title("5-way 5-shot, 40 meta-validation tasks")
fig.tight_layout()
if "__file__" in globals():  # run as a script, not in the documentation
    fig.savefig(Path(__file__).resolve().parent / "plot_grid_search_over_tasks.png",
                dpi=100)
