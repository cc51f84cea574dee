"""GroupTaskSampler: tasks made of the rows of one group each."""

import pickle

import numpy as np
import pandas as pd
import pytest

from sk_meta.tasks import GroupTaskSampler, split_classes

N_GROUPS, ROWS = 12, 15


def _table(seed=0):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(N_GROUPS), ROWS)
    X = np.column_stack([groups, np.tile(np.arange(ROWS), N_GROUPS)]).astype(float)
    y = rng.normal(size=len(groups))
    return X, y, groups


def test_each_task_is_rows_of_one_group_split_into_disjoint_sets():
    X, y, groups = _table()
    sampler = GroupTaskSampler(X, y, groups, k_shot=4, n_query=6, n_tasks=50,
                               random_state=0)
    seen = set()
    for task in sampler:
        assert task.X_support.shape == (4, 2) and task.X_query.shape == (6, 2)
        rows = np.concatenate([task.X_support, task.X_query])
        assert len(np.unique(rows[:, 0])) == 1  # one group (column 0)
        assert len({tuple(r) for r in rows}) == 10  # no row twice
        # targets travel with their rows
        index = (rows[:, 0] * ROWS + rows[:, 1]).astype(int)
        np.testing.assert_array_equal(np.concatenate([task.y_support, task.y_query]),
                                      y[index])
        seen.add(rows[0, 0])
    assert len(seen) > N_GROUPS // 2  # groups drawn at random
    assert len(sampler) == 50


def test_group_labels_restrict_the_groups_drawn():
    X, y, groups = _table()
    train, _, test = split_classes(groups, train_size=8, random_state=0)
    sampler = GroupTaskSampler(X, y, groups, 3, 3, group_labels=train, n_tasks=40,
                               random_state=1)
    drawn = {task.X_support[0, 0] for task in sampler}
    assert drawn <= set(train.tolist())
    assert not drawn & set(test.tolist())
    np.testing.assert_array_equal(sampler.group_labels_drawn, np.sort(train))
    assert sampler.n_groups == 8


def test_an_int_seed_replays_the_tasks_and_sample_follows_it():
    X, y, groups = _table()
    a = GroupTaskSampler(X, y, groups, 2, 3, n_tasks=5, random_state=3)
    b = GroupTaskSampler(X, y, groups, 2, 3, n_tasks=5, random_state=3)
    for ta, tb in zip(a, b, strict=True):
        np.testing.assert_array_equal(ta.X_query, tb.X_query)
    first, again = a.sample(), b.sample()
    np.testing.assert_array_equal(first.X_support, again.X_support)
    copy = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(copy.sample().X_query, a.sample().X_query)


def test_dataframes_and_multi_output_targets_keep_their_kind():
    X, y, groups = _table()
    frame = pd.DataFrame(X, columns=["group", "day"])
    targets = pd.DataFrame({"a": y, "b": -y})
    task = GroupTaskSampler(frame, targets, groups, 2, 2, random_state=0).sample()
    assert isinstance(task.X_support, pd.DataFrame)
    assert list(task.X_support.columns) == ["group", "day"]
    assert task.y_query.shape == (2, 2)
    np.testing.assert_array_equal(task.y_query["b"], -task.y_query["a"])


@pytest.mark.parametrize("kwargs, message", [
    ({"k_shot": 10, "n_query": 6}, r"needs k_shot \+ n_query = 16 rows, but 12 of "
                                    r"the 12 groups"),
    ({"group_labels": [0, 99]}, r"group_labels not found in groups: \[99\]"),
    ({"group_labels": []}, "group_labels is empty"),
    ({"k_shot": 0}, "k_shot must be a positive integer"),
])
def test_impossible_settings_are_refused_at_construction(kwargs, message):
    X, y, groups = _table()
    settings = {"k_shot": 2, "n_query": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        GroupTaskSampler(X, y, groups, **settings)


def test_lengths_and_missing_groups_are_refused():
    X, y, groups = _table()
    with pytest.raises(ValueError, match="same length"):
        GroupTaskSampler(X, y, groups[:-1], 2, 2)
    with pytest.raises(ValueError, match="groups contains 15 missing"):
        GroupTaskSampler(X, y, np.where(groups == 3, np.nan, groups), 2, 2)


def test_a_regressor_meta_learns_the_group_level_from_its_tasks():
    """Per-group levels: after meta-training on some stores, a regressor
    adapted to a new store's five rows predicts its other rows better than
    the meta-learned init alone (which cannot know the level)."""
    from sk_meta import MAMLRegressor

    rng = np.random.default_rng(0)
    stores = np.repeat(np.arange(40), 30)
    price = rng.uniform(-1, 1, (len(stores), 1)).astype(np.float32)
    sales = (rng.normal(0, 1, 40)[stores] - price[:, 0]).astype(np.float32)
    train, _, test = split_classes(stores, train_size=30, random_state=0)
    tasks = GroupTaskSampler(price, sales, stores, 5, 20, group_labels=train,
                             random_state=0)
    reg = MAMLRegressor(hidden_layer_sizes=(16,), n_meta_iter=150,
                        random_state=0).meta_fit(tasks)
    new = GroupTaskSampler(price, sales, stores, 5, 20, group_labels=test,
                           n_tasks=20, random_state=1)
    new = list(new)

    def mean_score(estimator):
        return np.mean([estimator.fit(t.X_support, t.y_support).score(
            t.X_query, t.y_query) for t in new])

    adapted = mean_score(reg)
    init_alone = mean_score(reg.set_params(inner_lr=1e-9))  # steps that move nothing
    assert adapted > 0.3 and adapted > init_alone + 1.0
