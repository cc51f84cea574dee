"""Ctrl-C during meta-training stops cleanly at the end of a meta-iteration."""

import contextlib
import signal
import threading


class _InterruptFlag:
    def __init__(self):
        self.is_set = False


@contextlib.contextmanager
def deferred_keyboard_interrupt():
    """Turn the first Ctrl-C into a flag the training loop checks between steps.

    An interrupt in the middle of an optimizer step could leave parameters
    and optimizer state out of step; deferring it to the end of the
    meta-iteration keeps the committed state consistent. A second Ctrl-C
    raises ``KeyboardInterrupt`` at once. Outside the main thread, or when
    the program installed its own SIGINT handler, nothing is changed.
    """
    flag = _InterruptFlag()
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield flag
        return

    def handler(signum, frame):
        if flag.is_set:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        flag.is_set = True

    signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
