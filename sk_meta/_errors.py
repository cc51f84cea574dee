"""Errors said again with where they happened, and warnings shown where the
user called (pure Python: no torch)."""

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
# scikit-learn's _fit_context wraps fit and meta_fit: a frame of its own
_SKLEARN_WRAPPER = (os.path.join("sklearn", "base.py"), "wrapper")


def warn_user(message, category=UserWarning):
    """``warnings.warn`` attributed to the first line outside sk_meta.

    However deep inside the package a warning is raised, Python shows, and
    filters by, the user's line that called into it (a fixed ``stacklevel``
    is right for one call path only).
    """
    frame, level = sys._getframe(0), 1
    while frame is not None and (
            frame.f_code.co_filename.startswith(_PACKAGE_DIR)
            or (frame.f_code.co_filename.endswith(_SKLEARN_WRAPPER[0])
                and frame.f_code.co_name == _SKLEARN_WRAPPER[1])):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
