# SPDX-License-Identifier: BSD-3-Clause
"""Fast adaptation: ``fit`` + ``predict`` of a meta-trained classifier.

1. A ``MAMLClassifier`` (default MLP, hidden (64, 64), 10 inner steps) is
   meta-trained on 5-way 5-shot digits tasks. On a new 5-way 5-shot task,
   ``clf.fit(X_support, y_support).predict(X_query)`` is timed against a bare
   torch loop doing the same work on a copy of the same meta-learned module
   (``clf.module_``): numpy to tensors, ``copy.deepcopy``, 10 SGD steps of
   cross-entropy at ``inner_lr``, predict (no validation). Two bare variants:
   ``torch.optim.SGD`` and a manual ``p -= lr * grad`` update. Calls are timed
   in blocks, interleaved (A B A B); target: sk_meta within 2x of the faster
   bare loop.
2. ``GridSearchCV(clf, {"inner_lr": [3 values], "inner_steps": [3 values]},
   cv=5)`` on one 5-way 5-shot support set (25 samples) after ``meta_fit``:
   45 adaptations + 45 scores + 1 refit, wall time (target < 1 s on CPU,
   ``n_jobs=None``).
3. The cost of ``backtracking=True`` (a line search on the support loss):
   the same ``fit`` + ``predict`` with it, against without it, on a task
   whose steps all lower the loss (each step's trial forward pass gives the
   next step's gradient); target: within 1.3x.

Usage::

    python -m benchmarks.bench_adaptation --quick
    python -m benchmarks.bench_adaptation [--device cuda]
"""

import copy
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import GridSearchCV

from benchmarks._cli import make_parser, parse_device
from benchmarks._harness import interleaved_timing, set_threads, synchronize
from benchmarks._report import environment, format_table, print_header, write_results
from benchmarks._workloads import sample_digits_tasks
from sk_meta import MAMLClassifier

PLANS = {
    "quick": {"n_meta_iter": 100, "calls": 30, "repeats": 5, "grid_repeats": 3},
    "full": {"n_meta_iter": 300, "calls": 100, "repeats": 9, "grid_repeats": 5},
}
INNER_STEPS = 10
INNER_LR = 0.1
GRID = {"inner_lr": [0.03, 0.1, 0.3], "inner_steps": [1, 5, 10]}
SPEED_TARGET = 2.0  # sk_meta fit + predict within 2x of the bare loop
BACKTRACKING_TARGET = 1.3  # with the line search, within 1.3x of without
GRID_TARGET_S = 1.0


def meta_trained_classifier(n_meta_iter: int, device: torch.device):
    clf = MAMLClassifier(hidden_layer_sizes=(64, 64), inner_steps=INNER_STEPS,
                         meta_inner_steps=None, head_init="meta",
                         inner_lr=INNER_LR, n_meta_iter=n_meta_iter,
                         # plain steps: the work of the bare loops
                         backtracking=False, device=str(device), random_state=0)
    tasks = sample_digits_tasks(400, seed=0)
    start = time.perf_counter()
    clf.meta_fit(tasks)
    return clf, time.perf_counter() - start


