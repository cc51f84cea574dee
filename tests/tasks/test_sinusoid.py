"""Tests of SinusoidTasks."""

import numpy as np
import pytest

from sk_meta.tasks import SinusoidTasks, Task


def take(tasks, n):
    iterator = iter(tasks)
    return [next(iterator) for _ in range(n)]


def test_task_shapes_and_dtypes():
    task = next(iter(SinusoidTasks(k_shot=5, n_query=7, random_state=0)))
    assert isinstance(task, Task)
    assert task.X_support.shape == (5, 1)
    assert task.y_support.shape == (5,)
    assert task.X_query.shape == (7, 1)
    assert task.y_query.shape == (7,)
    assert all(array.dtype == np.float32 for array in task)


def test_targets_follow_the_returned_curve():
    tasks = SinusoidTasks(k_shot=10, n_query=30)
    rng = np.random.default_rng(0)
    for _ in range(20):
        task, amplitude, phase = tasks.sample_with_params(rng)
        for X, y in [(task.X_support, task.y_support), (task.X_query, task.y_query)]:
            expected = amplitude * np.sin(X[:, 0].astype(np.float64) - phase)
            np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)


def test_parameters_and_inputs_stay_in_their_ranges():
    tasks = SinusoidTasks(
        k_shot=4,
        n_query=4,
        amplitude_range=(1.0, 2.0),
        phase_range=(0.5, 1.5),
        x_range=(-1.0, 3.0),
    )
    rng = np.random.default_rng(1)
    draws = [tasks.sample_with_params(rng) for _ in range(200)]
    amplitudes = np.array([amplitude for _, amplitude, _ in draws])
    phases = np.array([phase for _, _, phase in draws])
    inputs = np.concatenate([np.vstack([t.X_support, t.X_query]) for t, _, _ in draws])
    assert amplitudes.min() >= 1.0 and amplitudes.max() <= 2.0
    assert phases.min() >= 0.5 and phases.max() <= 1.5
    assert inputs.min() >= -1.0 and inputs.max() <= 3.0
    # The draws cover the ranges rather than sitting at one point.
    assert amplitudes.max() - amplitudes.min() > 0.8
    assert inputs.max() - inputs.min() > 3.5


def test_make_task_uses_the_given_curve():
    task = SinusoidTasks(k_shot=3, n_query=50).make_task(2.0, 0.25, random_state=0)
    expected = 2.0 * np.sin(task.X_query[:, 0].astype(np.float64) - 0.25)
    np.testing.assert_allclose(task.y_query, expected, rtol=1e-6, atol=1e-6)
    assert task.X_support.shape == (3, 1)


def test_same_seed_gives_same_tasks_on_every_iteration():
    tasks = SinusoidTasks(random_state=0)
    for first, second in zip(take(tasks, 5), take(tasks, 5)):
        for array_a, array_b in zip(first, second):
            np.testing.assert_array_equal(array_a, array_b)
    assert tasks.sample_with_params(3)[1:] == tasks.sample_with_params(3)[1:]


def test_different_seeds_and_successive_tasks_differ():
    first = take(SinusoidTasks(random_state=0), 2)
    other = take(SinusoidTasks(random_state=1), 1)
    assert not np.array_equal(first[0].y_query, first[1].y_query)
    assert not np.array_equal(first[0].y_query, other[0].y_query)


def test_n_tasks_caps_iteration_and_sets_len():
    tasks = SinusoidTasks(n_tasks=4, random_state=0)
    assert len(tasks) == 4
    assert len(list(tasks)) == 4
    with pytest.raises(TypeError, match="endless"):
        len(SinusoidTasks())


def test_repr_lists_the_settings():
    text = repr(SinusoidTasks(k_shot=3, n_tasks=2, random_state=0))
    assert text.startswith("SinusoidTasks(k_shot=3, n_query=10")
    assert "n_tasks=2, random_state=0" in text


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"k_shot": 0}, "k_shot must be a positive integer"),
        ({"n_query": 0}, "n_query must be a positive integer"),
        ({"n_tasks": -1}, "n_tasks must be a positive integer"),
        ({"amplitude_range": (5.0, 0.1)}, r"amplitude_range must satisfy low <="),
        ({"x_range": (1.0, 1.0)}, r"x_range must satisfy low < high"),
        ({"phase_range": (0.0,)}, r"phase_range must be a \(low, high\) pair"),
        ({"x_range": (0.0, np.inf)}, "x_range must hold two finite numbers"),
    ],
)
def test_invalid_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SinusoidTasks(**kwargs)
