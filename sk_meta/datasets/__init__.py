"""Loaders of local few-shot datasets; nothing here downloads data."""

from sk_meta.datasets._omniglot import get_data_home, load_omniglot

__all__ = ["get_data_home", "load_omniglot"]
