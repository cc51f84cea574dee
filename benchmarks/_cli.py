# SPDX-License-Identifier: BSD-3-Clause
"""The command line the ``bench_*`` scripts share: ``--quick``, ``--device``
and (optionally) ``--omniglot-path``."""

import argparse
import importlib.util
import math
import os

import torch

from benchmarks._workloads import DEFAULT_OMNIGLOT_PATH


def make_parser(description: str, *, omniglot: bool = False) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true",
                        help="a short run, 20 s to 3 min (default: the full run, a few "
                             "minutes)")
    parser.add_argument("--device", default="cpu",
                        help="torch device: cpu (default), cuda, cuda:N")
    if omniglot:
        parser.add_argument("--omniglot-path", default=str(DEFAULT_OMNIGLOT_PATH),
                            help="omniglot28.npz (default: %(default)s)")
    return parser


def positive_int(text: str) -> int:
    """An argparse type: an int of 1 or more (a parser error otherwise)."""
    return _number(text, int, minimum=1)


def non_negative_int(text: str) -> int:
    """An argparse type: an int of 0 or more."""
    return _number(text, int, minimum=0)


def positive_float(text: str) -> float:
    """An argparse type: a finite float above 0."""
    return _number(text, float, minimum=0, strict=True)


def _number(text, kind, *, minimum, strict=False):
    try:
        value = kind(text)
    except ValueError:
        what = "an int" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
    if not math.isfinite(value) or (value <= minimum if strict else value < minimum):
        raise argparse.ArgumentTypeError(
            f"must be {'above' if strict else 'at least'} {minimum}, got {text}")
    return value


def require_baselines(parser: argparse.ArgumentParser,
                      names=("learn2learn", "higher")) -> None:
    """A parser error, before any work, when a baseline package is missing."""
    missing = [name for name in names if importlib.util.find_spec(name) is None]
    if missing:
        parser.error(f"{' and '.join(missing)} not installed (the baselines this "
                     "benchmark compares with); run `bash "
                     "benchmarks/install_baselines.sh`")


def check_results_name(parser: argparse.ArgumentParser, name) -> None:
    """``--name`` names a file in the results directory, not a path."""
    if name is not None and (not name or name != os.path.basename(name)
                             or name in (".", "..")):
        parser.error(f"--name {name!r}: a file name, without a directory")


def parse_device(parser: argparse.ArgumentParser, name: str) -> torch.device:
    """``--device`` as a ``torch.device``; a parser error when unusable."""
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        parser.error(f"--device {name!r}: {exc}")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {name!r}: CUDA is not available "
                     f"(torch {torch.__version__})")
    return device
