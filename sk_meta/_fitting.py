"""From an estimator's parameters to a meta-training run, an adaptation, a prediction.

The estimators' public methods are thin: they call these functions, which
bind the parameters once (:class:`InnerLoopSettings`,
:class:`TrainerSettings`, :class:`NetworkSpec`), build the network and
the inner loop, run them, and return records for the estimator to commit.
"""

import copy
import dataclasses
import functools
import hashlib
import math
import time
from collections.abc import Sequence

import numpy as np
import torch

from sk_meta._checks import MAX_VALIDATION_TASKS, is_int
from sk_meta._errors import (
    handling_warnings,
    ignoring_warnings,
    raise_with_context,
    warn_user,
)
from sk_meta._inner_loop import (
    InnerLoop,
    InnerLoopSettings,
    auto_prototype_scale,
    check_learned_rates,
    class_log_probas,
)
from sk_meta._network import NetworkSpec, is_fixed_linear_choice, is_pretrained_choice
from sk_meta._persistence import check_module_state, plain_value
from sk_meta._pretraining import planned_steps, pretrain_body, sampler_rows
from sk_meta._records import FitResult, MetaResult, MetaTrainingState
from sk_meta._torch_utils import (
    draw_seeds,
    is_on_device,
    loss_if_finite,
    on_device,
    resolve_device,
    seeded_torch,
    to_cpu,
)
from sk_meta._training import (
    MetaTrainer,
    TaskSource,
    TrainerSettings,
    TrainingStart,
    one_sample_message,
    refuses_one_sample,
    to_task_batch,
)
from sk_meta.exceptions import (
    BudgetSpentWarning,
    DivergenceError,
    FeatureScaleWarning,
    TargetScaleWarning,
)
from sk_meta.functional._forward import has_batch_norm
from sk_meta.models import MLP
from sk_meta.tasks._stream import (
    MapStyleTasks,
    TaskStream,
    as_task_sequence,
    is_map_style,
)
from sk_meta.tasks._validation import (
    TaskChecker,
    describe_columns,
    feature_names,
    stack_tasks,
)


def seeds(random_state):
    """Seeds of the initialization, the task order and torch's RNG."""
    if is_int(random_state):
        return _seeds_of_int(int(random_state))
    return _drawn_seeds(random_state)


def _drawn_seeds(random_state):
    from sklearn.utils import check_random_state

    return tuple(draw_seeds(check_random_state(random_state), 3))


# an int always gives the same seeds, and seeding a RandomState costs about
# 0.1 ms, 2 % of a small fit
_seeds_of_int = functools.lru_cache(maxsize=64)(_drawn_seeds)


# -- meta-training ---------------------------------------------------------------------

def check_settings(estimator, validation_tasks, *, incremental):
    """What meta-training refuses from the parameters alone (no task read);
    returns the device and the settings it binds."""
    device = resolve_device(estimator.device)
    afresh = not continues_meta_training(estimator, incremental)
    inner_settings = InnerLoopSettings.from_estimator(estimator, afresh=afresh)
    settings = TrainerSettings.from_estimator(estimator, device=device,
                                              incremental=incremental)
    if afresh and (is_pretrained_choice(estimator, afresh=True)
                   or is_fixed_linear_choice(estimator)):
        # the pretrained MLP is not meta-trained (with few classes that
        # overfits their features: FIDELITY.md, eighth run), nor the chosen
        # linear model, in which it would move no weight
        settings = dataclasses.replace(settings, n_meta_iter=0)
    network = NetworkSpec.from_estimator(estimator)
    if settings.early_stopping and validation_tasks is None:
        raise ValueError(
            "early_stopping=True needs validation tasks: call "
            "meta_fit(tasks, validation_tasks=...)"
        )
    if validation_tasks is not None and _has_no_tasks(validation_tasks):
        raise ValueError("validation_tasks is empty")
    if settings.n_meta_iter != 0:  # no inner step is meta-trained through
        if (inner_settings.algorithm == "reptile" and estimator.adapt_layers == "auto"
                and inner_settings.adapt_layers == "head"
                and estimator.head_init != "meta"):
            raise ValueError(
                "Reptile cannot meta-train the pretrained MLP that "
                "hidden_layer_sizes='auto' chose further: adapt_layers='auto' "
                "adapts its output layer alone, which "
                f"head_init={estimator.head_init!r} starts afresh for each task, "
                "so no weight would move. Set "
                "adapt_layers='all' to meta-train all its layers, or call "
                "meta_fit with warm_start=False to start afresh"
            )
        inner_settings.check_meta_training()
    if afresh:  # a module instance's layers: before a task is read, by any caller
        network.check(needs_output_layer=inner_settings.needs_output_layer,
                      needs_bias=inner_settings.head_init == "prototype")
    else:
        network.check()
    return device, inner_settings, settings, network


def continues_meta_training(estimator, incremental):
    """Whether ``meta_fit`` (``meta_partial_fit`` when ``incremental``) goes on
    from the init meta-trained before, rather than from a fresh one."""
    return ((incremental or estimator.warm_start)
            and estimator.__dict__.get("_meta") is not None)


