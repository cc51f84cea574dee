"""Errors said again with where they happened (pure Python: no torch)."""


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
