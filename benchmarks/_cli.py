# SPDX-License-Identifier: BSD-3-Clause
"""The command line the ``bench_*`` scripts share: ``--quick``, ``--device``
and (optionally) ``--omniglot-path``."""

import argparse

import torch

from benchmarks._workloads import DEFAULT_OMNIGLOT_PATH


def make_parser(description: str, *, omniglot: bool = False) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true",
                        help="about a minute (default: the full run, a few minutes)")
    parser.add_argument("--device", default="cpu",
                        help="torch device: cpu (default), cuda, cuda:N")
    if omniglot:
        parser.add_argument("--omniglot-path", default=str(DEFAULT_OMNIGLOT_PATH),
                            help="omniglot28.npz (default: %(default)s)")
    return parser


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
