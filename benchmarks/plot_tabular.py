# SPDX-License-Identifier: BSD-3-Clause
"""Figure of the few-shot tabular benchmark: accuracy by data set and method.

Reads the summary that ``python -m benchmarks.fidelity_tabular --report``
writes (``benchmarks/results/tabular/summary_{stage}.json``) and saves
``benchmarks/results/tabular_fidelity_{stage}.png`` (``--out`` to choose):
one panel per number of shots, one group of points per data set (mean over
class splits, bars from the worst to the best split), data sets ordered by
their number of meta-training classes.

The current defaults were measured over several runs, each on the code
state of its change (``FIDELITY.md``); the Results page's table of them is
``docs/user_guide/tabular_defaults.csv``. ``--table`` draws that table
(the means over the class splits, without bars) instead of a summary: the
user guide's figure, ``docs/images/tabular_results.png``.

Usage::

    python -m benchmarks.plot_tabular --table docs/user_guide/tabular_defaults.csv \
        --out docs/images/tabular_results.png
    python -m benchmarks.plot_tabular
    python -m benchmarks.plot_tabular --stage pilot --methods maml "maml proto"
"""

import argparse
import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks._report import RESULTS_DIR  # noqa: E402
from benchmarks.fidelity_tabular import (  # noqa: E402
    OUT_DIR,
    TABLE_VARIANTS,
    column_name,
)

# "a|b": the first of a and b that a row has. The defaults: "auto" runs, or
# on the tables of 15 or more meta-training classes the (128, 128) MLP that
# MAML's and FOMAML's "auto" builds there (twenty-first and twenty-third
# runs: per-task identical where both ran); Reptile's "auto" there is the
# pretrained MLP (twenty-fifth run), whose runs the tables have
DEFAULT_METHODS = ["best support-only", "pretrain+LR", "pretrain+LR h=128x128",
                   *(f"{name} auto @20|{name} h=128x128 @20"
                     for name in ("maml", "fomaml", "reptile"))]
LABELS = {**{f"{name} auto @20|{name} h=128x128 @20": f"{label}, defaults @20"
             for name, label in (("maml", "MAML"), ("fomaml", "FOMAML"),
                                 ("reptile", "Reptile"))},
          "pretrain+LR h=128x128": "pretrain+LR 128x128"}
MARKERS = "osD^v<>PX*"


# the table's columns that the figure draws, as their legend says them
TABLE_METHODS = {"%": "best baseline (named in the table)",
                 "MAML": "MAML, defaults", "FOMAML": "FOMAML, defaults",
                 "Reptile": "Reptile, defaults"}


def rows_from_table(path):
    """The rows of the Results page's table (a CSV) as summary rows: one
    accuracy per method, the mean over the class splits. A ValueError names
    what the file lacks."""
    rows = []
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        needed = ["data set", "train cl.", "task", *TABLE_METHODS]
        missing = [name for name in needed if name not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{path} has no column {', '.join(map(repr, missing))}")
        for number, line in enumerate(reader, start=2):
            try:
                n_way, k_shot = line["task"].split()
                rows.append(_table_row(line, int(n_way.rstrip("w")),
                                       int(k_shot.rstrip("s"))))
            except (TypeError, ValueError, AttributeError):
                raise ValueError(f"{path}, line {number}: not a row of numbers "
                                 f"as the Results page's table has them: {line}"
                                 ) from None
    return rows


def _table_row(line, n_way, k_shot):
    return {
        "dataset": line["data set"], "n_train_classes": int(line["train cl."]),
        "n_way": n_way, "k_shot": k_shot, "trained_steps": {},
        "methods": {label: dict.fromkeys(("mean", "min", "max"),
                                         float(line[column]) / 100)
                    for column, label in TABLE_METHODS.items()}}


def plot(rows, methods, path, title):
    shots = sorted({r["k_shot"] for r in rows})
    fig, axes = plt.subplots(len(shots), 1, figsize=(11, 3.6 * len(shots)),
                             squeeze=False, sharex=True)
    width = 0.8 / len(methods)
    # one position per data set in every panel (a panel may lack one)
    first = {}
    for r in sorted(rows, key=lambda r: r["n_train_classes"]):
        first.setdefault(r["dataset"], r)
    position = {name: j for j, name in enumerate(first)}
    for ax, k in zip(axes[:, 0], shots):
        panel = [r for r in rows if r["k_shot"] == k]
        for i, method in enumerate(methods):
            xs, means, low, high = [], [], [], []
            for r in panel:
                j = position[r["dataset"]]
                stats = next((r["methods"][name] for name in
                              (column_name(r, m) for m in method.split("|"))
                              if name in r["methods"]), None)
                if stats is None:
                    continue
                xs.append(j - 0.4 + (i + 0.5) * width)
                means.append(100 * stats["mean"])
                low.append(100 * (stats["mean"] - stats["min"]))
                high.append(100 * (stats["max"] - stats["mean"]))
            ax.errorbar(xs, means, yerr=[low, high], fmt=MARKERS[i % len(MARKERS)],
                        capsize=2, markersize=5, label=LABELS.get(method, method),
                        linestyle="none")
        ax.set_xticks(range(len(first)))
        ax.set_xticklabels([f"{r['dataset']}\n{r['n_train_classes']} cl., "
                            f"{r['n_way']}-way" for r in first.values()], fontsize=8)
        ax.set_ylabel(f"{k}-shot accuracy %")
        ax.grid(axis="y", alpha=0.3)
    # below the panels, where it hides no point
    fig.legend(*axes[0, 0].get_legend_handles_labels(), ncol=min(len(methods), 6),
               fontsize=8, loc="lower center")
    axes[0, 0].set_title(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stage", default="test", choices=["pilot", "test", "quick"])
    parser.add_argument("--methods", nargs="+", default=DEFAULT_METHODS)
    parser.add_argument("--out", default=None, help="PNG path")
    parser.add_argument("--table", default=None,
                        help="draw this CSV (the Results page's table) instead")
    args = parser.parse_args(argv)
    if args.table is not None:
        try:
            rows = rows_from_table(args.table)
        except (OSError, ValueError) as error:
            parser.error(f"--table: {error}")
        if not rows:
            parser.error(f"--table: {args.table} has no row")
        out = args.out or RESULTS_DIR / "tabular_fidelity_table.png"
        path = plot(rows, list(TABLE_METHODS.values()),
                    Path(out), "Held-out classes: the current defaults, mean "
                    "over three class splits (600 test tasks per point)")
        print(f"figure written to {path}")
        return
    summary = OUT_DIR / f"summary_{args.stage}.json"
    if not summary.is_file():
        parser.error(f"no {summary}: run python -m benchmarks.fidelity_tabular "
                     f"--stage {args.stage} --report first")
    # a variant of a table (letter12) is a measurement of its own, run only
    # when named: the figure shows the eight tables
    rows = [row for row in json.loads(summary.read_text())["rows"]
            if row["dataset"] not in TABLE_VARIANTS]
    absent = [m for m in args.methods if not any(
        column_name(r, name) in r["methods"] for r in rows for name in m.split("|"))]
    if absent:
        parser.error(f"no results in {summary} for {absent}")
    out = args.out or RESULTS_DIR / f"tabular_fidelity_{args.stage}.png"
    path = plot(rows, args.methods, Path(out),
                "Held-out classes: mean over class splits (bars: worst to best "
                "split)")
    print(f"figure written to {path}")


if __name__ == "__main__":
    main()
