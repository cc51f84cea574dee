"""A hostile user's cases, fourth round: refusals that came only after
``meta_fit`` had drawn a meta-batch from the user's iterator.

Each test is one case that once went wrong (its docstring says how).
"""

import numpy as np
import pytest
import torch
from torch import nn

from sk_meta import MAMLClassifier, ReptileRegressor
from sk_meta.tasks import EpisodeSampler, SinusoidTasks


class _NoLinearLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 3))

    def forward(self, X):
        return X @ self.weight


class _Width(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.linear = nn.Linear(4, width)

    def forward(self, X):
        return self.linear(X)


def _counted_tasks():
    rng = np.random.RandomState(0)
    X, y = rng.randn(120, 4), np.arange(120) % 6
    drawn = []

    def tasks():
        for task in EpisodeSampler(X, y, 3, 2, 3, random_state=0):
            drawn.append(task)
            yield task

    return tasks(), drawn


@pytest.mark.parametrize("params, error, message", [
    ({"module": _NoLinearLayer}, ValueError, "has no nn.Linear layer"),
    ({"module": _NoLinearLayer()}, ValueError, "has no nn.Linear layer"),
    ({"module": _NoLinearLayer, "adapt_layers": "head", "head_init": "meta"},
     ValueError, "has no nn.Linear layer"),
    ({"module": _Width, "module_params": {"widht": 3}}, TypeError,
     "unexpected keyword argument 'widht'"),
    ({"module": _Width, "module_params": {"width": -3}}, ValueError,
     r"_Width\(\*\*module_params\) failed"),
])
def test_refusals_that_need_no_task_draw_none(params, error, message):
    """A module class whose constructor fails, and a network without an
    nn.Linear layer under the default prototype head, were refused only
    after the first meta-batch (16 tasks) had been drawn from the user's
    one-shot iterator."""
    tasks, drawn = _counted_tasks()
    with pytest.raises(error, match=message):
        MAMLClassifier(n_meta_iter=2, random_state=0, **params).meta_fit(tasks)
    assert drawn == []


def test_a_network_without_linear_layer_still_meta_trains_where_allowed():
    tasks, drawn = _counted_tasks()
    clf = MAMLClassifier(module=_NoLinearLayer, head_init="meta", n_meta_iter=2,
                         meta_batch_size=2, random_state=0).meta_fit(tasks)
    assert len(drawn) == 4 and clf.n_meta_iter_ == 2
    ReptileRegressor(module=nn.Sequential(nn.Linear(1, 8), nn.Tanh(),
                                          nn.Linear(8, 1)),
                     n_meta_iter=2).meta_fit(SinusoidTasks(k_shot=5, n_query=5))


def test_the_trial_construction_leaves_the_init_and_the_rng_as_they_were(
        monkeypatch):
    """The check builds the module class once more, under a forked RNG: the
    global stream and the meta-learned init are those of a single build."""
    from sk_meta._network import NetworkSpec

    clf = MAMLClassifier(module=_Width, module_params={"width": 3}, n_meta_iter=1,
                         random_state=0)
    before = torch.get_rng_state()
    NetworkSpec.from_estimator(clf).check(needs_output_layer=True, construct=True)
    assert torch.equal(before, torch.get_rng_state())

    with_trial = clf.meta_fit(_counted_tasks()[0]).module_.state_dict()
    check = NetworkSpec.check
    monkeypatch.setattr(NetworkSpec, "check",
                        lambda self, **kwargs: check(self))  # no trial build
    without = MAMLClassifier(**clf.get_params()).meta_fit(
        _counted_tasks()[0]).module_.state_dict()
    for name, value in without.items():
        torch.testing.assert_close(with_trial[name], value, rtol=0, atol=0)


def test_mlp_parameters_beside_a_module_are_said_to_be_ignored():
    """hidden_layer_sizes and activation set beside module= were silently
    ignored (module_params beside the default MLP already warned)."""
    tasks = _counted_tasks()[0]
    with pytest.warns(UserWarning, match="hidden_layer_sizes and activation are "
                                         "ignored: they shape the default MLP"):
        MAMLClassifier(module=_Width, module_params={"width": 3},
                       hidden_layer_sizes=(8,), activation="tanh", n_meta_iter=1,
                       meta_batch_size=2).meta_fit(tasks)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # the defaults, also given as a list, say nothing
        MAMLClassifier(module=_Width, module_params={"width": 3},
                       hidden_layer_sizes=[64, 64], n_meta_iter=1,
                       meta_batch_size=2).meta_fit(_counted_tasks()[0])
        MAMLClassifier(hidden_layer_sizes=(8,), n_meta_iter=1,
                       meta_batch_size=2).meta_fit(_counted_tasks()[0])
