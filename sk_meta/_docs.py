"""The estimators' docstrings, built from their signatures and one text per parameter.

Each parameter is described once here; its name, order and default come
from the class's ``__init__`` signature, so the documentation cannot drift
from the code (``tests/test_docstrings.py`` parses every docstring back and
compares it with the signature).
"""

import inspect

_MAML_STEPS_NOTE = (
    "(The MAML paper trains with 1 step and adapts with 10 at test time.)")
_REPTILE_STEPS_NOTE = (
    "(The Reptile paper trains with 5 to 10 steps and adapts with 50.)")
# what backtracking does, the same for every algorithm (the default and its
# reason differ)
_BACKTRACKING_RULE = """\
        In ``fit`` (and when validation tasks are scored), halve a gradient
        step, up to 10 times, while it would raise the support loss, and
        skip it if it still does (a backtracking line search); steps that
        lower the loss are taken as they are, and a step to a non-finite
        loss still raises :class:`~sk_meta.exceptions.DivergenceError`.
        With dropout, a step's trials share the step's own dropout masks."""

# name -> (type, description); a description is a str, or a dict by algorithm
PARAMETERS = {
    "module": ("torch.nn.Module class or instance", """
        The network. ``None`` builds an MLP from ``hidden_layer_sizes`` and
        ``activation`` for 2-D input. A class is instantiated with
        ``module_params`` (seeded by ``random_state``); an instance is copied
        and its weights are the starting point (a network pretrained with
        skorch, say). Its output must have one column per class (at least as
        many as the most classes in one task) or per regression target.
        BatchNorm layers always use the statistics of the batch at hand (see
        Notes)."""),
    "module_params": ("dict", """
        Keyword arguments of ``module`` when it is a class. One entry can be
        set with ``set_params(module_params__name=value)``."""),
    "hidden_layer_sizes": ('"auto" or array-like of int', """
        Hidden layers of the default MLP. ``"auto"`` (the classifiers' default)
        is ``(64, 64)``, except in a classifier's ``meta_fit`` given an
        :class:`~sk_meta.tasks.EpisodeSampler`. With 10 classes or more it
        is ``(128, 128)``: that many classes train a wider network's features
        (on the test classes of three tables with 18 to 4,800 meta-training
        classes: MAML and FOMAML +0.1 to +2.9 points, most on Omniglot
        pixels, Reptile +0.26 on average; on tables with 10 and 12
        meta-training classes, MAML and FOMAML +0.9 to +1.0 on average over
        three seeds; at about twice the meta-training time; see the Results
        page). Reptile's ``meta_fit`` takes it pretrained as below and does
        not meta-train it (on those three tables Reptile's meta-trained MLP
        lost to it by 7.2 and 6.1 points on Omniglot pixels, 2.8 and 1.7 on
        letter and flavia at 1 shot, and was within 0.4 on the other two
        rows; on 10 and 12 classes it beat the class folds by 0.5 to 1.8
        points), except with other ``adapt_layers``, ``head_init`` or
        ``inner_lr_mode`` than the defaults, and in ``meta_partial_fit``:
        there Reptile meta-trains it from 15 classes (with 10 and 12 its
        meta-trained wider MLP lost up to 7 points). With fewer, up to three
        disjoint class folds (as
        ``MetaGridSearch(cv=3)``; two with 4 or 5 classes) each meta-train
        ``(64, 64)`` and ``()``, no hidden layer, on the other classes, and with
        ``adapt_layers="auto"``, the prototype head and a fixed inner rate (the
        defaults) also pretrain ``(64, 64)`` on them: trained to tell all of
        them apart at once (cross-entropy, Adam, as "pretrain+LR" on the Results
        page) and not meta-trained, it is then adapted in its output layer
        alone. Each is scored on 100 tasks of the held-out classes (``min(n_way,
        held-out classes)``-way: 2-way with 8 classes or fewer; the meta-trained
        MLP at its last validation, as it will be used). The meta-trained MLP is
        kept unless another's mean score is more than 0.01 above it (closer
        margins are noise on so few held-out classes), and the one kept is
        meta-trained (or pretrained) on all of them, for ``n_meta_iter`` (the
        pretrained MLP for none: ``n_meta_iter_`` is 0, ``pretrained_``
        True). MAML and FOMAML, where the folds keep the meta-trained MLP,
        compare it task by task with the pretrained one on the folds'
        validation tasks: where it is above the pretrained one beyond the
        95 % interval of the paired differences, it is used alone;
        elsewhere, and where the folds keep the pretrained MLP, both are:
        the MLP meta-trained on all the classes and the MLP pretrained on
        them (``averaged_module_``), each adapted
        by ``fit`` (the pretrained one in its output layer alone), their
        predicted probabilities averaged. On the folds' few held-out classes
        the two are often too close to tell apart; on marketing the average
        was within 0.05 points of the better one, and on vowel, where the
        folds tell the meta-trained MLP apart in most runs, the defaults are
        within 0.6 points of it (see the Results page). With few meta-training
        classes, learned features may not separate new classes where the
        raw features already do (on two such tables ``()`` gained 4 to 8
        points), and features learned on all the classes at once may separate new ones
        better than meta-learned ones (marketing; see the Results page). ``()``
        with the prototype head is a logistic regression on the raw features
        started from the class means; its meta-training changes no weight, so
        with a fixed inner rate the folds meta-train it for one meta-iteration
        and, chosen, it is meta-trained for none (``n_meta_iter_`` is 0,
        ``meta_loss_curve_`` and ``history_`` empty, as for the pretrained
        MLP: with validation tasks, one row scores the init; in full with
        another head or learned rates). The folds cost up to three
        more meta-trainings of the MLP, each on three quarters of the classes
        (``max_time`` bounds each, and each pretraining), seconds of
        pretraining, and for MAML and FOMAML the comparison of the two MLPs,
        which adapts each fold's copies to its validation tasks once more
        (8 % of a ``meta_fit`` on vowel; ``max_time`` does not bound it);
        Ctrl-C during them raises ``KeyboardInterrupt`` and keeps
        nothing. ``"auto"`` is ``(64, 64)``, whatever the number of classes, for
        other tasks and inside ``MetaGridSearch``; in ``meta_partial_fit``,
        which runs no folds, for a sampler of fewer classes than that rule's;
        and for samplers too small for two folds that leave ``n_way`` classes
        to meta-train on; a warm start keeps the init's network, and a
        ``module`` replaces it. In :func:`~sk_meta.pipeline.meta_fit_pipeline`
        they run on the transformed sampler, whose preprocessing saw every
        class.
        ``hidden_layer_sizes_`` is the network used."""),
    "activation": ('{"relu", "tanh", "logistic", "identity"}', """
        Non-linearity of the default MLP."""),
    "concat_input": ("bool", """
        The default MLP's output layer also sees the raw features, beside
        its last hidden layer. With the prototype head a new task's class
        prototypes then include the raw features, which helps when the
        meta-training classes are few (features learned on them may not
        separate new classes) and can hurt when they are many (see the
        Results page)."""),
    "inner_lr": ("float", """
        Learning rate of the inner steps, in meta-training and in ``fit``.
        With learned rates (``inner_lr_mode``) it is their starting value,
        and ``fit`` scales the learned rates by the ratio of ``inner_lr`` to
        that value, so tuning it after meta-training still works."""),
    "inner_steps": ("int", """
        Inner steps that ``fit`` (and validation) take on the support set.
        The classifiers adapt with more steps than they meta-train with
        (``meta_inner_steps``): on few-shot tables 20 steps gained up to 8
        points over 5 at 5 shots and lost at most 0.2 at 1 shot (see the
        Results page of the documentation). With 0, ``fit`` takes no step:
        the predictions are the init's (with ``head_init="prototype"``, its
        nearest class mean), the point before adaptation of a learning
        curve; meta-training then needs ``meta_inner_steps``."""),
    "meta_inner_steps": ("int", {
        "maml": f"""
        Inner steps during meta-training; ``None`` means ``inner_steps``.
        {_MAML_STEPS_NOTE}""",
        "reptile": f"""
        Inner steps during meta-training; ``None`` means ``inner_steps``.
        {_REPTILE_STEPS_NOTE}""",
    }),
    "inner_lr_mode": ('{"fixed", "per_layer_step", "per_parameter"}', """
        ``"fixed"``: every inner step uses ``inner_lr``. Learned rates,
        initialised at ``inner_lr`` and meta-learned with the init (MAML
        only; kept by ``clone``, pickle and ``save``; in ``inner_lrs_``):
        ``"per_layer_step"`` is MAML++'s one rate per parameter tensor and
        inner step (Antoniou et al., 2019), ``"per_parameter"`` is
        Meta-SGD's one rate per weight (Li et al., 2017). As in the papers
        the rates are unbounded, and some can turn negative (a step that
        ascends the support loss); ``fit`` steps beyond the meta-training
        steps take the last rate floored at zero, so they never ascend. Set
        to ``"fixed"`` after meta-training, ``fit`` adapts with ``inner_lr``
        alone; rates learned in the other learned mode, or for the output
        layer alone when ``adapt_layers="all"``, are refused."""),
    "adapt_layers": ('{"all", "head", "auto"}', """
        Which parameters the inner steps change. ``"auto"`` (the
        classifiers' default) is ``"head"`` for the pretrained MLP that
        ``hidden_layer_sizes="auto"`` may choose, and ``"all"`` otherwise;
        set ``"all"`` or ``"head"`` and that network is not a candidate.
        ``"head"`` is ANIL (Raghu et
        al., 2020): only the output layer (the network's last ``nn.Linear``)
        adapts, the body's features are computed once per task, and the body
        is learned by the outer loop alone (MAML, FOMAML). Reptile's outer
        step follows the adapted weights, so with it the body is not
        meta-trained: only a meta-learned output layer (``head_init="meta"``)
        is, and meta-training refuses the other heads, which would train
        nothing; ``fit`` takes ``"head"`` with any head."""),
    "head_init": ('{"meta", "zero", "prototype"}', """
        Where each task's output layer starts (classifiers only; regressors
        take ``"meta"``). ``"meta"``: the meta-learned output layer.
        ``"zero"``: zeros for every task, the zeroing trick (Ye & Chao,
        2022), which makes MAML invariant to the order of the labels.
        ``"prototype"``: ProtoMAML (Triantafillou et al., 2020), the layer of
        a nearest-prototype classifier on the support set's features
        (``w_k = 2 c_k``, ``b_k = -||c_k||²``), then adapted; the
        meta-gradient flows through the prototypes (the inner steps treat
        the layer so built as a parameter of its own: their gradients do not
        reach the body through the prototypes). It needs a network whose
        last operation is an ``nn.Linear`` layer with a bias (the default
        MLP is one); the classifiers' default, chosen on few-shot tables
        (see the Results page of the documentation)."""),
    "prototype_scale": ('"auto" or float', """
        Factor of the output layer that ``head_init="prototype"`` builds, and
        so of its starting logits (metric scaling, Oreshkin et al., 2018).
        At 1.0, ProtoMAML's start, the nearest-prototype classifier is often
        already sure of every support row on standardized features, and the
        inner steps barely move it; below 1 it starts less sure, and the
        steps go on from the prototypes towards a logistic regression on the
        network's features. ``"auto"`` (the classifiers' default) is 0.3
        with the prototype head (0.1 for the default MLP without hidden
        layers and for the pretrained MLP), chosen on few-shot tables (see
        the Results page of the documentation), and no scale with any other
        head. A number other than 1.0 needs ``head_init="prototype"`` (with another
        head it raises a ``ValueError``)."""),
    "multi_step_loss": ("bool", """
        MAML++'s multi-step loss (MAML only): the meta-loss weights the query
        loss after every inner step, from uniform weights annealed over the
        first tenth of ``n_meta_iter`` to the last step alone."""),
    "backtracking": ("bool", {
        "maml": f"""
{_BACKTRACKING_RULE}
        Meta-training's inner loop always takes plain steps. Off by
        default: MAML's init is meta-trained for the plain steps of its
        inner loop (learned inner rates may ascend on purpose, and a line
        search would refuse those steps), and on the few-shot tables of
        the results page the line search changed MAML's and FOMAML's
        accuracy by +0.02 and +0.03 points on average.""",
        "reptile": f"""
{_BACKTRACKING_RULE}
        Meta-training's inner loop always takes plain steps, as in the
        paper. Features meta-trained on few classes can be so large on new
        ones that ``inner_lr`` overshoots: ``ReptileClassifier``'s default,
        True, was chosen by measurement (few-shot tabular benchmark:
        movement_libras 5-shot from 54.9 to 70.9 %, +1.0 points on average
        over 16 rows, 1.5 points lost on digits 5-shot, where plain steps
        that first raise the loss end on a better model).
        ``ReptileRegressor`` keeps plain steps.""",
    }),
    "task_interpolation": ("float", """
        Chance, in [0, 1], that a meta-training task is replaced by its
        interpolation with another task of the meta-batch (MLTI, Yao et al.,
        2022; classifiers only; a task alone in its meta-batch, or in its
        group of tasks of one shape, is mixed with itself): the classes of
        the two tasks are paired at random and every row becomes
        ``lam * x + (1 - lam) * x'``, with ``lam ~ Beta(2, 2)`` per task and
        the labels of the first task, rescaled about the mean row of the
        meta-batch by ``1 / sqrt(lam**2 + (1 - lam)**2)`` so that mixed rows
        spread as much as real ones. The interpolated classes are new ones,
        so meta-training sees more tasks than few classes give; scale the
        inputs first. ``fit``, validation and ``predict`` never interpolate.
        The classifiers of MAML and FOMAML default to 0.5, chosen on few-shot
        tables, where it helps most with few meta-training classes and can
        cost a point or two with thousands (see the Results page of the
        documentation); Reptile's default is 0.0."""),
    "first_order": ("bool", """
        Treat the inner gradients as constants (first-order MAML): cheaper,
        without the second-order term of the meta-gradient."""),
    "inner_optimizer": ('{"sgd", "adam"}', """
        Inner update rule, in meta-training and in ``fit``. ``'adam'`` is the
        Reptile paper's Adam with β1 = 0 (β2 = 0.999), with a fresh state for
        every task (the Reptile code keeps Adam's moments from task to
        task)."""),
    "meta_lr": ("float", {
        "maml": """
        Learning rate of the outer optimizer.""",
        "reptile": """
        Outer step size ε: ``θ ← θ + ε (mean φᵢ - θ)`` with the default
        ``meta_optimizer='sgd'``.""",
    }),
    "meta_batch_size": ("int", """
        Tasks per meta-iteration."""),
    "n_meta_iter": ("int", """
        Outer updates that ``meta_fit`` runs in total; with ``warm_start``
        it continues from ``n_meta_iter_`` up to this number."""),
    "max_time": ("float", """
        Seconds after which ``meta_fit`` stops, at the end of the
        meta-iteration that reaches them (``n_meta_iter_`` says how many
        ran); ``None`` runs all ``n_meta_iter``. With
        ``meta_lr_schedule="linear"`` the decay follows whichever of
        iterations and time is further along, so it reaches 0 by the
        deadline. With ``hidden_layer_sizes="auto"``, it bounds each
        meta-training of its class folds and the final one (up to about
        four times ``max_time`` in all), and each pretraining of the
        pretrained MLP, separately (one cut short by it leaves a body
        trained for fewer steps)."""),
    "meta_optimizer": ('{"adam", "sgd"}', {
        "maml": """
        Outer optimizer.""",
        "reptile": """
        Outer optimizer. ``'sgd'`` is the paper's update; ``'adam'`` treats
        ``θ - mean φᵢ`` as a gradient.""",
    }),
    "meta_lr_schedule": ('{"constant", "linear"}', """
        ``"linear"`` decays the outer learning rate linearly from ``meta_lr``
        to 0 over ``n_meta_iter`` meta-iterations (the Reptile paper's
        schedule for ε); without ``max_time`` it depends only on the
        iteration count, so resumed runs follow the same schedule.
        ``meta_partial_fit`` refuses it (it has no budget)."""),
    "meta_grad_max_norm": ("float or None", {
        "maml": """
        Largest L2 norm of the meta-gradient (all meta-parameters together,
        learned inner rates included): a longer one is scaled down to it
        before the outer step, as ``torch.nn.utils.clip_grad_norm_`` does.
        Second-order meta-gradients through several inner steps spike now
        and then (on digits and Omniglot pixels the largest of 1,000 was 100
        to 1,000 times their median); clipping keeps one spike from moving
        the init far. ``None`` leaves the meta-gradient as it is.
        ``MAMLClassifier``'s default, 1.0, was
        chosen by measurement (few-shot tabular benchmark: +4.1 points on
        Omniglot pixels at 5 shots, the other rows within ±0.7);
        first-order MAML's meta-gradients did not gain from it, and the
        regressors keep the papers' unclipped update.""",
        "reptile": """
        Largest L2 norm of the outer update direction ``θ - mean φᵢ`` (all
        meta-parameters together): a longer one is scaled down to it before
        the outer step. ``None`` leaves it as it is. ``ReptileClassifier``'s
        default, 1.0, was chosen by measurement: with few meta-training
        classes the inner steps' overshoots fed the init until meta-training
        diverged (movement_libras, 5-shot: ``meta_fit`` with every other
        default raised :class:`~sk_meta.exceptions.DivergenceError` at
        meta-iteration 888 or 980 of a class fold, as the direction's norm,
        0.07 at the median, spiked to 10⁴); clipped, the same folds
        meta-train to the end. On the few-shot tabular benchmark the clip
        changed only movement_libras (+0.6 and +0.8 points at 1 and 5
        shots with the MLP 64-64) and left vowel and marketing unchanged to
        the task. ``ReptileRegressor`` keeps the paper's unclipped update.""",
    }),
    "tasks_per_chunk": ('int, "auto" or None', """
        Split each meta-batch into chunks of at most this many tasks whose
        gradients are accumulated: less memory (a batched meta-batch holds
        every task's graph at once), less parallelism. ``None`` processes the
        whole meta-batch at once. ``"auto"`` does so too, except for modules
        with convolutions on the CPU: there ``vmap`` runs a convolution over
        many tasks as one grouped convolution, which slows down once its
        activations outgrow the caches, so chunks keep each chunk's largest
        activation under 8 MiB (one task at a time for a conv-4 with 64
        filters on 28x28 images)."""),
    "compile": ('bool or {"default", "reduce-overhead", "max-autotune"}', """
        Compile the meta-training step with ``torch.compile`` (a mode name,
        or ``True`` for CUDA graphs on a GPU and inductor's default on the
        CPU). Compiling takes from seconds to minutes, once (warm-started
        ``meta_fit`` calls reuse it), and pays off over long runs only (see
        the Performance section of the documentation). If compilation fails
        for a module, meta-training warns and goes on eagerly. ``fit`` is not
        compiled: its compilation would take longer than thousands of fits."""),
    "transductive": ("bool", """
        How BatchNorm layers normalize at prediction time (no effect on
        networks without them). ``True``: with the statistics of the batch
        passed to ``predict`` (the MAML paper's evaluation), so one sample's
        prediction depends on the others in the batch. ``False``: each sample
        is run in one batch with the support set given to ``fit`` (the
        Reptile paper's non-transductive evaluation), so predictions are made
        one sample at a time, at the cost of a pass over the support set per
        sample. Applies to validation during ``meta_fit`` too. A single
        sample is always run beside the support set: alone, it would be
        normalized with its own statistics."""),
    "class_weight": ('{"balanced"} or None', """
        How the classes of a support set weigh in the loss of the inner steps
        (in ``fit``, and in meta-training for the tasks' support sets; Reptile:
        the whole task). ``"balanced"``, as scikit-learn's: each sample by
        ``n_samples / (n_classes * samples of its class)``, so that every
        class weighs the same. None: the plain mean over samples (the MAML
        and Reptile papers'). They differ only where a support set holds more
        samples of one class than of another: a few gradient steps on the
        plain mean then pull the predictions towards the larger class (digits,
        3 new classes with 20, 5 and 5 support samples and query sets in the
        same proportions, MAML's defaults after 300 meta-iterations, 3 class
        splits: 81.9 % with None, 93.2 % balanced, logistic regression 93.1
        %; ``benchmarks/imbalanced_support.py``). Balanced support sets, as
        samplers draw them, are unaffected: the weights are all 1."""),
    "head_solver": ('{"auto", "steps", "choose"}', """
        How ``fit`` (and validation during ``meta_fit``) adapts the output
        layer where it adapts alone (``adapt_layers="head"``, or ``"auto"``
        on the pretrained MLP). ``"steps"``: the ``inner_steps`` steps from
        the head's start. ``"choose"``: per task, the steps' layer or a
        logistic regression on the body's features of the support set
        (scikit-learn's ``LogisticRegression(max_iter=1000)``, with
        ``class_weight`` and ``sample_weight``), whichever has the lower
        log-loss on leave one shot out: fold ``j`` holds out the ``j``-th
        sample of every class (up to five folds), and both are refitted on
        the rest. A task with a class of one sample (1-shot) keeps the
        steps. At 5 shots ``fit`` then takes about ten times as long. The steps stop
        early; the regression fits to convergence, which is ahead on some
        tables at 5 shots and behind on others. ``"auto"`` (the default) is
        ``"choose"`` for ``ReptileClassifier``'s pretrained MLP, measured
        there on few-shot tables (see the Results page of the
        documentation), and ``"steps"`` otherwise. Where the whole network
        adapts, or the output layer has no bias, it is the steps.
        Meta-training's inner loop always takes the steps."""),
    "validation_interval": ("int", """
        Meta-iterations between two rows of ``history_`` (and two evaluations
        on the ``validation_tasks`` given to ``meta_fit``)."""),
    "early_stopping": ("bool", """
        Stop meta-training when the mean validation score has not improved
        by ``tol`` for ``n_iter_no_change`` evaluations, and keep the init
        that scored best. Needs ``validation_tasks``."""),
    "n_iter_no_change": ("int", """
        Evaluations without improvement before early stopping."""),
    "tol": ("float", """
        Least improvement of the validation score that counts."""),
    "warm_start": ("bool", """
        Make ``meta_fit`` continue from the current meta-learned init (and
        optimizer state and task stream position) instead of starting over."""),
    "checkpoint_path": ("str or path-like", """
        Where ``meta_fit`` saves a checkpoint every ``checkpoint_every``
        meta-iterations and at the end (see :func:`sk_meta.load`). Its
        directory must exist. A checkpoint that cannot be written (a full
        disk) gives a ``PersistenceWarning``, and meta-training goes on (a
        warnings filter that makes it an error stops the call, which then
        keeps nothing, as any failed call).
        Never restored by :func:`sk_meta.load`."""),
    "checkpoint_every": ("int", """
        Meta-iterations between checkpoints."""),
    "distributed": ('"auto", True or False', """
        ``"auto"``: when a ``torch.distributed`` process group with more than
        one process is initialized (``torchrun``), each meta-batch is split
        across the processes and their meta-gradients are all-reduced; every
        process ends with the same weights (a meta-batch that the number of
        processes does not divide is split unevenly, weighted as one process
        would). A process that fails or stops answering makes the others
        raise after the group's ``timeout`` (``init_process_group``).
        ``True`` is the same as ``"auto"``. ``False``: each process
        meta-trains on its own."""),
    "n_threads": ("int", """
        Torch threads while this estimator computes (restored afterwards).
        One thread is fastest for the small networks of few-shot learning
        and cannot oversubscribe a busy machine; ``None`` keeps torch's
        setting. At most 1024."""),
    "device": ("str or torch.device", """
        ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"auto"`` (CUDA
        when available; ``device_`` says which was used). The meta-learned
        init is always stored on the CPU."""),
    "random_state": ("int, RandomState instance or None", """
        Seeds the initialization, the order of the tasks and torch's random
        number generator during meta-training and ``fit``."""),
    "verbose": ("int", """
        Progress of meta-training: 0 prints nothing; 1 shows a progress bar
        on a terminal or in a notebook (meta-iteration, meta-loss,
        validation score, iterations per second, time left) and prints a
        line every 5 % elsewhere (a log file); 2 prints a line every
        meta-iteration. A last line says when early stopping or
        ``max_time`` ended the run and, with early stopping, which init the
        estimator keeps."""),
}


