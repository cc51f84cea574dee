"""Argument checks shared by the ready-made networks."""

import math

from sk_meta._checks import positive_int_setting


def check_positive_ints(**named):
    """Refuse any value that is not an integer >= 1, naming it, as a ValueError."""
    for name, value in named.items():
        positive_int_setting(value, name)


def check_real(name, value, *, low, high=math.inf, low_closed=True):
    """Refuse a value that is not a finite real in [low, high) (or (low, high));
    numpy and 0-d torch numbers count."""
    try:
        number = None if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not (math.isfinite(number) and (
            low <= number if low_closed else low < number) and number < high):
        if not low_closed and low == 0 and high == math.inf:
            wanted = "positive"
        else:
            wanted = f"in {'[' if low_closed else '('}{low}, {high})"
        raise ValueError(f"{name} must be {wanted} (a finite number), got {value!r}")
