"""Tests of EpisodeSampler and split_classes."""

import collections.abc

import numpy as np
import pytest

from sk_meta.tasks import EpisodeSampler, Task, split_classes

# 6 classes of unequal sizes; the single feature is the row index, so a row
# can be traced back to the dataset.
CLASS_SIZES = {0: 30, 1: 25, 2: 40, 3: 21, 4: 30, 5: 50}
Y = np.repeat(list(CLASS_SIZES), list(CLASS_SIZES.values()))
X = np.arange(len(Y), dtype=np.float64)[:, None]


def episodes(sampler, n):
    iterator = iter(sampler)
    return [next(iterator) for _ in range(n)]


def assert_same_episodes(first, second):
    assert len(first) == len(second)
    for task_a, task_b in zip(first, second):
        for array_a, array_b in zip(task_a, task_b):
            np.testing.assert_array_equal(array_a, array_b)


def test_episode_shapes_and_types():
    sampler = EpisodeSampler(X, Y, n_way=3, k_shot=2, n_query=4, random_state=0)
    task = next(iter(sampler))
    assert isinstance(task, Task)
    assert task.X_support.shape == (6, 1)
    assert task.y_support.shape == (6,)
    assert task.X_query.shape == (12, 1)
    assert task.y_query.shape == (12,)
    assert (sampler.n_way, sampler.k_shot, sampler.n_query) == (3, 2, 4)


def test_image_shaped_inputs_keep_their_trailing_axes():
    images = np.zeros((len(Y), 1, 28, 28), dtype=np.float32)
    task = EpisodeSampler(images, Y, 5, 1, 3, random_state=0).sample(0)
    assert task.X_support.shape == (5, 1, 28, 28)
    assert task.X_query.shape == (15, 1, 28, 28)
    assert task.X_query.dtype == np.float32


def test_rows_match_labels_and_support_query_are_disjoint():
    for task in episodes(EpisodeSampler(X, Y, 6, 5, 15, random_state=1), 20):
        support_rows = task.X_support[:, 0].astype(int)
        query_rows = task.X_query[:, 0].astype(int)
        np.testing.assert_array_equal(Y[support_rows], task.y_support)
        np.testing.assert_array_equal(Y[query_rows], task.y_query)
        all_rows = np.concatenate([support_rows, query_rows])
        assert len(np.unique(all_rows)) == len(all_rows)


def test_exact_counts_per_class_and_distinct_classes():
    for task in episodes(EpisodeSampler(X, Y, 4, 3, 5, random_state=2), 20):
        support_classes, support_counts = np.unique(task.y_support, return_counts=True)
        query_classes, query_counts = np.unique(task.y_query, return_counts=True)
        assert len(support_classes) == 4
        np.testing.assert_array_equal(support_classes, query_classes)
        assert (support_counts == 3).all()
        assert (query_counts == 5).all()


def test_all_classes_and_rows_get_drawn():
    seen_classes, seen_rows = set(), set()
    for task in episodes(EpisodeSampler(X, Y, 2, 1, 1, random_state=3), 2000):
        seen_classes.update(task.y_support.tolist())
        seen_rows.update(task.X_query[:, 0].astype(int).tolist())
    assert seen_classes == set(CLASS_SIZES)
    assert seen_rows == set(range(len(Y)))


def test_rows_are_shuffled_within_support_and_query():
    def grouped_by_class(labels):
        # Labels in contiguous runs, one run per class.
        changes = np.count_nonzero(labels[1:] != labels[:-1])
        return changes == len(np.unique(labels)) - 1

    tasks = episodes(EpisodeSampler(X, Y, 3, 4, 4, random_state=4), 10)
    assert not all(grouped_by_class(task.y_support) for task in tasks)
    assert not all(grouped_by_class(task.y_query) for task in tasks)


def test_classes_restricts_the_pool():
    pool = [1, 3, 5]
    sampler = EpisodeSampler(X, Y, 2, 2, 2, classes=pool, random_state=5)
    for task in episodes(sampler, 50):
        assert set(task.y_support) <= set(pool)
        assert set(task.y_query) <= set(pool)
    np.testing.assert_array_equal(sampler.class_labels, pool)
    assert sampler.n_classes == 3


def test_string_labels_are_returned_unchanged():
    names = np.array(["ant", "bee", "cat", "dog", "eel", "fox"])
    y_names = names[Y]
    sampler = EpisodeSampler(X, y_names, 3, 2, 2, random_state=6)
    for task in episodes(sampler, 10):
        assert task.y_support.dtype == y_names.dtype
        assert set(task.y_support) <= set(names)
        np.testing.assert_array_equal(
            y_names[task.X_query[:, 0].astype(int)], task.y_query
        )


