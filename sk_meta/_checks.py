"""Argument checks shared by the functional core, the networks and the task
samplers (no torch here: the ``tasks`` code does not need it)."""

import numbers
import operator

# the most validation tasks meta_fit (and the tools that take held-out tasks)
# reads: more is a sign of an endless iterable
MAX_VALIDATION_TASKS = 10_000

# the MLP hidden_layer_sizes="auto" stands for, unless a classifier's
# meta_fit chose the one without hidden layers on class folds
DEFAULT_HIDDEN_LAYER_SIZES = (64, 64)


def is_int(value):
    """Whether ``value`` is an integer (numpy's too), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_auto(value):
    """Whether a parameter is ``"auto"`` (an array of sizes is not compared)."""
    return isinstance(value, str) and value == "auto"


def check_positive_int(value, name, minimum=1):
    """``value`` as an int >= ``minimum`` (ints, numpy and 0-d torch
    integers; not bools), or a TypeError/ValueError naming it."""
    try:
        number = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        number = None
    if number is None:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if number < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {number}")
    return number


def positive_int_setting(value, name):
    """``check_positive_int`` for a constructor setting, where any bad value
    is a ValueError (scikit-learn's convention for parameter values)."""
    try:
        return check_positive_int(value, name)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None


def set_all_or_nothing(estimator, set_params, params, restore=None):
    """``set_params(**params)``, undone if it raises: scikit-learn's sets the
    names (and the nested objects' names) before a misspelled one, which
    would leave a call that failed half done. ``restore`` (default
    ``set_params``) sets the nested names back."""
    before = estimator.get_params(deep=True)
    for name, value in params.items():
        if name.partition("__")[0] not in before:
            # alone, so that scikit-learn's message shows the estimator as it
            # stays, not half set
            set_params(**{name: value})
    try:
        return set_params(**params)
    except Exception:
        for name, value in before.items():
            if "__" not in name:
                setattr(estimator, name, value)
        nested = {name: value for name, value in before.items() if "__" in name}
        if nested:
            try:
                (restore or set_params)(**nested)
            except Exception:  # noqa: BLE001, S110 - the first error is the one to say
                pass
        raise
