"""Tests of class_splits: repeated random splits of few classes."""

import numpy as np
import pytest

from sk_meta.tasks import class_splits, split_classes

Y = np.repeat(np.arange(12), 5)


def test_splits_are_disjoint_pools_of_the_asked_sizes_and_all_distinct():
    splits = class_splits(Y, n_splits=8, train_size=6, val_size=2, random_state=0)
    assert len(splits) == 8
    keys = set()
    for train, val, test in splits:
        assert (len(train), len(val), len(test)) == (6, 2, 4)
        pools = np.concatenate([train, val, test])
        assert len(np.unique(pools)) == 12  # disjoint, covering every class
        for pool in (train, val, test):
            np.testing.assert_array_equal(pool, np.sort(pool))
        keys.add((tuple(train), tuple(val), tuple(test)))
    assert len(keys) == 8
    # over several splits many more classes get tested than in one split
    tested = set(np.concatenate([test for _, _, test in splits]).tolist())
    assert len(tested) >= 10


def test_same_seed_same_splits_other_seed_other_splits():
    first = class_splits(Y, 4, train_size=0.5, random_state=3)
    again = class_splits(Y, 4, train_size=0.5, random_state=3)
    other = class_splits(Y, 4, train_size=0.5, random_state=4)
    for a, b in zip(first, again):
        for pool_a, pool_b in zip(a, b):
            np.testing.assert_array_equal(pool_a, pool_b)
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, other))


def test_every_possible_split_when_asked_for_all_of_them():
    # 5 classes, 3 for training and 2 for testing: C(5, 3) = 10 splits
    splits = class_splits(np.arange(5), 10, train_size=3, random_state=0)
    assert len({tuple(train) for train, _, _ in splits}) == 10


def test_too_many_splits_and_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="allow only 10 distinct splits"):
        class_splits(np.arange(5), 11, train_size=3)
    with pytest.raises(ValueError, match="n_splits must be a positive integer"):
        class_splits(Y, 0, train_size=3)
    with pytest.raises(ValueError, match="y has only 12 distinct classes"):
        class_splits(Y, 3, train_size=10, test_size=5)


def test_a_split_is_what_split_classes_gives_for_its_sizes():
    train, val, test = class_splits(Y, 1, train_size=7, test_size=3,
                                    random_state=0)[0]
    assert (len(train), len(val), len(test)) == tuple(
        len(pool) for pool in split_classes(Y, train_size=7, test_size=3))
