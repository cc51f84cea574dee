"""The meta-training loop behind ``meta_fit`` and ``meta_partial_fit``.

:class:`MetaTrainer` takes explicit inputs (its settings, an
:class:`~sk_meta._inner_loop.InnerLoop`, where the run starts, a source of
validated meta-batches) and returns a :class:`~sk_meta._records.MetaResult`
that the estimator commits. It works on copies, so the estimator changes
only when it commits, after the last completed meta-iteration.
"""

import contextlib
import copy
import dataclasses
import hashlib
import math
import numbers
import time
import zlib
from time import sleep  # its own name: a test stands a fast clock in for `time`

import numpy as np
import torch
from skorch.history import History

from sk_meta import _distributed
from sk_meta._errors import warn_user
from sk_meta._progress import Progress
from sk_meta._records import MetaTrainingState
from sk_meta._signals import deferred_keyboard_interrupt
from sk_meta._torch_utils import (
    is_single_sample_batch_norm_error,
    loss_if_finite,
    seed_torch,
    seeded_torch,
    single_sample_batch_norm_error,
    to_cpu,
)
from sk_meta.exceptions import (
    DivergenceError,
    InterruptedWarning,
    TasksExhaustedWarning,
)
from sk_meta.functional import TaskBatch
from sk_meta.functional._forward import has_batch_norm
from sk_meta.functional._rng import forked_rng
from sk_meta.tasks._interpolation import interpolate_tasks
from sk_meta.tasks._validation import stack_tasks

# On a GPU, reading the loss back every iteration would stall the pipeline;
# losses are checked for NaN in blocks, with a snapshot to fall back on.
_CUDA_CHECK_EVERY = 25


def check_interval(device):
    """Meta-iterations between two reads of the loss from the device."""
    return 1 if device.type == "cpu" else _CUDA_CHECK_EVERY


def to_task_batch(stacked, device):
    """Tensors on ``device`` from a numpy :class:`StackedTasks`."""
    def tensor(array):
        return torch.from_numpy(array).to(device, non_blocking=True)

    return TaskBatch(
        tensor(stacked.X_support), tensor(stacked.y_support),
        tensor(stacked.X_query), tensor(stacked.y_query), stacked.n_classes,
    )


def refuses_one_sample(module, X, device):
    """Whether ``module``'s BatchNorm layers refuse ``X``, a support set of one
    sample, as torch does where a channel holds one value (after a linear
    layer, not on a convolution's map); asked of a copy, in train mode."""
    try:
        copied = copy.deepcopy(module).train()
        with forked_rng(device), torch.no_grad():
            copied(torch.from_numpy(X).to(device))
    except Exception as exc:  # noqa: BLE001 - the computation says what fails
        return is_single_sample_batch_norm_error(exc)
    return False


def one_sample_message(indices):
    """The refusal of one-sample support sets that ``fit`` would refuse,
    those of the tasks at ``indices``."""
    sets = (f"the support sets of {task_names(indices)} have"
            if len(set(indices)) > 1 else
            f"the support set of {task_names(indices)} has")
    return (f"{sets} a single sample, which the network's BatchNorm layers "
            "cannot normalize when fit adapts to it (fit refuses it); give it at "
            "least 2 samples")


def task_names(indices):
    """"task 3" or "tasks 1, 3": each index once (a short list is drawn more
    than once into one meta-batch)."""
    distinct = list(dict.fromkeys(indices))
    return (f"task {distinct[0]}" if len(distinct) == 1
            else f"tasks {format_indices(distinct)}")


def format_indices(indices, max_shown=5):
    shown = ", ".join(str(i) for i in indices[:max_shown])
    return shown + (", ..." if len(indices) > max_shown else "")


