"""The meta-training loop behind ``meta_fit`` and ``meta_partial_fit``.

The loop works on copies: the estimator's attributes change only when the
trainer commits, after the last completed meta-iteration (at the end, on
Ctrl-C, or after divergence), so a call that fails on bad input leaves the
estimator as it was.
"""

import copy
import math
import time
import warnings
from collections.abc import Sequence
from functools import partial

import numpy as np
import torch
from skorch.history import History
from torch import nn

from sk_meta._compile import resolve_compile_mode
from sk_meta._signals import deferred_keyboard_interrupt
from sk_meta._torch_utils import (
    loss_if_finite,
    seed_torch,
    single_sample_batch_norm_error,
    to_cpu,
)
from sk_meta.exceptions import DivergenceError
from sk_meta.functional import (
    TaskBatch,
    adapt,
    batched_forward,
    cross_entropy_loss,
    expand_params,
    has_batch_norm,
    mse_loss,
    outputs_beside_support,
)
from sk_meta.tasks._stream import TaskStream
from sk_meta.tasks._validation import TaskChecker, stack_tasks

# On a GPU, reading the loss back every iteration would stall the pipeline;
# losses are checked for NaN in blocks, with a snapshot to fall back on.
_CUDA_CHECK_EVERY = 25
_MAX_VALIDATION_TASKS = 10_000
# On the CPU, vmap runs a convolution over many tasks as one grouped
# convolution, which slows down once its activations outgrow the caches:
# chunks of tasks keep each chunk's largest activation under this size
# (measured on conv-4 with 4 to 64 filters, 5-way 1-shot Omniglot).
_CPU_CONV_CHUNK_BYTES = 8 * 2**20


class MetaTrainingState:
    """What meta-training needs, beyond the init, to continue exactly.

    Held by the estimator as ``_meta_training_state`` (CPU tensors only).
    """

    def __init__(self, *, init_seed, stream_seed, torch_seed, n_drawn=0,
                 optimizer_state=None, torch_rng_state=None, forward_strategy=None):
        self.init_seed = init_seed
        self.stream_seed = stream_seed
        self.torch_seed = torch_seed
        self.n_drawn = n_drawn
        self.optimizer_state = optimizer_state
        self.torch_rng_state = torch_rng_state
        self.forward_strategy = forward_strategy


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


def split_batch(batch, chunk_size):
    """Split a TaskBatch into chunks of at most ``chunk_size`` tasks."""
    if chunk_size is None or batch.n_tasks <= chunk_size:
        return [batch]
    parts = [t.split(chunk_size) for t in batch[:4]]
    return [TaskBatch(*tensors, batch.n_classes) for tensors in zip(*parts)]


def loss_for(batch, classification):
    if classification:
        return partial(cross_entropy_loss, n_classes=batch.n_classes)
    return mse_loss


