"""Forward passes over a batch of tasks, each task with its own parameters."""

import contextlib
import copy

import torch
from torch import nn
from torch.func import functional_call, replace_all_batch_norm_modules_, vmap

from sk_meta._checks import check_positive_int
from sk_meta.functional._attention import with_math_attention
from sk_meta.functional._rng import forked_rng


def copy_network(module):
    """``copy.deepcopy(module)``, or a ValueError saying why it cannot be
    copied: sk_meta trains and adapts a copy, so that yours is not changed."""
    try:
        return copy.deepcopy(module)
    except (RuntimeError, TypeError, NotImplementedError) as exc:
        raise ValueError(
            f"{type(module).__name__} cannot be copied (copy.deepcopy failed: "
            f"{exc}); sk_meta trains a copy, so that your module is not changed. "
            "The hook-based torch.nn.utils.weight_norm and spectral_norm cannot "
            "be copied: use torch.nn.utils.parametrizations.weight_norm and "
            "spectral_norm"
        ) from None


def check_not_torchscript(module):
    """Refuse a TorchScript module, whose weights ``functional_call`` cannot
    replace (before any check that would look for its layers)."""
    if isinstance(module, torch.jit.ScriptModule):
        raise TypeError(
            f"{type(module).__name__} is a TorchScript module, which "
            "torch.func.functional_call cannot run with each task's weights; "
            "pass the module before torch.jit.script or torch.jit.trace"
        )


def prepare_module(module):
    """Copy ``module`` into the form the functional core runs.

    The copy's BatchNorm layers keep no running statistics, so they always
    normalize with the statistics of the batch at hand, in the inner steps, on
    the query set and at prediction time alike: the MAML paper's choice, and
    the only one under which a meta-batch can be batched with ``vmap``. The
    user's module is never modified.

    Parameters
    ----------
    module : torch.nn.Module
        The network; it is deep-copied.

    Returns
    -------
    module : torch.nn.Module
        The copy.
    """
    check_not_torchscript(module)
    _refuse_aliased_submodules(module)
    module = copy_network(module)
    replace_all_batch_norm_modules_(module)
    return module


def _refuse_aliased_submodules(module):
    """A submodule with weights registered under two names (``self.stem =
    self.layers[0]``) is left holding ``vmap``'s batched tensors by
    ``functional_call``, which then fails deep inside torch. One with
    buffers alone (a shared table of frequencies) is the same for every
    task, and works."""
    first_name = {}
    for name, submodule in module.named_modules(remove_duplicate=False):
        if id(submodule) not in first_name:
            first_name[id(submodule)] = name
            continue
        if any(True for _ in submodule.parameters()):
            raise ValueError(
                f"{type(module).__name__} holds the same "
                f"{type(submodule).__name__} under two names, "
                f"{first_name[id(submodule)]!r} and {name!r}; "
                "torch.func.functional_call, which runs the network with each "
                "task's weights, leaves such a module broken. Register it once "
                "and reach it by that name in forward (a @property can give it "
                "a second name)"
            )


@contextlib.contextmanager
def eval_mode(*modules):
    """Every submodule of ``modules`` in eval mode (a check compares two
    passes, which dropout would make differ), each mode restored after."""
    modes = [(m, m.training) for module in modules for m in module.modules()]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def expand_params(params, n_tasks):
    """View each parameter with a leading task dimension of size ``n_tasks``.

    Parameters
    ----------
    params : dict of str to Tensor
        Parameters without a task dimension.
    n_tasks : int
        Size of the new leading dimension.

    Returns
    -------
    task_params : dict of str to Tensor
        Expanded views (no copy): gradients flow back to ``params``.
    """
    n_tasks = check_positive_int(n_tasks, "n_tasks")
    return {name: p.expand(n_tasks, *p.shape) for name, p in params.items()}


def _loop_forward(module, buffers, params, X):
    outputs = [
        functional_call(
            module, ({name: p[i] for name, p in params.items()}, buffers), (X[i],)
        )
        for i in range(X.shape[0])
    ]
    return torch.stack(outputs)


