"""The conv-4 network of the MAML and Reptile papers' Omniglot experiments."""

from torch import nn

from sk_meta.models._checks import check_positive_ints


class Conv4(nn.Module):
    """Four blocks of 3x3 convolution, BatchNorm, 2x2 max-pooling and ReLU.

    This is the network of Finn et al. (2017) and Nichol et al. (2018) for
    28x28 Omniglot: with ``n_filters=64`` each block halves the image
    (28 -> 14 -> 7 -> 3 -> 1) and a linear layer maps the 64 features to the
    ``n_outputs`` classes. BatchNorm has no running statistics: it always
    normalizes with the statistics of the batch it sees, as in the papers.

    Parameters
    ----------
    in_channels : int, default=1
        Channels of the input images.
    n_outputs : int, default=5
        Number of classes.
    n_filters : int, default=64
        Filters of each convolution.
    image_size : int, default=28
        Height and width of the (square) input images.
    batch_norm : bool, default=True
        Whether each block normalizes its activations.

    Examples
    --------
    >>> import torch
    >>> from sk_meta.models import Conv4
    >>> Conv4(n_outputs=5)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 5])
    """

    def __init__(self, in_channels=1, n_outputs=5, n_filters=64, image_size=28,
                 batch_norm=True):
        super().__init__()
        check_positive_ints(in_channels=in_channels, n_outputs=n_outputs,
                            n_filters=n_filters, image_size=image_size)
        if image_size < 16:
            raise ValueError(
                "image_size must be at least 16 (four 2x2 poolings halve it four "
                f"times), got {image_size}"
            )
        blocks = []
        channels, size = in_channels, image_size
        for _ in range(4):
            blocks += [nn.Conv2d(channels, n_filters, 3, padding=1)]
            if batch_norm:
                blocks += [nn.BatchNorm2d(n_filters, track_running_stats=False)]
            # pooling before the ReLU computes the same function and gradients
            # (both are monotone) with a quarter of the ReLU work
            blocks += [nn.MaxPool2d(2), nn.ReLU()]
            channels, size = n_filters, size // 2
        self.features = nn.Sequential(*blocks, nn.Flatten())
        self.classifier = nn.Linear(n_filters * size * size, n_outputs)

    def forward(self, X):
        return self.classifier(self.features(X))
