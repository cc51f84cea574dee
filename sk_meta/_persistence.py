"""The file format: tensors and plain values, loadable with ``weights_only=True``.

``pickle``/``joblib`` work too, but unpickling runs code from the file. The
format here holds only tensors, numbers, strings, lists and dicts, so
``torch.load(..., weights_only=True)`` reads it safely; a custom module is
never stored as code: its class is named, and :func:`sk_meta.load` takes it
from the caller. This module knows records and parameters, not the
estimator classes (``sk_meta._load`` maps names to classes).
"""

import collections
import contextlib
import errno
import inspect
import io
import os
import pickle
import stat
import uuid

import numpy as np
import torch

from sk_meta._errors import warn_user
from sk_meta._records import PLAIN_TYPES, plain_scalar, to_plain
from sk_meta.exceptions import PersistenceWarning

FORMAT = "sk_meta"
# 2: the records' fields (learned inner learning rates, devices, early
# stopping's state); files of version 1 hold a subset of them and still load.
# 3: a fit's class_codes (classes of sample_weight 0), which older versions
# would drop and then predict the wrong classes; written only where set, so
# every other file stays readable by them.
# 4: the pretrained MLP that hidden_layer_sizes="auto" averages with the
# meta-trained one (older versions would predict with the latter alone);
# written only where set
VERSION = 4
_VERSION_WITHOUT_CLASS_CODES = 2
_VERSION_WITHOUT_AVERAGE = 3


def _qualified_name(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


def plain_value(value, name):
    """``value`` as plain data for the file, or raise for what cannot be stored.

    The weights-only reader takes the exact types alone: a subclass of
    ``str``, ``int`` or ``float`` (``np.str_``, an enum, ``np.float64``) is
    saved as its base type's value, or ``save`` would write a file ``load``
    refuses.
    """
    plain = plain_scalar(value)
    if plain is None or type(plain) in PLAIN_TYPES:
        return plain
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, torch.device):
        return str(value)
    if isinstance(value, torch.dtype):  # read back as the dtype
        return {_DTYPE_KEY: str(value).removeprefix("torch.")}
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        # a tensor, read back as the array (a list would reach the module)
        return torch.from_numpy(np.array(value, dtype=value.dtype.newbyteorder("=")))
    # a subclass (a namedtuple) would not load; torch.Size does
    if type(value) in (list, tuple, torch.Size):
        return type(value)(plain_value(v, name) for v in value)
    if isinstance(value, dict):  # keys kept: {0: ...} must not come back {"0": ...}
        plain = {_plain_key(k, name): plain_value(v, name) for k, v in value.items()}
        if len(plain) < len(value):  # a path and its string, say: one would be lost
            keys = [k for k in value if _plain_key(k, name) in {
                _plain_key(other, name) for other in value if other is not k}]
            raise TypeError(
                f"parameter {name} has the dict keys {keys}, which are saved as "
                "the same value; keep one of them, or use pickle or joblib for "
                "this estimator")
        if any(isinstance(k, str) and k.startswith(_MARKER_PREFIX) for k in plain):
            return {_DICT_KEY: plain}  # the user's: not to be read as a marker
        return plain
    raise TypeError(
        f"parameter {name}={value!r} cannot be saved in the weights-only format; "
        "use pickle or joblib for this estimator"
    )


def _plain_key(key, name):
    plain = _plain_key_or_none(key, name)
    if plain is not None or key is None:
        return plain
    raise TypeError(
        f"parameter {name} has the dict key {key!r}, which cannot be saved in the "
        "weights-only format (keys: strings, numbers, None or tuples of them); "
        "use pickle or joblib for this estimator"
    )


def _plain_key_or_none(key, name):
    """The key as plain data, or None where the file cannot hold it."""
    if type(key) is tuple:
        members = [_plain_key_or_none(k, name) for k in key]
        if all(m is not None or k is None for m, k in zip(members, key)):
            return tuple(members)
        return None
    if isinstance(key, (*PLAIN_TYPES, np.generic, os.PathLike, torch.device)):
        try:  # a path or a device as its string, as values are
            plain = plain_value(key, name)
        except TypeError:  # np.complex64, say
            return None
        if type(plain) in PLAIN_TYPES:
            return plain
    return None


# how plain_value marks what is not plain data: a torch dtype as
# {_DTYPE_KEY: "float32"}, a dict of the user's with a key of that prefix
# as {_DICT_KEY: the dict}
_MARKER_PREFIX = "sk_meta:"
_DTYPE_KEY = "sk_meta:torch.dtype"
_DICT_KEY = "sk_meta:dict"