def meta_train(estimator, tasks, validation_tasks, *, incremental, checkpoint=None,
               hidden_layer_sizes_search=None):
    """Run meta-training for ``estimator``; return ``(result, stream)`` or None.

    ``result`` is the :class:`MetaResult` to commit; ``stream`` the task
    stream, kept by the estimator so that a warm start continues it. None
    when ``warm_start`` finds the budget already spent.
    ``hidden_layer_sizes_search``: what chose ``hidden_layer_sizes="auto"``,
    recorded with the init.
    """
    device, inner_settings, settings, network = check_settings(
        estimator, validation_tasks, incremental=incremental)
    meta = estimator.__dict__.get("_meta")
    warm = continues_meta_training(estimator, incremental)
    if warm:
        # every refusal before the budget check (a call that trains nothing
        # still refuses what the next one would) and before any task is
        # drawn (a refusal must not consume the user's iterator)
        # meta_fit again would continue, and refuse again
        network.check_unchanged(meta.architecture, remedy=(
            "Restore the parameter, or meta-train the new network afresh: "
            "meta_fit with warm_start=False."))
        network.warn_if_ignored()
        state = dataclasses.replace(meta.training_state)
        _check_same_meta_optimizer(state.optimizer_state, settings.meta_optimizer)
        current = state.current or {"params": meta.params, "lrs": meta.inner_lrs}
        check_learned_rates(
            inner_settings, current["lrs"], current["params"],
            trainable=None if inner_settings.adapt_layers == "all" else (),
            learned_mode=meta.inner_lr_mode, meta_training=True)
        budget = settings.n_meta_iter
        if budget is not None and meta.n_meta_iter >= budget:
            warn_user(
                f"{type(estimator).__name__} already ran {meta.n_meta_iter} "
                f"meta-iterations (n_meta_iter={settings.n_meta_iter}); increase "
                "n_meta_iter to continue meta-training with warm_start=True",
                BudgetSpentWarning,
            )
            return None
    else:
        network.warn_if_ignored()
        state = MetaTrainingState(**dict(zip(
            ("init_seed", "stream_seed", "torch_seed"), seeds(estimator.random_state))))
        # a module class is built here, once, before any task is drawn
        instance = network.check(
            needs_output_layer=inner_settings.needs_output_layer,
            needs_bias=inner_settings.head_init == "prototype", seed=state.init_seed)
    given = meta.module if warm else (
        estimator.module if instance is None else instance)
    if checkpoint is not None and isinstance(given, torch.nn.Module):
        # found now, not after the run: its checkpoints would not load
        check_module_state(given.state_dict(), "checkpoint_path is set, but its "
                          "files would not load", error=ValueError)
    # read and checked before the first draw: a refusal of them needs no
    # training task and must not consume the user's iterator
    validation_drawn = read_validation_tasks(
        validation_tasks, inner_settings.classification,
        meta if warm else None)
    stream = _stream(estimator, tasks, state, warm=warm, incremental=incremental)
    checker = TaskChecker(
        classification=inner_settings.classification,
        input_shape=meta.input_shape if warm else None,
        y_shape=meta.y_shape if warm else None,
        feature_names=meta.feature_names if warm else None,
    )
    source = TaskSource(stream, checker)
    # a list is in memory: every task is checked now, in its order, not when
    # (or whether) it is drawn, minutes into meta-training
    listed = _check_listed_tasks(tasks, checker)
    if warm and listed is not None:
        source.n_outputs = meta.n_outputs
        source.check_classes(listed)
    first = source.draw(settings.meta_batch_size)
    if first is None:
        raise ValueError(
            "tasks is empty (or an exhausted iterator): meta-training needs "
            "at least one task"
        )
    if not warm or (listed is not None and not incremental):
        # a call that continues meta-training may continue a stream, whose
        # later meta-batches are not checked (a one-class task among them is
        # allowed); a list given to a warm start is all there is
        _refuse_one_class_tasks(first, checker, listed)
    first_X = [X for group in first for X in (group.X_support, group.X_query)]
    first_y = ([] if inner_settings.classification else
               [y for group in first for y in (group.y_support, group.y_query)])
    warn_if_large_features(estimator, first_X, "The first meta-batch",
                           names=checker.feature_names)
    warn_if_large_targets(first_y, "The first meta-batch")
    # the pretrained MLP that hidden_layer_sizes="auto" chose (check_settings
    # set its n_meta_iter to 0)
    pretrain = not warm and is_pretrained_choice(estimator, afresh=True)
    if warm:
        module, n_outputs = meta.module, meta.n_outputs
    else:
        module, n_outputs = network.build(
            checker.input_shape, _n_outputs_needed(first, checker, tasks, listed),
            state.init_seed, probe=first[0].X_support[0], instance=instance,
            probe_name=f"the support set of task {first[0].indices[0]}")
        if pretrain:
            _pretrain(module, tasks, state.init_seed, device, settings, network)
    # the pretrained MLP whose probabilities fit averages with this init's
    averaged_with = meta.averaged_with if warm else None
    if not warm and estimator.__dict__.get("_chosen_average"):
        averaged_with = _pretrained_to_average(
            estimator, network, tasks, state, device, settings,
            input_shape=tuple(checker.input_shape), y_shape=checker.y_shape,
            n_outputs=n_outputs, feature_names=checker.feature_names,
            probe=first[0].X_support[0], inner_lr=inner_settings.lr)
    source.n_outputs = n_outputs
    source.check_classes(first)
    # the network as built, before any forward pass under vmap: one that
    # leaves a tensor on the module (a cached activation) makes the trained
    # copy impossible to copy after
    untrained = module
    module = copy.deepcopy(module).to(device).train()
    probe_task = first[0]
    probe = torch.from_numpy(probe_task.X_support[0]).to(device)
    inner = InnerLoop(inner_settings, module, device=device,
                      strategy=state.forward_strategy, probe=probe)
    state.forward_strategy = inner.strategy
    inner.resolve_chunk_size(torch.from_numpy(
        max(probe_task.X_support[0], probe_task.X_query[0], key=len)).to(device))
    validation = _validation_batches(validation_drawn, checker, source, device,
                                     module=inner.module)

    params = {name: p.detach().to(device) for name, p in module.named_parameters()}
    lrs = inner.initial_rates(params)
    if warm:  # current: where meta-training stopped (read above)
        params = {k: p.to(device) for k, p in current["params"].items()}
        lrs = None if current["lrs"] is None else {
            k: r.to(device) for k, r in current["lrs"].items()}
        if lrs is not None:  # a changed inner_lr scales them, as in fit
            inner.rate_scale = inner_settings.lr / meta.inner_lr_init
        start = TrainingStart(
            params=params, lrs=lrs, state=state, n_iter=meta.n_meta_iter,
            loss_curve=meta.loss_curve, history=meta.history,
            validation_scores=meta.validation_scores,
            best_score=meta.best_validation_score)
    else:
        start = TrainingStart(params=params, lrs=lrs, state=state)

    def to_result(outcome):
        cpu_module = to_cpu(_copy_of_trained(module, untrained))
        with torch.no_grad():
            for name, p in cpu_module.named_parameters():
                p.copy_(outcome.params[name])
        return MetaResult(
            module=cpu_module, n_meta_iter=outcome.n_iter,
            loss_curve=outcome.loss_curve, input_shape=tuple(checker.input_shape),
            y_shape=checker.y_shape, n_outputs=n_outputs,
            training_state=outcome.state, history=outcome.history,
            validation_scores=outcome.validation_scores,
            best_validation_score=outcome.best_score, inner_lrs=outcome.lrs,
            inner_lr_init=(meta.inner_lr_init if warm else inner_settings.lr),
            inner_lr_mode=inner_settings.lr_mode if outcome.lrs is not None else None,
            inner_lr_steps=(inner_settings.meta_steps if outcome.lrs is not None
                            else None),
            feature_names=checker.feature_names,
            architecture=network.architecture(), device=str(device),
            training_params=training_params(estimator),
            hidden_layer_sizes=(tuple(int(h) for h in network.hidden_layer_sizes)
                                if network.module is None else None),
            hidden_layer_sizes_search=(meta.hidden_layer_sizes_search if warm
                                       else hidden_layer_sizes_search),
            auto_prototype_scale=(meta.auto_prototype_scale if warm
                                  else auto_prototype_scale(estimator, afresh=True)),
            # meta-trained on in all its layers, it is no longer the
            # pretrained MLP whose output layer alone adapts
            pretrained=(meta.pretrained and inner_settings.adapt_layers == "head"
                        if warm else pretrain),
            averaged_with=averaged_with,
        )

    trainer = MetaTrainer(
        settings, inner, start, source, first, to_result=to_result,
        validation=validation, checkpoint=checkpoint,
        averaged_with=(None if averaged_with is None or validation is None else
                       _averaged_validation(estimator, averaged_with, device,
                                            probe=validation[0].X_support[0])))
    trainer.divergence_hint = divergence_hint(first_X, first_y)
    return trainer.run(), stream


