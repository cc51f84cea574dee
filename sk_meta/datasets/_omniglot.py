"""Loader of the local Omniglot archive ``omniglot28.npz``."""

import os
import re
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from sk_meta.tasks import split_classes

DATA_HOME_ENV = "SK_META_DATA"


def get_data_home(data_home=None):
    """The folder where sk_meta's loaders look for local data files.

    Parameters
    ----------
    data_home : str or path-like, default=None
        The folder. None means the environment variable ``SK_META_DATA``
        when it is set, else ``~/sk_meta_data``.

    Returns
    -------
    data_home : pathlib.Path
        The folder (not created: sk_meta never downloads data).

    Examples
    --------
    >>> from sk_meta.datasets import get_data_home
    >>> get_data_home("/data/few-shot").as_posix()
    '/data/few-shot'
    """
    if data_home is None:
        data_home = os.environ.get(DATA_HOME_ENV) or Path.home() / "sk_meta_data"
    return Path(data_home).expanduser()


def default_omniglot_path():
    """``<data home>/omniglot/omniglot28.npz``, resolved at call time."""
    return get_data_home() / "omniglot" / "omniglot28.npz"


REQUIRED_KEYS = (
    "images",
    "images_nearest",
    "split",
    "alphabet",
    "character",
    "character_in_alphabet",
    "drawing",
    "source_id",
    "alphabet_names",
    "alphabet_split",
    "split_names",
    "description",
)

_IMAGE_KEYS = {"nearest": "images_nearest", "lanczos": "images"}
_ROTATIONS = (90, 180, 270)
META_SPLIT_NAMES = np.array(["train", "val", "test"])


def _check_options(image, ink, rotations):
    if image not in _IMAGE_KEYS:
        raise ValueError(f"image must be one of {sorted(_IMAGE_KEYS)}, got {image!r}.")
    if isinstance(ink, bool) or ink not in (0, 1):
        raise ValueError(f"ink must be 1 (MAML) or 0 (Reptile), got {ink!r}.")
    try:
        rotations = tuple(rotations)
    except TypeError:
        raise ValueError(
            f"rotations must be a tuple of angles among {_ROTATIONS}, got "
            f"{rotations!r}."
        ) from None
    if any(
        isinstance(angle, bool) or angle not in _ROTATIONS for angle in rotations
    ) or len(set(rotations)) != len(rotations):
        raise ValueError(
            f"rotations must be distinct angles among {_ROTATIONS}, got {rotations!r}."
        )
    return tuple(int(angle) for angle in rotations)


def _read_archive(path, image_key):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Omniglot archive not found at {str(path)!r}. sk_meta never "
            "downloads data: pass the path of omniglot28.npz as "
            "load_omniglot(path), or put it at <data home>/omniglot/omniglot28.npz, "
            f"where the data home is ${DATA_HOME_ENV} or ~/sk_meta_data."
        )
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as exc:  # a text, empty or truncated file: numpy's errors vary
        raise ValueError(
            f"{str(path)!r} is not a valid omniglot28 archive (an .npz file): "
            f"{type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(
            f"{str(path)!r} is not an omniglot28 archive: it holds one array (an "
            ".npy file), not the archive's named arrays"
        )
    with archive:
        missing = [key for key in REQUIRED_KEYS if key not in archive.files]
        if missing:
            raise ValueError(
                f"{str(path)!r} is not an omniglot28 archive: missing keys "
                f"{missing}. Expected the keys {list(REQUIRED_KEYS)}."
            )
        # Read only the chosen image array: the other one is never unpacked.
        wanted = [key for key in REQUIRED_KEYS if key not in _IMAGE_KEYS.values()]
        try:
            arrays = {key: archive[key] for key in wanted}
            arrays["pixels"] = archive[image_key]
        except Exception as exc:  # a truncated member
            raise ValueError(
                f"{str(path)!r} is not a valid omniglot28 archive: "
                f"{type(exc).__name__}: {exc}"
            ) from None
    lengths = {key: len(arrays[key]) if np.ndim(arrays[key]) else None
               for key in ("split", "alphabet", "character", "character_in_alphabet",
                           "drawing", "source_id")}
    lengths["images"] = len(arrays["pixels"])
    if len(set(lengths.values())) > 1:
        raise ValueError(
            f"{str(path)!r} is not a valid omniglot28 archive: its arrays have "
            f"different lengths {lengths}"
        )
    if arrays["pixels"].ndim != 3:
        raise ValueError(
            f"{image_key} must have shape (n_images, height, width), got "
            f"{arrays['pixels'].shape}."
        )
    return arrays