def test_list_inputs_are_accepted():
    sampler = EpisodeSampler(X.tolist(), Y.tolist(), 2, 1, 1, random_state=0)
    task = sampler.sample(0)
    assert task.X_support.shape == (2, 1)


def test_same_seed_gives_same_episodes_on_every_iteration():
    sampler = EpisodeSampler(X, Y, 3, 2, 3, random_state=7)
    assert_same_episodes(episodes(sampler, 5), episodes(sampler, 5))
    twin = EpisodeSampler(X, Y, 3, 2, 3, random_state=7)
    assert_same_episodes(episodes(sampler, 5), episodes(twin, 5))


def test_different_seeds_give_different_episodes():
    first = episodes(EpisodeSampler(X, Y, 3, 2, 3, random_state=0), 3)
    second = episodes(EpisodeSampler(X, Y, 3, 2, 3, random_state=1), 3)
    assert any(not np.array_equal(a.X_query, b.X_query) for a, b in zip(first, second))


def test_generator_random_state_is_shared_and_advances():
    sampler = EpisodeSampler(X, Y, 3, 2, 3, random_state=np.random.default_rng(0))
    first, second = episodes(sampler, 3), episodes(sampler, 3)
    assert any(not np.array_equal(a.X_query, b.X_query) for a, b in zip(first, second))
    replay = EpisodeSampler(X, Y, 3, 2, 3, random_state=np.random.default_rng(0))
    assert_same_episodes(first, episodes(replay, 3))


def test_random_state_instance_is_reproducible_from_its_seed():
    def first_episodes():
        legacy = np.random.RandomState(0)
        return episodes(EpisodeSampler(X, Y, 3, 2, 3, random_state=legacy), 3)

    assert_same_episodes(first_episodes(), first_episodes())


def test_n_tasks_caps_iteration_and_sets_len():
    sampler = EpisodeSampler(X, Y, 2, 1, 1, n_tasks=7, random_state=0)
    assert len(sampler) == 7
    assert len(list(sampler)) == 7
    assert len(list(sampler)) == 7


def test_endless_sampler_has_no_len_and_is_not_a_sequence():
    sampler = EpisodeSampler(X, Y, 2, 1, 1)
    with pytest.raises(TypeError, match="endless"):
        len(sampler)
    assert len(episodes(sampler, 500)) == 500
    assert not isinstance(sampler, collections.abc.Sequence)
    assert not hasattr(sampler, "__getitem__")
    assert isinstance(sampler, collections.abc.Iterable)


def test_inputs_are_neither_copied_nor_mutated():
    X_in, y_in = X.copy(), Y.copy()
    sampler = EpisodeSampler(X_in, y_in, 3, 2, 3, random_state=0)
    assert sampler.X is X_in
    assert sampler.y is y_in
    for task in episodes(sampler, 20):
        task.X_support[:] = -1  # writing to an episode must not reach X
    np.testing.assert_array_equal(X_in, X)
    np.testing.assert_array_equal(y_in, Y)


def test_repr_shows_settings_not_data():
    text = repr(EpisodeSampler(X, Y, 3, 2, 3, n_tasks=4, random_state=0))
    assert text.startswith("EpisodeSampler(")
    assert "196 samples, 6 classes" in text
    assert "n_way=3, k_shot=2, n_query=3, n_tasks=4, random_state=0" in text


@pytest.mark.parametrize("name", ["n_way", "k_shot", "n_query"])
@pytest.mark.parametrize("bad_value", [0, -1, 2.0, True])
def test_sizes_must_be_positive_integers(name, bad_value):
    sizes = {"n_way": 2, "k_shot": 1, "n_query": 1, name: bad_value}
    with pytest.raises(ValueError, match=f"{name} must be a positive integer"):
        EpisodeSampler(X, Y, **sizes)


def test_n_tasks_must_be_positive():
    with pytest.raises(ValueError, match="n_tasks must be a positive integer"):
        EpisodeSampler(X, Y, 2, 1, 1, n_tasks=0)


def test_more_ways_than_classes_is_refused():
    with pytest.raises(ValueError, match="n_way=7 is more than the 6 eligible"):
        EpisodeSampler(X, Y, 7, 1, 1)
    with pytest.raises(ValueError, match="n_way=3 is more than the 2 eligible"):
        EpisodeSampler(X, Y, 3, 1, 1, classes=[0, 1])


def test_class_too_small_is_named_with_its_count():
    # Class 3 has 21 rows; 10 + 12 = 22 are needed.
    with pytest.raises(
        ValueError, match=r"k_shot \+ n_query = 22 rows, but class 3 has 21 rows"
    ):
        EpisodeSampler(X, Y, 2, 10, 12)
    # Restricting to classes that are large enough makes it possible.
    EpisodeSampler(X, Y, 2, 10, 12, classes=[2, 5])