def batched_forward(module, buffers=None, strategy="auto"):
    """Return ``forward(params, X)`` that runs ``module`` on a batch of tasks.

    Parameters
    ----------
    module : torch.nn.Module
        The network (as returned by :func:`prepare_module`).
    buffers : dict of str to Tensor, optional
        Buffers shared by all tasks.
    strategy : {"auto", "native", "vmap", "loop"}, default="auto"
        ``"native"`` uses the module's own ``forward_batched(params, X)``;
        ``"vmap"`` maps ``functional_call`` over the tasks; ``"loop"`` calls
        it once per task (for modules ``vmap`` cannot batch, such as RNNs).
        ``"auto"`` picks ``"native"`` when the module has ``forward_batched``
        and ``"vmap"`` otherwise, tried at the first call with two or more
        tasks: where ``vmap`` fails and the loop runs (an RNN's layers),
        ``"loop"`` from then on. :func:`choose_strategy` with a probe
        decides before any call.

    Returns
    -------
    forward : callable
        ``forward(params, X)`` with ``params`` a dict of tensors of shape
        ``(B, *parameter_shape)`` and ``X`` of shape ``(B, n_samples, ...)``;
        returns the outputs of shape ``(B, n_samples, ...)``. As with
        ``torch.func.functional_call``, ``params`` may hold some of the
        module's parameters only ("vmap" and "loop"): the others run at the
        module's own values, the same for every task, and so do not adapt
        (``adapt`` adapts what ``params`` holds).
    """
    buffers = {} if buffers is None else buffers
    if strategy == "auto":
        strategy = choose_strategy(module)
        if strategy == "vmap":  # not tried on a probe: try it at the first call
            return _vmap_or_loop(module, buffers)
    if strategy not in ("native", "loop", "vmap"):
        raise ValueError(f"unknown strategy {strategy!r}; expected one of "
                         "'auto', 'native', 'vmap', 'loop'")
    if strategy == "native":
        if not hasattr(module, "forward_batched"):
            raise ValueError(
                f"strategy='native' needs a module with its own forward_batched; "
                f"{type(module).__name__} has none (use 'vmap' or 'loop')"
            )
        forward = module.forward_batched
    elif strategy == "loop":
        def forward(params, X):
            return _loop_forward(module, buffers, params, X)
    else:
        def forward_one(params, X):
            return functional_call(module, (params, buffers), (X,))

        vmapped = vmap(forward_one, randomness="different")

        def forward(params, X):
            # vmap over a single task only adds overhead (about 30% on CPU convs)
            if X.shape[0] == 1:
                return _loop_forward(module, buffers, params, X)
            return vmapped(params, X)

    if strategy != "native" or _own_batched_forward(module):
        forward = _refusing_unknown_names(forward, module)
    return with_math_attention(forward, module)


def _refusing_unknown_names(forward, module):
    """``forward`` that refuses ``params`` naming no parameter or buffer of
    ``module``: ``functional_call`` ignores such a name, so a misspelled
    layer would run at the module's own weights, adapting nothing, silently.
    Each set of names is checked once."""
    known = {name for name, _ in module.named_parameters(remove_duplicate=False)}
    known.update(name for name, _ in module.named_buffers(remove_duplicate=False))
    # a parametrized tensor (weight_norm's "weight") is one functional_call takes
    for prefix, submodule in module.named_modules(remove_duplicate=False):
        for tensor_name in getattr(submodule, "parametrizations", {}):
            known.add(f"{prefix}.{tensor_name}" if prefix else tensor_name)
    checked = set()

    def checked_forward(params, X):
        if not torch.compiler.is_compiling():
            names = frozenset(params)
            if names not in checked:
                unknown = sorted(names - known)
                if unknown:
                    raise ValueError(
                        f"params has names that are no parameter or buffer of "
                        f"{type(module).__name__}: "
                        f"{', '.join(map(repr, unknown[:5]))}"
                        f"{', ...' if len(unknown) > 5 else ''} (its parameters: "
                        f"{', '.join(name for name, _ in module.named_parameters())})"
                        "; functional_call would ignore them, and leave those "
                        "layers at the module's own weights, not adapted"
                    )
                checked.add(names)
        return forward(params, X)

    return checked_forward