def _averaged_validation(estimator, averaged_with, device, probe):
    """``MetaTrainer``'s ``averaged_with``: the validation tasks' class
    log-probabilities of the pretrained MLP ``averaged_with`` (a MetaResult),
    adapted as ``fit`` adapts it, so that validation scores what the
    estimator predicts."""
    view = estimator._with_meta(averaged_with)
    module = on_device(copy.deepcopy(averaged_with.module), device)
    inner = InnerLoop(InnerLoopSettings.from_estimator(view), module, device=device,
                      probe=probe, probe_name="the validation tasks' support sets")
    params = {name: p.detach() for name, p in module.named_parameters()}
    lrs = inner.usable_rates(None, params)

    def log_probas(batch):
        return class_log_probas(inner.query_outputs(params, lrs, batch),
                                batch.n_classes)

    return log_probas


def _pretrain(module, tasks, seed, device, settings, network, purpose=""):
    """Pretrain ``module``'s hidden layers on the rows of ``tasks``' classes
    (an EpisodeSampler's), saying so with ``verbose``."""
    X, codes = sampler_rows(tasks)
    started = time.perf_counter()
    n_steps = pretrain_body(module, X, codes, seed=seed, device=device,
                            max_time=settings.max_time)
    if settings.verbose and (settings.world is None or settings.world.writes):
        # meta-training's progress, which follows, counts from 0 s
        cut = ", stopped by max_time" if n_steps < planned_steps(len(X)) else ""
        sizes = tuple(int(h) for h in network.hidden_layer_sizes)
        print(f"pretrained the MLP {sizes} on {len(X)} rows of "
              f"{int(codes.max()) + 1} classes{purpose}: "
              f"{n_steps} step{'s' if n_steps != 1 else ''}, "
              f"{time.perf_counter() - started:.1f} s{cut}", flush=True)


