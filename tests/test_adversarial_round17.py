"""What the seventeenth pass found."""

import warnings

import numpy as np
import pytest
from torch import nn

import sk_meta
from sk_meta import MAMLClassifier
from sk_meta.tasks import EpisodeSampler

RNG = np.random.default_rng(0)
X_SMALL = RNG.normal(size=(60, 4)).astype(np.float32)
Y_SMALL = np.repeat(np.arange(6), 10)


def _small_tasks():
    return EpisodeSampler(X_SMALL, Y_SMALL, n_way=2, k_shot=2, n_query=2,
                          random_state=0)


class _Deep(nn.Module):
    def __init__(self, width=3):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, width), nn.ReLU(),
                                  nn.Linear(width, width), nn.ReLU(),
                                  nn.Linear(width, 2))

    def forward(self, x):
        return self.body(x)


def test_load_with_the_class_of_a_saved_instance_says_the_remedy_first(tmp_path):
    """torch's text listed every mismatched tensor before the remedy."""
    path = tmp_path / "deep.skm"
    MAMLClassifier(_Deep(7), n_meta_iter=2, meta_batch_size=2,
                   random_state=0).meta_fit(_small_tasks()).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError) as info:
            sk_meta.load(path, module=_Deep)
    message = str(info.value)
    assert message.startswith("the saved weights do not fit the module built from "
                              "the class _Deep given here")
    assert "not the class (size mismatch for body.0.weight" in message
    assert message.endswith("(and 4 more))")
    assert "Error(s) in loading" not in message
    # the instance it was saved with loads
    assert sk_meta.load(path, module=_Deep(7)).n_meta_iter_ == 2
