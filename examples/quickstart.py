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
# The defaults (a prototype head, 5 inner steps in meta-training and 20 in
# ``fit``, ...) were chosen on few-shot tables; ``n_meta_iter`` sets the
# budget. The network is ``hidden_layer_sizes="auto"``: with 10
# meta-training classes or more, an MLP with two hidden layers of 128
# (Reptile pretrains it on all the classes instead of meta-training it).
# With fewer, as here, ``meta_fit`` first tries three networks on three
# folds of the classes: an MLP with two hidden layers of 64 meta-trained, a
# model without hidden layers, and that MLP pretrained to tell all the
# fold's classes apart at once. It scores
# them on the classes each fold held out, and trains the meta-trained MLP
# on all seven unless another scores more than 0.01 above it. Where the
# folds keep an MLP, MAML and FOMAML use both MLPs, meta-trained and
# pretrained, and average their predicted probabilities; where the model
# without hidden layers wins (these pixel digits), it alone.
clf = MAMLClassifier(n_meta_iter=300, random_state=0)
clf.meta_fit(train_tasks)
search = clf.hidden_layer_sizes_search_
mlp, linear, pretrained = search["scores"]
print(f"held-out classes: MLP {mlp:.3f}, no hidden layer {linear:.3f}, "
      f"pretrained MLP {pretrained:.3f}; chosen: "
      f"{search['candidates'][search['chosen']]}")

# %%
# Learning new classes from five examples each
# --------------------------------------------
# ``fit`` takes ``inner_steps`` gradient steps from the meta-learned init;
# ``score`` evaluates the adapted model on the task's query set.
test_tasks = EpisodeSampler(X, y, n_way=3, k_shot=5, n_query=10,
                            classes=[7, 8, 9], n_tasks=50, random_state=1)
task = next(iter(test_tasks))
clf.fit(task.X_support, task.y_support)
print(f"first test task: accuracy {clf.score(task.X_query, task.y_query):.2f}")

# %%
# Against models that start from nothing
# --------------------------------------
# :func:`~sk_meta.model_selection.evaluate_tasks` adapts the meta-learned
# model to each of the 50 test tasks and fits each baseline on the same
# support sets from scratch: the MLP and steps from a random init, and a
# logistic regression. It reports the mean query accuracy over the
# tasks with its 95 % interval.
from sklearn.linear_model import LogisticRegression

from sk_meta.model_selection import evaluate_tasks

result = evaluate_tasks(clf, test_tasks, baselines={
    "MLP, random init": MAMLClassifier(random_state=0),
    "logistic regression": LogisticRegression(max_iter=1000),
})
print(result)

# %%
# On these digits the held-out classes chose the model without hidden
# layers: the raw pixels already separate new digits, and features learned
# on seven classes separate them less well. That model is a logistic
# regression on the raw features whose output layer starts from the class
# means of each support set (``head_init="prototype"``, scaled by
# ``prototype_scale``); its 20 steps reach about what a logistic regression
# fitted on each support set reaches, far above the MLP from a random
# init. Meta-learning pays off with many related meta-training classes
# (where ``"auto"`` is the MLP); the documentation's "Evaluating on new
# tasks" and "When not to use it" pages say how to check which case yours
# is.
