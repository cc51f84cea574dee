"""The inner loop: a few gradient steps from given parameters, for a batch of tasks."""

import contextlib
import math
import numbers

import torch

from sk_meta._checks import check_positive_int
from sk_meta.functional._losses import task_losses
from sk_meta.functional._rng import _GLOBAL_RNG_LOCK, draws_nothing

OPTIMIZERS = ("sgd", "adam")


def check_not_inference_mode(what):
    """Refuse to run under ``torch.inference_mode()``: adaptation and
    meta-training take gradients, which it forbids (``torch.no_grad()`` is
    fine: sk_meta turns gradients on where it needs them)."""
    # a traced graph (torch.compile) runs the check where it is called from
    if not torch.compiler.is_compiling() and torch.is_inference_mode_enabled():
        raise RuntimeError(
            f"{what} takes gradients, which torch.inference_mode() forbids; call it "
            "outside inference mode (torch.no_grad() is fine)"
        )


def step_rates(lr, step):
    """The learning rate(s) of inner step ``step`` (0-based).

    ``lr`` is a float, a dict of rates by parameter name (each a scalar or a
    tensor shaped like the parameter), or a callable ``lr(step)`` returning
    either.

    Parameters
    ----------
    lr : float, dict or callable
        The inner learning rate(s), as in :func:`adapt`.
    step : int
        The inner step.

    Returns
    -------
    rates : float or dict
        A float, or rates by parameter name.
    """
    return lr(step) if callable(lr) else lr


def _rate(rates, name):
    return rates[name] if isinstance(rates, dict) else rates


def _checked_rates(lr, step, names, adapting=None):
    """``step_rates``, refusing a rate of the wrong kind or a dict without a
    rate for every adapting parameter (a KeyError deep in a step otherwise),
    or, given the ``adapting`` parameters, a rate tensor of a shape that does
    not broadcast to its parameter's, or of a dtype that would change the
    parameter's (a float64 rate turns a float32 step into float64)."""
    rates = step_rates(lr, step)
    # a constant tensor is read once (rates from a callable, as learned
    # per-step rates come, are not read back at every step)
    read = not callable(lr) and step == 0
    if isinstance(rates, dict):
        missing = [name for name in names if name not in rates]
        if missing:
            raise ValueError(f"lr has no rate for the adapting parameter(s) {missing}")
        for name in names:
            _check_rate(rates[name], f"lr[{name!r}]", read)
    elif isinstance(rates, torch.Tensor) or (
            isinstance(rates, numbers.Real) and not isinstance(rates, bool)):
        _check_rate(rates, "lr", read)
    else:
        raise TypeError(
            "lr must be a float, a dict of rates by parameter name, or a callable "
            f"returning either; got {type(rates).__name__}"
            + (f" at step {step}" if callable(lr) else "")
        )
    if adapting is not None and (callable(lr) or step == 0):  # constant shapes: once
        for name in names:
            rate = _rate(rates, name)
            if not isinstance(rate, torch.Tensor):
                continue
            param = adapting[name]
            which = f"lr[{name!r}]" if isinstance(rates, dict) else "lr"
            if rate.dim() and not _broadcasts_to(rate.shape, param.shape):
                raise ValueError(
                    f"{which} has shape {tuple(rate.shape)}, which does not "
                    f"broadcast to params[{name!r}]'s {tuple(param.shape)} (one "
                    "rate per task and element: the parameter's own shape)")
            if torch.result_type(param, rate) != param.dtype:
                raise TypeError(
                    f"{which} is a {str(rate.dtype).removeprefix('torch.')} tensor: "
                    f"a step would turn params[{name!r}] from "
                    f"{str(param.dtype).removeprefix('torch.')} into "
                    f"{str(torch.result_type(param, rate)).removeprefix('torch.')}; "
                    "give rates of the parameter's dtype")
    return rates