def restored_params(value):
    """The parameters as :func:`plain_value` saved them, numpy arrays read
    back as arrays and dtypes as dtypes."""
    if isinstance(value, torch.Tensor):
        return value.numpy()
    if isinstance(value, (list, tuple)):
        return type(value)(restored_params(v) for v in value)
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get(_DICT_KEY), dict):
            return {k: restored_params(v) for k, v in value[_DICT_KEY].items()}
        dtype = getattr(torch, str(value.get(_DTYPE_KEY)), None)
        if len(value) == 1 and isinstance(dtype, torch.dtype):
            return dtype
        return {k: restored_params(v) for k, v in value.items()}
    return value


def _estimator_params(estimator):
    params = {}
    for name, value in estimator.get_params(deep=False).items():
        if name == "module":
            if value is None:
                params[name] = None
            elif isinstance(value, type):
                params[name] = {"class": _qualified_name(value)}
            else:
                params[name] = {"instance_of": _qualified_name(type(value))}
        elif name == "random_state" and isinstance(value, np.random.RandomState):
            warn_user(
                "random_state is a RandomState instance; it is saved as None",
                PersistenceWarning,
            )
            params[name] = None
        else:
            params[name] = plain_value(value, name)
    return params


# how a module's state dict names what get_extra_state returns
_EXTRA_STATE_SUFFIX = "_extra_state"


def check_module_state(module_state, what, error=TypeError):
    """Raise ``error`` if an entry of a module's state dict would not load
    back from the weights-only format (``save`` would write a file ``load``
    refuses): what a custom module's ``get_extra_state`` returns (any
    object), what a state-dict hook adds, a tensor subclass."""
    for key, value in module_state.items():
        if type(value) in (torch.Tensor, torch.nn.Parameter) or (
                torch.nn.parameter.is_lazy(value)):
            continue  # (a lazy layer is sized by the first forward pass)
        if not _reads_back(value):
            source = ("returned by get_extra_state" if key.endswith(
                _EXTRA_STATE_SUFFIX) else "in its state_dict")
            raise error(
                f"{what}: the module's state entry {key!r} (a "
                f"{type(value).__module__}.{type(value).__qualname__}, {source}) "
                "is or holds an object that the weights-only format cannot read "
                "back; keep tensors and plain values (numbers, strings, lists, "
                "dicts) there, or use pickle or joblib for this estimator"
            ) from None


def estimator_state(estimator):
    """The saved form of ``estimator``: a dict of tensors and plain values."""
    state = {
        "format": FORMAT,
        "version": _VERSION_WITHOUT_CLASS_CODES,
        "estimator": type(estimator).__name__,
        "params": _estimator_params(estimator),
    }
    requests = metadata_requests(estimator)
    if requests:
        state["metadata_requests"] = requests
    meta = estimator.__dict__.get("_meta")
    if meta is not None:
        state["meta"] = to_plain(meta)
    fit = estimator.__dict__.get("_fit")
    if fit is not None:
        state["fit"] = to_plain(fit)
        if fit.class_codes is not None:
            state["version"] = _VERSION_WITHOUT_AVERAGE
        state["fit"]["n_features_in"] = int(estimator.n_features_in_)
        if hasattr(estimator, "feature_names_in_"):
            state["fit"]["feature_names_in"] = [
                str(f) for f in estimator.feature_names_in_]
    if meta is not None and meta.averaged_with is not None:
        state["version"] = VERSION
    return state


def metadata_requests(estimator):
    """What ``set_fit_request`` and the like set on ``estimator`` (pickle keeps
    it too): ``{method: {parameter: True, False or an alias}}``, the unset
    ones left out."""
    routing = estimator.get_metadata_routing()
    requests = {}
    for name in dir(estimator):
        if name.startswith("set_") and name.endswith("_request"):
            method = name[len("set_"):-len("_request")]
            values = {param: value for param, value in
                      getattr(routing, method).requests.items() if value is not None}
            if values:
                requests[method] = values
    return requests