def make_optimizer(name, params, lr):
    """The outer optimizer; fused kernels where this torch has them (3x faster)."""
    optimizer_class = torch.optim.Adam if name == "adam" else torch.optim.SGD
    try:
        return optimizer_class(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return optimizer_class(params, lr=lr, foreach=True)


@contextlib.contextmanager
def _interpolated_inputs_error(interpolated):
    """Name task interpolation where a module fails on its made-up rows as on
    indices out of range (inputs read as token ids or categories)."""
    try:
        yield
    except (IndexError, RuntimeError) as exc:
        if not interpolated or (isinstance(exc, RuntimeError)
                                and "out of range" not in str(exc)):
            raise
        raise ValueError(
            f"the module failed on a meta-batch with interpolated tasks "
            f"({type(exc).__name__}: {exc}). task_interpolation mixes the rows of "
            "two tasks into new inputs; a module that reads its inputs as indices "
            "or categories needs task_interpolation=0.0"
        ) from exc


@dataclasses.dataclass(frozen=True)
class TrainerSettings:
    """The outer loop's settings, bound once from an estimator's parameters."""

    meta_batch_size: int
    n_meta_iter: int | None        # None: one pass (meta_partial_fit)
    budget: int                    # n_meta_iter, for schedules
    max_time: float | None
    meta_optimizer: str
    meta_lr: float
    meta_lr_schedule: str
    meta_grad_max_norm: float | None
    validation_interval: int
    early_stopping: bool
    n_iter_no_change: int
    tol: float
    checkpoint_every: int | None   # None: no periodic checkpoints
    verbose: int
    device: torch.device
    world: _distributed.World | None = None  # None: this process alone
    task_interpolation: float = 0.0  # chance a task is replaced (MLTI)

    @classmethod
    def from_estimator(cls, estimator, *, device, incremental):
        if incremental and estimator.meta_lr_schedule == "linear":
            raise ValueError(
                "meta_lr_schedule='linear' decays the rate to 0 over n_meta_iter "
                "meta-iterations, a budget that meta_partial_fit does not have; "
                "use meta_lr_schedule='constant' with meta_partial_fit, or "
                "meta_fit with warm_start=True"
            )
        if estimator.task_interpolation and not estimator._is_classifier():
            raise ValueError(
                f"task_interpolation={estimator.task_interpolation!r} is for "
                "classifiers (it mixes the rows of two tasks' classes into new "
                "classes); regressors take task_interpolation=0.0"
            )
        world = _distributed.world(estimator.distributed)
        _distributed.check_device(world, device)
        return cls(
            meta_batch_size=estimator.meta_batch_size,
            n_meta_iter=None if incremental else estimator.n_meta_iter,
            budget=estimator.n_meta_iter,
            max_time=estimator.max_time,
            meta_optimizer=estimator.meta_optimizer,
            meta_lr=estimator.meta_lr,
            meta_lr_schedule=estimator.meta_lr_schedule,
            meta_grad_max_norm=estimator.meta_grad_max_norm,
            validation_interval=estimator.validation_interval,
            early_stopping=estimator.early_stopping,
            n_iter_no_change=estimator.n_iter_no_change,
            tol=estimator.tol,
            checkpoint_every=(None if estimator.checkpoint_path is None
                              else estimator.checkpoint_every),
            verbose=estimator.verbose,
            device=device,
            world=world,
            task_interpolation=float(estimator.task_interpolation),
        )


@dataclasses.dataclass
class TrainingStart:
    """Where a run starts: a fresh init, or the state an earlier run left."""

    params: dict
    lrs: dict | None
    state: MetaTrainingState
    n_iter: int = 0
    loss_curve: list = dataclasses.field(default_factory=list)
    history: History = dataclasses.field(default_factory=History)
    validation_scores: list = dataclasses.field(default_factory=list)
    best_score: float | None = None


@dataclasses.dataclass
class TrainingOutcome:
    """What a run produced, up to its last completed meta-iteration."""

    params: dict
    lrs: dict | None
    state: MetaTrainingState
    n_iter: int
    loss_curve: list
    history: History
    validation_scores: list
    best_score: float | None


class TaskSource:
    """Draws meta-batches from a task stream, validated and grouped by shape.

    ``n_outputs`` (set once the network is built) bounds the classes of a
    task.
    """

    def __init__(self, stream, checker):
        self.stream = stream
        self.checker = checker
        self.n_outputs = None

    def draw(self, n):
        """Up to ``n`` tasks as a list of ``StackedTasks``; None when exhausted."""
        drawn = self.stream.take(n)
        if not drawn:
            return None
        groups = stack_tasks(drawn, self.checker)
        self.check_classes(groups)
        return groups

    def check_classes(self, groups):
        if not self.checker.classification or self.n_outputs is None:
            return
        for group in groups:
            if group.n_classes > self.n_outputs:
                raise ValueError(
                    f"task {group.indices[0]}: has {group.n_classes} classes, but "
                    f"the network has {self.n_outputs} outputs (the most classes "
                    "in one meta-training task it was built for: a list's tasks "
                    "are all read for it, other tasks' first meta-batch; give "
                    "them an n_way attribute, the most classes in one task)"
                )


class MetaTrainer:
    """Runs meta-iterations from ``start`` until a stop condition.

    Parameters
    ----------
    settings : TrainerSettings
    inner_loop : InnerLoop
        Owns the network and how tasks are adapted and batched.
    start : TrainingStart
    source : TaskSource
    first_groups : list of StackedTasks
        The first meta-batch, already drawn (the network was built from it).
    to_result : callable
        ``to_result(outcome) -> MetaResult``: the record the estimator keeps.
    validation : list of TaskBatch, default=None
        Validation tasks on the device.
    checkpoint : callable, default=None
        ``checkpoint(result)``, called every ``checkpoint_every``
        meta-iterations and at the end.
    averaged_with : callable, default=None
        ``averaged_with(batch)``: the class log-probabilities on a validation
        batch's query sets of a fixed network that predictions average in
        (the pretrained MLP of ``hidden_layer_sizes="auto"``), computed once.
    """

    def __init__(self, settings, inner_loop, start, source, first_groups, *,
                 to_result, validation=None, checkpoint=None, averaged_with=None):
        self.settings = settings
        self.world = world = settings.world
        self.inner_loop = inner_loop
        self._batch_norm = has_batch_norm(inner_loop.module)
        self._one_sample_refusal = None  # whether they refuse one sample: unknown
        self.source = source
        self.groups = first_groups
        self.to_result = to_result
        self.validation = validation
        self.checkpoint = checkpoint
        self.state = copy.copy(start.state)
        self.best_score = start.best_score
        digests = [] if validation is None else _task_digests(validation)
        if validation is not None:
            key = _combined_digest(sorted(digests))  # the same tasks in any order
            if self.state.validation_key not in (None, key):
                # new validation tasks: the earlier best was scored on others
                self.best_score = self.state.best = None
                self.state.n_no_improvement = 0
            self.state.validation_key = key
        if world is not None:
            # each process validates its share of the tasks
            if validation is not None:
                shares = (_distributed.shard_batch(b, world) for b in validation)
                self.validation = [b for b in shares if b is not None]
            if checkpoint is not None and not world.writes:
                self.checkpoint = _skip_checkpoint
        self.averaged_log_probas = [None] * len(self.validation or ())
        if averaged_with is not None:
            self.averaged_log_probas = [averaged_with(b) for b in self.validation or ()]
        self.params = {name: p.detach().clone().requires_grad_()
                       for name, p in start.params.items()}
        self.lrs = (None if start.lrs is None else
                    {name: r.detach().clone().requires_grad_()
                     for name, r in start.lrs.items()})
        self.n_iter = start.n_iter
        self.start_iter = start.n_iter
        self.loss_curve = list(start.loss_curve)
        self.history = History(copy.deepcopy(list(start.history)))
        self.validation_scores = list(start.validation_scores)
        if settings.early_stopping and self.state.best is None:
            # early stopping turned on at a warm start: the earlier runs' best
            # init was not kept, so their scores cannot be what it keeps
            self.best_score = None
            self.state.n_no_improvement = 0
        self.committed_n_drawn = self.state.n_drawn
        if world is not None:
            shared = {**self.params,
                      **{("lr", k): r for k, r in (self.lrs or {}).items()}}
            _distributed.check_agreement({
                "whether validation_tasks were passed": validation is not None,
                "the network's parameter names and shapes":
                    _distributed.shape_signature(shared),
                "the meta-training settings (meta_lr, inner_lr, meta_batch_size, "
                "n_meta_iter, early stopping, ..., random_state for a list of "
                "tasks)": self._settings_signature(),
                # each process validates the tasks at its positions
                "the validation tasks and their order": zlib.crc32(
                    _combined_digest(digests).encode()),
                "the number of tasks (meta_partial_fit's pass)":
                    _pass_length(source.stream),
            }, world, settings.device)
            _distributed.broadcast_from_first(shared, world, settings.device)
        self.elapsed = 0.0  # across processes: the largest, agreed on
        self.divergence_hint = ""  # what to tame besides the rates
        self.optimizer = make_optimizer(
            settings.meta_optimizer,
            [*self.params.values(), *(self.lrs or {}).values()], settings.meta_lr,
        )
        if self.state.optimizer_state is not None:
            # a copy: the optimizer updates its state in place, and the saved
            # state belongs to the estimator (and its clones)
            self.optimizer.load_state_dict(copy.deepcopy(self.state.optimizer_state))
            self._set_meta_lr(settings.meta_lr)
        last_row = self.history[-1]["meta_iter"] if len(self.history) else 0
        self.history_iter = last_row if last_row <= self.n_iter else self.n_iter
        self.history_time = time.perf_counter()
        self.pending = []  # (loss) on the device, not yet read back
        self.committing = False  # inside an update that must not be cut short
        self.check_every = check_interval(settings.device)
        self.snapshot = self._snapshot() if self.check_every > 1 else None

    def _settings_signature(self):
        """A number that changes with every setting that changes the result
        (not with how it is computed, printed or saved)."""
        local = {"verbose", "device", "world", "checkpoint_every", "compile",
                 "tasks_per_chunk"}
        described = [
            (field.name, _plain_repr(getattr(settings, field.name)))
            for settings in (self.settings, self.inner_loop.settings)
            for field in dataclasses.fields(settings) if field.name not in local]
        stream = self.source.stream
        if stream.is_sequence and stream.shuffle:  # random_state orders a list
            described.append(("stream_seed", stream.seed))
        return zlib.crc32(repr(described).encode())

    # -- the loop: draw, step, check, report, stop ------------------------------------
    def run(self):
        """Meta-train; return the result and whether Ctrl-C stopped the run."""
        self.start_time = time.perf_counter()
        verbose = self.settings.verbose if self.world is None or self.world.writes \
            else 0  # one progress bar, not one per process
        self.progress = Progress(verbose, start=self.n_iter,
                                 total=self.settings.n_meta_iter,
                                 max_time=self.settings.max_time)
        interrupted = ran_out = False
        stopped_by = None  # "early stopping" or "max_time", for the last line
        draws = self._draws_random()
        with deferred_keyboard_interrupt() as sigint:
            try:
                # n_meta_iter=0: the init as built (the pretrained MLP)
                while not self._iterations_spent():
                    with self._own_rng(draws):
                        self._step(self.groups)
                        self._check()
                        stop = self._report()
                    interrupted, out_of_time = self._agree(sigint.is_set,
                                                           self._out_of_time())
                    if interrupted:
                        break
                    if self._iterations_spent():
                        break
                    if stop or out_of_time:
                        stopped_by = "early stopping" if stop else "max_time"
                        break
                    if draws:
                        sleep(0)  # another thread waiting for the generator
                    # outside the generator's hold: the tasks' iterator may wait
                    # for a thread that needs it (a producer that fits)
                    self.groups = self.source.draw(self.settings.meta_batch_size)
                    if self.groups is None:
                        ran_out = True
                        break
            except KeyboardInterrupt:
                # a second Ctrl-C gives up at once; an interrupt that was not
                # deferred (the program's own SIGINT handler, or the task
                # iterator raising it) may land in the middle of an update,
                # or leave other processes waiting: the call fails, and the
                # estimator stays as it was
                if sigint.is_set or self.committing or self.world is not None:
                    raise
                interrupted = True
            with self._own_rng(draws):
                self._check(flush=True)
                if (not interrupted and self.history_iter < self.n_iter
                        and self.settings.n_meta_iter is not None):
                    # the last, partial interval; meta_partial_fit leaves it to
                    # the next call, so it validates every validation_interval
                    # meta-iterations as meta_fit does, not once per call
                    self._record_history()
                elif self.n_iter == 0 and self.validation is not None:
                    self._record_history()  # the score of the init as built
                self.progress.close(
                    self.n_iter, self.loss_curve[-1] if self.loss_curve else None,
                    self.validation_scores[-1] if self.validation_scores else None,
                    note=self._stop_note(stopped_by))
                self._save_rng()
                result = self.to_result(self._outcome())
                if self.checkpoint is not None:
                    self.checkpoint(result)
        if ran_out and self.source.stream.cycle and self.settings.n_meta_iter:
            # meta_fit's one-shot iterator (meta_partial_fit's one pass is
            # meant to end)
            warn_user(
                f"the tasks ran out after {self.n_iter} meta-iterations of "
                f"n_meta_iter={self.settings.n_meta_iter}: a one-shot iterator or "
                "generator is consumed once. Pass a list or a sampler (which "
                "meta-training cycles), or more tasks.",
                TasksExhaustedWarning,
            )
        if interrupted:
            kept = ("the best init it scored (early_stopping)"
                    if self.settings.early_stopping and self.state.best is not None
                    else "that init")
            then = ("Call meta_fit again with warm_start=True to resume."
                    if self.settings.n_meta_iter is not None else
                    # meta_partial_fit: the caller's loop goes on to its next call
                    "The rest of this call's tasks were not used; a loop of "
                    "meta_partial_fit calls goes on to its next call (press "
                    "Ctrl-C twice to stop it).")
            warn_user(
                f"meta-training interrupted after {self.n_iter} meta-iterations; "
                f"the estimator keeps {kept}. {then}",
                InterruptedWarning,
            )
        return result

    def _step(self, groups):
        """One meta-iteration: the mean meta-gradient, then an optimizer step."""
        grads, lr_grads, loss = self._meta_gradient(groups)
        checked = loss_if_finite(loss, [*grads.values(), *(lr_grads or {}).values()])
        if self.check_every == 1:  # on the CPU reading it back is free
            checked = float(checked)
            if not math.isfinite(checked):
                self._diverged(self.n_iter + 1, float(loss))
        self.committing = True  # from here to the count, the iteration is half done
        if self.check_every == 1:
            self.loss_curve.append(checked)
        else:
            self.pending.append(checked)
        for name, p in self.params.items():
            p.grad = grads[name]
        for name, r in (self.lrs or {}).items():
            r.grad = lr_grads[name]
        if self.settings.meta_grad_max_norm is not None:
            # scales on the device, without reading the norm back (no sync)
            torch.nn.utils.clip_grad_norm_(
                [*self.params.values(), *(self.lrs or {}).values()],
                self.settings.meta_grad_max_norm, foreach=True)
        if self.settings.meta_lr_schedule == "linear":
            self._set_meta_lr(self.settings.meta_lr * max(0.0, 1.0 - self._progress()))
        self.optimizer.step()
        self.n_iter += 1
        self.committed_n_drawn = self.source.stream.n_drawn
        self.committing = False

    def _one_sample_refused(self, X):
        """Whether the network refuses ``X``, a support set of one sample
        (asked once)."""
        if self._one_sample_refusal is None:
            self._one_sample_refusal = refuses_one_sample(
                self.inner_loop.module, X, self.settings.device)
        return self._one_sample_refusal

    def _meta_gradient(self, groups):
        """Mean meta-gradient and meta-loss over all tasks of the meta-batch."""
        rng = self._interpolation_rng()
        interpolated = set()  # tasks (by index) in a group with a mixed task
        if rng is not None:
            # before sharding: every process draws the same, so the processes
            # of a distributed run see the tasks one process would
            drawn = groups
            groups = [interpolate_tasks(g, self.settings.task_interpolation, rng)
                      for g in drawn]
            interpolated = {index for new, old in zip(groups, drawn)
                            if new is not old for index in new.indices}
        if self.world is not None:
            groups = _distributed.shard(groups, self.world)
        n_tasks = sum(len(g.indices) for g in groups)
        total = total_lrs = None
        total_loss = 0.0
        progress = self._progress()
        for stacked in groups:
            tasks = task_names(stacked.indices)
            if (self._batch_norm and stacked.X_support.shape[1] == 1
                    and self._one_sample_refused(stacked.X_support[0])):
                # Reptile trains on support and query together, where torch
                # would not refuse it: fit does
                raise ValueError(one_sample_message(stacked.indices))
            batch = to_task_batch(stacked, self.settings.device)
            sets = f"the support or query set of {tasks}"
            with single_sample_batch_norm_error(sets), \
                    _interpolated_inputs_error(
                        not interpolated.isdisjoint(stacked.indices)):
                grads, lr_grads, loss = self.inner_loop.meta_gradient(
                    self.params, self.lrs, batch, progress=progress)
            total_loss = total_loss + loss
            total = grads if total is None else {
                k: total[k] + g for k, g in grads.items()}
            if lr_grads is not None:
                total_lrs = lr_grads if total_lrs is None else {
                    k: total_lrs[k] + g for k, g in lr_grads.items()}
        if self.world is not None:
            total, total_lrs, total_loss, n_tasks = self._sum_over_processes(
                total, total_lrs, total_loss, n_tasks)
        mean = {k: g / n_tasks for k, g in total.items()}
        mean_lrs = None if total_lrs is None else {
            k: g / n_tasks for k, g in total_lrs.items()}
        return mean, mean_lrs, total_loss / n_tasks

    def _sum_over_processes(self, grads, lr_grads, loss, n_tasks):
        """The sums of all processes' shares (zeros from a process without one)."""
        if grads is None:
            grads = {k: torch.zeros_like(p) for k, p in self.params.items()}
        if lr_grads is None and self.lrs is not None:
            lr_grads = {k: torch.zeros_like(r) for k, r in self.lrs.items()}
        dtype = next(iter(grads.values())).dtype
        summed = _distributed.all_reduce_sum({
            **{("grad", k): g for k, g in grads.items()},
            **{("lr", k): g for k, g in (lr_grads or {}).items()},
            "loss": torch.as_tensor(loss, dtype=dtype, device=self.settings.device),
            "n_tasks": torch.tensor(float(n_tasks), dtype=dtype,
                                    device=self.settings.device),
        }, self.world, self.settings.device)
        return (
            {k: summed["grad", k] for k in grads},
            None if lr_grads is None else {k: summed["lr", k] for k in lr_grads},
            summed["loss"],
            summed["n_tasks"],  # a tensor: reading it back would stall a GPU
        )

    def _check(self, flush=False):
        """Read back pending losses when due; on a non-finite one, stop."""
        due = (flush or len(self.pending) >= self.check_every
               or self._checkpoint_due() or self._history_due())
        if not due or not self.pending:
            return
        losses = torch.stack(self.pending).cpu().tolist()
        self.pending.clear()
        if all(map(math.isfinite, losses)):
            self.loss_curve.extend(losses)
            self.snapshot = self._snapshot()
            return
        first_bad = next(i for i, v in enumerate(losses) if not math.isfinite(v))
        n_iter_at_bad = self.n_iter - len(losses) + first_bad + 1
        self.committing = True  # the losses are read: the restore must complete
        self._restore(self.snapshot)
        self._diverged(n_iter_at_bad, losses[first_bad])

    def _report(self):
        """History, validation, printing and checkpoints; return whether to stop."""
        stop = False
        if self._history_due():
            stop = self._record_history()
        if self.settings.verbose:
            self.progress.update(
                self.n_iter, self.loss_curve[-1] if self.loss_curve else None,
                self.validation_scores[-1] if self.validation_scores else None)
        if self._checkpoint_due():
            self._save_rng()
            self.checkpoint(self.to_result(self._outcome()))
        return stop

    def _stop_note(self, stopped_by):
        """The last line of the progress report when the run stopped before
        ``n_meta_iter``: why, and which init the estimator keeps."""
        settings = self.settings
        if stopped_by is None:
            return None
        # meta-iterations count across calls, as n_meta_iter_ does
        if stopped_by == "early stopping":
            checks = self.state.n_no_improvement
            note = (f"Stopped early at meta-iteration {self.n_iter}: the validation "
                    f"score did not improve by more than tol={settings.tol:g} in "
                    f"the last {checks} validation{'s' if checks != 1 else ''}")
        else:
            note = (f"Stopped at meta-iteration {self.n_iter}: "
                    f"max_time={settings.max_time:g} s was reached")
        best_rows = [row for row in self.history if row.get("valid_score_best")]
        if settings.early_stopping and self.state.best is not None and best_rows:
            note += (f"; the estimator keeps the init of meta-iteration "
                     f"{best_rows[-1]['meta_iter']} (validation score "
                     f"{best_rows[-1]['valid_score']:.4f})")
        if settings.n_meta_iter is None:  # meta_partial_fit's one pass
            note += "; the call ends here, and tasks it had left are not used"
        return note + "."

    def _iterations_spent(self):
        n_meta_iter = self.settings.n_meta_iter
        return n_meta_iter is not None and self.n_iter >= n_meta_iter

    def _out_of_time(self):
        max_time = self.settings.max_time
        return max_time is not None and self._elapsed() >= max_time

    def _elapsed(self):
        # across processes, the time agreed on: their schedules must not differ
        if self.world is not None:
            return self.elapsed
        return time.perf_counter() - self.start_time

    def _agree(self, interrupted, out_of_time):
        """Whether to stop for Ctrl-C or ``max_time``: on any process, all stop.

        Processes agree when the loss is read back (every meta-iteration on
        the CPU); in between, only their common stop conditions count.
        """
        if self.world is None:
            return interrupted, out_of_time
        if self.n_iter % self.check_every:
            return False, False
        interrupted, self.elapsed = _distributed.all_reduce_max(
            [interrupted, time.perf_counter() - self.start_time], self.world,
            self.settings.device)
        return bool(interrupted), self._out_of_time()

    def _history_due(self):
        return self.n_iter % self.settings.validation_interval == 0

    def _checkpoint_due(self):
        every = self.settings.checkpoint_every
        return every is not None and self.n_iter % every == 0

    def _progress(self):
        """How far along meta-training is, from 0 to 1, by iterations or time."""
        settings = self.settings
        progress = self.n_iter / settings.budget
        if settings.max_time is not None and hasattr(self, "start_time"):
            progress = max(progress, self._elapsed() / settings.max_time)
        return progress

    def _set_meta_lr(self, lr):
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    # -- random state --------------------------------------------------------------
    def _draws_random(self):
        """Whether meta-training draws from torch's global RNG: task
        interpolation does, and a module that draws (dropout)."""
        return self.inner_loop.draws_random or bool(self.settings.task_interpolation)

    def _interpolation_rng(self):
        """A numpy generator seeded from torch's RNG, which checkpoints and
        warm starts restore; None without task interpolation."""
        if not self.settings.task_interpolation:
            return None
        return np.random.default_rng(int(torch.randint(2**62, (1,)).item()))

    @contextlib.contextmanager
    def _own_rng(self, draws):
        """This run's random numbers on torch's generator, one meta-iteration
        at a time: no other thread's seeded section runs meanwhile, and
        another's (a fit) can between meta-iterations instead of waiting for
        the whole run. ``draws=False``: nothing (see ``forked_rng``)."""
        with forked_rng(self.settings.device, draws=draws):
            if draws:
                self._restore_rng()
            try:
                yield
            finally:
                if draws:
                    self._save_rng()

    def _restore_rng(self):
        state = self.state
        if state.torch_rng_state is None:
            seed_torch(state.torch_seed, self.settings.device)
            return
        torch.set_rng_state(state.torch_rng_state)
        if self.settings.device.type == "cuda" and state.cuda_rng_state is not None:
            torch.cuda.set_rng_state(state.cuda_rng_state, self.settings.device)

    def _save_rng(self):
        if not self._draws_random():
            # the generator is another thread's, if anyone's; ours did not
            # move: a warm start that draws again goes on from where the
            # last drawing run stopped (a reseed would repeat its draws)
            return
        self.state.torch_rng_state = torch.get_rng_state()
        if self.settings.device.type == "cuda":
            self.state.cuda_rng_state = torch.cuda.get_rng_state(self.settings.device)

    # -- history, validation and early stopping ------------------------------------
    def _record_history(self):
        """Add a row to the history; return whether early stopping says stop."""
        settings = self.settings
        now = time.perf_counter()
        n_new = self.n_iter - self.history_iter
        row = {
            "meta_iter": self.n_iter,
            "meta_loss": float(np.mean(self.loss_curve[-n_new:])) if n_new else None,
            "dur": now - self.history_time,
        }
        stop = False
        # the scores, the best init and the row go together: an interrupt
        # inside them would leave a row out of the history
        self.committing = True
        if self.validation is not None:
            valid_loss, valid_score = self._evaluate()
            # a NaN score (outputs that overflowed) is never the best
            improved = math.isfinite(valid_score) and (
                self.best_score is None or valid_score > self.best_score + settings.tol)
            row.update(valid_loss=valid_loss, valid_score=valid_score,
                       valid_score_best=improved)
            self.validation_scores.append(valid_score)
            if improved:
                self.best_score = valid_score
                self.state.n_no_improvement = 0
                # without early stopping the best score's init is not kept:
                # a later run with it must not go back to an older one
                self.state.best = self._current() if settings.early_stopping else None
            else:
                self.state.n_no_improvement += 1
                stop = (settings.early_stopping
                        and self.state.n_no_improvement >= settings.n_iter_no_change)
        self.history.append(row)
        self.history_iter = self.n_iter
        self.history_time = time.perf_counter()
        self.committing = False
        return stop

    def _evaluate(self):
        """Mean post-adaptation query loss and score over the validation tasks.

        Random numbers (dropout) come from a generator of their own, so that
        validating never changes the course of meta-training.
        """
        params = {k: p.detach() for k, p in self.params.items()}
        lrs = None if self.lrs is None else {k: r.detach() for k, r in self.lrs.items()}
        total_loss = total_score = 0.0
        n_tasks = 0
        device = self.settings.device
        with seeded_torch(self.state.torch_seed + self.n_iter, device,
                          draws=self._draws_random()):
            for batch, averaged in zip(self.validation, self.averaged_log_probas):
                loss, score = self.inner_loop.evaluate(params, lrs, batch, averaged)
                total_loss += loss
                total_score += score
                n_tasks += batch.n_tasks
        if self.world is not None:
            summed = _distributed.all_reduce_sum(
                {k: torch.tensor(v, dtype=torch.float64) for k, v in
                 (("loss", total_loss), ("score", total_score), ("n", n_tasks))},
                self.world, self.settings.device)
            total_loss, total_score, n_tasks = (summed[k].item() for k in
                                                ("loss", "score", "n"))
        return total_loss / n_tasks, total_score / n_tasks

    def _current(self):
        return {
            "params": {k: p.detach().clone() for k, p in self.params.items()},
            "lrs": (None if self.lrs is None else
                    {k: r.detach().clone() for k, r in self.lrs.items()}),
        }

    # -- divergence ------------------------------------------------------------------
    def _snapshot(self):
        return {
            **self._current(),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "n_iter": self.n_iter,
            "n_drawn": self.committed_n_drawn,
            "curve_length": len(self.loss_curve),
        }

    def _restore(self, snapshot):
        if snapshot is None:  # checked every iteration: nothing was applied
            return
        with torch.no_grad():
            for k, p in self.params.items():
                p.copy_(snapshot["params"][k])
            for k, r in (self.lrs or {}).items():
                r.copy_(snapshot["lrs"][k])
        self.optimizer.load_state_dict(snapshot["optimizer"])
        self.n_iter = snapshot["n_iter"]
        self.committed_n_drawn = snapshot["n_drawn"]
        del self.loss_curve[snapshot["curve_length"]:]

    def _scale_hint(self):
        scale = self.inner_loop.settings.large_prototype_scale()
        return f", or {scale}" if scale else ""

    def _diverged(self, n_iter_at_bad, loss):
        # the call failed: the estimator stays as it was; the progress up to
        # the last finite init travels with the error
        result = None
        if self.n_iter > self.start_iter:
            self._save_rng()
            result = self.to_result(self._outcome())
        kept = ("exc.estimator holds the last finite init (after "
                f"{self.n_iter} meta-iterations); " if result is not None else "")
        error = DivergenceError(
            f"meta-training diverged at meta-iteration {n_iter_at_bad}: the "
            f"meta-loss or its gradient is not finite (loss={loss}). The estimator "
            f"is left as it was before this call; {kept}lower meta_lr or inner_lr"
            f"{self._scale_hint()}{self.divergence_hint}."
        )
        error.result = result
        raise error

    # -- the result --------------------------------------------------------------------
    def _outcome(self):
        """The state after the last completed meta-iteration, on the CPU."""
        state = dataclasses.replace(self.state)
        state.n_drawn = self.committed_n_drawn
        state.optimizer_state = to_cpu(copy.deepcopy(self.optimizer.state_dict()))
        current = self._current()
        keep = current
        state.current = None
        if self.settings.early_stopping and self.state.best is not None:
            # keep the best init; resume from where the run was
            keep = self.state.best
            state.current = to_cpu(current)
        state.best = to_cpu(self.state.best)
        return TrainingOutcome(
            params=to_cpu(keep["params"]),
            lrs=to_cpu(keep["lrs"]),
            state=state,
            n_iter=self.n_iter,
            loss_curve=list(self.loss_curve),
            history=History(copy.deepcopy(list(self.history))),
            validation_scores=list(self.validation_scores),
            best_score=self.best_score,
        )


def _plain_repr(value):
    """``repr`` that writes equal values alike (60 and 60.0, np.int64(3) and 3,
    np.True_ and True)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return repr(float(value))
    return repr(value)


def _pass_length(stream):
    """The tasks in one pass of a stream that does not cycle (-1: unknown)."""
    if stream.cycle or not stream.is_sequence:
        return -1
    return len(stream.tasks)


def _task_digests(batches):
    """A digest of each validation task's values and shapes, in their order."""
    digests = []
    for batch in batches:
        arrays = [t.detach().cpu().numpy() for t in
                  (batch.X_support, batch.y_support, batch.X_query, batch.y_query)]
        for i in range(len(arrays[0])):
            digest = hashlib.sha256()
            for array in arrays:
                digest.update(repr((array[i].shape, str(array.dtype))).encode())
                digest.update(np.ascontiguousarray(array[i]).tobytes())
            digests.append(digest.hexdigest())
    return digests


def _combined_digest(digests):
    return hashlib.sha256("".join(digests).encode()).hexdigest()


def _skip_checkpoint(result):
    """Processes other than rank 0 write no checkpoint."""
