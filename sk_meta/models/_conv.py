"""The conv-4 network of the MAML and Reptile papers."""

from torch import nn

from sk_meta.models._checks import check_positive_ints


class Conv4(nn.Module):
    """Four blocks of 3x3 convolution, BatchNorm, downsampling and ReLU.

    The conv-4 network of Finn et al. (2017) and Nichol et al. (2018). By
    default (``downsample="maxpool"``) each block ends with a 2x2
    max-pooling, as in the papers' MiniImagenet network and the usual
    Omniglot reimplementations: on 28x28 images the map goes
    28 -> 14 -> 7 -> 3 -> 1 and a linear layer maps the ``n_filters``
    features to the ``n_outputs`` classes. The papers' own Omniglot network
    downsamples with stride-2 convolutions instead
    (``downsample="stride"``: 28 -> 14 -> 7 -> 4 -> 2, then the mean over
    the 2x2 map, as in the MAML code; the Reptile code flattens it).
    BatchNorm has no running statistics: it always normalizes with the
    statistics of the batch it sees, as in the papers.

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
    downsample : {"maxpool", "stride"}, default="maxpool"
        How each block halves the image: a 2x2 max-pooling after a stride-1
        convolution, or a stride-2 convolution (the MAML paper's Omniglot
        network, whose last map is averaged).

    Examples
    --------
    >>> import torch
    >>> from sk_meta.models import Conv4
    >>> Conv4(n_outputs=5)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 5])
    """

    def __init__(self, in_channels=1, n_outputs=5, n_filters=64, image_size=28,
                 batch_norm=True, downsample="maxpool"):
        super().__init__()
        check_positive_ints(in_channels=in_channels, n_outputs=n_outputs,
                            n_filters=n_filters, image_size=image_size)
        if downsample not in ("maxpool", "stride"):
            raise ValueError(
                f"downsample must be 'maxpool' or 'stride', got {downsample!r}")
        pooled = downsample == "maxpool"
        if pooled and image_size < 16:
            raise ValueError(
                "image_size must be at least 16 (four 2x2 poolings halve it four "
                f"times), got {image_size}"
            )
        blocks = []
        channels, size = in_channels, image_size
        for _ in range(4):
            blocks += [nn.Conv2d(channels, n_filters, 3, stride=1 if pooled else 2,
                                 padding=1)]
            if batch_norm:
                blocks += [nn.BatchNorm2d(n_filters, track_running_stats=False)]
            if pooled:
                # pooling before the ReLU computes the same function and
                # gradients (both are monotone) with a quarter of the ReLU work
                blocks += [nn.MaxPool2d(2)]
            blocks += [nn.ReLU()]
            channels, size = n_filters, size // 2 if pooled else (size + 1) // 2
        if not pooled:  # the MAML code averages the last map
            blocks += [nn.AdaptiveAvgPool2d(1)]
            size = 1
        self.features = nn.Sequential(*blocks, nn.Flatten())
        self.classifier = nn.Linear(n_filters * size * size, n_outputs)

    def forward(self, X):
        """Class scores of images ``X`` of shape ``(n_samples, in_channels,
        image_size, image_size)``."""
        return self.classifier(self.features(X))