def _broadcasts_to(shape, target):
    """Whether ``shape`` broadcasts to ``target`` without growing it."""
    try:
        return torch.broadcast_shapes(shape, target) == target
    except RuntimeError:
        return False


def _check_rate(rate, name, read_tensor=False):
    """A number must be finite; so must a one-element tensor on the CPU that
    takes no gradient, with ``read_tensor`` (one on a GPU, or learned, is not
    read back for it)."""
    if isinstance(rate, torch.Tensor):
        if (read_tensor and rate.device.type == "cpu" and not rate.requires_grad
                and rate.numel() <= 1 and not torch.compiler.is_compiling()
                and not bool(torch.isfinite(rate).all())):
            raise ValueError(f"{name} must be finite, got {rate}")
        return
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        raise TypeError(f"{name} must be a number or a tensor, got "
                        f"{type(rate).__name__}")
    if not math.isfinite(rate):
        raise ValueError(f"{name} must be finite, got {rate}")


def input_dtype_error(exc, forward, params, X, what="X"):
    """The error to raise for torch's ``exc`` when the inputs ``X`` are what
    failed, by their dtype (torch's "Input dtypes must be the same" names
    neither); else None, and ``exc`` stands. ``X`` is blamed only when the
    forward pass fails on it and runs on it cast to the parameters' one
    floating dtype: a module that casts its inputs itself is legitimate, and
    a dtype error of the loss or the targets is not the inputs'. Runs only
    where a call has failed already."""
    message = str(exc)
    if not ("dtype" in message or "scalar type" in message):
        return None
    if not isinstance(params, dict) or not isinstance(X, torch.Tensor) or (
            X.is_complex()):
        return None
    dtypes = {p.dtype for p in params.values()
              if isinstance(p, torch.Tensor) and p.is_floating_point()}
    if len(dtypes) != 1 or X.dtype in dtypes:
        return None
    (dtype,) = dtypes
    # forked: the probes' random draws (dropout) leave the caller's as they were
    with torch.random.fork_rng(devices=[X.device] if X.is_cuda else []), \
            torch.no_grad():
        try:
            forward(params, X.to(dtype))
        except Exception:  # noqa: BLE001 - then X is not (only) what fails
            return None
        try:
            forward(params, X)
        except RuntimeError:
            pass
        else:  # the forward pass runs on X: the loss or the targets failed
            return None
    return TypeError(f"the inputs {what} are {X.dtype} but the parameters are "
                     f"{dtype}; cast the inputs ({what}.to({dtype})) or the module")


def _check_arguments(params, X, y, *, n_steps, optimizer, trainable):
    """Refuse what would fail deep inside torch, naming the problem; return
    ``n_steps`` as an int. ``y`` and ``loss_fn`` are the caller's: only their
    task dimension is checked."""
    check_not_inference_mode("adapt")
    n_steps = check_positive_int(n_steps, "n_steps", minimum=0)
    if not params:
        raise ValueError("params is empty: no parameter would adapt")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if optimizer == "adam" and any(isinstance(p, torch.Tensor) and p.is_complex()
                                   for p in params.values()):
        raise ValueError("optimizer='adam' takes real parameters; complex ones "
                         "take optimizer='sgd'")
    if trainable is not None:
        if isinstance(trainable, str):
            raise TypeError("trainable must be a collection of parameter names, "
                            f"not one string ({trainable!r})")
        unknown = sorted(set(trainable) - set(params))
        if unknown:
            raise ValueError(f"trainable names parameters that params lacks: {unknown}")
        if not set(trainable):
            raise ValueError("trainable is empty: no parameter would adapt")
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"X must be a tensor, got {type(X).__name__}")
    if X.dim() >= 2 and X.shape[1] == 0:
        raise ValueError(f"X holds no samples (shape {tuple(X.shape)}): the loss of "
                         "an empty task is not a number")
    for name, p in params.items():
        if (trainable is None or name in trainable) and not (
                isinstance(p, torch.Tensor)
                and (p.is_floating_point() or p.is_complex())):
            raise TypeError(
                f"params[{name!r}] is {getattr(p, 'dtype', type(p).__name__)}: only "
                "floating-point (or complex) tensors take gradient steps")
    n_tasks = {"X": X.shape[0] if X.dim() else None}
    if isinstance(y, torch.Tensor):
        n_tasks["y"] = y.shape[0] if y.dim() else None
    n_tasks.update({f"params[{name!r}]": p.shape[0] if p.dim() else None
                    for name, p in params.items()
                    if trainable is None or name in trainable})
    if len(set(n_tasks.values())) > 1:
        raise ValueError(
            "X, y and the adapting parameters need the same number of tasks in "
            f"their first dimension; got {n_tasks}"
        )
    return n_steps