def format_default(value):
    """A default as numpydoc writes it: ``default="relu"``, ``default=None``."""
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def parameters_doc(estimator_class):
    """The Parameters section of ``estimator_class``, from its signature."""
    lines = ["", "    Parameters", "    ----------"]
    signature = inspect.signature(estimator_class.__init__)
    algorithm = estimator_class._algorithm
    for name, parameter in signature.parameters.items():
        if name == "self":
            continue
        type_, description = PARAMETERS[name]
        if isinstance(description, dict):
            description = description[algorithm]
        lines.append(f"    {name} : {type_}, "
                     f"default={format_default(parameter.default)}")
        lines.append(description.strip("\n"))
    return "\n".join(lines) + "\n"


ATTRIBUTES_DOC = """
    Attributes
    ----------
    module_ : torch.nn.Module
        The meta-learned network (on the CPU); its parameters are the init.
        Set by ``meta_fit``; kept by ``clone``.
    meta_params_ : dict of str to Tensor
        The meta-learned init by parameter name (sharing ``module_``'s memory).
    inner_lrs_ : dict of str to Tensor or None
        The learned inner learning rates by parameter name (``None`` with
        ``inner_lr_mode="fixed"``).
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
    hidden_layer_sizes_ : tuple of int or None
        The default MLP's hidden layers as meta-trained (what
        ``hidden_layer_sizes="auto"`` stands for); None with a ``module``.
    hidden_layer_sizes_search_ : dict or None
        What the class folds of ``hidden_layer_sizes="auto"`` scored:
        ``candidates`` (the pretrained MLP's has ``"pretrained": True``),
        ``scores`` (validation accuracy averaged over the folds, at each
        candidate's last validation), ``fold_scores``,
        ``scored_at_meta_iter``, ``n_folds``, ``chosen`` (the index of the
        candidate the folds chose), ``paired`` (MAML's and FOMAML's
        comparison of the meta-trained and the pretrained MLP, task by task
        on the folds' validation tasks: ``candidates``, ``difference``, the
        mean of their score differences, ``half_width`` of its 95 %
        interval, ``n_tasks`` and ``above``, whether the meta-trained MLP is
        above beyond it; only where the folds kept the meta-trained MLP:
        None elsewhere, and for Reptile) and ``averaged`` (True where MAML
        and FOMAML use the two MLPs, averaged, instead:
        ``averaged_module_``);
        None when they did not run. (Files saved before
        the pretrained candidate have the best validation's
        ``best_meta_iter`` and no ``chosen``.)
    averaged_module_ : torch.nn.Module or None
        The default MLP pretrained on all meta-training classes (not
        meta-trained) that MAML's and FOMAML's ``hidden_layer_sizes="auto"``
        averages with the meta-trained MLP: ``fit`` adapts both to the
        support set (this one in its output layer alone with
        ``adapt_layers="auto"``), and predictions average their class
        probabilities. None where it is not used (the folds kept the
        meta-trained MLP alone, or chose another network). A warm start keeps it
        and meta-trains ``module_``; it goes with a fresh ``meta_fit``
        alone (parameters set after ``meta_fit``, ``hidden_layer_sizes``
        included, change how both adapt, not whether it is used).
    pretrained_ : bool
        Whether the init is the default MLP pretrained on all meta-training
        classes at once, which ``hidden_layer_sizes="auto"`` chose, and
        whose output layer alone adapts with ``adapt_layers="auto"``
        (``n_meta_iter_`` is 0, unless a warm start has meta-trained it
        since). False for any other network, and once meta-training has
        adapted all its layers in the inner loop.
    history_ : skorch.history.History
        One row per ``validation_interval`` meta-iterations: ``meta_iter``,
        mean ``meta_loss``, ``dur`` (seconds), and with validation tasks
        ``valid_loss``, ``valid_score`` and ``valid_score_best``. Read a
        column with ``history_[:, "meta_loss"]``.
    validation_scores_ : list of float
        Mean post-adaptation validation score (accuracy for classifiers, R²
        for regressors) at each evaluation, of what the estimator predicts
        (with ``averaged_module_``, the average of the two networks).
    best_validation_score_ : float or None
        The best of ``validation_scores_``.
    params_ : dict of str to Tensor
        The adapted parameters, set by ``fit``.
    n_outputs_ : int
        Outputs of the adapted network.
    device_ : torch.device
        The device the last ``fit`` (or ``meta_fit``) computed on.
    n_features_in_ : int
        Number of features seen by ``fit``.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
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

_MAML_REFERENCES = """\
    C. Finn, P. Abbeel and S. Levine. Model-Agnostic Meta-Learning for Fast
    Adaptation of Deep Networks. ICML 2017."""
_REPTILE_REFERENCES = """\
    A. Nichol, J. Achiam and J. Schulman. On First-Order Meta-Learning
    Algorithms. arXiv:1803.02999, 2018."""
_VARIANT_REFERENCES = """\
    A. Antoniou, H. Edwards and A. Storkey. How to train your MAML. ICLR 2019.

    Z. Li, F. Zhou, F. Chen and H. Li. Meta-SGD: Learning to Learn Quickly for
    Few-Shot Learning. arXiv:1707.09835, 2017.

    A. Raghu, M. Raghu, S. Bengio and O. Vinyals. Rapid Learning or Feature
    Reuse? Towards Understanding the Effectiveness of MAML. ICLR 2020.

    E. Triantafillou et al. Meta-Dataset: A Dataset of Datasets for Learning
    to Learn from Few Examples. ICLR 2020.

    H.-J. Ye and W.-L. Chao. How to Train Your MAML to Excel in Few-Shot
    Classification. ICLR 2022."""

_CLASSES_DOC = """    classes_ : ndarray of shape (n_classes,)
        Labels of the support set; ``classes_[i]`` maps to output ``i``
        (after a ``fit`` whose ``sample_weight`` gave classes weight 0,
        those have probability 0 and the outputs map to the others).
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


def estimator_doc(estimator_class, *, summary, see_also):
    """The whole docstring of one of the six estimators."""
    name = estimator_class.__name__
    classifier = name.endswith("Classifier")
    references = (_MAML_REFERENCES if estimator_class._algorithm == "maml"
                  else _REPTILE_REFERENCES)
    return (
        f"{summary}\n"
        + parameters_doc(estimator_class)
        + ATTRIBUTES_DOC
        + (_CLASSES_DOC if classifier else "")
        + "\n    See Also\n    --------\n"
        + "".join(f"    {line}\n" for line in see_also)
        + NOTES_DOC
        + "\n    References\n    ----------\n" + references + "\n\n"
        + _VARIANT_REFERENCES + "\n"
        + (_CLASSIFIER_EXAMPLE if classifier else _REGRESSOR_EXAMPLE).format(name=name)
    )
