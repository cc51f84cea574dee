"""Ready-made networks: the default MLP for tabular data and the papers' conv-4."""

from sk_meta.models._conv import Conv4
from sk_meta.models._mlp import MLP
from sk_meta.models._transformer import FTTransformer

__all__ = ["MLP", "Conv4", "FTTransformer"]