def _vmap_or_loop(module, buffers):
    """``forward(params, X)`` whose strategy :func:`choose_strategy` picks on
    the inputs of the first call with two or more tasks (a single task runs
    without ``vmap`` anyway): ``"vmap"``, or ``"loop"`` where ``vmap`` fails
    and the loop runs. A call that fails either way decides nothing."""
    chosen, one_task = [], []

    def forward(params, X):
        if not chosen:
            if X.shape[0] == 1:
                if not one_task:  # built once: its names check is kept
                    one_task.append(batched_forward(module, buffers, "loop"))
                return one_task[0](params, X)
            chosen.append(batched_forward(module, buffers,
                                          choose_strategy(module, X[0])))
        return chosen[0](params, X)

    return forward


def has_batch_norm(module):
    """Whether ``module`` has layers that normalize over the batch.

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    bool
        True if any submodule is a BatchNorm layer, whose output on a sample
        depends on the other samples of its batch.

    Examples
    --------
    >>> from torch import nn
    >>> from sk_meta.functional import has_batch_norm
    >>> has_batch_norm(nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3)))
    True
    """
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def runs_beside_support(module, transductive, n_samples):
    """Whether ``n_samples`` query samples are each run beside the support set.

    Only BatchNorm makes a sample's output depend on its batch: it is run
    beside the support set when not ``transductive``, and always when alone
    (it would otherwise be normalized with its own statistics).
    """
    return has_batch_norm(module) and (not transductive or n_samples == 1)


def outputs_beside_support(module, buffers, params, X_support, X_query, *,
                           rows_per_call=64):
    """Outputs on each query sample, run in one batch with the support set.

    The Reptile paper's non-transductive evaluation: BatchNorm layers see the
    support samples and one query sample, so the output on a query sample
    does not depend on the other query samples.

    Parameters
    ----------
    module : torch.nn.Module
        The network (as returned by :func:`prepare_module`).
    buffers : dict of str to Tensor
    params : dict of str to Tensor
        One task's parameters (no task dimension).
    X_support : Tensor of shape (n_support, ...)
    X_query : Tensor of shape (n_query, ...)
    rows_per_call : int, default=64
        Query samples per batched call (memory grows with it).

    Returns
    -------
    outputs : Tensor of shape (n_query, ...)
    """
    rows_per_call = check_positive_int(rows_per_call, "rows_per_call")
    for name, X in (("X_support", X_support), ("X_query", X_query)):
        if not isinstance(X, torch.Tensor):
            raise TypeError(f"{name} must be a tensor, got {type(X).__name__}")
    if X_query.dim() < 1 or X_support.shape[1:] != X_query.shape[1:]:
        raise ValueError(
            "X_query needs the sample shape of X_support: got "
            f"{tuple(X_query.shape)} and {tuple(X_support.shape)}"
        )

    def output_on(x):
        batch = torch.cat([X_support, x.unsqueeze(0)])
        outputs = functional_call(module, (params, buffers), (batch,))
        if not isinstance(outputs, torch.Tensor):
            raise TypeError(f"the module must return one tensor, got "
                            f"{type(outputs).__name__}")
        return outputs[-1]

    output_on = with_math_attention(output_on, module)

    if not len(X_query):  # no rows: the output shape, from one row
        with torch.no_grad():
            shape = output_on(X_support[0]).shape
        return X_support.new_empty((0, *shape))
    on_rows = vmap(output_on, randomness="different")
    outputs = []
    for rows in X_query.split(rows_per_call):
        try:
            outputs.append(on_rows(rows))
        except RuntimeError:  # layers vmap cannot batch (RNNs): one row at a time
            outputs.append(torch.stack([output_on(x) for x in rows]))
    return torch.cat(outputs)


