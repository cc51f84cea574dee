from sklearn.datasets import load_digits

from sk_meta import MAMLClassifier
from sk_meta.tasks import EpisodeSampler, split_classes

X, y = load_digits(return_X_y=True)
X = (X / 16).astype("float32")
# 10 digits: 5 to meta-train on, 2 to validate on, 3 to test on
train_classes, val_classes, test_classes = split_classes(
    y, train_size=5, val_size=2, random_state=0)
train_tasks = EpisodeSampler(X, y, n_way=3, k_shot=5, n_query=10,
                             classes=train_classes, shuffle_labels=True,
                             random_state=0)
val_tasks = EpisodeSampler(X, y, n_way=2, k_shot=5, n_query=10,
                           classes=val_classes, n_tasks=50, random_state=2)
test_tasks = EpisodeSampler(X, y, n_way=3, k_shot=5, n_query=10,
                            classes=test_classes, n_tasks=100, random_state=1)
clf = MAMLClassifier(n_meta_iter=300, random_state=0).meta_fit(train_tasks)
task = test_tasks.sample()
X_support, y_support, X_query, y_query = task