def _pretrained_to_average(estimator, network, tasks, state, device, settings, *,
                           input_shape, y_shape, n_outputs, feature_names, probe,
                           inner_lr):
    """The record of the default MLP pretrained on all of ``tasks``' classes,
    built at the init's seed and not meta-trained, as the pretrained
    candidate of ``hidden_layer_sizes="auto"`` is: ``fit`` adapts it beside
    the meta-trained MLP and averages their probabilities."""
    module, _ = network.build(input_shape, n_outputs, state.init_seed, probe=probe)
    _pretrain(module, tasks, state.init_seed, device, settings, network,
              purpose=", to average with the meta-trained one")
    pretrained_view = type(estimator).__new__(type(estimator))
    pretrained_view.__dict__.update(estimator.__dict__, _chosen_pretrained=True)
    return MetaResult(
        module=to_cpu(module), n_meta_iter=0, loss_curve=[], input_shape=input_shape,
        y_shape=y_shape, n_outputs=n_outputs,
        training_state=MetaTrainingState(init_seed=state.init_seed,
                                         stream_seed=state.stream_seed,
                                         torch_seed=state.torch_seed),
        inner_lr_init=inner_lr, feature_names=feature_names,
        architecture=network.architecture(), device=str(device),
        training_params=training_params(estimator),
        hidden_layer_sizes=tuple(int(h) for h in network.hidden_layer_sizes),
        auto_prototype_scale=auto_prototype_scale(pretrained_view, afresh=True),
        pretrained=True,
    )


# what acts in meta-training alone: fit does not read these
META_TRAINING_PARAMS = (
    "n_meta_iter", "meta_lr", "meta_batch_size", "meta_optimizer",
    "meta_lr_schedule", "meta_grad_max_norm", "meta_inner_steps", "first_order",
    "multi_step_loss", "task_interpolation", "head_init",
)


def training_params(estimator):
    """The meta-training settings of ``estimator``, as plain values, and the
    digest of a module instance's weights (where meta-training started)."""
    params = {name: plain_value(getattr(estimator, name), name)
              for name in META_TRAINING_PARAMS if hasattr(estimator, name)}
    params["module_weights"] = weights_digest(estimator.module)
    return params


def weights_digest(module):
    """A digest of a module instance's state (its weights and buffers); None
    for a module class or the default MLP, which meta_fit builds from its seed."""
    if not isinstance(module, torch.nn.Module):
        return None
    digest = hashlib.blake2b(digest_size=16)
    try:
        for name, value in module.state_dict().items():
            # tensors alone: an extra state may print differently at every copy
            if not isinstance(value, torch.Tensor) or (
                    torch.nn.parameter.is_lazy(value) or value.is_meta):
                continue  # no values (yet)
            value = value.detach().cpu()
            if value.layout != torch.strided:  # a sparse buffer, say
                value = value.to_dense()
            value = value.contiguous()
            digest.update(name.encode())
            digest.update(str(value.dtype).encode())
            digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    except Exception:  # (a tensor torch cannot read as bytes) no warning, ever;
        return None    # a finished meta-training must not fail on its record
    return digest.hexdigest()