def check_saveable(estimator):
    """Raise a ValueError now if ``estimator`` could not be saved later.

    ``meta_fit`` calls it before training when ``checkpoint_path`` is set, so
    that a bad setting is found before the run, not at its first checkpoint.
    """
    path = os.fsdecode(os.fspath(estimator.checkpoint_path))
    if not path:
        raise ValueError("checkpoint_path is empty; give a file name, or None")
    given, path = path, _resolved(path)  # save writes through a link
    try:
        os.stat(given)
    except ValueError as exc:  # an embedded null byte
        raise ValueError(f"checkpoint_path={given!r}: {exc}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ValueError(f"checkpoint_path={given!r}: its symbolic links form "
                             "a loop, or a chain too long to follow") from None
        if exc.errno == errno.ENAMETOOLONG:
            raise ValueError(f"checkpoint_path={given!r}: the name is too long "
                             "for the file system") from None
    if _is_special_file(path):
        # a named pipe would block every checkpoint until someone reads it
        raise ValueError(f"checkpoint_path={given!r} is no regular file (a device, "
                         "a named pipe or a socket); give a file name")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(
            f"checkpoint_path={path!r}: the directory {directory!r} does not exist"
        )
    if os.path.isdir(path):
        raise ValueError(f"checkpoint_path={path!r} is a directory, not a file")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ValueError(
            f"checkpoint_path={path!r}: the directory {directory!r} is not writable"
        )
    try:
        _estimator_params(estimator)
    except TypeError as exc:
        raise ValueError(f"checkpoint_path is set, but {exc}") from None


def save(estimator, path):
    """Write ``estimator`` to ``path`` atomically (a crash never leaves half a
    file), or to a binary file object, as ``torch.save`` writes to one."""
    state = estimator_state(estimator)
    for record in ("meta", "fit"):
        if record in state:
            check_module_state(state[record].get("module_state", {}), "cannot save")
            partner = state[record].get("averaged_with") or {}
            check_module_state(partner.get("module_state", {}), "cannot save")
    _check_readable(state, "the estimator's state")
    if hasattr(path, "write"):
        if not _able(path, "writable"):
            raise TypeError("save needs a file opened for writing in binary mode "
                            "('wb'), not a text file or one opened for reading")
        torch.save(state, path)
        return
    _write_atomically(state, path)


def _check_readable(value, where):
    """Raise a TypeError naming the first entry of ``value`` that the
    weights-only reader would refuse: ``save`` must never write a file that
    ``load`` refuses (over a good one, at that). Plain values and tensors
    are known; anything else is tried (module states are checked apart)."""
    if value is None or type(value) in PLAIN_TYPES or isinstance(
            value, (torch.Tensor, torch.dtype, torch.device)):
        return
    if type(value) in (dict, collections.OrderedDict):
        for key, item in value.items():
            _check_readable(key, f"{where}, a key")
            if key != "module_state":
                _check_readable(item, f"{where}[{key!r}]")
        return
    if type(value) in (list, tuple, torch.Size):
        for index, item in enumerate(value):
            _check_readable(item, f"{where}[{index}]")
        return
    if not _reads_back(value):
        raise TypeError(
            f"cannot save: {where} is a {type(value).__module__}."
            f"{type(value).__qualname__} ({value!r:.80}), which loading without "
            "running code refuses; use pickle or joblib for this estimator"
        )


def _reads_back(value):
    """Whether the weights-only reader takes ``value`` back (tried)."""
    buffer = io.BytesIO()
    try:
        torch.save(value, buffer)
        buffer.seek(0)
        torch.load(buffer, map_location="cpu", weights_only=True)
    except Exception:
        return False
    return True


def _write_atomically(state, path):
    """``torch.save(state, path)``, replacing ``path`` in one step.

    A new file gets the permissions ``torch.save`` would give it (those of
    a new file under the process's umask); a file replaced keeps its own. A
    symbolic link is written through (its target is replaced, as ``open``
    would write it), and a path that is no regular file (a device such as
    ``/dev/null``, a named pipe) is written to as ``torch.save`` writes,
    never replaced. Where the system allows it (Linux), the data is written
    to an unnamed file that only gets a name once it is complete, so a
    crash while writing leaves nothing behind; elsewhere a temporary file
    beside ``path`` is removed on any error.
    """
    path = _resolved(os.fsdecode(os.fspath(path)))  # bytes too, as open() takes
    if path and _is_special_file(path):
        with open(path, "wb") as f:  # a socket: open's own OSError names it
            torch.save(state, f)
        return
    if not path:
        raise FileNotFoundError(errno.ENOENT, "cannot save to an empty path; give "
                                "a file name", path)
    if path.endswith(("/", os.sep)):
        raise IsADirectoryError(errno.EISDIR, "cannot save to a path that ends "
                                "with a separator; give a file name", path)
    directory = os.path.dirname(os.path.abspath(path))
    # Say what is wrong with path itself: writing would fail on the
    # temporary file beside it, and the error would name that file.
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "cannot save to a directory; give a "
                                "file name", path)
    if not os.path.isdir(directory):
        raise FileNotFoundError(errno.ENOENT, f"cannot save: the directory "
                                f"{directory!r} does not exist", path)
    temporary = os.path.join(
        directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp"
    )
    try:
        replaced = os.stat(path)
    except FileNotFoundError:
        replaced = None
    try:
        if not _write_unnamed_then_link(state, directory, temporary):
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(fd, "wb") as f:
                _save_and_sync(state, f)
        if replaced is not None:
            _keep_owner_and_mode(temporary, replaced)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)