# --------------------------------------------------------------------------- #
# The bare loops: what a user would write by hand, no validation
# --------------------------------------------------------------------------- #
def bare_fit_predict_optim(module, X_support, y_support, X_query, *, lr, steps,
                           device):
    model = copy.deepcopy(module).to(device)
    X = torch.as_tensor(X_support, dtype=torch.float32, device=device)
    y = torch.as_tensor(y_support, device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(model(X), y).backward()
        optimizer.step()
    with torch.no_grad():
        X_q = torch.as_tensor(X_query, dtype=torch.float32, device=device)
        return model(X_q).argmax(dim=1).cpu().numpy()


def bare_fit_predict_manual(module, X_support, y_support, X_query, *, lr, steps,
                            device):
    model = copy.deepcopy(module).to(device)
    params = list(model.parameters())
    X = torch.as_tensor(X_support, dtype=torch.float32, device=device)
    y = torch.as_tensor(y_support, device=device)
    for _ in range(steps):
        grads = torch.autograd.grad(F.cross_entropy(model(X), y), params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(g, alpha=lr)
    with torch.no_grad():
        X_q = torch.as_tensor(X_query, dtype=torch.float32, device=device)
        return model(X_q).argmax(dim=1).cpu().numpy()


def sk_fit_predict(clf, X_support, y_support, X_query):
    return clf.fit(X_support, y_support).predict(X_query)


def _block(function, n_calls, device):
    """Runner for interleaved_timing: ``n_calls`` calls, rate in calls/s."""
    def run():
        synchronize(device)
        start = time.perf_counter()
        for _ in range(n_calls):
            function()
        synchronize(device)
        return n_calls / (time.perf_counter() - start)
    return run


def bench_fit_predict(clf, task, plan, device):
    X_support, y_support, X_query, y_query = task
    # the meta-learned init sk_meta adapts from, on the device (as a user would
    # keep it); each bare call adapts a deep copy of it
    module = copy.deepcopy(clf.module_).to(device)
    kwargs = {"lr": INNER_LR, "steps": INNER_STEPS, "device": device}
    searched = copy.deepcopy(clf).set_params(backtracking=True)
    methods = {
        "sk_meta fit + predict": lambda: sk_fit_predict(clf, X_support, y_support,
                                                        X_query),
        "sk_meta fit + predict, backtracking": lambda: sk_fit_predict(
            searched, X_support, y_support, X_query),
        "bare loop, torch.optim.SGD": lambda: bare_fit_predict_optim(
            module, X_support, y_support, X_query, **kwargs),
        "bare loop, manual SGD": lambda: bare_fit_predict_manual(
            module, X_support, y_support, X_query, **kwargs),
        "sk_meta fit only": lambda: clf.fit(X_support, y_support),
        "sk_meta predict only": lambda: clf.predict(X_query),
    }
    clf.fit(X_support, y_support)  # so that "predict only" has an adapted model
    runners = {name: _block(f, plan["calls"], device) for name, f in methods.items()}
    timing = interleaved_timing(runners, repeats=plan["repeats"], warmup=1,
                                baseline="sk_meta fit + predict")

    predictions = {
        "sk_meta": sk_fit_predict(clf, X_support, y_support, X_query),
        "bare (optim)": bare_fit_predict_optim(module, X_support, y_support,
                                               X_query, **kwargs),
        "bare (manual)": bare_fit_predict_manual(module, X_support, y_support,
                                                 X_query, **kwargs),
    }
    rows = [{
        "method": name,
        "ms per call (median)": 1000 / timing.median_it_per_s[name],
        "min ms": 1000 / max(timing.samples[name]),
        "max ms": 1000 / min(timing.samples[name]),
        "calls/s": timing.median_it_per_s[name],
    } for name in methods]
    fastest_bare = max(("bare loop, torch.optim.SGD", "bare loop, manual SGD"),
                       key=lambda name: timing.median_it_per_s[name])
    per_round = [
        bare / sk for sk, bare in zip(timing.samples["sk_meta fit + predict"],
                                      timing.samples[fastest_bare])
    ]
    slowdown = statistics.median(per_round)
    backtracking = statistics.median(
        plain / line_searched for plain, line_searched in zip(
            timing.samples["sk_meta fit + predict"],
            timing.samples["sk_meta fit + predict, backtracking"]))
    agreement = {
        name: float(np.mean(pred == predictions["sk_meta"]))
        for name, pred in predictions.items() if name != "sk_meta"
    }
    accuracy = {name: float(np.mean(pred == y_query))
                for name, pred in predictions.items()}
    return rows, {
        "module_ device after fit": str(next(clf.module_.parameters()).device),
        "sk_meta time / bare time": slowdown,
        "vs": fastest_bare,
        "per-round": per_round,
        "target": f"<= {SPEED_TARGET:g}",
        "result": "PASS" if slowdown <= SPEED_TARGET else "FAIL",
        "backtracking time / plain time": backtracking,
        "backtracking target": f"<= {BACKTRACKING_TARGET:g}",
        "backtracking result": ("PASS" if backtracking <= BACKTRACKING_TARGET
                                else "FAIL"),
        "backtracking predictions equal": bool(np.array_equal(
            sk_fit_predict(searched, X_support, y_support, X_query),
            predictions["sk_meta"])),
        "prediction agreement with sk_meta": agreement,
        "query accuracy": accuracy,
    }


def bench_grid_search(clf, task, plan):
    X_support, y_support, X_query, y_query = task
    times, search = [], None
    for _ in range(1 + plan["grid_repeats"]):  # the first is a warm-up
        search = GridSearchCV(clf, GRID, cv=5)
        start = time.perf_counter()
        search.fit(X_support, y_support)
        times.append(time.perf_counter() - start)
    times = times[1:]
    n_fits = 5 * np.prod([len(v) for v in GRID.values()]) + 1
    # clone keeps the meta-learned init: every candidate adapted from it
    best = search.best_estimator_
    same_init = all(
        torch.equal(best.meta_params_[name], clf.meta_params_[name])
        for name in clf.meta_params_
    )
    median = statistics.median(times)
    return {
        "grid": GRID,
        "support samples": len(X_support),
        "fits (incl. refit)": int(n_fits),
        "seconds (median)": median,
        "seconds (all)": times,
        "ms per fit+score": 1000 * median / n_fits,
        "target": f"< {GRID_TARGET_S:g} s",
        "result": "PASS" if median < GRID_TARGET_S else "FAIL",
        "best params": search.best_params_,
        "best CV accuracy": float(search.best_score_),
        "query accuracy of best": float(search.score(X_query, y_query)),
        "best estimator keeps the meta-learned init": same_init,
    }


def main(argv=None):
    parser = make_parser(__doc__.split("\n")[0])
    args = parser.parse_args(argv)
    device = parse_device(parser, args.device)
    set_threads(1)
    env = environment(device)
    print_header("bench_adaptation: fit + predict after meta_fit", env)
    plan = PLANS["quick" if args.quick else "full"]

    clf, meta_seconds = meta_trained_classifier(plan["n_meta_iter"], device)
    print(f"meta_fit: {plan['n_meta_iter']} meta-iterations (meta-batch "
          f"{clf.meta_batch_size}, {INNER_STEPS} inner steps) in "
          f"{meta_seconds:.1f} s\n", flush=True)
    task = sample_digits_tasks(1, seed=12345)[0]

    rows, speed = bench_fit_predict(clf, task, plan, device)
    print(f"## fit + predict on one 5-way 5-shot task ({INNER_STEPS} steps, "
          f"{len(task[0])} support / {len(task[2])} query samples), "
          f"{plan['calls']} calls per block, {plan['repeats']} interleaved "
          "rounds\n")
    print(format_table(rows, floatfmt=".3g"))
    print(f"\nsk_meta fit + predict takes {speed['sk_meta time / bare time']:.2f}x "
          f"the time of the {speed['vs']} (median of per-round ratios; target "
          f"{speed['target']}): {speed['result']}")
    ratio = speed["backtracking time / plain time"]
    print(f"with backtracking=True it takes {ratio:.2f}x the time of plain steps "
          f"(target {speed['backtracking target']}; same predictions: "
          f"{speed['backtracking predictions equal']}): "
          f"{speed['backtracking result']}")
    if speed["module_ device after fit"] != "cpu":
        print(f"NOTE: clf.module_ is on {speed['module_ device after fit']} after "
              "fit (its docstring says the init is stored on the CPU)")
    agreement = speed["prediction agreement with sk_meta"]
    print(f"fraction of query predictions equal to sk_meta's: {agreement}; "
          f"query accuracy: {speed['query accuracy']}")

    grid = bench_grid_search(clf, task, plan)
    print(f"\n## GridSearchCV({GRID}, cv=5) on {grid['support samples']} support "
          "samples after meta_fit\n")
    print(format_table([{"measure": k, "value": v} for k, v in grid.items()
                        if k not in ("grid", "seconds (all)")], floatfmt=".3g"))
    print(f"\nGridSearchCV wall time {grid['seconds (median)']:.3f} s (target "
          f"{grid['target']}): {grid['result']}")
    write_results("bench_adaptation", {
        "environment": env, "args": vars(args), "plan": plan,
        "meta_fit_seconds": meta_seconds, "fit_predict": rows,
        "fit_predict_ratio": speed, "grid_search": grid,
    }, announce=True)


if __name__ == "__main__":
    main()