def _same_setting(a, b):
    """Equal, floats up to rounding (0.001 set as np.float32 is 0.001)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6)
    return a == b


def warn_if_training_params_changed(estimator, trained_with):
    """Say that meta-training settings changed since ``meta_fit`` act in
    ``meta_fit`` alone (a grid search over them after meta-training would
    otherwise score every value the same, silently)."""
    if trained_with is None:  # a file from before they were recorded
        return
    now = training_params(estimator)
    weights_now, weights_then = now.pop("module_weights"), trained_with.get(
        "module_weights")
    if None not in (weights_now, weights_then) and weights_now != weights_then:
        warn_user(
            f"module ({type(estimator.module).__name__}) holds other weights than "
            "the one the init was meta-trained from: fit adapts from that init, "
            "which a module's weights do not change (they are where meta_fit "
            "starts); call meta_fit to meta-train from them",
            UserWarning,
        )
    changed = [name for name in now if name in trained_with
               and not _same_setting(now[name], trained_with[name])]
    head_init = trained_with.get("head_init")
    if "head_init" in changed and now["head_init"] != "meta":
        changed.remove("head_init")  # a new head per task: nothing untrained
    if not changed:
        return
    untrained_head = "head_init" in changed
    warn_user(
        f"{', '.join(f'{n}={getattr(estimator, n)!r}' for n in changed)} "
        f"{'differ' if len(changed) > 1 else 'differs'} from what the init was "
        "meta-trained with ("
        + ", ".join(f"{n}={trained_with[n]!r}" for n in changed)
        + "): fit adapts from that init, which meta-training settings do not "
        "change; call meta_fit to meta-train with them"
        + (f". With head_init='meta', fit adapts the init's output layer, "
           f"which meta-training with head_init={head_init!r} never trained"
           if untrained_head else ""),
        UserWarning,
    )


def _copy_of_trained(module, untrained):
    """A copy of the module being trained; where an attribute a forward pass
    left on it (a cached activation, batched by vmap) cannot be copied, a
    copy of the network as built, with the module's state."""
    try:
        return copy.deepcopy(module)
    except (RuntimeError, NotImplementedError):
        trained = copy.deepcopy(untrained)
        trained.load_state_dict(module.state_dict())
        return trained


def _stream(estimator, tasks, state, *, warm, incremental):
    if incremental:
        if not isinstance(tasks, Sequence) and _declared_endless(tasks):
            raise ValueError(
                f"tasks ({type(tasks).__name__}) has no end: meta_partial_fit runs "
                "one pass over the tasks it is given. Pass a list, a sampler with "
                "n_tasks, or use meta_fit with n_meta_iter"
            )
        return TaskStream(tasks, seed=0, shuffle=False, cycle=False)
    live = estimator.__dict__.get("_live_stream")
    # meta_partial_fit's stream is one pass, in order: meta_fit's must cycle
    if (warm and live is not None and live.tasks is tasks and live.cycle
            and live.n_drawn == state.n_drawn):
        return live
    stream = TaskStream(tasks, seed=state.stream_seed,
                        n_drawn=state.n_drawn if warm else 0)
    if warm and live is None and stream.is_one_shot and state.n_drawn:
        # a loaded (or unpickled, cloned) estimator: a checkpoint resumed in a
        # new process, whose generator is rebuilt from its first task (in the
        # process that drew, another generator is the caller's choice)
        warn_user(
            f"warm start of a loaded or copied estimator on a one-shot iterator "
            f"({type(tasks).__name__}): meta-training goes on from wherever it "
            "stands, which sk_meta cannot check, so it resumes the earlier run "
            "only if the iterator continues where that run stopped (a generator "
            "rebuilt in a new process starts again at its first task). A list "
            "or a sampler resumes exactly", UserWarning)
    return stream


def _declared_endless(tasks):
    """Whether a sampler says it never ends (``len()`` refused, ``n_tasks`` None)."""
    if not hasattr(tasks, "n_tasks") or iter(tasks) is tasks:
        return False
    return tasks.n_tasks is None


def _check_listed_tasks(tasks, checker):
    """Check every task of a list (or tuple) with ``checker``, one by one in
    its order (so the first bad task is the one named); return, as a list of
    one ``StackedTasks``, the first task of the most classes. None for other
    tasks: a sampler draws new ones, a map-style dataset may load each
    lazily."""
    if not isinstance(tasks, Sequence) or isinstance(tasks, MapStyleTasks):
        return None
    most = None
    # a list's own iterator reads it as the draws will; any other sequence is
    # read by index up to its length (Sequence's iterator stops only at an
    # IndexError, which a sequence of generated tasks may never raise)
    listed = (enumerate(tasks) if isinstance(tasks, (list, tuple))
              else ((index, tasks[index]) for index in range(len(tasks))))
    for indexed in listed:
        (task,) = stack_tasks([indexed], checker)
        if most is None or (task.n_classes or 0) > (most.n_classes or 0):
            most = task
    return None if most is None else [most]


def _n_outputs_needed(first_groups, checker, tasks, listed=None):
    if not checker.classification:
        return int(np.prod(checker.y_shape)) if checker.y_shape else 1
    most = max(g.n_classes for g in (*first_groups, *(listed or ())))
    if isinstance(tasks, MapStyleTasks):  # as the dataset it reads (a pipeline's)
        tasks = tasks.dataset
    n_way = getattr(tasks, "n_way", None)
    if n_way is not None:
        if (not isinstance(n_way, (int, np.integer)) or isinstance(n_way, bool)
                or n_way < 1):
            raise TypeError(
                f"tasks.n_way must be a positive int, the most classes in one "
                f"task (it sizes the network's outputs), got {n_way!r}")
        most = max(most, int(n_way))
    return most


