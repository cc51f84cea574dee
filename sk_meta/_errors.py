"""Errors said again with where they happened, and warnings shown where the
user called (pure Python: no torch)."""

import contextlib
import contextvars
import os
import sys
import warnings


def raise_with_context(exc, context, *, chain=False):
    """Raise ``exc`` again as its own type, its message led by ``context``.

    An exception class that does not take one message (``UnicodeDecodeError``,
    ``json.JSONDecodeError``, many of users' own) is raised as it is, with
    ``context`` as a note where Python keeps notes: a caller catching that
    type must still catch it. ``chain`` keeps ``exc`` as the cause.
    """
    message = f"{context}: {exc}"
    renamed = None
    # attributes of its own (a status code) would not survive a new instance
    if not (set(vars(exc)) - {"__notes__"}):
        try:
            renamed = type(exc)(message)
            if str(renamed) != message:
                renamed = None
        except Exception:  # noqa: BLE001 - a constructor or str that refuses it
            renamed = None
    if renamed is None:
        if hasattr(exc, "add_note"):
            exc.add_note(context)
        raise exc
    raise renamed from (exc if chain else None)


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
# Python's own modules: a thread pool's frames, below which no user's line is
_STDLIB_DIR = os.path.dirname(os.path.abspath(os.__file__)) + os.sep


def _callers_dirs():
    """Directories of the libraries that call sk_meta for the user, once
    imported: scikit-learn (a Pipeline, its scorers, the mixins' ``score``)
    and joblib, which runs scikit-learn's cross-validation loops."""
    dirs = []
    for name in ("sklearn", "joblib"):
        path = getattr(sys.modules.get(name), "__file__", None)
        if path is not None:
            dirs.append(os.path.dirname(os.path.abspath(path)) + os.sep)
    return tuple(dirs)


# handlers of sk_meta's own warnings, innermost last, in this thread (and
# context) alone: warnings.catch_warnings changes the filters of the whole
# process, so warnings that other threads raised meanwhile were lost
_HANDLERS = contextvars.ContextVar("sk_meta_warning_handlers", default=())


@contextlib.contextmanager
def handling_warnings(handler):
    """Within the block, the warnings sk_meta raises in this thread go first
    to ``handler(message, category)``; one it returns True for is handled
    (dropped, recorded, raised), any other goes on to the enclosing handler,
    then to Python's warnings."""
    token = _HANDLERS.set((*_HANDLERS.get(), handler))
    try:
        yield
    finally:
        _HANDLERS.reset(token)


def ignoring_warnings(*categories):
    """Drop sk_meta's warnings of ``categories`` (all without any) in the
    block, in this thread alone."""
    categories = categories or (Warning,)
    return handling_warnings(lambda message, category: issubclass(category, categories))


def warn_user(message, category=UserWarning):
    """``warnings.warn`` attributed to the user's line that led to it.

    However deep inside the package a warning is raised, and whether the
    user called sk_meta or scikit-learn called it for them (a Pipeline,
    ``cross_val_score``, ``score``), Python shows, and filters by, the
    first line outside sk_meta, scikit-learn and joblib (a fixed
    ``stacklevel`` is right for one call path only). Where no such line
    exists (a worker thread or process, whose first frames are Python's
    own), the first line outside sk_meta.
    """
    for handler in reversed(_HANDLERS.get()):
        if handler(message, category):
            return
    frame, level = sys._getframe(0), 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    outside_package = level
    # sk_meta may be called back further up (evaluate_tasks runs a scorer)
    inside = (_PACKAGE_DIR, *_callers_dirs())
    while frame is not None and frame.f_code.co_filename.startswith(inside):
        frame, level = frame.f_back, level + 1
    # a worker thread or process: its stack starts in Python's own modules
    # (a thread pool, multiprocessing), with no user's line above them
    if frame is None or frame.f_code.co_filename.startswith(_STDLIB_DIR):
        level = outside_package
    warnings.warn(message, category, stacklevel=level)
