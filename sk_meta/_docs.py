"""Docstring sections shared by the six estimators."""

_PARAMETERS_DOC = """
    Parameters
    ----------
    module : torch.nn.Module class or instance, default=None
        The network. ``None`` builds an MLP from ``hidden_layer_sizes`` and
        ``activation`` for 2-D input. A class is instantiated with
        ``module_params`` (seeded by ``random_state``); an instance is copied
        and its weights are the starting point. Its output must have one
        column per class (at least as many as the most classes in one task)
        or per regression target. BatchNorm layers always use the statistics
        of the batch at hand (see Notes).
    module_params : dict, default=None
        Keyword arguments of ``module`` when it is a class. One entry can be
        set with ``set_params(module_params__name=value)``.
    hidden_layer_sizes : array-like of int, default=(64, 64)
        Hidden layers of the default MLP.
    activation : {{"relu", "tanh", "logistic", "identity"}}, default="relu"
        Non-linearity of the default MLP.
    inner_lr : float, default={inner_lr}
        Learning rate of the inner steps, in meta-training and in ``fit``.
    inner_steps : int, default=5
        Inner steps that ``fit`` takes on the support set.
    meta_inner_steps : int, default=None
        Inner steps during meta-training; ``None`` means ``inner_steps``.
        {meta_inner_steps_note}
    meta_lr : float, default={meta_lr}
        {meta_lr_doc}
    meta_batch_size : int, default=16
        Tasks per meta-iteration.
    n_meta_iter : int, default=1000
        Outer updates that ``meta_fit`` runs in total; with ``warm_start``
        it continues from ``n_meta_iter_`` up to this number.
    max_time : float, default=None
        Seconds after which ``meta_fit`` stops, at the end of the
        meta-iteration that reaches them (``n_meta_iter_`` says how many
        ran); ``None`` runs all ``n_meta_iter``. With
        ``meta_lr_schedule="linear"`` the decay follows whichever of
        iterations and time is further along, so it reaches 0 by the
        deadline.
    meta_optimizer : {{"adam", "sgd"}}, default="{meta_optimizer}"
        {meta_optimizer_doc}
    meta_lr_schedule : {{"constant", "linear"}}, default="constant"
        ``"linear"`` decays the outer learning rate linearly from ``meta_lr``
        to 0 over ``n_meta_iter`` meta-iterations (the Reptile paper's
        schedule for ε); without ``max_time`` it depends only on the
        iteration count, so resumed runs follow the same schedule.
{algorithm_doc}
    tasks_per_chunk : int, "auto" or None, default="auto"
        Split each meta-batch into chunks of at most this many tasks whose
        gradients are accumulated: less memory (a batched meta-batch holds
        every task's graph at once), less parallelism. ``None`` processes the
        whole meta-batch at once. ``"auto"`` does so too, except for modules
        with convolutions on the CPU: there ``vmap`` runs a convolution over
        many tasks as one grouped convolution, which slows down once its
        activations outgrow the caches, so chunks keep each chunk's largest
        activation under 8 MiB (conv-4 with 64 filters on 28x28 images: one
        task per chunk, 2.2x faster than the whole meta-batch; with 8
        filters: 13 tasks).
    compile : bool or {{"default", "reduce-overhead", "max-autotune"}}, \
default=False
        Compile the meta-training step with ``torch.compile`` (a mode name,
        or ``True`` for CUDA graphs on a GPU and inductor's default on the
        CPU). Compiling takes from seconds to a minute, once (warm-started
        ``meta_fit`` calls reuse it), and pays off over long runs (see the
        Performance section of the README). If compilation fails for a
        module, meta-training warns and goes on eagerly. ``fit`` is not
        compiled: compiled, 10 steps of the default MLP on a 5-way 5-shot
        task ran 3.4x faster (0.9 against 3.2 ms) but compiling took 15 s,
        which about 7,000 fits repay (a 9 x 5 grid search makes 45).
    transductive : bool, default=True
        How BatchNorm layers normalize at prediction time (no effect on
        networks without them). ``True``: with the statistics of the batch
        passed to ``predict`` (the MAML paper's evaluation), so one sample's
        prediction depends on the others in the batch. ``False``: each sample
        is run in one batch with the support set given to ``fit`` (the
        Reptile paper's non-transductive evaluation), so predictions are made
        one sample at a time, at the cost of a pass over the support set per
        sample. Applies to validation during ``meta_fit`` too. A single
        sample is always run beside the support set: alone, it would be
        normalized with its own statistics.
    validation_interval : int, default=100
        Meta-iterations between two rows of ``history_`` (and two evaluations
        on the ``validation_tasks`` given to ``meta_fit``).
    early_stopping : bool, default=False
        Stop meta-training when the mean validation score has not improved
        by ``tol`` for ``n_iter_no_change`` evaluations, and keep the init
        that scored best. Needs ``validation_tasks``.
    n_iter_no_change : int, default=10
        Evaluations without improvement before early stopping.
    tol : float, default=1e-4
        Least improvement of the validation score that counts.
    warm_start : bool, default=False
        Make ``meta_fit`` continue from the current meta-learned init (and
        optimizer state and task stream position) instead of starting over.
    checkpoint_path : str or path-like, default=None
        Where ``meta_fit`` saves a checkpoint every ``checkpoint_every``
        meta-iterations (see :func:`sk_meta.load`).
    checkpoint_every : int, default=1000
        Meta-iterations between checkpoints.
    n_threads : int, default=1
        Torch threads while this estimator computes (restored afterwards).
        One thread is fastest for the small networks of few-shot learning
        and cannot oversubscribe a busy machine; ``None`` keeps torch's
        setting.
    device : str or torch.device, default="cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"auto"`` (CUDA
        when available). The meta-learned init is always stored on the CPU.
    random_state : int, RandomState instance or None, default=None
        Seeds the initialization, the order of the tasks and torch's random
        number generator during meta-training and ``fit``.
    verbose : int, default=0
        Print the meta-loss during meta-training (every iteration from 2).
"""

