"""The sinusoid regression task family of the MAML paper."""

import math
import numbers

import numpy as np

from sk_meta._checks import positive_int_setting
from sk_meta.tasks._samplers import (
    _check_n_tasks,
    _check_random_state_type,
    _DrawnTasks,
    _sample_generator,
)
from sk_meta.tasks._task import Task

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _finite_float32(value):
    """A real number (numpy's and 0-d arrays too, not bools) that stays
    finite in the tasks' float32 arrays."""
    if isinstance(value, (bool, np.bool_)) or (
            not isinstance(value, numbers.Real) and np.ndim(value) != 0):
        return False
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(number) and abs(number) <= _FLOAT32_MAX


def _check_range(value, name, *, allow_empty):
    """Validate a ``(low, high)`` pair of finite numbers."""
    try:
        low, high = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (low, high) pair, got {value!r}.") from None
    if not all(_finite_float32(bound) for bound in (low, high)):
        raise ValueError(
            f"{name} must hold two finite numbers within float32's range, got "
            f"{value!r}."
        )
    if low > high or (low == high and not allow_empty):
        relation = "<=" if allow_empty else "<"
        raise ValueError(f"{name} must satisfy low {relation} high, got {value!r}.")
    return float(low), float(high)


class SinusoidTasks(_DrawnTasks):
    """Iterable of sinusoid regression tasks, as in the MAML paper.

    Each task is a sine curve ``y = amplitude * sin(x - phase)`` with
    ``amplitude`` and ``phase`` drawn uniformly from their ranges, observed at
    points ``x`` drawn uniformly from ``x_range``; support and query points
    are drawn independently from the same curve.

    Every call to ``iter()`` starts again from ``random_state``: with an int,
    each iteration yields the same tasks.

    Parameters
    ----------
    k_shot : int, default=10
        Number of support points per task.
    n_query : int, default=10
        Number of query points per task.
    amplitude_range : tuple of float, default=(0.1, 5.0)
        Bounds ``(low, high)`` of the uniform amplitude distribution.
    phase_range : tuple of float, default=(0.0, np.pi)
        Bounds ``(low, high)`` of the uniform phase distribution, in radians.
    x_range : tuple of float, default=(-5.0, 5.0)
        Bounds ``(low, high)`` of the uniform input distribution.
    n_tasks : int, default=None
        Number of tasks per iteration. None means an endless iterator.
    random_state : int, numpy Generator, numpy RandomState or None, default=None
        Seed of the task stream. An int replays the same tasks on every
        ``iter()``; None draws fresh ones each time; a Generator or RandomState
        is shared and advances, so successive iterations differ.

    See Also
    --------
    sk_meta.tasks.EpisodeSampler : N-way K-shot classification episodes.

    Notes
    -----
    ``X_support`` and ``X_query`` have shape ``(n, 1)`` and ``y_support`` and
    ``y_query`` shape ``(n,)``, all float32. The targets are computed in
    float64 from the float32 inputs, then rounded to float32.

    Use :meth:`sample_with_params` to get the amplitude and phase of a task,
    for example to draw its true curve, and :meth:`make_task` to build the
    task of a given curve.

    References
    ----------
    C. Finn, P. Abbeel and S. Levine, "Model-Agnostic Meta-Learning for Fast
    Adaptation of Deep Networks", ICML 2017, section 5.1.

    Examples
    --------
    >>> from sk_meta.tasks import SinusoidTasks
    >>> tasks = SinusoidTasks(k_shot=5, n_query=20, n_tasks=3, random_state=0)
    >>> [task.X_support.shape for task in tasks]
    [(5, 1), (5, 1), (5, 1)]
    >>> task, amplitude, phase = tasks.sample_with_params(random_state=0)
    >>> task.y_query.shape, task.y_query.dtype
    ((20,), dtype('float32'))
    """

    def __init__(
        self,
        k_shot=10,
        n_query=10,
        *,
        amplitude_range=(0.1, 5.0),
        phase_range=(0.0, np.pi),
        x_range=(-5.0, 5.0),
        n_tasks=None,
        random_state=None,
    ):
        self.k_shot = positive_int_setting(k_shot, "k_shot")
        self.n_query = positive_int_setting(n_query, "n_query")
        self.amplitude_range = _check_range(
            amplitude_range, "amplitude_range", allow_empty=True
        )
        self.phase_range = _check_range(phase_range, "phase_range", allow_empty=True)
        self.x_range = _check_range(x_range, "x_range", allow_empty=False)
        self.n_tasks = _check_n_tasks(n_tasks)
        _check_random_state_type(random_state)
        self.random_state = random_state

    def make_task(self, amplitude, phase, random_state=None):
        """Sample support and query points from one given sine curve.

        Parameters
        ----------
        amplitude : float
            Amplitude of the curve; it need not lie in ``amplitude_range``.
        phase : float
            Phase of the curve in radians; it need not lie in ``phase_range``.
        random_state : int, numpy Generator, numpy RandomState or None, \
default=None
            Randomness of the input points; a Generator advances. None
            draws from the sampler's own stream, as :meth:`sample` does.

        Returns
        -------
        task : Task
            ``k_shot`` support and ``n_query`` query points of
            ``y = amplitude * sin(x - phase)``.

        Examples
        --------
        >>> from sk_meta.tasks import SinusoidTasks
        >>> task = SinusoidTasks(k_shot=2, n_query=3).make_task(1.0, 0.0, 0)
        >>> task.X_query.shape
        (3, 1)
        """
        for name, value in (("amplitude", amplitude), ("phase", phase)):
            if not _finite_float32(value):
                raise ValueError(
                    f"{name} must be a finite number within float32's range, got "
                    f"{value!r}."
                )
        return self._draw_points(_sample_generator(self, random_state), amplitude,
                                 phase)

    def sample_with_params(self, random_state=None):
        """Draw one task together with the amplitude and phase of its curve.

        Parameters
        ----------
        random_state : int, numpy Generator, numpy RandomState or None, \
default=None
            Randomness of this one draw; a Generator advances. None draws
            from the sampler's own stream, seeded from its ``random_state``
            at the first call: with an int, a script's first draw is always
            the same, and each call draws anew.

        Returns
        -------
        task : Task
            Support and query points of the curve.
        amplitude : float
            Amplitude of the curve.
        phase : float
            Phase of the curve, in radians.

        Examples
        --------
        >>> import numpy as np
        >>> from sk_meta.tasks import SinusoidTasks
        >>> task, amplitude, phase = SinusoidTasks().sample_with_params(0)
        >>> x = np.linspace(-5, 5, 100)
        >>> true_curve = amplitude * np.sin(x - phase)
        """
        return self._draw_with_params(_sample_generator(self, random_state))

    def sample(self, random_state=None):
        """Draw one task.

        Parameters
        ----------
        random_state : int, numpy Generator, numpy RandomState or None, \
default=None
            Randomness of this one draw; a Generator advances. None draws
            from the sampler's own stream, seeded from its ``random_state``
            at the first call: with an int, a script's first draw is always
            the same, and each call draws anew.

        Returns
        -------
        task : Task
            Support and query points of a random curve.
        """
        return self._draw(_sample_generator(self, random_state))

    def _draw(self, rng):
        return self._draw_with_params(rng)[0]

    def _draw_with_params(self, rng):
        amplitude = float(rng.uniform(*self.amplitude_range))
        phase = float(rng.uniform(*self.phase_range))
        return self._draw_points(rng, amplitude, phase), amplitude, phase

    def _draw_points(self, rng, amplitude, phase):
        X = rng.uniform(*self.x_range, size=(self.k_shot + self.n_query, 1))
        X = X.astype(np.float32)
        y = (amplitude * np.sin(X[:, 0].astype(np.float64) - phase)).astype(np.float32)
        return Task(
            X[: self.k_shot], y[: self.k_shot], X[self.k_shot :], y[self.k_shot :]
        )

    def __repr__(self):
        return (
            f"{type(self).__name__}(k_shot={self.k_shot}, n_query={self.n_query}, "
            f"amplitude_range={self.amplitude_range}, "
            f"phase_range={self.phase_range}, x_range={self.x_range}, "
            f"n_tasks={self.n_tasks}, random_state={self.random_state!r})"
        )