def adapt(forward, params, X, y, *, loss_fn, lr, n_steps, create_graph=False,
          detach=False, optimizer="sgd", betas=(0.0, 0.999), eps=1e-8,
          functional=False, trainable=None, trajectory=False, backtracking=False):
    """Take ``n_steps`` gradient steps on ``(X, y)`` from ``params``, per task.

    Parameters
    ----------
    forward : callable
        ``forward(params, X) -> outputs`` over a batch of ``B`` tasks (see
        :func:`batched_forward`).
    params : dict of str to Tensor
        Parameters with a leading task dimension ``B``.
    X : Tensor of shape (B, n_samples, ...)
    y : Tensor of shape (B, n_samples, ...)
    loss_fn : callable
        ``loss_fn(outputs, y)``: the sum over tasks of each task's mean loss, so
        that the gradient with respect to a task's parameters is its own.
    lr : float, dict of str to Tensor, or callable
        Inner learning rate: one float; one rate per parameter name (a scalar,
        or a tensor of the parameter's shape for per-parameter rates, as in
        Meta-SGD); or ``lr(step) -> float or dict`` for rates that change with
        the step (0-based), as in MAML++. Tensor rates stay in the graph, so
        the meta-gradient reaches them.
    n_steps : int
        Number of gradient steps. With 0, ``params`` come back as they are
        (cut from their graph with ``detach``), with their loss.
    create_graph : bool, default=False
        Differentiate through the inner gradients (second-order MAML). Without
        it the inner gradients are constants (first-order MAML).
    detach : bool, default=False
        Cut the result from the graph of ``params`` (``fit``, Reptile,
        evaluation): nothing will be differentiated through the adaptation.
    optimizer : {"sgd", "adam"}, default="sgd"
        Inner update rule. ``"adam"`` (the Reptile paper's, with
        ``betas=(0, 0.999)``) starts from a fresh state (the Reptile code
        keeps Adam's moments from task to task) and needs ``detach``.
    betas, eps : tuple of float, float
        Adam's coefficients.
    functional : bool, default=False
        Take the inner gradients with ``torch.func.grad_and_value`` instead of
        ``torch.autograd.grad``: the same numbers, in a form ``torch.compile``
        can trace as one graph.
    trainable : collection of str, default=None
        Names of the parameters that adapt; the others keep their values
        (ANIL adapts the output layer only). ``None`` adapts all.
    trajectory : bool, default=False
        Also return the parameters after each step (for MAML++'s multi-step
        loss).
    backtracking : bool, default=False
        Halve a task's step, up to ``MAX_HALVINGS`` times, while it would
        raise that task's loss, and skip it if it still does (a backtracking
        line search). A step to a non-finite loss is taken, so that a
        divergence stays visible (after the last step, in the loss
        returned). Needs ``detach`` (the choice of step has no gradient);
        ``functional`` is ignored. With more than one task each task's loss
        is compared: sk_meta's own losses (:func:`cross_entropy_loss`,
        :func:`mse_loss`, bare or with keyword options bound by
        :func:`functools.partial`, ``sample_weight`` included) give them
        in one pass; another ``loss_fn`` is also called on each task alone
        (``outputs`` and ``y`` of first dimension 1), so one that closes
        over data of every task cannot be sliced there: adapt such tasks
        one at a time.

    Returns
    -------
    adapted : dict of str to Tensor
        All parameters after ``n_steps`` steps (the fixed ones unchanged).
    loss : Tensor
        The (detached) loss at the last step, before its update (with
        ``backtracking``, after it where that is not finite).
    steps : list of dict of str to Tensor
        Only with ``trajectory=True``: the parameters after each step.
    """
    options = {"loss_fn": loss_fn, "lr": lr, "n_steps": n_steps,
               "create_graph": create_graph, "detach": detach, "optimizer": optimizer,
               "betas": betas, "eps": eps, "functional": functional,
               "trainable": trainable, "trajectory": trajectory,
               "backtracking": backtracking}
    try:
        return _adapt(forward, params, X, y, **options)
    except RuntimeError as exc:
        renamed = input_dtype_error(exc, forward, params, X)
        if renamed is None:
            raise
        raise renamed from exc


