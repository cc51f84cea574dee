"""Few-shot tasks: the ``Task`` record, episode samplers and task families.

Nothing in this package imports torch (it needs numpy and scipy, as
scikit-learn does): tasks hold the arrays or DataFrames they were drawn from,
and the estimators convert them to tensors once per meta-batch.
"""

from sk_meta.tasks._groups import GroupTaskSampler
from sk_meta.tasks._samplers import EpisodeSampler, class_splits, split_classes
from sk_meta.tasks._sinusoid import SinusoidTasks
from sk_meta.tasks._task import Task

__all__ = ["EpisodeSampler", "GroupTaskSampler", "SinusoidTasks", "Task",
           "class_splits", "split_classes"]
