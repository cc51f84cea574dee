"""Loaders of local few-shot datasets; nothing here downloads data."""

from sk_meta.datasets._omniglot import load_omniglot

__all__ = ["load_omniglot"]
