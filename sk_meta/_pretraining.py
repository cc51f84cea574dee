"""The default MLP pretrained on all meta-training classes at once: one of
the networks ``hidden_layer_sizes="auto"`` compares on class folds.

With few meta-training classes, a network trained to tell all of them
apart, with a new output layer fitted on each support set, beats a
meta-learned init on some tables (the "Baseline" of Chen et al., ICLR
2019; benchmarks/FIDELITY.md, eighth and twentieth runs).
"""

import copy
import math
import time

import numpy as np
import torch
from sklearn.utils import check_array

from sk_meta.tasks._samplers import _take_rows

# the protocol of pretrain+LR in benchmarks/fidelity_tabular.py: Adam at
# 1e-3, batches of 256 rows, 30 epochs clipped to 300..3,000 steps
PRETRAIN_LR = 1e-3
PRETRAIN_BATCH_SIZE = 256
PRETRAIN_EPOCHS = 30
PRETRAIN_STEPS = (300, 3000)


def sampler_rows(sampler):
    """The inputs of the rows of ``sampler``'s classes, as float32, and each
    row's class as a code ``0..n_classes - 1``."""
    rows = sampler._pool_rows
    try:
        # values beyond float32's range are refused below, without numpy's
        # cast warning first
        with np.errstate(over="ignore"):
            X = check_array(_take_rows(sampler.X, np.concatenate(rows)),
                            dtype=np.float32, allow_nd=True)
        # a float32 frame's rows come back read-only (pandas' copy-on-write),
        # which torch warns of; an array's are a copy already
        X = np.require(X, requirements="W")
    except (ValueError, OverflowError) as error:  # rows no task has drawn yet
        raise ValueError(
            f"The sampler's X, whose rows of its classes the pretrained MLP "
            f"trains on: {error}") from None
    codes = np.concatenate([np.full(len(r), code) for code, r in enumerate(rows)])
    return X, codes


def planned_steps(n_rows):
    """The steps of a pretraining on ``n_rows`` rows: ``PRETRAIN_EPOCHS``
    epochs of ``PRETRAIN_BATCH_SIZE`` rows, clipped to ``PRETRAIN_STEPS``."""
    return int(np.clip(PRETRAIN_EPOCHS * n_rows / PRETRAIN_BATCH_SIZE,
                       *PRETRAIN_STEPS))


def pretrain_body(module, X, codes, *, seed, device, max_time=None):
    """Train the hidden layers of ``module`` (a :class:`~sk_meta.models.MLP`,
    in place) to classify ``X`` into ``codes`` with cross-entropy, through a
    temporary output layer of one unit per class, initialized as
    :class:`torch.nn.Linear` initializes its weights; the module's own output
    layer is left as it is. Returns the steps taken (fewer when ``max_time``
    seconds run out)."""
    n_classes = int(codes.max()) + 1
    net = copy.deepcopy(module).to(device).train()
    in_features = net.layers[-1].in_features
    # drawn from a generator of its own, not torch's: U(-1/sqrt(in), 1/sqrt(in)),
    # nn.Linear's start. A head at zero passes no gradient to the body at
    # first and left Omniglot's 4,800-class body 3.6 points behind
    # (FIDELITY.md, twenty-fifth run)
    generator = torch.Generator().manual_seed(int(seed))
    bound = 1 / math.sqrt(in_features)
    # in the body's dtype: the same draws whatever torch's default dtype
    head = torch.nn.Linear(in_features, n_classes, device="meta",
                           dtype=net.layers[0].weight.dtype).to_empty(device="cpu")
    with torch.no_grad():
        head.weight.uniform_(-bound, bound, generator=generator)
        head.bias.uniform_(-bound, bound, generator=generator)
    net.layers[-1] = head.to(device=device)
    X = torch.from_numpy(X).to(device)
    codes = torch.from_numpy(codes).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=PRETRAIN_LR)
    n_steps = planned_steps(len(X))
    start = time.perf_counter()
    for step in range(n_steps):
        batch = torch.randint(len(X), (PRETRAIN_BATCH_SIZE,),
                              generator=generator).to(device)
        loss = torch.nn.functional.cross_entropy(net(X[batch]), codes[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if max_time is not None and time.perf_counter() - start > max_time:
            break
    with torch.no_grad():
        for trained, layer in zip(net.layers[:-1], module.layers[:-1]):
            layer.weight.copy_(trained.weight)
            layer.bias.copy_(trained.bias)
    return step + 1
