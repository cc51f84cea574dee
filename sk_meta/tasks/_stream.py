"""Drawing meta-batches from whatever iterable of tasks the user passes."""

import functools
import numbers
import sys
from collections.abc import Iterable, Sequence

import numpy as np


def _describe_tasks_type(tasks):
    name = type(tasks).__name__
    if hasattr(type(tasks), "__getitem__") and not isinstance(tasks, Iterable):
        # a map-style dataset but for its length: say what is missing
        return (f"{name}, which has __getitem__ but neither __iter__ nor __len__ "
                "(a map-style dataset needs __len__)")
    return name


def is_map_style(tasks):
    """Whether ``tasks`` is a map-style dataset (such as torch's ``Dataset``):
    ``__getitem__`` and ``__len__`` but no ``__iter__``."""
    kind = type(tasks)
    return (hasattr(kind, "__getitem__") and hasattr(kind, "__len__")
            and not isinstance(tasks, Iterable))


# a sequence longer than this is not shuffled in full each pass (its order
# alone would take 8 bytes per task)
MAX_SHUFFLED_TASKS = 10**8


class MapStyleTasks(Sequence):
    """A map-style dataset read as a sequence: ``dataset[i]`` for ``i`` in
    ``range(len(dataset))``, never past its length (Python's fallback
    iteration would read until an ``IndexError`` the dataset may not raise),
    and an ``IndexError`` within it is the dataset's error, not the end."""

    def __init__(self, dataset, what):
        self.dataset = dataset
        self.what = what
        len(self)  # a length Python refuses is said now

    def __len__(self):
        try:
            return len(self.dataset)
        except (TypeError, ValueError, OverflowError, IndexError) as exc:
            raise TypeError(
                f"{self.what}: {type(self.dataset).__name__}.__len__ must return "
                f"a non-negative int that Python can index ({exc})") from None

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not 0 <= index < len(self):
            raise IndexError(index)
        try:
            return self.dataset[index]
        except (IndexError, StopIteration) as exc:  # iteration: the end
            raise ValueError(
                f"task {index}: {type(self.dataset).__name__}[{index}] raised "
                f"{type(exc).__name__} ({exc}) though its __len__ is "
                f"{len(self)}") from exc

    def __iter__(self):
        for index in range(len(self)):
            yield self[index]


def as_task_sequence(tasks, what="tasks"):
    """``tasks`` as an iterable: a map-style dataset of them as a
    :class:`~collections.abc.Sequence`; a ``TypeError`` for anything else
    that is not an iterable (``what`` names the argument)."""
    if isinstance(tasks, MapStyleTasks):
        return tasks
    if _batches_tasks(tasks):
        size = (f"batch_size={tasks.batch_size}" if tasks.batch_size is not None
                else "a batch_sampler")
        raise ValueError(
            f"{what} is a torch DataLoader with {size}: it stacks tasks into "
            "batches, whose items are no longer one task's arrays; pass "
            "DataLoader(dataset, batch_size=None, ...) or the dataset itself"
        )
    if _is_table(tasks) or _is_list_of_samples(tasks):
        # scikit-learn's habit: meta_fit(X, y) as fit(X, y)
        shape = (f"of shape {tuple(tasks.shape)}" if hasattr(tasks, "shape")
                 else f"of {type(next(iter(tasks))).__name__}")
        raise TypeError(
            f"{what} must be an iterable of (X_support, y_support, X_query, "
            f"y_query) tasks, not an array of samples ({type(tasks).__name__} "
            f"{shape}): draw N-way K-shot tasks from a "
            "labelled table with sk_meta.tasks.EpisodeSampler(X, y, n_way, "
            "k_shot, n_query) and pass the sampler (fit(X_support, y_support) "
            "adapts to one support set)"
        )
    if is_map_style(tasks):
        return MapStyleTasks(tasks, what)
    if isinstance(tasks, (str, bytes)) or not isinstance(tasks, Iterable):
        raise TypeError(
            f"{what} must be an iterable of (X_support, y_support, X_query, "
            f"y_query) tasks, got {_describe_tasks_type(tasks)}"
        )
    return tasks


def _batches_tasks(tasks):
    """Whether ``tasks`` is a torch DataLoader that stacks its items into
    batches (its default, ``batch_size=1``, with torch's own collation: a
    ``collate_fn`` of the user's may undo it); read without importing torch."""
    data = sys.modules.get("torch.utils.data")
    if data is None or not isinstance(tasks, data.DataLoader):
        return False
    if tasks.batch_sampler is None:
        return False
    collate, keywords = tasks.collate_fn, {}
    while isinstance(collate, functools.partial):  # partial(default_collate)
        keywords = {**collate.keywords, **keywords}
        collate = collate.func
    if collate is getattr(data, "default_collate", None):
        return True
    # default_collate is collate with torch's map of types
    torch_collate = sys.modules.get("torch.utils.data._utils.collate")
    return (torch_collate is not None and collate is torch_collate.collate
            and keywords.get("collate_fn_map") is torch_collate.default_collate_fn_map)


def _is_list_of_samples(tasks):
    """Whether ``tasks`` is a list whose first item is a number or a row of
    numbers (``X.tolist()``, ``y.tolist()``, ``list(X)`` of an array, a
    tensor or pandas rows): a task is four arrays."""
    if not isinstance(tasks, list) or not tasks:
        return False
    first = next(iter(tasks))  # not tasks[0]: a list subclass may count reads
    if _is_table(first):  # list(X), of an array, tensor or DataFrame's rows
        return not hasattr(first, "columns")  # a list of DataFrames may be a split
    if isinstance(first, list):  # X.tolist()'s rows (a tuple may be a task)
        return len(first) > 0 and all(
            isinstance(value, (numbers.Number, np.number, np.bool_))
            for value in first)
    return isinstance(first, (numbers.Number, np.number, np.bool_))


