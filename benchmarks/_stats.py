# SPDX-License-Identifier: BSD-3-Clause
"""Means with 95% intervals for the fidelity runs.

* ``mean_ci(values)``: mean and half-width of the normal 95% interval,
  ``1.96 * std / sqrt(n)`` with the sample standard deviation (``ddof=1``).
* ``summary(values)``: the same as a ``{"mean", "ci95", "n"}`` dict.
* ``format_ci(mean, half)``: ``"0.672 ± 0.031"``.
"""

import math

import numpy as np

Z_95 = 1.96


def mean_ci(values):
    """Mean and half-width of the 95% interval of the mean.

    Parameters
    ----------
    values : array-like of float
        One value per test task.

    Returns
    -------
    mean : float
    half_width : float
        ``1.96 * std / sqrt(n)`` (sample std, ``ddof=1``); 0 for a single value.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        return math.nan, math.nan
    if values.size == 1:
        return float(values[0]), 0.0
    half = Z_95 * values.std(ddof=1) / math.sqrt(values.size)
    return float(values.mean()), float(half)


def summary(values):
    """``{"mean", "ci95", "n"}`` of ``values``, ready for JSON."""
    mean, half = mean_ci(values)
    return {"mean": mean, "ci95": half, "n": int(np.asarray(values).size)}


def format_ci(mean, half=None, *, digits=3, percent=False):
    """``"0.672 ± 0.031"``; ``percent`` multiplies both by 100.

    ``mean`` may also be a ``summary`` dict.
    """
    if isinstance(mean, dict):
        mean, half = mean["mean"], mean["ci95"]
    scale = 100.0 if percent else 1.0
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    text = f"{mean * scale:.{digits}f}"
    if half is not None:
        text += f" ± {half * scale:.{digits}f}"
    return text