def make_optimizer(name, params, lr):
    """The outer optimizer; fused kernels where this torch has them (3x faster)."""
    optimizer_class = torch.optim.Adam if name == "adam" else torch.optim.SGD
    try:
        return optimizer_class(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return optimizer_class(params, lr=lr, foreach=True)


def task_scores(outputs, batch, classification):
    """Per-task score: accuracy for classification, R² for regression."""
    if classification:
        predicted = outputs[..., : batch.n_classes].argmax(-1)
        return (predicted == batch.y_query).float().mean(1)
    y = batch.y_query.reshape(batch.n_tasks, batch.y_query.shape[1], -1)
    outputs = outputs.reshape(y.shape)
    residual = (y - outputs).square().sum((1, 2))
    total = (y - y.mean(1, keepdim=True)).square().sum((1, 2))
    return 1 - residual / total.clamp_min(torch.finfo(total.dtype).tiny)


def runs_beside_support(module, transductive, n_samples):
    """Whether ``n_samples`` query samples are each run beside the support set.

    Only BatchNorm makes a sample's output depend on its batch: it is run
    beside the support set when not ``transductive``, and always when alone
    (it would otherwise be normalized with its own statistics).
    """
    return has_batch_norm(module) and (not transductive or n_samples == 1)


def _format_indices(indices, max_shown=5):
    shown = ", ".join(str(i) for i in indices[:max_shown])
    return shown + (", ..." if len(indices) > max_shown else "")


def _max_classes_in(tasks):
    """Most distinct support labels in one task of a sequence (bad tasks skipped)."""
    most = 0
    for task in tasks:
        try:
            most = max(most, len(np.unique(np.asarray(task[1]))))
        except Exception:  # malformed tasks are reported when they are drawn
            continue
    return most


class MetaTrainer:
    """Runs meta-iterations for one estimator and commits the result to it."""

    def __init__(self, estimator, tasks, *, device, incremental, warm,
                 validation_tasks=None):
        self.estimator = estimator
        self.validation_tasks = validation_tasks
        self.device = device
        self.incremental = incremental
        self.warm = warm
        self.classification = estimator._is_classifier()
        if warm:
            self.state = copy.copy(estimator._meta_training_state)
        else:
            self.state = MetaTrainingState(**dict(zip(
                ("init_seed", "stream_seed", "torch_seed"), estimator._seeds()
            )))
        self.tasks = tasks
        self.stream = self._make_stream(tasks)

    # -- the task stream ---------------------------------------------------
    def _make_stream(self, tasks):
        if self.incremental:
            return TaskStream(tasks, seed=0, shuffle=False, cycle=False)
        live = getattr(self.estimator, "_live_stream", None)
        if (self.warm and live is not None and live.tasks is tasks
                and live.n_drawn == self.state.n_drawn):
            return live
        return TaskStream(tasks, seed=self.state.stream_seed,
                          n_drawn=self.state.n_drawn if self.warm else 0)

    # -- building the network ----------------------------------------------
    def _setup(self, first_groups, checker):
        est = self.estimator
        if self.warm:
            module = est.module_
            n_outputs = est.meta_n_outputs_
        else:
            n_outputs = self._n_outputs_needed(first_groups, checker)
            module, n_outputs = est._build_module(
                checker.input_shape, n_outputs, self.state.init_seed,
                probe=first_groups[0].X_support[0],
            )
        self.n_outputs = n_outputs
        self.input_shape = checker.input_shape
        self.y_shape = checker.y_shape
        self.module = copy.deepcopy(module).to(self.device).train()
        self.buffers = dict(self.module.named_buffers())
        self.params = {
            name: p.detach().clone().requires_grad_()
            for name, p in self.module.named_parameters()
        }
        self.forward = self._choose_forward(first_groups[0])
        self.compile_mode = resolve_compile_mode(est.compile, self.device)
        self.chunk_size = self._resolve_chunk_size(est.tasks_per_chunk,
                                                   first_groups[0])
        self.meta_step = est._meta_step(self.compile_mode)
        self.optimizer = make_optimizer(
            est.meta_optimizer, list(self.params.values()), est.meta_lr
        )
        if self.warm and self.state.optimizer_state is not None:
            # a copy: the optimizer updates its state in place, and the saved
            # state belongs to the estimator (and its clones)
            self.optimizer.load_state_dict(copy.deepcopy(self.state.optimizer_state))
            self._set_meta_lr(est.meta_lr)

    def _n_outputs_needed(self, first_groups, checker):
        if not self.classification:
            return int(np.prod(checker.y_shape)) if checker.y_shape else 1
        most = max(g.n_classes for g in first_groups)
        n_way = getattr(self.tasks, "n_way", None)
        if isinstance(n_way, (int, np.integer)):
            most = max(most, int(n_way))
        elif isinstance(self.tasks, Sequence):
            most = max(most, _max_classes_in(self.tasks))
        return most

    def _set_meta_lr(self, lr):
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _resolve_chunk_size(self, tasks_per_chunk, stacked):
        if tasks_per_chunk != "auto":
            return tasks_per_chunk
        has_convolutions = any(isinstance(m, nn.modules.conv._ConvNd)
                               for m in self.module.modules())
        if not (self.device.type == "cpu" and self.state.forward_strategy == "vmap"
                and has_convolutions):
            return None
        per_task = self._largest_activation_bytes(stacked)
        return max(1, _CPU_CONV_CHUNK_BYTES // max(per_task, 1))

    def _largest_activation_bytes(self, stacked):
        """Bytes of the largest layer output on one task's larger set."""
        largest = [0]

        def record(module, inputs, output):
            if isinstance(output, torch.Tensor):
                largest[0] = max(largest[0], output.numel() * output.element_size())

        X = max(stacked.X_support[0], stacked.X_query[0], key=len)
        hooks = [m.register_forward_hook(record) for m in self.module.modules()]
        try:
            with torch.no_grad():
                self.module(torch.from_numpy(X).to(self.device))
        finally:
            for hook in hooks:
                hook.remove()
        return largest[0]

    def _choose_forward(self, stacked):
        strategy = self.state.forward_strategy
        if strategy is None:
            strategy = "native" if hasattr(self.module, "forward_batched") else "vmap"
            if strategy == "vmap":
                # vmap has no batching rule for some layers (RNNs): fall back
                # to a loop over the tasks of a meta-batch.
                # two tasks: a single one would run without vmap
                probe = torch.from_numpy(stacked.X_support[:1]).to(self.device)
                probe = probe.expand(2, *probe.shape[1:])
                try:
                    with torch.no_grad():
                        batched_forward(self.module, self.buffers, "vmap")(
                            expand_params(self.params, 2), probe
                        )
                except RuntimeError as exc:
                    strategy = "loop"
                    if self.estimator.verbose:
                        print(f"vmap cannot batch this module ({exc}); "
                              "meta-batches run task by task")
            self.state.forward_strategy = strategy
        return batched_forward(self.module, self.buffers, strategy)

    # -- one meta-iteration -------------------------------------------------
    def _check_groups(self, groups):
        if not self.classification:
            return
        for group in groups:
            if group.n_classes > self.n_outputs:
                raise ValueError(
                    f"task {group.indices[0]}: has {group.n_classes} classes, but "
                    f"the network has {self.n_outputs} outputs (the most classes "
                    "in one meta-training task it was built for)"
                )

    def _meta_gradient(self, groups):
        """Mean meta-gradient and meta-loss over all tasks of the meta-batch."""
        n_tasks = sum(len(g.indices) for g in groups)
        total_grads = None
        total_loss = 0.0
        for stacked in groups:
            batch = to_task_batch(stacked, self.device)
            loss_fn = loss_for(batch, self.classification)
            sets = (f"the support or query set of the tasks "
                    f"{_format_indices(stacked.indices)}")
            for chunk in split_batch(batch, self.chunk_size):
                with single_sample_batch_norm_error(sets):
                    grads, loss = self.meta_step(
                        self.forward, self.params, chunk, loss_fn=loss_fn
                    )
                total_loss = total_loss + loss
                if total_grads is None:
                    if self.compile_mode == "reduce-overhead":
                        # CUDA graph outputs are overwritten by the next replay
                        grads = {k: g.clone() for k, g in grads.items()}
                    total_grads = grads
                else:
                    total_grads = {k: total_grads[k] + g for k, g in grads.items()}
        return ({k: g / n_tasks for k, g in total_grads.items()},
                total_loss / n_tasks)

    # -- the loop -------------------------------------------------------------
    def run(self):
        est = self.estimator
        start_iter = est.n_meta_iter_ if self.warm else 0
        self.start_iter = start_iter
        if self.incremental:
            stop_iter = None
        else:
            stop_iter = est.n_meta_iter
            if start_iter >= stop_iter:
                warnings.warn(
                    f"{type(est).__name__} already ran {start_iter} meta-iterations "
                    f"(n_meta_iter={stop_iter}); increase n_meta_iter to continue "
                    "meta-training with warm_start=True",
                    UserWarning,
                )
                return
        checker = TaskChecker(
            classification=self.classification,
            input_shape=est.meta_input_shape_ if self.warm else None,
            y_shape=getattr(est, "_meta_y_shape", None) if self.warm else None,
        )
        drawn = self.stream.take(est.meta_batch_size)
        if not drawn:
            raise ValueError(
                "tasks is empty (or an exhausted iterator): meta-training needs "
                "at least one task"
            )
        groups = stack_tasks(drawn, checker)
        self._setup(groups, checker)
        self._check_groups(groups)

        self.n_iter = start_iter
        self.loss_curve = list(est.meta_loss_curve_) if self.warm else []
        self.committed_n_drawn = self.state.n_drawn if self.warm else 0
        self._start_history()
        validation = self._prepare_validation(checker)
        check_every = check_interval(self.device)
        pending = []  # (loss, finite flag) on the device, not yet read back
        snapshot = self._snapshot() if check_every > 1 else None
        interrupted = False
        self.start_time = time.perf_counter()
        rng_state = self.state.torch_rng_state
        rng_devices = [self.device] if self.device.type == "cuda" else []
        with deferred_keyboard_interrupt() as sigint, \
                torch.random.fork_rng(devices=rng_devices):
            if rng_state is not None:
                torch.set_rng_state(rng_state)
            else:
                seed_torch(self.state.torch_seed, self.device)
            try:
                while True:
                    grads, loss = self._meta_gradient(groups)
                    checked = loss_if_finite(loss, grads.values())
                    if check_every == 1:  # on the CPU reading it back is free
                        checked = float(checked)
                        if not math.isfinite(checked):
                            self._diverged(self.n_iter + 1, float(loss))
                        self.loss_curve.append(checked)
                    else:
                        pending.append(checked)
                    for name, p in self.params.items():
                        p.grad = grads[name]
                    if est.meta_lr_schedule == "linear":
                        self._set_meta_lr(est.meta_lr * max(
                            0.0, 1.0 - self._progress()))
                    self.optimizer.step()
                    self.n_iter += 1
                    self.committed_n_drawn = self.stream.n_drawn
                    checkpoint_due = (est.checkpoint_path is not None
                                      and self.n_iter % est.checkpoint_every == 0)
                    history_due = self.n_iter % est.validation_interval == 0
                    if (len(pending) >= check_every or checkpoint_due or history_due
                            or self.estimator.verbose):
                        bad = self._flush(pending, snapshot)
                        if bad is not None:
                            self._diverged(*bad)
                        if check_every > 1:
                            snapshot = self._snapshot()
                        self._report()
                    stop_early = history_due and self._record_history(validation)
                    if checkpoint_due:
                        self.checkpoint()
                    if sigint.is_set:
                        interrupted = True
                        break
                    if stop_early or (stop_iter is not None
                                      and self.n_iter >= stop_iter):
                        break
                    if (est.max_time is not None
                            and time.perf_counter() - self.start_time >= est.max_time):
                        break
                    drawn = self.stream.take(est.meta_batch_size)
                    if not drawn:
                        break
                    groups = stack_tasks(drawn, checker)
                    self._check_groups(groups)
            except KeyboardInterrupt:
                if sigint.is_set:  # second Ctrl-C: give up at once
                    raise
                interrupted = True
            bad = self._flush(pending, snapshot)
            if bad is not None:
                self._diverged(*bad)
            if self.history_iter < self.n_iter:  # the last, partial interval
                self._record_history(validation)
            self._restore_best()
            self.state.torch_rng_state = torch.get_rng_state()
            if est.checkpoint_path is not None:
                self.checkpoint()
        self.commit()
        if interrupted:
            warnings.warn(
                f"meta-training interrupted after {self.n_iter} meta-iterations; "
                "the estimator keeps that init. Call meta_fit again with "
                "warm_start=True to resume.",
                UserWarning,
            )

    def _progress(self):
        """How far along meta-training is, from 0 to 1, by iterations or time."""
        est = self.estimator
        progress = self.n_iter / est.n_meta_iter
        if est.max_time is not None:
            elapsed = time.perf_counter() - self.start_time
            progress = max(progress, elapsed / est.max_time)
        return progress

    # -- history, validation and early stopping -------------------------------------
    def _start_history(self):
        est = self.estimator
        self.history = History(copy.deepcopy(list(est.history_)) if self.warm else [])
        self.validation_scores = list(est.validation_scores_) if self.warm else []
        self.best_score = est.best_validation_score_ if self.warm else None
        self.best_params = None
        self.no_improvement = 0
        self.history_iter = self.n_iter
        self.history_time = time.perf_counter()

    def _prepare_validation(self, checker):
        """Validation tasks validated, stacked and on the device, once."""
        tasks = self.validation_tasks
        est = self.estimator
        if tasks is None:
            if est.early_stopping:
                raise ValueError(
                    "early_stopping=True needs validation tasks: call "
                    "meta_fit(tasks, validation_tasks=...)"
                )
            return None
        stream = TaskStream(tasks, seed=0, shuffle=False, cycle=False)
        drawn = stream.take(_MAX_VALIDATION_TASKS + 1)
        if not drawn:
            raise ValueError("validation_tasks is empty")
        if len(drawn) > _MAX_VALIDATION_TASKS:
            raise ValueError(
                f"validation_tasks must be a finite collection of at most "
                f"{_MAX_VALIDATION_TASKS} tasks (pass a list, or a sampler with "
                "n_tasks)"
            )
        try:
            groups = stack_tasks(drawn, checker)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"validation_tasks: {exc}") from None
        self._check_groups(groups)
        return [to_task_batch(g, self.device) for g in groups]

    def _evaluate(self, validation):
        """Mean post-adaptation query loss and score over the validation tasks."""
        est = self.estimator
        params = {k: p.detach() for k, p in self.params.items()}
        total_loss = total_score = 0.0
        n_tasks = 0
        for batch in validation:
            loss_fn = loss_for(batch, self.classification)
            self.module.train()
            adapted, _ = adapt(
                self.forward, expand_params(params, batch.n_tasks), batch.X_support,
                batch.y_support, loss_fn=loss_fn, lr=est.inner_lr,
                n_steps=est.inner_steps, detach=True, **est._adapt_options(),
            )
            self.module.eval()
            with torch.no_grad():
                out = self._query_outputs(adapted, batch)
                total_loss += float(loss_fn(out, batch.y_query))
                total_score += float(task_scores(out, batch, self.classification).sum())
            self.module.train()
            n_tasks += batch.n_tasks
        return total_loss / n_tasks, total_score / n_tasks

    def _query_outputs(self, adapted, batch):
        """Outputs on the query sets, normalized as ``predict`` would."""
        if not runs_beside_support(self.module, self.estimator.transductive,
                                   batch.X_query.shape[1]):
            return self.forward(adapted, batch.X_query)
        return torch.stack([
            outputs_beside_support(
                self.module, self.buffers, {k: p[i] for k, p in adapted.items()},
                batch.X_support[i], batch.X_query[i],
            )
            for i in range(batch.n_tasks)
        ])

    def _record_history(self, validation):
        """Add a row to the history; return whether early stopping says stop."""
        est = self.estimator
        now = time.perf_counter()
        n_new = self.n_iter - self.history_iter
        row = {
            "meta_iter": self.n_iter,
            "meta_loss": float(np.mean(self.loss_curve[-n_new:])) if n_new else None,
            "dur": now - self.history_time,
        }
        stop = False
        if validation is not None:
            valid_loss, valid_score = self._evaluate(validation)
            improved = (self.best_score is None
                        or valid_score > self.best_score + est.tol)
            row.update(valid_loss=valid_loss, valid_score=valid_score,
                       valid_score_best=improved)
            self.validation_scores.append(valid_score)
            if improved:
                self.best_score = valid_score
                self.best_params = {k: p.detach().clone()
                                    for k, p in self.params.items()}
                self.no_improvement = 0
            else:
                self.no_improvement += 1
                stop = (est.early_stopping
                        and self.no_improvement >= est.n_iter_no_change)
            if est.verbose:
                print(f"Meta-iteration {self.n_iter}, validation loss = "
                      f"{valid_loss:.6f}, score = {valid_score:.4f}")
        self.history.append(row)
        self.history_iter = self.n_iter
        self.history_time = time.perf_counter()
        return stop

    def _restore_best(self):
        """With early stopping, keep the init that scored best on validation."""
        if self.estimator.early_stopping and self.best_params is not None:
            with torch.no_grad():
                for k, p in self.params.items():
                    p.copy_(self.best_params[k])

    def _flush(self, pending, snapshot):
        """Read back pending losses; on a non-finite one, roll back to the snapshot."""
        if not pending:
            return None
        losses = torch.stack(pending).cpu().tolist()
        pending.clear()
        if all(map(math.isfinite, losses)):
            self.loss_curve.extend(losses)
            return None
        first_bad = next(i for i, v in enumerate(losses) if not math.isfinite(v))
        n_iter_at_bad = self.n_iter - len(losses) + first_bad + 1
        self._restore(snapshot)
        return n_iter_at_bad, losses[first_bad]

    def _snapshot(self):
        return {
            "params": {k: p.detach().clone() for k, p in self.params.items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "n_iter": self.n_iter,
            "n_drawn": getattr(self, "committed_n_drawn", self.state.n_drawn),
            "curve_length": len(getattr(self, "loss_curve", [])),
        }

    def _restore(self, snapshot):
        if snapshot is None:  # checked every iteration: nothing was applied
            return
        with torch.no_grad():
            for k, p in self.params.items():
                p.copy_(snapshot["params"][k])
        self.optimizer.load_state_dict(snapshot["optimizer"])
        self.n_iter = snapshot["n_iter"]
        self.committed_n_drawn = snapshot["n_drawn"]
        del self.loss_curve[snapshot["curve_length"]:]

    def _diverged(self, n_iter_at_bad, loss):
        # the call failed: the estimator stays as it was (the caller rolls it
        # back); the progress up to the last finite init travels with the error
        last_finite = None
        if self.n_iter > (self.start_iter):
            self.state.torch_rng_state = torch.get_rng_state()
            last_finite = copy.copy(self.estimator)
            self.commit(target=last_finite)
        kept = ("exc.estimator holds the last finite init (after "
                f"{self.n_iter} meta-iterations); " if last_finite is not None
                else "")
        raise DivergenceError(
            f"meta-training diverged at meta-iteration {n_iter_at_bad}: the "
            f"meta-loss or its gradient is not finite (loss={loss}). The estimator "
            f"is left as it was before this call; {kept}lower meta_lr or inner_lr.",
            estimator=last_finite,
        )

    def _report(self):
        verbose = self.estimator.verbose
        if not verbose or not self.loss_curve:
            return
        every = 1 if verbose > 1 else max(1, (self.estimator.n_meta_iter or 1) // 20)
        if self.n_iter % every == 0:
            elapsed = time.perf_counter() - self.start_time
            print(f"Meta-iteration {self.n_iter}, meta-loss = "
                  f"{self.loss_curve[-1]:.6f} ({elapsed:.1f} s)")

    # -- handing the result to the estimator ----------------------------------
    def commit(self, target=None):
        """Write the state after the last completed meta-iteration to the estimator.

        ``target`` is another estimator object to write to instead (a
        checkpoint is written from a shallow copy).
        """
        est = self.estimator if target is None else target
        module = to_cpu(copy.deepcopy(self.module))
        with torch.no_grad():
            for name, p in module.named_parameters():
                p.copy_(self.params[name].detach())
        state = copy.copy(self.state)
        state.n_drawn = self.committed_n_drawn
        state.optimizer_state = to_cpu(copy.deepcopy(self.optimizer.state_dict()))
        est._commit_meta_state(
            module=module,
            n_meta_iter=self.n_iter,
            loss_curve=list(self.loss_curve),
            input_shape=tuple(self.input_shape),
            y_shape=self.y_shape,
            n_outputs=self.n_outputs,
            training_state=state,
            history=self.history,
            validation_scores=list(self.validation_scores),
            best_validation_score=self.best_score,
            live_stream=None if self.incremental or target is not None else self.stream,
        )

    def checkpoint(self):
        """Save the current state to ``checkpoint_path`` (a copy is committed)."""
        est = self.estimator
        self.state.torch_rng_state = torch.get_rng_state()
        snapshot = copy.copy(est)
        self.commit(target=snapshot)
        snapshot.save(est.checkpoint_path)
