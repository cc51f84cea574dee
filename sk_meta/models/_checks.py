"""Argument checks shared by the ready-made networks."""

import math
import numbers


def check_positive_ints(**named):
    """Refuse any value that is not an int >= 1 (bools too), naming it."""
    for name, value in named.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or (
                value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_real(name, value, *, low, high=math.inf, low_closed=True):
    """Refuse a value that is not a finite real in [low, high) (or (low, high))."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
            math.isfinite(value) and (low <= value if low_closed else low < value)
            and value < high):
        if not low_closed and low == 0 and high == math.inf:
            wanted = "positive"
        else:
            wanted = f"in {'[' if low_closed else '('}{low}, {high})"
        raise ValueError(f"{name} must be {wanted} (a finite number), got {value!r}")