def _is_special_file(path):
    """Whether ``path`` exists and is neither a directory nor a regular file
    (a device, a named pipe, a socket): written into, never replaced."""
    return os.path.exists(path) and not os.path.isdir(path) and (
        not os.path.isfile(path))


def _resolved(path):
    """``path`` with its symbolic links followed (save writes through them)."""
    return os.path.realpath(path) if path and os.path.islink(path) else path


def _keep_owner_and_mode(new, replaced):
    """Give the file ``new`` the owner and permissions of the file it
    replaces (``replaced``, an os.stat result), as writing into it would;
    where the owner cannot be kept (not root), setuid and setgid are dropped,
    as ``cp -p`` drops them, so no other user's program becomes this one's."""
    mode = stat.S_IMODE(replaced.st_mode)
    created = os.stat(new)  # a setgid directory gives it the directory's group
    if (replaced.st_uid, replaced.st_gid) != (created.st_uid, created.st_gid):
        try:
            os.chown(new, replaced.st_uid, replaced.st_gid)
        except OSError:  # not root, or an owner a user namespace does not map
            mode &= ~(stat.S_ISUID | stat.S_ISGID)
    os.chmod(new, mode)  # after chown, which clears setuid and setgid


def _able(file, ability):
    """Whether a file object says it is binary and readable (writable); one
    that does not say is taken at its word."""
    # tempfile's wrappers hold their file in .file or ._file
    if any(isinstance(f, io.TextIOBase) for f in (
            file, getattr(file, "file", None), getattr(file, "_file", None))):
        return False
    method = getattr(file, ability, None)
    try:
        return bool(method()) if callable(method) else method is None or bool(method)
    except Exception:  # noqa: BLE001 - a closed file: its own error comes later
        return True


def _write_unnamed_then_link(state, directory, name):
    """Write to an ``O_TMPFILE`` file and link it as ``name``; False if unsupported."""
    if not hasattr(os, "O_TMPFILE") or not os.path.isdir("/proc/self/fd"):
        return False
    try:
        fd = os.open(directory, os.O_TMPFILE | os.O_WRONLY, 0o666)
    except OSError:  # a file system without unnamed files
        return False
    with os.fdopen(fd, "wb") as f:
        _save_and_sync(state, f)
        try:
            os.link(f"/proc/self/fd/{f.fileno()}", name)
        except OSError:
            return False
    return True


def _save_and_sync(state, f):
    torch.save(state, f)
    f.flush()
    os.fsync(f.fileno())


def saved_as_instance_given_class(spec, module):
    """Whether ``load`` was given a class for a module saved as an instance."""
    return isinstance(spec, dict) and "instance_of" in spec and isinstance(module, type)


def _takes_arguments(module_class):
    """Whether the class's constructor takes arguments (that the saved
    instance may have been given other values of)."""
    try:
        return bool(inspect.signature(module_class).parameters)
    except (TypeError, ValueError):  # no signature to read: it may
        return True


def resolve_module(spec, module):
    """The module to rebuild a saved estimator with (the caller's, by name)."""
    if spec is None:
        if module is not None:
            raise ValueError("the saved estimator uses the default MLP; do not pass "
                             "module")
        return None
    saved_name = spec.get("class") or spec.get("instance_of")
    if module is None:
        raise ValueError(
            f"the saved estimator uses the custom module {saved_name}; pass it to "
            "load(path, module=...) (sk_meta never stores code in its files)"
        )
    if saved_as_instance_given_class(spec, module) and _takes_arguments(module):
        # the class's defaults replace the saved instance's attributes that
        # are not weights (a scale, a dropout rate)
        warn_user(
            f"the saved estimator was built with an instance of {saved_name}; "
            f"loading with the class builds {module.__name__}() with its "
            "default arguments, as the file holds the weights, not the "
            "constructor's arguments. Pass an instance built as the saved one "
            f"was (module={module.__name__}(...)) if they differ",
            PersistenceWarning,
        )
    given_class = module if isinstance(module, type) else type(module)
    if _qualified_name(given_class) != saved_name:
        warn_user(
            f"the saved estimator used {saved_name}, loading with "
            f"{_qualified_name(given_class)}",
            PersistenceWarning,
        )
    return module


