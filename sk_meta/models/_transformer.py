"""A small FT-Transformer for tabular data (Gorishniy et al., 2021)."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from sk_meta.models._checks import check_positive_ints, check_real


class _FeatureTokenizer(nn.Module):
    """One ``d_token``-vector per numerical feature: ``x_j * W_j + b_j``."""

    def __init__(self, n_features, d_token):
        super().__init__()
        bound = 1 / math.sqrt(d_token)
        self.weight = nn.Parameter(torch.empty(n_features, d_token).uniform_(-bound,
                                                                            bound))
        self.bias = nn.Parameter(torch.empty(n_features, d_token).uniform_(-bound,
                                                                          bound))

    def forward(self, X):
        return X.unsqueeze(-1) * self.weight + self.bias


class _SelfAttention(nn.Module):
    """Multi-head self-attention on ``F.scaled_dot_product_attention``."""

    def __init__(self, d_token, n_heads, dropout):
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.qkv = nn.Linear(d_token, 3 * d_token)
        self.out = nn.Linear(d_token, d_token)

    def forward(self, X):
        n_samples, n_tokens, d_token = X.shape
        # (3, n_samples, n_heads, n_tokens, d_head)
        qkv = self.qkv(X).reshape(n_samples, n_tokens, 3, self.n_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out(out.transpose(1, 2).reshape(n_samples, n_tokens, d_token))


class _Block(nn.Module):
    """Pre-norm Transformer block: attention, then a ReGLU feed-forward network."""

    def __init__(self, d_token, n_heads, d_hidden, attention_dropout, ffn_dropout,
                 residual_dropout, first):
        super().__init__()
        # the paper drops the first block's first normalization: the tokens
        # come straight from the tokenizer
        self.attention_norm = nn.Identity() if first else nn.LayerNorm(d_token)
        self.attention = _SelfAttention(d_token, n_heads, attention_dropout)
        self.ffn_norm = nn.LayerNorm(d_token)
        self.ffn_in = nn.Linear(d_token, 2 * d_hidden)
        self.ffn_out = nn.Linear(d_hidden, d_token)
        self.ffn_dropout = nn.Dropout(ffn_dropout)
        self.residual_dropout = nn.Dropout(residual_dropout)

    def forward(self, X):
        X = X + self.residual_dropout(self.attention(self.attention_norm(X)))
        a, b = self.ffn_in(self.ffn_norm(X)).chunk(2, dim=-1)
        hidden = self.ffn_dropout(a * torch.relu(b))
        return X + self.residual_dropout(self.ffn_out(hidden))


class FTTransformer(nn.Module):
    """Feature Tokenizer + Transformer for tabular data, sized for few-shot tasks.

    Each numerical feature ``x_j`` becomes a token ``x_j W_j + b_j`` (a weight
    and a bias vector per feature); a learned [CLS] token is prepended;
    ``n_blocks`` pre-norm Transformer blocks (LayerNorm, multi-head
    self-attention, LayerNorm, ReGLU feed-forward network, each with a
    residual connection) mix the tokens; the head reads the [CLS] token
    (LayerNorm, ReLU, linear layer). This follows Gorishniy et al. (2021)
    for numerical features, with much smaller defaults than the paper's
    (``d_token=192``, 3 blocks, 8 heads): a few-shot support set holds a
    handful of rows.

    Attention runs through ``torch.nn.functional.scaled_dot_product_attention``;
    inside the estimators it computes with the math kernel, the one whose
    backward pass can itself be differentiated (second-order MAML).

    Parameters
    ----------
    n_features : int
        Number of input features (one token each).
    n_outputs : int, default=1
        Number of outputs (classes for a classifier).
    d_token : int, default=32
        Size of each token; a multiple of ``n_heads``.
    n_blocks : int, default=2
        Number of Transformer blocks.
    n_heads : int, default=4
        Attention heads per block.
    ffn_factor : float, default=4/3
        Hidden size of the feed-forward networks, as a multiple of
        ``d_token`` (the paper's ReGLU networks use 4/3).
    attention_dropout : float, default=0.0
        Dropout on the attention weights.
    ffn_dropout : float, default=0.0
        Dropout on the feed-forward networks' hidden units.
    residual_dropout : float, default=0.0
        Dropout on each block's branches before they are added back.

    References
    ----------
    Y. Gorishniy, I. Rubachev, V. Khrulkov and A. Babenko, "Revisiting Deep
    Learning Models for Tabular Data", NeurIPS 2021.

    Examples
    --------
    >>> import torch
    >>> from sk_meta.models import FTTransformer
    >>> net = FTTransformer(n_features=6, n_outputs=3)
    >>> net(torch.zeros(5, 6)).shape
    torch.Size([5, 3])

    As the network of a few-shot classifier (one output per class):

    >>> from sklearn.datasets import load_digits
    >>> from sk_meta import MAMLClassifier
    >>> from sk_meta.tasks import EpisodeSampler
    >>> X, y = load_digits(return_X_y=True)
    >>> tasks = EpisodeSampler(X[:, ::8] / 16, y, n_way=3, k_shot=2, n_query=2,
    ...                        random_state=0)
    >>> clf = MAMLClassifier(FTTransformer,
    ...                      module_params=dict(n_features=8, n_outputs=3),
    ...                      meta_batch_size=4, n_meta_iter=2, random_state=0)
    >>> task = tasks.sample(1)
    >>> clf.meta_fit(tasks).fit(task.X_support, task.y_support).predict(
    ...     task.X_query).shape
    (6,)
    """

    def __init__(self, n_features, n_outputs=1, *, d_token=32, n_blocks=2, n_heads=4,
                 ffn_factor=4 / 3, attention_dropout=0.0, ffn_dropout=0.0,
                 residual_dropout=0.0):
        super().__init__()
        check_positive_ints(n_features=n_features, n_outputs=n_outputs,
                            d_token=d_token, n_blocks=n_blocks, n_heads=n_heads)
        if d_token % n_heads:
            raise ValueError(
                f"d_token must be a multiple of n_heads, got d_token={d_token} and "
                f"n_heads={n_heads}"
            )
        check_real("ffn_factor", ffn_factor, low=0, low_closed=False)
        for name, value in [("attention_dropout", attention_dropout),
                            ("ffn_dropout", ffn_dropout),
                            ("residual_dropout", residual_dropout)]:
            check_real(name, value, low=0, high=1)
        self.tokenizer = _FeatureTokenizer(n_features, d_token)
        bound = 1 / math.sqrt(d_token)
        self.cls_token = nn.Parameter(torch.empty(d_token).uniform_(-bound, bound))
        d_hidden = max(1, int(d_token * ffn_factor))
        self.blocks = nn.ModuleList(
            _Block(d_token, n_heads, d_hidden, attention_dropout, ffn_dropout,
                   residual_dropout, first=i == 0)
            for i in range(n_blocks)
        )
        self.head_norm = nn.LayerNorm(d_token)
        self.head = nn.Linear(d_token, n_outputs)

    def forward(self, X):
        """Outputs of ``X`` of shape ``(n_samples, n_features)``: a token per
        feature and a class token, through the attention blocks, read at the
        class token."""
        n_features = self.tokenizer.weight.shape[0]
        if X.dim() != 2 or X.shape[1] != n_features:
            raise ValueError(
                f"FTTransformer expects inputs of shape (n_samples, {n_features}), "
                f"got {tuple(X.shape)}"
            )
        tokens = self.tokenizer(X)
        cls = self.cls_token.expand(X.shape[0], 1, -1)
        tokens = torch.cat([cls, tokens], dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        return self.head(torch.relu(self.head_norm(tokens[:, 0])))