def _refuse_one_class_tasks(first_groups, checker, listed=None):
    """Refuse a call whose first meta-batch (a list: whose tasks) has one
    class in every task: there is nothing to tell apart, and meta-training
    would spend its budget teaching the init to predict the one code 0
    (whatever the tasks' n_way attribute says)."""
    if not checker.classification:
        return
    if max(g.n_classes for g in (*first_groups, *(listed or ()))) < 2:
        which = "list" if listed else "first meta-batch"
        raise ValueError(
            f"the tasks of the {which} have one class each: a classifier has "
            "nothing to tell apart in them, and meta-training would teach the "
            "init to predict one class. Give tasks of 2 classes or more")


def _check_same_meta_optimizer(optimizer_state, meta_optimizer):
    """Refuse resuming with another meta_optimizer: its saved state would
    fail to load inside torch (Adam's has betas, SGD's momentum)."""
    if not optimizer_state or not optimizer_state.get("param_groups"):
        return
    saved = "adam" if "betas" in optimizer_state["param_groups"][0] else "sgd"
    if saved != meta_optimizer:
        raise ValueError(
            f"meta_optimizer changed since meta_fit ({saved!r}, now "
            f"{meta_optimizer!r}): its state cannot be resumed. Restore it, or call "
            "meta_fit with warm_start=False"
        )


def _has_no_tasks(tasks):
    """Whether a sized collection is empty (an endless sampler has no len();
    a length Python refuses is said where the tasks are read)."""
    try:
        return len(tasks) == 0
    except (TypeError, ValueError, OverflowError, IndexError):
        return False


def read_validation_tasks(tasks, classification, meta, *, sampler=None):
    """The validation tasks as ``(index, task)``, checked on their own (and
    against what ``meta``, a warm start's record, fixes, or the inputs of
    ``sampler``, an EpisodeSampler to meta-train on); None without."""
    if tasks is None:
        return None
    if _declared_endless(tasks):  # refused before its first draw
        raise ValueError(
            f"validation_tasks must be a finite collection of at most "
            f"{MAX_VALIDATION_TASKS} tasks; this {type(tasks).__name__} has no end "
            "(pass a list, or a sampler with n_tasks)")
    if is_map_style(tasks):  # its length's errors name validation_tasks
        tasks = as_task_sequence(tasks, "validation_tasks")
    try:
        stream = TaskStream(tasks, seed=0, shuffle=False, cycle=False)
    except (TypeError, ValueError) as exc:
        raise_with_context(exc, "validation_tasks")
    if stream.is_sequence and len(stream.tasks) > MAX_VALIDATION_TASKS:
        drawn = None  # refused by its length, before any task is read
    else:
        drawn = stream.take(MAX_VALIDATION_TASKS + 1)
        if not drawn:
            raise ValueError("validation_tasks is empty")
    if drawn is None or len(drawn) > MAX_VALIDATION_TASKS:
        raise ValueError(
            f"validation_tasks must be a finite collection of at most "
            f"{MAX_VALIDATION_TASKS} tasks (pass a list, or a sampler with "
            "n_tasks)"
        )
    checker = TaskChecker(
        classification=classification,
        input_shape=None if meta is None else meta.input_shape,
        y_shape=None if meta is None else meta.y_shape,
        feature_names=None if meta is None else meta.feature_names)
    if sampler is not None:
        checker.input_shape = tuple(getattr(sampler.X, "shape", None)
                                    or np.shape(sampler.X))[1:]
        checker.feature_names = feature_names(sampler.X)
        checker._input_shape_source = "the meta-training sampler's X has"
        checker._feature_names_source = "the meta-training sampler's X has"
    try:
        # what these checks warn of, the checks after the first draw warn
        with ignoring_warnings():
            groups = stack_tasks(drawn, checker)
        if sampler is not None and classification:
            # the sampler's n_way sizes the network's outputs: said before
            # the class folds of hidden_layer_sizes="auto" run, not after
            outputs = TaskSource(None, checker)
            outputs.n_outputs = sampler.n_way
            outputs.check_classes(groups)
    except (TypeError, ValueError) as exc:
        raise_with_context(exc, "validation_tasks")
    return drawn


def _validation_batches(drawn, checker, source, device, *, module):
    """Validation tasks checked against the training tasks and ``module``,
    stacked and on the device, once."""
    if drawn is None:
        return None
    checker.name_tasks_seen("meta-training")
    try:
        caught = []

        def record(message, category):
            caught.append((message, category))
            return True

        with handling_warnings(record):
            groups = stack_tasks(drawn, checker)
        for message, category in caught:  # said of the validation tasks, by name
            warn_user(f"validation_tasks: {message}", category)
        if not checker.classification:  # adapted as fit adapts a support set
            warn_if_large_targets([y for g in groups for y in (g.y_support, g.y_query)],
                                  "validation_tasks")
        source.check_classes(groups)
    except (TypeError, ValueError) as exc:
        raise_with_context(exc, "validation_tasks")
    single = [g for g in groups if g.X_support.shape[1] == 1]
    if (single and has_batch_norm(module)
            and refuses_one_sample(module, single[0].X_support[0], device)):
        # refused now, not at the first validation, validation_interval
        # meta-iterations in, with torch's words
        indices = sorted(i for g in single for i in g.indices)
        raise ValueError(f"validation_tasks: {one_sample_message(indices)}")
    return [to_task_batch(g, device) for g in groups]