def _is_table(tasks):
    """Whether ``tasks`` is samples, which cannot hold tasks: a numpy array
    of numbers (an object array may hold tasks), a torch tensor, a pandas
    DataFrame or a Series of numbers."""
    if isinstance(tasks, np.ndarray):
        return tasks.dtype.kind not in "OV"
    if hasattr(tasks, "iloc"):  # pandas
        return hasattr(tasks, "columns") or getattr(
            getattr(tasks, "dtype", None), "kind", "O") != "O"
    kind = type(tasks)
    return kind.__module__.split(".")[0] == "torch" and kind.__name__ in (
        "Tensor", "Parameter")


class TaskStream:
    """Draws tasks from an iterable, in the order meta-training consumes them.

    - A sequence (list, tuple, or a map-style dataset such as torch's
      ``Dataset``, read by index) is cycled, in a new random order each pass.
    - Another re-iterable object (``iter(tasks) is not tasks``, such as an
      :class:`EpisodeSampler`) is iterated again at the end of each pass.
    - A one-shot iterator or generator is consumed until it is exhausted.

    The order depends only on ``seed`` and the number of tasks drawn before,
    so a stream can be rebuilt at any position (``n_drawn``) to resume
    meta-training exactly where it stopped. One-shot iterators cannot be
    rewound; they resume from wherever the caller's iterator is.

    Parameters
    ----------
    tasks : iterable of tasks
    seed : int
        Seed of the shuffling of sequences.
    n_drawn : int, default=0
        Tasks already drawn from this stream (skipped on re-iterables).
    shuffle : bool, default=True
        Whether sequences are shuffled (``meta_partial_fit`` keeps the order).
    cycle : bool, default=True
        Whether re-iterables start again once exhausted.
    """

    def __init__(self, tasks, *, seed, n_drawn=0, shuffle=True, cycle=True):
        tasks = as_task_sequence(tasks)
        self.tasks = tasks
        self.seed = seed
        self.n_drawn = n_drawn
        self.shuffle = shuffle
        self.cycle = cycle
        self.is_sequence = isinstance(tasks, Sequence)
        self.is_one_shot = not self.is_sequence and iter(tasks) is tasks
        if self.is_sequence and len(tasks) == 0:
            raise ValueError("tasks is empty: meta-training needs at least one task")
        if self.is_sequence and shuffle and len(tasks) > MAX_SHUFFLED_TASKS:
            user_type = type(tasks.dataset if isinstance(tasks, MapStyleTasks)
                             else tasks)
            raise ValueError(
                f"tasks holds {len(tasks)} tasks by its __len__; a sequence is "
                f"shuffled in full each pass, up to {MAX_SHUFFLED_TASKS} tasks: give "
                f"{user_type.__name__} an __iter__ "
                "that draws tasks, to read it as an iterable")
        self._iterator = None
        self._drawn_this_pass = 0
        # a one-shot iterator starts afresh: its tasks are numbered from its
        # first, not from the tasks an earlier call drew (a warm start)
        self._first_index = n_drawn if self.is_one_shot else 0
        self._exhausted = False
        if not self.is_sequence:
            self._start_pass()
            if not self.is_one_shot:
                self._skip(n_drawn)

    def _start_pass(self):
        self._iterator = iter(self.tasks)
        self._drawn_this_pass = 0

    def _skip(self, n):
        for _ in range(n):
            if self._next_from_iterable() is None:
                break

    def _next_from_iterable(self):
        try:
            task = next(self._iterator)
        except StopIteration:
            if self.is_one_shot or not self.cycle or self._drawn_this_pass == 0:
                self._exhausted = True
                return None
            self._start_pass()
            return self._next_from_iterable()
        self._drawn_this_pass += 1
        return task

    def _pass_order(self, pass_number):
        return np.random.default_rng([self.seed, pass_number]).permutation(
            len(self.tasks))

    def take(self, n):
        """Draw up to ``n`` tasks; fewer (or none) once a one-shot stream ends.

        Returns
        -------
        list of (int, task)
            Each task with its index for messages: its position in a sequence,
            else the count of tasks drawn before it from this iterable (from
            this stream, for a one-shot iterator).
        """
        drawn = []
        if self.is_sequence:
            n_tasks = len(self.tasks)
            for _ in range(n):
                pass_number, position = divmod(self.n_drawn, n_tasks)
                if pass_number > 0 and not self.cycle:
                    break
                # a list that grew or shrank since a warm start gets the order
                # a stream rebuilt at this position would have
                if not self.shuffle:
                    index = position  # no order to hold, however long
                else:
                    if getattr(self, "_order_key", None) != (pass_number, n_tasks):
                        self._order = self._pass_order(pass_number)
                        self._order_key = (pass_number, n_tasks)
                    index = int(self._order[position])
                drawn.append((index, self.tasks[index]))
                self.n_drawn += 1
            return drawn
        while len(drawn) < n and not self._exhausted:
            index = self.n_drawn - self._first_index
            task = self._next_from_iterable()
            if task is None:
                break
            drawn.append((index, task))
            self.n_drawn += 1
        return drawn
