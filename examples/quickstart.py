"""
==========
Quickstart
==========

Meta-train MAML on few-shot tasks drawn from seven digit classes, then learn
the three unseen digits from five examples each.
"""

# %%
# Few-shot episodes from a labelled table
# ---------------------------------------
# :class:`~sk_meta.tasks.EpisodeSampler` draws N-way K-shot tasks from
# ``(X, y)``. Keeping the meta-training and meta-test classes apart measures
# what matters: how fast the model learns classes it has never seen. With
# ``shuffle_labels=True`` each training task labels its classes 0, 1, 2 in a
# random order, as in the MAML paper: with only seven classes, the network
# would otherwise memorise them instead of learning to adapt.
from sklearn.datasets import load_digits

from sk_meta import MAMLClassifier
from sk_meta.tasks import EpisodeSampler

X, y = load_digits(return_X_y=True)
X = X / 16.0
train_tasks = EpisodeSampler(X, y, n_way=3, k_shot=5, n_query=10,
                             classes=range(7), shuffle_labels=True,
                             random_state=0)

# %%
# Meta-training
# -------------
clf = MAMLClassifier(hidden_layer_sizes=(64, 64), inner_lr=0.1, inner_steps=5,
                     meta_batch_size=16, n_meta_iter=300, random_state=0)
clf.meta_fit(train_tasks)
print(f"meta-loss: {clf.meta_loss_curve_[0]:.3f} -> {clf.meta_loss_curve_[-1]:.3f}")

# %%
# Learning new classes from five examples each
# --------------------------------------------
# ``fit`` takes ``inner_steps`` gradient steps from the meta-learned init;
# ``score`` evaluates the adapted model on the task's query set.
test_tasks = EpisodeSampler(X, y, n_way=3, k_shot=5, n_query=10,
                            classes=[7, 8, 9], n_tasks=50, random_state=1)
scores = [clf.fit(t.X_support, t.y_support).score(t.X_query, t.y_query)
          for t in test_tasks]
print(f"accuracy on 50 tasks of unseen digits 7-9: {sum(scores) / len(scores):.3f}")

untrained = MAMLClassifier(hidden_layer_sizes=(64, 64), inner_lr=0.1,
                           inner_steps=5, random_state=0)
baseline = [untrained.fit(t.X_support, t.y_support).score(t.X_query, t.y_query)
            for t in test_tasks]
print(f"same steps from a random init: {sum(baseline) / len(baseline):.3f}")

# %%
# Seven meta-training classes are few: a logistic regression fitted on each
# support set alone does better on these digits. README.rst's Results section
# shows where meta-learning pays off (many related meta-training classes).