# -- adaptation and prediction ---------------------------------------------------------

def adapt_to_support(estimator, X, y_target, n_classes, n_outputs,
                     sample_weight=None, what="the support set"):
    """``fit``'s adaptation: a :class:`FitResult` from the support set ``(X, y)``.

    ``y_target`` holds class codes (classifiers) or targets; ``n_outputs``
    the outputs a network built from scratch needs; ``sample_weight`` the
    checked weights of the samples, or None; ``what`` names the samples in
    messages.
    """
    device = resolve_device(estimator.device)
    settings = InnerLoopSettings.from_estimator(estimator)
    init_seed, _, torch_seed = seeds(estimator.random_state)
    meta = estimator.__dict__.get("_meta")
    if meta is not None:
        network = NetworkSpec.from_estimator(estimator)
        network.check_unchanged(meta.architecture)
        network.warn_if_ignored()
        warn_if_training_params_changed(estimator, meta.training_params)
        check_input_shape(estimator, X, meta.input_shape)
        module, n_outputs, strategy = (meta.module, meta.n_outputs,
                                       meta.training_state.forward_strategy)
        lrs, learned_mode = meta.inner_lrs, meta.inner_lr_mode
    else:
        network = NetworkSpec.from_estimator(estimator)
        network.warn_if_ignored()
        module, n_outputs = network.build(X.shape[1:], n_outputs, init_seed, probe=X,
                                          probe_name=what)
        strategy, lrs, learned_mode = None, None, None
    if settings.classification and n_outputs < n_classes:
        raise ValueError(
            f"{what[0].upper()}{what[1:]} has {n_classes} classes, but the network was "
            f"meta-trained with {n_outputs} outputs (the most classes in one "
            f"meta-training task): meta-train on tasks of {n_classes} or more "
            "classes to adapt to such tasks. (A GridSearchCV over tasks_to_cv "
            "refits on the rows of all tasks at once: pass refit=False.)"
        )
    # a private copy: adaptation switches its train/eval mode. sk_meta's MLP
    # has no layer that reads the mode, and the steps change no weight of the
    # module (they are passed as params): it is used as it is (a copy is 5 %
    # of a small fit)
    if not (type(module) is MLP and is_on_device(module, device)):
        module = on_device(copy.deepcopy(module), device)
    X_t = torch.from_numpy(X).to(device)  # the estimator's own copy of X
    inner = InnerLoop(settings, module, device=device, strategy=strategy, probe=X_t,
                      probe_name=what)
    params = {name: p.detach() for name, p in module.named_parameters()}
    if lrs is not None:
        lrs = {k: r.to(device) for k, r in lrs.items()}
        # tuning inner_lr after meta-training scales them; steps beyond the
        # ones they were learned for floor them
        inner.rate_scale = settings.lr / meta.inner_lr_init
        inner.learned_steps = meta.inner_lr_steps or settings.meta_steps
    lrs = inner.usable_rates(lrs, params, learned_mode=learned_mode)
    y_t = torch.from_numpy(y_target).to(device)
    if sample_weight is not None:
        sample_weight = torch.from_numpy(sample_weight).to(device).unsqueeze(0)
    # sk_meta's MLP draws no random number: it is not seeded, so its fits
    # stay parallel in threads and leave other threads' generator alone
    with seeded_torch(torch_seed, device, draws=inner.draws_random):
        adapted, loss = inner.adapt(params, lrs, X_t.unsqueeze(0), y_t.unsqueeze(0),
                                    n_classes, sample_weight=sample_weight,
                                    what=what)
    if not math.isfinite(float(loss_if_finite(loss, adapted.values()))):
        arrays = ([X], () if settings.classification else [y_target])
        if holds_non_finite(*arrays):
            # the data, not the steps (assume_finite=True let it through)
            raise DivergenceError("adaptation gave a non-finite loss: "
                                  + NOT_FINITE_UNCHECKED.format(what="the data"))
        hint = divergence_hint(*arrays)
        if settings.steps == 0:  # no step to blame: the init's outputs overflow
            raise DivergenceError(
                "the init gives a non-finite loss on the support set (inner_steps"
                f"=0: no step was taken): check the inputs{hint}")
        raise DivergenceError(
            f"adaptation diverged: {settings.steps} steps at inner_lr="
            f"{settings.lr} gave a non-finite loss or parameters; lower "
            f"inner_lr{_scale_hint(settings)} or inner_steps{hint}"
        )
    return FitResult(
        module=module, params={name: p[0] for name, p in adapted.items()},
        # a copy: predictions read it (BatchNorm), the caller may reuse X
        n_outputs=n_outputs, input_shape=X.shape[1:], support_X=X.copy(),
        strategy=inner.strategy, device=str(device),
        init_seed=None if meta is not None else int(init_seed),
    )