def _adapt(forward, params, X, y, *, loss_fn, lr, n_steps, create_graph, detach,
           optimizer, betas, eps, functional, trainable, trajectory, backtracking):
    """:func:`adapt`, whose dtype errors it names."""
    if trainable is not None and not isinstance(trainable, str):
        trainable = frozenset(trainable)  # read once: it may be a generator
    n_steps = _check_arguments(params, X, y, n_steps=n_steps, optimizer=optimizer,
                               trainable=trainable)
    if optimizer == "adam" and not detach:
        raise ValueError("the Adam inner optimizer is only available with detach=True")
    if backtracking and not detach:
        raise ValueError("backtracking is only available with detach=True")
    names = [name for name in params if trainable is None or name in trainable]
    fixed = {name: p for name, p in params.items() if name not in names}
    if n_steps == 0 and not callable(lr):  # the steps check their rate: so does 0
        _checked_rates(lr, 0, names)
    if backtracking:
        return _line_searched(forward, params, names, X, y, loss_fn=loss_fn, lr=lr,
                              n_steps=n_steps, optimizer=optimizer, betas=betas,
                              eps=eps, trajectory=trajectory)
    # first order (or detached): the inner gradients are constants, so they
    # are taken on copies cut from the meta-graph, which they must not free
    constant_grads = detach or not create_graph
    grad_fixed = {n: p.detach() for n, p in fixed.items()} if constant_grads else fixed
    grad_X = X.detach() if constant_grads else X
    if functional:
        adapting = {name: params[name].detach() if detach else params[name]
                    for name in names}

        def loss_of(task_params):
            return _scalar(loss_fn(forward({**grad_fixed, **task_params}, grad_X), y))

        grad_and_loss = torch.func.grad_and_value(loss_of)
    else:
        adapting = {
            # parameters outside any graph still need gradients for the inner steps
            name: (params[name].detach().requires_grad_()
                   if detach or not params[name].requires_grad else params[name])
            for name in names
        }
    adam_state = None
    steps = []
    loss = None
    for step in range(n_steps):
        # adaptation needs gradients even when called under torch.no_grad()
        with torch.enable_grad():
            if functional:
                grads, loss = grad_and_loss(
                    {n: p.detach() for n, p in adapting.items()}
                    if constant_grads else adapting)
                grads = [grads[name] for name in names]
                if not create_graph:
                    grads = [g.detach() for g in grads]
            else:
                leaves = adapting
                if constant_grads and not detach:
                    leaves = {n: p.detach().requires_grad_()
                              for n, p in adapting.items()}
                loss = _scalar(loss_fn(forward({**grad_fixed, **leaves}, grad_X), y))
                grads = torch.autograd.grad(
                    loss, [leaves[name] for name in names],
                    create_graph=create_graph, allow_unused=True,
                    materialize_grads=True,
                )
        if optimizer == "adam":
            grads, adam_state = _adam_directions(grads, adam_state, step + 1, betas,
                                                 eps)
        rates = _checked_rates(lr, step, names, adapting)
        current = [adapting[name] for name in names]
        if detach:
            updated = _detached_step(current, names, grads, rates)
            if not functional:
                updated = [p.requires_grad_() for p in updated]
        else:
            updated = [p - _rate(rates, name) * g
                       for p, name, g in zip(current, names, grads)]
        adapting = dict(zip(names, updated))
        if trajectory:
            steps.append({**fixed, **adapting})
    if loss is None:  # no step: the loss where the parameters start
        with torch.no_grad():
            loss = _scalar(loss_fn(forward({**grad_fixed, **adapting}, grad_X), y))
    if detach:
        adapting = {name: p.detach() for name, p in adapting.items()}
        steps = [{name: p.detach() for name, p in s.items()} for s in steps]
    adapted = {name: fixed[name] if name in fixed else adapting[name]
               for name in params}
    if trajectory:
        return adapted, loss.detach(), steps
    return adapted, loss.detach()


