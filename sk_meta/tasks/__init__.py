"""Few-shot tasks: the ``Task`` record, episode samplers and task families.

Nothing in this package imports torch: tasks are plain numpy arrays, and the
estimators convert them to tensors once per meta-batch.
"""

from sk_meta.tasks._samplers import EpisodeSampler, split_classes
from sk_meta.tasks._sinusoid import SinusoidTasks
from sk_meta.tasks._task import Task

__all__ = ["EpisodeSampler", "SinusoidTasks", "Task", "split_classes"]
