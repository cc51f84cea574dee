"""Tests of load_omniglot on a tiny synthetic archive with the real layout."""

from pathlib import Path

import numpy as np
import pytest

from sk_meta.datasets import get_data_home, load_omniglot

N_ALPHABETS, CHARACTERS_PER_ALPHABET, N_DRAWINGS = 3, 4, 20
N_CHARACTERS = N_ALPHABETS * CHARACTERS_PER_ALPHABET
N_IMAGES = N_CHARACTERS * N_DRAWINGS


def make_archive_arrays(seed=0):
    """Arrays with the keys, dtypes and row order of omniglot28.npz."""
    rng = np.random.default_rng(seed)
    character = np.repeat(np.arange(N_CHARACTERS, dtype=np.int32), N_DRAWINGS)
    alphabet = (character // CHARACTERS_PER_ALPHABET).astype(np.int32)
    alphabet_split = np.array([0, 0, 1], dtype=np.uint8)
    return {
        "images": rng.integers(0, 256, (N_IMAGES, 28, 28), dtype=np.uint8),
        "images_nearest": 255 * rng.integers(0, 2, (N_IMAGES, 28, 28), dtype=np.uint8),
        "split": alphabet_split[alphabet],
        "alphabet": alphabet,
        "character": character,
        "character_in_alphabet": (character % CHARACTERS_PER_ALPHABET + 1).astype(
            np.int32
        ),
        "drawing": np.tile(np.arange(1, N_DRAWINGS + 1, dtype=np.uint8), N_CHARACTERS),
        "source_id": (rng.permutation(N_CHARACTERS)[character] + 1).astype(np.int32),
        "alphabet_names": np.array(["Alpha", "Beta", "Gamma"]),
        "alphabet_split": alphabet_split,
        "split_names": np.array(["background", "evaluation"]),
        "description": np.array(["Tiny synthetic Omniglot for tests."]),
    }


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    arrays = make_archive_arrays()
    path = tmp_path_factory.mktemp("omniglot") / "omniglot28.npz"
    np.savez_compressed(path, **arrays)
    return path, arrays


def test_bunch_shapes_dtypes_and_metadata(archive):
    path, arrays = archive
    omniglot = load_omniglot(path, meta_train_size=8)
    assert omniglot.data.shape == (N_IMAGES, 1, 28, 28)
    assert omniglot.data.dtype == np.float32
    assert omniglot.target.dtype == np.int64
    np.testing.assert_array_equal(omniglot.target, arrays["character"])
    for key in ["character", "alphabet", "drawing", "split", "source_id"]:
        np.testing.assert_array_equal(omniglot[key], arrays[key])
    np.testing.assert_array_equal(omniglot.alphabet_names, arrays["alphabet_names"])
    np.testing.assert_array_equal(omniglot.split_names, ["background", "evaluation"])
    assert (omniglot.rotation == 0).all()
    assert "Tiny synthetic Omniglot" in omniglot.DESCR
    assert "target = character + 12 * (rotation // 90)" in omniglot.DESCR


def test_nearest_images_with_maml_polarity_by_default(archive):
    path, arrays = archive
    data = load_omniglot(path, meta_train_size=8).data
    # Ink is 255 in the archive and exactly 1.0 here.
    np.testing.assert_array_equal(data[:, 0] == 1.0, arrays["images_nearest"] == 255)
    np.testing.assert_array_equal(np.unique(data), [0.0, 1.0])


def test_reptile_polarity_inverts_the_images(archive):
    path, arrays = archive
    data = load_omniglot(path, ink=0, meta_train_size=8).data
    np.testing.assert_array_equal(data[:, 0] == 0.0, arrays["images_nearest"] == 255)
    np.testing.assert_array_equal(np.unique(data), [0.0, 1.0])


@pytest.mark.parametrize("ink", [1, 0])
def test_lanczos_images_are_scaled_to_unit_range(archive, ink):
    path, arrays = archive
    data = load_omniglot(path, image="lanczos", ink=ink, meta_train_size=8).data
    scaled = arrays["images"].astype(np.float64) / 255
    expected = scaled if ink == 1 else 1 - scaled
    np.testing.assert_allclose(data[:, 0], expected, atol=1e-7)
    assert data.min() == 0.0 and data.max() == 1.0


def test_meta_split_sizes_disjointness_and_row_labels(archive):
    path, _ = archive
    omniglot = load_omniglot(path, meta_train_size=7, meta_val_size=2)
    train, val, test = (
        omniglot.train_classes,
        omniglot.val_classes,
        omniglot.test_classes,
    )
    assert (len(train), len(val), len(test)) == (7, 2, 3)
    assert len(np.unique(np.concatenate([train, val, test]))) == N_CHARACTERS
    for pool, classes in enumerate([train, val, test]):
        rows = omniglot.meta_split == pool
        np.testing.assert_array_equal(np.unique(omniglot.target[rows]), classes)
    np.testing.assert_array_equal(omniglot.meta_split_names, ["train", "val", "test"])


def test_meta_split_is_reproducible_with_its_seed(archive):
    path, _ = archive
    first = load_omniglot(path, meta_train_size=6, random_state=3)
    again = load_omniglot(path, meta_train_size=6, random_state=3)
    np.testing.assert_array_equal(first.train_classes, again.train_classes)
    np.testing.assert_array_equal(first.meta_split, again.meta_split)
    others = [
        load_omniglot(path, meta_train_size=6, random_state=seed).train_classes
        for seed in range(4, 8)
    ]
    assert any(not np.array_equal(first.train_classes, other) for other in others)


def test_meta_split_sizes_that_do_not_fit_are_refused(archive):
    path, _ = archive
    with pytest.raises(ValueError, match="only 12 distinct classes"):
        load_omniglot(path)  # the papers' 1,200 training characters


def test_rotations_add_new_classes_for_training_characters(archive):
    path, arrays = archive
    omniglot = load_omniglot(path, meta_train_size=8, rotations=(90, 180, 270))
    n_train_rows = 8 * N_DRAWINGS
    assert omniglot.data.shape == (N_IMAGES + 3 * n_train_rows, 1, 28, 28)
    np.testing.assert_array_equal(
        np.bincount(omniglot.rotation // 90), [N_IMAGES] + 3 * [n_train_rows]
    )
    rotated = omniglot.rotation > 0
    # Only meta-training characters are rotated, and they stay in that pool.
    assert np.isin(omniglot.character[rotated], omniglot.train_classes).all()
    assert (omniglot.meta_split[rotated] == 0).all()
    np.testing.assert_array_equal(
        omniglot.target,
        omniglot.character + N_CHARACTERS * (omniglot.rotation // 90),
    )
    assert not np.isin(omniglot.target[rotated], arrays["character"]).any()
    assert len(omniglot.train_classes) == 4 * 8
    np.testing.assert_array_equal(
        np.unique(omniglot.target[omniglot.meta_split == 0]), omniglot.train_classes
    )
    assert len(np.unique(omniglot.target)) == 4 * 8 + 4


@pytest.mark.parametrize("angle", [90, 180, 270])
def test_rotated_image_is_rot90_of_its_original(archive, angle):
    path, _ = archive
    omniglot = load_omniglot(path, meta_train_size=8, rotations=(angle,))
    unrotated = omniglot.rotation == 0
    for row in np.flatnonzero(omniglot.rotation == angle)[::37]:
        source = np.flatnonzero(
            unrotated
            & (omniglot.character == omniglot.character[row])
            & (omniglot.drawing == omniglot.drawing[row])
        )
        assert len(source) == 1
        np.testing.assert_array_equal(
            omniglot.data[row, 0], np.rot90(omniglot.data[source[0], 0], angle // 90)
        )
        assert omniglot.alphabet[row] == omniglot.alphabet[source[0]]


def test_return_X_y_matches_the_bunch(archive):
    path, _ = archive
    options = {"meta_train_size": 8, "rotations": (180,)}
    X, y = load_omniglot(path, return_X_y=True, **options)
    omniglot = load_omniglot(path, **options)
    np.testing.assert_array_equal(X, omniglot.data)
    np.testing.assert_array_equal(y, omniglot.target)


def test_default_path_is_in_the_data_home(archive, monkeypatch, tmp_path):
    """Not beside the source tree: that breaks once the package is installed."""
    home = tmp_path / "data_home"
    (home / "omniglot").mkdir(parents=True)
    (home / "omniglot" / "omniglot28.npz").write_bytes(
        Path(archive[0]).read_bytes())
    monkeypatch.setenv("SK_META_DATA", str(home))
    assert get_data_home() == home
    assert load_omniglot(meta_train_size=8).data.shape[0] == N_IMAGES
    monkeypatch.delenv("SK_META_DATA")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert get_data_home() == tmp_path / "sk_meta_data"
    with pytest.raises(FileNotFoundError, match="sk_meta_data"):
        load_omniglot()
    assert get_data_home("~/elsewhere") == tmp_path / "elsewhere"


def test_missing_file_says_where_to_put_it(tmp_path):
    missing = tmp_path / "nowhere" / "omniglot28.npz"
    with pytest.raises(FileNotFoundError, match="not found at") as excinfo:
        load_omniglot(missing)
    message = str(excinfo.value)
    assert str(missing) in message
    assert "never downloads" in message
    assert "SK_META_DATA" in message


def test_missing_keys_are_named(tmp_path):
    arrays = make_archive_arrays()
    del arrays["drawing"], arrays["split_names"]
    path = tmp_path / "partial.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"missing keys \['drawing', 'split_names'\]"):
        load_omniglot(path)


@pytest.mark.parametrize(
    "option, message",
    [
        ({"image": "bicubic"}, r"image must be one of \['lanczos', 'nearest'\]"),
        ({"ink": 255}, r"ink must be 1 \(MAML\) or 0 \(Reptile\)"),
        ({"rotations": (45,)}, "rotations must be distinct angles"),
        ({"rotations": (90, 90)}, "rotations must be distinct angles"),
        ({"rotations": 90}, "rotations must be a tuple"),
    ],
)
def test_invalid_options_are_refused_before_reading(tmp_path, option, message):
    with pytest.raises(ValueError, match=message):
        load_omniglot(tmp_path / "absent.npz", **option)