def _own_batched_forward(module):
    """Whether ``forward`` and ``forward_batched`` are both sk_meta's own
    (its networks are tested to agree; ``fit`` skips the check for them)."""
    return all(getattr(getattr(type(module), name, None), "__module__", "")
               .startswith("sk_meta.models") for name in ("forward", "forward_batched"))


def _check_forward_batched(module, probe):
    """A module's own ``forward_batched`` must compute what ``forward`` does
    with each task's parameters: one that read a parameter from the module
    instead would leave it out of adaptation and meta-training, silently."""
    params = {name: p.detach() for name, p in module.named_parameters()}
    # two tasks, the second with every parameter changed
    tasks = {name: torch.stack([p, 0.5 * p + 0.01]) for name, p in params.items()}
    X = torch.stack([probe, probe])  # contiguous, as real batches are
    def per_task():
        return torch.stack([
            functional_call(module, {n: p[i] for n, p in tasks.items()}, (probe,))
            for i in range(2)])

    # each from the same draws, if the module draws any (input noise); the
    # user's generator is left as it was
    with eval_mode(module), torch.no_grad(), forked_rng(probe.device):
        torch.manual_seed(0)
        batched = module.forward_batched(tasks, X)
        torch.manual_seed(0)
        expected = per_task()
        torch.manual_seed(1)
        random = not torch.equal(per_task(), expected)
    if random and isinstance(batched, torch.Tensor):
        return  # forward draws differently from forward_batched: not comparable
    if not isinstance(batched, torch.Tensor):
        raise TypeError(f"{type(module).__name__}.forward_batched must return one "
                        f"tensor, got {type(batched).__name__}")
    scale = float(expected.abs().max().clamp_min(1.0))
    if batched.shape != expected.shape or not torch.allclose(
            batched, expected.to(batched.dtype), rtol=1e-4, atol=1e-5 * scale):
        raise ValueError(
            f"{type(module).__name__}.forward_batched(params, X) differs from "
            "forward with each task's parameters (on two tasks with other "
            f"parameters: shape {tuple(batched.shape)} against "
            f"{tuple(expected.shape)}); it must read every parameter from params"
        )


def choose_strategy(module, probe=None):
    """How ``module`` runs a batch of tasks: ``"native"``, ``"vmap"`` or ``"loop"``.

    ``"native"`` when the module has its own ``forward_batched``; else
    ``"vmap"``, unless ``vmap`` fails on ``probe`` (modules it has no
    batching rule for, such as RNNs), then ``"loop"``.

    Parameters
    ----------
    module : torch.nn.Module
        The network (as returned by :func:`prepare_module`).
    probe : Tensor of shape (n_samples, ...), default=None
        Inputs of one task, run as two tasks under ``vmap`` to try it.
        Without it, ``"vmap"`` is assumed (a single task never runs under
        ``vmap``).

    Returns
    -------
    strategy : str
    """
    if probe is not None and not isinstance(probe, torch.Tensor):
        raise TypeError(f"probe must be a tensor, got {type(probe).__name__}")
    if hasattr(module, "forward_batched"):
        if probe is not None and not _own_batched_forward(module):
            _check_forward_batched(module, probe)
        return "native"
    if probe is None:
        return "vmap"
    params = {name: p.detach() for name, p in module.named_parameters()}
    X = probe.unsqueeze(0).expand(2, *probe.shape)
    buffers = dict(module.named_buffers())
    # the trials leave the user's generator as it was (dropout draws from it)
    with torch.no_grad(), forked_rng(probe.device):
        try:
            batched_forward(module, buffers, "vmap")(expand_params(params, 2), X)
        except RuntimeError:
            # "loop" only if the module runs without vmap: an error of the
            # module itself (inputs of the wrong shape) is raised as it is,
            # not hidden until the first step
            batched_forward(module, buffers, "loop")(expand_params(params, 1), X[:1])
            return "loop"
    return "vmap"