def _detached_step(current, names, grads, rates, factor=None):
    """``p - rate * g`` for each parameter, outside any graph (learned rates
    may be in one: not this one); ``factor``, of shape (B,), scales each
    task's step."""
    with torch.no_grad():
        if factor is None and not isinstance(rates, dict) and not (
                isinstance(rates, torch.Tensor) and rates.dim()):  # alpha: a scalar
            return torch._foreach_add(current, list(grads), alpha=-rates)
        return [p - _rate(rates, name) * (g if factor is None else g * factor.view(
                    -1, *[1] * (p.dim() - 1)).to(p.dtype))
                for p, name, g in zip(current, names, grads)]


# a step that still raises the loss at 2**-10 of the rate is not a matter of
# step size: it is skipped
MAX_HALVINGS = 10


def _per_task(loss_fn, outputs, y):
    """Each task's loss (``loss_fn`` sums them), detached, of shape (B,)."""
    with torch.no_grad():
        each = task_losses(loss_fn, outputs.detach(), y)
    if each is not None:  # sk_meta's own loss: every task's at once
        return each
    # another loss may differentiate the outputs itself: called as given
    return torch.stack([_scalar(loss_fn(outputs[i:i + 1], y[i:i + 1]))
                        for i in range(y.shape[0])]).detach()


def _scalar(loss):
    """``loss_fn``'s result, refused unless one number: torch's "grad can be
    implicitly created only for scalar outputs" names no argument."""
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise TypeError(
            "loss_fn must return a scalar tensor (the sum over tasks of each "
            f"task's loss), got {_described(loss)}")
    return loss.reshape(())  # one number of shape (1,): torch.func.grad takes ()


def _described(value):
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return type(value).__name__