_MAML_DOCS = {
    "meta_inner_steps_note": (
        "(The MAML paper trains with 1 step and adapts with 10 at test time.)"
    ),
    "meta_lr": "1e-3",
    "meta_lr_doc": "Learning rate of the outer optimizer.",
    "meta_optimizer": "adam",
    "meta_optimizer_doc": "Outer optimizer.",
    "algorithm_doc": """    first_order : bool, default={first_order}
        Treat the inner gradients as constants (first-order MAML): cheaper,
        without the second-order term of the meta-gradient.""",
}

_REPTILE_DOCS = {
    "meta_inner_steps_note": (
        "(The Reptile paper trains with 5 to 10 steps and adapts with 50.)"
    ),
    "meta_lr": "0.1",
    "meta_lr_doc": (
        "Outer step size ε: ``θ ← θ + ε (mean φᵢ - θ)`` with the default\n"
        "        ``meta_optimizer='sgd'``."
    ),
    "meta_optimizer": "sgd",
    "meta_optimizer_doc": (
        "Outer optimizer. ``'sgd'`` is the paper's update; ``'adam'`` treats\n"
        "        ``θ - mean φᵢ`` as a gradient."
    ),
    "algorithm_doc": """    inner_optimizer : {{"sgd", "adam"}}, default="sgd"
        Inner update rule, in meta-training and in ``fit``. ``'adam'`` is the
        Reptile paper's Adam with β1 = 0 (β2 = 0.999), with a fresh state for
        every task.""",
}


def parameters_doc(algorithm, **values):
    """The Parameters section for ``algorithm`` ("maml" or "reptile")."""
    docs = dict(_MAML_DOCS if algorithm == "maml" else _REPTILE_DOCS)
    docs["algorithm_doc"] = docs["algorithm_doc"].format(**values)
    return _PARAMETERS_DOC.format(**docs, **values)


ATTRIBUTES_DOC = """
    Attributes
    ----------
    module_ : torch.nn.Module
        The meta-learned network (on the CPU); its parameters are the init.
        Set by ``meta_fit``; kept by ``clone``.
    meta_params_ : dict of str to Tensor
        The meta-learned init by parameter name (sharing ``module_``'s memory).
    n_meta_iter_ : int
        Meta-iterations run so far.
    meta_loss_curve_ : list of float
        Mean meta-loss of each meta-iteration.
    meta_input_shape_ : tuple of int
        Shape of one input sample during meta-training.
    meta_n_outputs_ : int
        Outputs of the meta-learned network.
    meta_architecture_ : dict
        The architecture parameters at meta-training, checked by ``fit``.
    history_ : skorch.history.History
        One row per ``validation_interval`` meta-iterations: ``meta_iter``,
        mean ``meta_loss``, ``dur`` (seconds), and with validation tasks
        ``valid_loss``, ``valid_score`` and ``valid_score_best``. Read a
        column with ``history_[:, "meta_loss"]``.
    validation_scores_ : list of float
        Mean post-adaptation validation score (accuracy for classifiers, R²
        for regressors) at each evaluation.
    best_validation_score_ : float or None
        The best of ``validation_scores_``.
    params_ : dict of str to Tensor
        The adapted parameters, set by ``fit``.
    n_outputs_ : int
        Outputs of the adapted network.
    n_features_in_ : int
        Number of features seen by ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen by ``fit``, when they are all strings.
"""