def test_unknown_classes_are_named():
    with pytest.raises(ValueError, match=r"classes not found in y: \[7, 9\]"):
        EpisodeSampler(X, Y, 2, 1, 1, classes=[0, 7, 9])
    y_names = np.array(["ant", "bee", "cat", "dog", "eel", "fox"])[Y]
    with pytest.raises(ValueError, match=r"classes not found in y: \['yak'\]"):
        EpisodeSampler(X, y_names, 2, 1, 1, classes=["ant", "yak"])
    with pytest.raises(ValueError, match="class 'dog' has 21 rows"):
        EpisodeSampler(X, y_names, 2, 10, 12)


def test_inconsistent_or_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="same length, got 196 rows in X and 195"):
        EpisodeSampler(X, Y[:-1], 2, 1, 1)
    with pytest.raises(ValueError, match=r"y must be 1-D, got an array of shape"):
        EpisodeSampler(X, Y[:, None], 2, 1, 1)


def test_bad_random_state_is_refused_at_construction():
    with pytest.raises(TypeError, match="random_state must be None, an int"):
        EpisodeSampler(X, Y, 2, 1, 1, random_state="seed")


def test_split_classes_is_a_disjoint_cover_and_sorted():
    y = np.repeat(np.arange(20), 2)
    train, val, test = split_classes(y, train_size=12, val_size=3, random_state=0)
    assert (len(train), len(val), len(test)) == (12, 3, 5)
    union = np.concatenate([train, val, test])
    assert len(np.unique(union)) == 20
    np.testing.assert_array_equal(np.sort(union), np.arange(20))
    for pool in (train, val, test):
        np.testing.assert_array_equal(pool, np.sort(pool))


def test_split_classes_is_reproducible_and_depends_on_seed():
    labels = np.arange(50)
    first = split_classes(labels, train_size=30, random_state=0)
    again = split_classes(labels, train_size=30, random_state=0)
    other = split_classes(labels, train_size=30, random_state=1)
    for pool_a, pool_b in zip(first, again):
        np.testing.assert_array_equal(pool_a, pool_b)
    assert not np.array_equal(first[0], other[0])


def test_split_classes_fractions_and_explicit_test_size():
    labels = np.array([f"c{i:02d}" for i in range(10)])
    train, val, test = split_classes(
        labels, train_size=0.55, val_size=0.15, test_size=0.25, random_state=0
    )
    # Train and val round down, test rounds up; one class is left out.
    assert (len(train), len(val), len(test)) == (5, 1, 3)
    assert train.dtype == labels.dtype
    assert not set(train) & set(test)


@pytest.mark.parametrize(
    "sizes, message",
    [
        ({"train_size": 8, "val_size": 3}, r"ask for 8 \+ 3 \+ 0 classes, but y has"),
        ({"train_size": 6, "test_size": 5}, "only 10 distinct classes"),
        ({"train_size": 0.05}, "gives no meta-training class out of 10"),
        ({"train_size": 1.5}, r"train_size as a fraction must be in \[0, 1\)"),
        ({"train_size": -2}, "train_size must be non-negative"),
        ({"train_size": 2, "val_size": "3"}, "val_size must be an int"),
    ],
)
def test_split_classes_refuses_sizes_that_do_not_fit(sizes, message):
    with pytest.raises(ValueError, match=message):
        split_classes(np.arange(10), **sizes)


def test_shuffle_labels_assigns_0_to_n_way_in_a_random_order():
    y = np.repeat(np.arange(12) * 10, 8)
    X = np.arange(len(y), dtype=float)[:, None]  # row index as the feature
    plain = EpisodeSampler(X, y, 4, 2, 3, random_state=5)
    shuffled = EpisodeSampler(X, y, 4, 2, 3, random_state=5, shuffle_labels=True)
    assignments = set()
    for seed in range(20):
        original, task = plain.sample(seed), shuffled.sample(seed)
        # the same rows, relabelled
        np.testing.assert_array_equal(task.X_support, original.X_support)
        np.testing.assert_array_equal(task.X_query, original.X_query)
        assert sorted(np.unique(task.y_support)) == [0, 1, 2, 3]
        assert np.bincount(task.y_support).tolist() == [2] * 4
        assert np.bincount(task.y_query).tolist() == [3] * 4
        mapping = {}
        for old, new in zip(np.concatenate([original.y_support, original.y_query]),
                            np.concatenate([task.y_support, task.y_query])):
            assert mapping.setdefault(old, new) == new  # one label per class
        assignments.add(tuple(new for _, new in sorted(mapping.items())))
    assert len(assignments) > 5  # not the sorted order every time