def _scale_into(pixels, out, ink):
    """Write uint8 pixels (ink = 255) into ``out`` as float32 in [0, 1]."""
    # Dividing (not multiplying by 1/255) keeps 255 -> exactly 1.0.
    np.divide(pixels, np.float32(255), out=out, dtype=np.float32)
    if ink == 0:
        np.subtract(np.float32(1), out, out=out)


def load_omniglot(
    path=None,
    *,
    image="nearest",
    ink=1,
    meta_train_size=1200,
    meta_val_size=0,
    meta_test_size=None,
    rotations=(),
    random_state=0,
    return_X_y=False,
):
    """Load Omniglot at 28x28 from the local ``omniglot28.npz`` archive.

    The archive holds all 1,623 characters of 50 alphabets, 20 drawings each
    (32,460 images). It is never downloaded: see
    the README beside the archive for its origin and checksums.

    Besides the original background/evaluation split, the loader makes the
    meta split of the MAML and Reptile papers: all characters are shuffled
    with ``random_state`` and cut into ``meta_train_size`` meta-training
    characters (1,200 in the papers), ``meta_val_size`` meta-validation
    characters and the meta-test characters (the remaining 423). Rotated
    copies of the meta-training characters can be added as new classes.

    Parameters
    ----------
    path : str or path-like, default=None
        The ``omniglot28.npz`` file. None means
        ``omniglot/omniglot28.npz`` in the data home (see
        :func:`get_data_home`: ``$SK_META_DATA`` or ``~/sk_meta_data``).
    image : {"nearest", "lanczos"}, default="nearest"
        Which resize of the drawings: ``"nearest"`` (the archive's
        ``images_nearest``, binary) is what the MAML and Reptile loaders
        actually produced; ``"lanczos"`` (``images``) is anti-aliased.
    ink : {1, 0}, default=1
        Value of ink pixels in ``data``. 1 gives MAML's polarity
        (``pixels / 255``, paper = 0); 0 gives Reptile's
        (``1 - pixels / 255``, paper = 1).
    meta_train_size : int or float, default=1200
        Number (or fraction) of characters for meta-training.
    meta_val_size : int or float, default=0
        Number (or fraction) of characters for meta-validation.
    meta_test_size : int, float or None, default=None
        Number (or fraction) of characters for meta-testing. None means all
        the characters left over.
    rotations : tuple of {90, 180, 270}, default=()
        Rotations (counter-clockwise, as ``numpy.rot90``) applied to the
        meta-training characters; each rotation of a character is a new
        class. The papers use ``(90, 180, 270)``.
    random_state : int, numpy Generator, numpy RandomState or None, default=0
        Seed of the meta split. The default gives the same split on every
        call; it is not the (unrecorded) split of either paper.
    return_X_y : bool, default=False
        If True, return ``(data, target)`` instead of a Bunch.

    Returns
    -------
    data : ``sklearn.utils.Bunch``
        Dictionary-like object, with the following attributes (``n_images``
        is 32,460 plus 20 images per rotated copy of a character).

        data : ndarray of shape (n_images, 1, 28, 28), dtype float32
            Images in [0, 1], polarity set by ``ink``. Rows follow the
            archive's order (background first, then alphabet, character and
            drawing), then one block of rotated copies per angle of
            ``rotations``, each in the archive's order.
        target : ndarray of shape (n_images,), dtype int64
            Class id: ``character + n_characters * (rotation // 90)``, where
            ``n_characters`` is 1,623 for the full archive. Unrotated images
            have their character id (0..1622); a character rotated by 90
            degrees is class ``character + 1623``, and so on.
        character : ndarray of shape (n_images,), dtype int32
            Character id 0..1622 (0..963 background, 964..1622 evaluation),
            the same for rotated copies.
        rotation : ndarray of shape (n_images,), dtype int16
            Rotation of the image in degrees: 0, 90, 180 or 270.
        alphabet : ndarray of shape (n_images,), dtype int32
            Index into ``alphabet_names``.
        alphabet_names : ndarray of shape (n_alphabets,), dtype str
            Alphabet folder names.
        alphabet_split : ndarray of shape (n_alphabets,), dtype uint8
            Original split of each alphabet.
        character_in_alphabet : ndarray of shape (n_images,), dtype int32
            1-based character number within its alphabet.
        drawing : ndarray of shape (n_images,), dtype uint8
            Which of the 20 drawers made the image (1..20).
        source_id : ndarray of shape (n_images,), dtype int32
            Omniglot's own character number, as in the original file names.
        split : ndarray of shape (n_images,), dtype uint8
            Original split: 0 = background, 1 = evaluation.
        split_names : ndarray of shape (2,), dtype str
            ``["background", "evaluation"]``.
        meta_split : ndarray of shape (n_images,), dtype int8
            Meta split: 0 = train, 1 = val, 2 = test, and -1 for characters
            in no pool (only when ``meta_test_size`` leaves some out).
        meta_split_names : ndarray of shape (3,), dtype str
            ``["train", "val", "test"]``.
        train_classes : ndarray of shape (n_train_classes,), dtype int64
            Sorted class ids (``target`` values) for meta-training, rotated
            classes included.
        val_classes : ndarray of shape (n_val_classes,), dtype int64
            Sorted class ids for meta-validation.
        test_classes : ndarray of shape (n_test_classes,), dtype int64
            Sorted class ids for meta-testing.
        DESCR : str
            Description of the dataset and of these choices.

    (data, target) : tuple if ``return_X_y`` is True
        The ``data`` and ``target`` arrays described above.

    Raises
    ------
    FileNotFoundError
        When there is no file at ``path``.
    ValueError
        When the file lacks keys of an omniglot28 archive, or the meta split
        sizes do not fit the number of characters.

    See Also
    --------
    sk_meta.tasks.EpisodeSampler : Draw N-way K-shot episodes from a pool of
        classes, e.g. ``classes=omniglot.train_classes``.

    References
    ----------
    B. M. Lake, R. Salakhutdinov and J. B. Tenenbaum, "Human-level concept
    learning through probabilistic program induction", Science 350(6266),
    2015.

    Examples
    --------
    The archive is a local file, so this example is not run by the tests.

    >>> from sk_meta.datasets import load_omniglot
    >>> omniglot = load_omniglot(rotations=(90, 180, 270))  # doctest: +SKIP
    >>> omniglot.data.shape  # doctest: +SKIP
    (104460, 1, 28, 28)
    >>> len(omniglot.train_classes), len(omniglot.test_classes)  # doctest: +SKIP
    (4800, 423)
    """
    rotations = _check_options(image, ink, rotations)
    path = default_omniglot_path() if path is None else path
    arrays = _read_archive(path, _IMAGE_KEYS[image])
    pixels = arrays.pop("pixels")
    character = arrays["character"]
    n_characters = int(character.max()) + 1

    try:
        train_chars, val_chars, test_chars = split_classes(
            character,
            train_size=meta_train_size,
            val_size=meta_val_size,
            test_size=meta_test_size,
            random_state=random_state,
        )
    except ValueError as exc:  # it names its own arguments: train_size...
        message = re.sub(r"\b(train|val|test)_size\b", r"meta_\1_size", str(exc))
        raise ValueError(message) from None
    # -1 marks characters left out of every pool when meta_test_size is set.
    pool_of_character = np.full(n_characters, -1, dtype=np.int8)
    train_chars, val_chars, test_chars = (
        pool.astype(np.int64) for pool in (train_chars, val_chars, test_chars)
    )
    for pool, characters in enumerate((train_chars, val_chars, test_chars)):
        pool_of_character[characters] = pool
    meta_split = pool_of_character[character]

    train_rows = np.flatnonzero(meta_split == 0)
    n_original = len(pixels)
    n_images = n_original + len(rotations) * len(train_rows)
    # One float32 buffer filled in place: no full-size temporaries.
    data = np.empty((n_images, 1, *pixels.shape[1:]), dtype=np.float32)
    _scale_into(pixels, data[:n_original, 0], ink)
    for block, angle in enumerate(rotations):
        start = n_original + block * len(train_rows)
        rotated = np.rot90(pixels[train_rows], k=angle // 90, axes=(1, 2))
        _scale_into(rotated, data[start : start + len(train_rows), 0], ink)
    del pixels

    source_rows = np.concatenate(
        [np.arange(n_original)] + [train_rows] * len(rotations)
    )
    rotation = np.concatenate(
        [np.zeros(n_original, dtype=np.int16)]
        + [np.full(len(train_rows), angle, dtype=np.int16) for angle in rotations]
    )
    character = character[source_rows]
    target = character.astype(np.int64) + n_characters * (rotation // 90)

    if return_X_y:
        return data, target

    train_classes = np.sort(
        np.concatenate(
            [train_chars]
            + [train_chars + n_characters * (angle // 90) for angle in rotations]
        )
    )
    return Bunch(
        data=data,
        target=target,
        character=character,
        rotation=rotation,
        alphabet=arrays["alphabet"][source_rows],
        alphabet_names=arrays["alphabet_names"],
        alphabet_split=arrays["alphabet_split"],
        character_in_alphabet=arrays["character_in_alphabet"][source_rows],
        drawing=arrays["drawing"][source_rows],
        source_id=arrays["source_id"][source_rows],
        split=arrays["split"][source_rows],
        split_names=arrays["split_names"],
        meta_split=meta_split[source_rows],
        meta_split_names=META_SPLIT_NAMES.copy(),
        train_classes=train_classes,
        val_classes=val_chars,
        test_classes=test_chars,
        DESCR=_describe(
            str(arrays["description"][0]),
            image=image,
            ink=ink,
            n_characters=n_characters,
            n_pools=(len(train_chars), len(val_chars), len(test_chars)),
            rotations=rotations,
            random_state=random_state,
        ),
    )


def _describe(
    archive_description, *, image, ink, n_characters, n_pools, rotations, random_state
):
    polarity = (
        "ink = 1, paper = 0 (MAML)" if ink == 1 else "ink = 0, paper = 1 (Reptile)"
    )
    rotated = (
        ", ".join(f"{angle}" for angle in rotations) + " degrees counter-clockwise"
        if rotations
        else "none"
    )
    return (
        "Omniglot (Lake, Salakhutdinov & Tenenbaum 2015) at 28x28.\n\n"
        f"Archive: {archive_description}\n\n"
        f"Loaded with image={image!r}: float32 in [0, 1], {polarity}.\n"
        f"Meta split of the {n_characters} characters with "
        f"random_state={random_state!r}: {n_pools[0]} train, {n_pools[1]} val, "
        f"{n_pools[2]} test characters (meta_split: 0 = train, 1 = val, "
        "2 = test).\n"
        f"Rotations of the meta-training characters: {rotated}. Each rotated "
        f"copy is a new class: target = character + {n_characters} * "
        "(rotation // 90).\n"
        "License: MIT, Copyright (c) 2015 Brenden Lake.\n"
    )