NOTES_DOC = """
    Notes
    -----
    Meta-training runs all tasks of a meta-batch with equal shapes as one
    batched computation (the MLP's own batched forward pass, else
    ``torch.func.vmap``, else a loop for modules ``vmap`` cannot batch, such
    as RNNs). BatchNorm layers keep no running statistics: as in the MAML
    paper they normalize with the current batch's statistics in every inner
    step and, by default, at prediction time, so predictions on a query set
    depend on the whole query batch (transductive); ``transductive=False``
    predicts each sample beside the support set instead.

    ``clone`` keeps the meta-learned init, so after ``meta_fit`` a grid
    search or cross-validation over ``inner_lr`` and ``inner_steps`` adapts
    every candidate from it; changing an architecture parameter afterwards
    makes ``fit`` raise.
"""

MAML_REFERENCES_DOC = """
    References
    ----------
    C. Finn, P. Abbeel and S. Levine. Model-Agnostic Meta-Learning for Fast
    Adaptation of Deep Networks. ICML 2017.
"""

REPTILE_REFERENCES_DOC = """
    References
    ----------
    A. Nichol, J. Achiam and J. Schulman. On First-Order Meta-Learning
    Algorithms. arXiv:1803.02999, 2018.
"""


_CLASSES_DOC = """    classes_ : ndarray of shape (n_classes,)
        Labels of the support set; ``classes_[i]`` maps to output ``i``.
"""

_CLASSIFIER_EXAMPLE = """
    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sk_meta import {name}
    >>> from sk_meta.tasks import EpisodeSampler
    >>> X, y = load_digits(return_X_y=True)
    >>> tasks = EpisodeSampler(X / 16, y, n_way=3, k_shot=5, n_query=5,
    ...                        classes=range(7), random_state=0)
    >>> clf = {name}(n_meta_iter=5, random_state=0).meta_fit(tasks)
    >>> new_task = EpisodeSampler(X / 16, y, n_way=3, k_shot=5, n_query=5,
    ...                           classes=[7, 8, 9], random_state=1).sample()
    >>> clf.fit(new_task.X_support, new_task.y_support).classes_
    array([7, 8, 9])
    >>> clf.predict(new_task.X_query).shape
    (15,)
"""

_REGRESSOR_EXAMPLE = """
    Examples
    --------
    >>> from sk_meta import {name}
    >>> from sk_meta.tasks import SinusoidTasks
    >>> reg = {name}(hidden_layer_sizes=(40, 40), n_meta_iter=5,
    ...     random_state=0)
    >>> reg = reg.meta_fit(SinusoidTasks(k_shot=10, random_state=0))
    >>> task = SinusoidTasks(k_shot=10, random_state=1).sample()
    >>> reg.fit(task.X_support, task.y_support).predict(task.X_query).shape
    (10,)
"""


def estimator_doc(name, algorithm, *, summary, see_also, **defaults):
    """The whole docstring of one of the six estimators.

    ``algorithm`` is "maml" or "reptile"; ``defaults`` fills the parameter
    defaults that differ between the classes (``inner_lr``, ``first_order``).
    """
    classifier = name.endswith("Classifier")
    return (
        f"{summary}\n"
        + parameters_doc(algorithm, **defaults)
        + ATTRIBUTES_DOC
        + (_CLASSES_DOC if classifier else "")
        + "\n    See Also\n    --------\n"
        + "".join(f"    {line}\n" for line in see_also)
        + NOTES_DOC
        + (MAML_REFERENCES_DOC if algorithm == "maml" else REPTILE_REFERENCES_DOC)
        + (_CLASSIFIER_EXAMPLE if classifier else _REGRESSOR_EXAMPLE).format(name=name)
    )