def _line_searched(forward, params, names, X, y, *, loss_fn, lr, n_steps, optimizer,
                   betas, eps, trajectory):
    """:func:`adapt` with ``detach=True, backtracking=True``.

    The forward pass that accepts a step also gives the next step's
    gradient, so steps that lower the loss cost what plain ones do, plus one
    forward pass in all. A forward pass that draws random numbers (dropout)
    gives another loss at the same parameters: then each step draws its
    noise once, as a plain step does, and compares every trial under it.
    """
    fixed = {name: p.detach() for name, p in params.items() if name not in names}
    X = X.detach()
    device = X.device

    def losses_at(adapting):
        """The summed loss, whose graph gives the step (a plain step's), and
        each task's, detached, which the trials compare."""
        outputs = forward({**fixed, **adapting}, X)
        total = _scalar(loss_fn(outputs, y))
        if y.shape[0] == 1:  # fit: one task
            return total, total.detach().reshape(1)
        return total, _per_task(loss_fn, outputs, y)

    def stepped(current, directions, rates, factor=None):
        updated = _detached_step(list(current.values()), list(current), directions,
                                 rates, factor)
        return {name: p.requires_grad_() for name, p in zip(current, updated)}

    adapting = {name: params[name].detach().requires_grad_() for name in names}
    adam_state = None
    steps = []
    with torch.enable_grad(), contextlib.ExitStack() as generator_held:
        # adaptation needs gradients even under no_grad(). Another thread's
        # draws between the two reads would look like this forward's noise,
        # and its generator would then be set back: the first forward holds
        # the generator, and a noisy line search keeps holding it. Inside a
        # section forked with draws=False (sk_meta's MLP) it reads nothing
        quiet = draws_nothing()
        if not quiet:
            generator_held.enter_context(_GLOBAL_RNG_LOCK)
            before = _rng_state(device)
        total, each = losses_at(adapting)
        noisy = not quiet and not _same_state(before, _rng_state(device))
        if not noisy:
            generator_held.close()  # a forward that draws nothing: others go on
        loss = total  # what a fit of no step reports
        for step in range(n_steps):
            if noisy and step:  # the step's own noise, drawn as a plain step would
                before = _rng_state(device)
                total, each = losses_at(adapting)
            after = _rng_state(device) if noisy else None
            loss = total
            directions = torch.autograd.grad(loss, list(adapting.values()),
                                             allow_unused=True, materialize_grads=True)
            if optimizer == "adam":
                directions, adam_state = _adam_directions(directions, adam_state,
                                                          step + 1, betas, eps)
            current = {name: p.detach() for name, p in adapting.items()}
            rates = _checked_rates(lr, step, names, current)
            old = each

            def trial(factor):  # the step scaled by factor, under the step's noise
                adapting = stepped(current, directions, rates, factor)
                if noisy:
                    _set_rng_state(before, device)
                return adapting, *losses_at(adapting)

            factor = None  # the full step first
            for _ in range(MAX_HALVINGS + 1):
                adapting, total, each = trial(factor)
                new = each
                # a non-finite loss is a divergence, not a step to shorten
                rejected = (new > old) & torch.isfinite(new)
                if not bool(rejected.any()):
                    break
                if factor is None:
                    factor = torch.ones_like(old)
                factor = torch.where(rejected, factor / 2, factor)
            else:  # still higher at the smallest step: no step
                adapting, total, each = trial(torch.where(rejected, 0.0, factor))
            if noisy:
                _set_rng_state(after, device)
            if trajectory:
                steps.append({**fixed, **{n: p.detach() for n, p in adapting.items()}})
    adapted = {name: fixed[name] if name in fixed else adapting[name].detach()
               for name in params}
    if not bool(torch.isfinite(each).all()):
        loss = total  # the last step was taken to a non-finite loss
    if trajectory:
        return adapted, loss.detach(), steps
    return adapted, loss.detach()


def _rng_state(device):
    """The state of the random generators a forward pass on ``device`` draws from."""
    state = [torch.get_rng_state()]
    if device.type == "cuda":
        state.append(torch.cuda.get_rng_state(device))
    return state


def _set_rng_state(state, device):
    torch.set_rng_state(state[0])
    if device.type == "cuda":
        torch.cuda.set_rng_state(state[1], device)


def _same_state(first, second):
    return all(torch.equal(a, b) for a, b in zip(first, second))


def _adam_directions(grads, state, step, betas, eps):
    """Adam's update direction for each gradient (times the learning rate, the step)."""
    beta1, beta2 = betas
    if state is None:
        state = ([torch.zeros_like(g) for g in grads],
                 [torch.zeros_like(g) for g in grads])
    first, second = state
    directions = []
    for g, m, v in zip(grads, first, second):
        m.mul_(beta1).add_(g, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        m_hat = m / (1 - beta1**step)
        v_hat = v / (1 - beta2**step)
        directions.append(m_hat / (v_hat.sqrt() + eps))
    return directions, (first, second)