# standardized features this far out are outliers that make the gradient
# steps of adaptation large (ReLU networks are linear in their input)
EXTREME_FEATURE_VALUE = 10.0


# far beyond any standardized feature; the default MLP's gradient steps then
# swamp the others (one value of 1e4 in a digits support set: chance-level
# predictions, no divergence)
LARGE_FEATURE_VALUE = 1e3


def warn_if_large_features(estimator, arrays, what, names=None):
    """Warn when the default MLP gets values beyond ``LARGE_FEATURE_VALUE``."""
    if estimator.module is not None:
        return  # a custom module may normalize its inputs itself
    largest = max(float(np.max(np.abs(a))) if a.size else 0.0 for a in arrays)
    if largest > LARGE_FEATURE_VALUE:
        where = ""
        if all(a.ndim in (2, 3) for a in arrays):  # a table's columns: say which
            flat = [np.abs(a.reshape(-1, a.shape[-1])) for a in arrays if a.size]
            over = np.flatnonzero(np.max([f.max(axis=0) for f in flat], axis=0)
                                  > LARGE_FEATURE_VALUE)
            where = f" (in {describe_columns(over, names)})"
        warn_user(
            f"{what} has values up to {largest:.3g}{where}: the default MLP adapts "
            "with gradient steps that grow with its inputs, and may predict one class "
            "for every sample without diverging. Standardize the features with "
            "the meta-training rows' statistics, and clip them, for example to "
            "[-5, 5]",
            FeatureScaleWarning,
        )


LARGE_TARGET_VALUE = 100.0


def warn_if_large_targets(arrays, what):
    """Warn when regression targets go beyond ``LARGE_TARGET_VALUE``."""
    largest = _largest(arrays)
    if largest > LARGE_TARGET_VALUE:
        warn_user(
            f"{what} has targets up to {largest:.3g}: squared-error gradient "
            "steps grow with the targets and overshoot at the default rates. "
            "Standardize y with the meta-training tasks' mean and standard "
            "deviation (and invert the predictions)",
            TargetScaleWarning,
        )


def _largest(arrays):
    return max((float(np.max(np.abs(a))) for a in arrays if a.size), default=0.0)


# scikit-learn's config_context(assume_finite=True) skips the check of NaN
# and infinite inputs: what they did to the network is said as theirs
NOT_FINITE_UNCHECKED = (
    "{what} holds NaN, infinite values or values too large for float32, which "
    "scikit-learn's assume_finite=True let through unchecked; impute, drop or "
    "scale them")


def holds_non_finite(X_arrays, y_arrays=()):
    """Whether the arrays hold NaN or infinite values (assume_finite=True)."""
    return any(not np.isfinite(a).all() for a in (*X_arrays, *y_arrays) if a.size)


def divergence_hint(X_arrays, y_arrays=()):
    """What to tame besides the rates: extreme features, large targets."""
    if holds_non_finite(X_arrays, y_arrays):
        return "; or: " + NOT_FINITE_UNCHECKED.format(what="the data")
    hint = ""
    largest = _largest(X_arrays)
    if largest > EXTREME_FEATURE_VALUE:
        hint += (f", or tame the features: values up to {largest:.3g} (after "
                 "your preprocessing); clip standardized features, for example "
                 "to [-5, 5]")
    largest = _largest(y_arrays)
    if largest > LARGE_TARGET_VALUE:
        hint += (f", or standardize the targets: they reach {largest:.3g}")
    return hint


def _scale_hint(settings):
    scale = settings.large_prototype_scale()
    return f", {scale}" if scale else ""


def check_input_shape(estimator, X, expected_shape, *, trained="meta-trained"):
    """Refuse samples of another shape than ``expected_shape`` (N-D inputs:
    ``n_features_in_`` only sees the first dimension)."""
    if X.shape[1:] == tuple(expected_shape):
        return
    what = (f"{X.shape[1]} features" if X.ndim == 2
            else f"samples of shape {X.shape[1:]}")
    expected = (f"{expected_shape[0]} features" if len(expected_shape) == 1
                else f"samples of shape {tuple(expected_shape)}")
    raise ValueError(
        f"X has {what}, but {type(estimator).__name__} was {trained} on {expected}"
    )


def predict_outputs(estimator, fit, X):
    """Outputs of the adapted network (``fit``, a FitResult) on ``X``, on the CPU."""
    device = resolve_device(estimator.device)
    settings = InnerLoopSettings.from_estimator(estimator, check=False)
    module = on_device(fit.module, device)  # the estimator's private copy
    inner = InnerLoop(dataclasses.replace(settings, head_init="meta",
                                          adapt_layers="all"),
                      module, device=device, strategy=fit.strategy)
    params = {name: p.to(device).unsqueeze(0) for name, p in fit.params.items()}
    X_t = torch.from_numpy(X).to(device).unsqueeze(0)  # the estimator's own copy
    support = torch.from_numpy(fit.support_X).to(device).unsqueeze(0)
    return inner.predict(params, X_t, support)[0].cpu()