# how gzip, zlib, bz2, xz and lzma files start (joblib's compressors)
_COMPRESSED_STARTS = (b"\x1f\x8b", b"\x78\x01", b"\x78\x5e", b"\x78\x9c",
                      b"\x78\xda", b"BZh", b"\xfd7zXZ", b"\x5d\x00\x00")


def source_name(source):
    """How messages call a path or a file object."""
    if hasattr(source, "read"):
        name = getattr(source, "name", None)
        return name if isinstance(name, str) else f"the {type(source).__name__}"
    return os.fsdecode(os.fspath(source))


def read(path):
    """The file's top-level dict, or a ValueError saying why it is not one.
    ``path`` may be a binary file object, read from where it stands."""
    at_end = ""
    if hasattr(path, "read"):
        if not _able(path, "readable"):
            raise TypeError("load needs a file opened for reading in binary mode "
                            "('rb'), not a text file or one opened for writing")
        data = path.read()
        try:
            data = bytes(memoryview(data))  # any buffer of bytes
        except TypeError:
            raise TypeError("load needs a file opened for reading in binary mode "
                            f"('rb'), whose read() returns bytes; it returned "
                            f"{type(data).__name__}") from None
        with contextlib.suppress(AttributeError, OSError, ValueError):
            if not data and path.tell() > 0:
                at_end = ("nothing is left to read from its current position "
                          "(seek(0) to read it from the start)")
        path, contents = source_name(path), io.BytesIO(data)
    else:
        path = contents = os.fsdecode(os.fspath(path))  # bytes too, as save takes
        if not os.path.isfile(path):
            if os.path.exists(path):
                raise ValueError(f"{path} is not a file")
            if os.path.islink(path):  # a loop, or a link to nothing
                raise FileNotFoundError(f"No such file: {path!r} is a symbolic "
                                        "link that leads to no file")
            raise FileNotFoundError(f"No such file: {path!r}")
        with open(path, "rb") as file:
            data = file.read(6)
    if not data:
        raise ValueError(f"{path} is not a valid sk_meta file: "
                         + (at_end or "it is empty"))
    start = data[:6]
    if start[:1] == b"\x80":  # pickle's protocol opcode: not a zip, as save writes
        raise ValueError(
            f"{path} is not a valid sk_meta file: it is a pickle (written by "
            "pickle.dump or joblib.dump, not by save): read it with joblib.load "
            "or pickle.load, and only from a source you trust, since "
            "unpickling runs code"
        )
    if start.startswith(_COMPRESSED_STARTS):
        raise ValueError(
            f"{path} is not a valid sk_meta file: it is compressed (as "
            "joblib.dump(..., compress=...) writes), not written by save: read "
            "it with joblib.load, and only from a source you trust, since "
            "unpickling runs code"
        )
    if start[:4] != b"PK\x03\x04":
        raise ValueError(
            f"{path} is not a valid sk_meta file: save writes a zip archive "
            f"(torch.save's format), and this file starts with {start[:4]!r}"
        )
    try:
        state = torch.load(contents, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses anything but tensors and plain values: the
        # file holds code or objects, which sk_meta never writes
        first_line = str(exc).strip().splitlines()[0] if str(exc) else ""
        raise ValueError(
            f"{path} is not a valid sk_meta file: it holds objects that loading "
            f"without running code refuses ({first_line})"
        ) from None
    except Exception as exc:
        # torch's unpickler fails on a file that is not a zip (a text file,
        # say) with any error: IndexError, KeyError, OSError...
        raise ValueError(
            f"{path} is not a valid sk_meta file (truncated or not written by "
            f"torch.save): {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not an sk_meta file")
    version = state.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(f"{path} is not a valid sk_meta file: no format version")
    if version > VERSION:
        raise ValueError(
            f"{path} was written by a newer sk_meta (format version "
            f"{version}); upgrade sk_meta to read it"
        )
    if not isinstance(state.get("estimator"), str) or not isinstance(
            state.get("params"), dict):
        raise ValueError(
            f"{path} is not a valid sk_meta file: no estimator name or parameters"
        )
    return state
