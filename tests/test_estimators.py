"""The six estimators end to end: learning, adaptation, custom modules, devices."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from torch import nn

from sk_meta import (
    FOMAMLClassifier,
    FOMAMLRegressor,
    MAMLClassifier,
    MAMLRegressor,
    ReptileClassifier,
    ReptileRegressor,
)
from sk_meta.models import Conv4
from sk_meta.tasks import EpisodeSampler, SinusoidTasks, Task

CLASSIFIERS = [MAMLClassifier, FOMAMLClassifier, ReptileClassifier]
REGRESSORS = [MAMLRegressor, FOMAMLRegressor, ReptileRegressor]


def _digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32), y


def _post_adaptation_mse(estimator, tasks):
    errors = []
    for task in tasks:
        estimator.fit(task.X_support, task.y_support)
        errors.append(np.mean((estimator.predict(task.X_query) - task.y_query) ** 2))
    return float(np.mean(errors))


def test_first_order_flag_of_the_fomaml_classes():
    assert FOMAMLClassifier().get_params()["first_order"] is True
    assert FOMAMLRegressor().get_params()["first_order"] is True
    assert MAMLClassifier().get_params()["first_order"] is False
    assert MAMLRegressor().get_params()["first_order"] is False
    assert ReptileRegressor().meta_optimizer == "sgd"
    # the flag reaches meta-training: a FOMAML meta-iteration is MAML's with
    # first_order=True, and not second-order MAML's (an SGD outer step, so
    # the weights follow the meta-gradient itself, not Adam's sign of it)
    X, y = _digits()
    sampler = EpisodeSampler(X, y, 3, 4, 4, random_state=0)
    cases = [
        (FOMAMLClassifier, MAMLClassifier, 0.3,
         [sampler.sample(i) for i in range(4)]),
        (FOMAMLRegressor, MAMLRegressor, 0.1,
         list(SinusoidTasks(n_tasks=4, random_state=0))),
    ]
    for fomaml, maml, inner_lr, tasks in cases:
        params = dict(hidden_layer_sizes=(8,), inner_lr=inner_lr, inner_steps=2,
                      meta_optimizer="sgd", meta_lr=0.1, meta_batch_size=4,
                      n_meta_iter=1, random_state=0)
        first = fomaml(**params).meta_fit(tasks).meta_params_
        flagged = maml(first_order=True, **params).meta_fit(tasks).meta_params_
        second = maml(**params).meta_fit(tasks).meta_params_
        for name, value in first.items():
            assert torch.equal(value, flagged[name]), name
        gap = max(float((value - second[name]).abs().max())
                  for name, value in first.items())
        assert gap > 1e-4, (fomaml.__name__, gap)


@pytest.mark.parametrize(
    "estimator_class, n_meta_iter",
    [(MAMLRegressor, 600), (FOMAMLRegressor, 600), (ReptileRegressor, 1500)],
)
def test_meta_training_on_sinusoids_beats_a_random_init(estimator_class, n_meta_iter):
    # the MAML paper's family (K=10, MLP 40-40, inner lr 0.01), short budget
    params = dict(hidden_layer_sizes=(40, 40), inner_lr=0.01, meta_batch_size=25,
                  random_state=0)
    if estimator_class is ReptileRegressor:
        params.update(inner_lr=0.02, meta_inner_steps=5, meta_lr=0.5)
    else:
        params.update(meta_inner_steps=1)
    meta = estimator_class(n_meta_iter=n_meta_iter, **params)
    meta.meta_fit(SinusoidTasks(k_shot=10, n_query=10, random_state=0))
    test_tasks = list(SinusoidTasks(k_shot=10, n_query=50, n_tasks=50,
                                    random_state=123))
    meta.set_params(inner_steps=10)
    random_init = estimator_class(inner_steps=10, **params)
    meta_mse = _post_adaptation_mse(meta, test_tasks)
    random_mse = _post_adaptation_mse(random_init, test_tasks)
    assert meta_mse < 0.6 * random_mse, (meta_mse, random_mse)


@pytest.mark.parametrize("estimator_class", CLASSIFIERS)
def test_meta_training_on_digits_beats_a_random_init(estimator_class):
    X, y = _digits()
    train = EpisodeSampler(X, y, n_way=5, k_shot=5, n_query=10,
                           classes=range(10), random_state=0)
    params = dict(hidden_layer_sizes=(64, 64), inner_steps=5, meta_batch_size=16,
                  random_state=0)
    if estimator_class is ReptileClassifier:
        params.update(meta_lr=1.0)
    meta = estimator_class(n_meta_iter=150, **params).meta_fit(train)
    random_init = estimator_class(**params)
    test = list(EpisodeSampler(X, y, n_way=5, k_shot=1, n_query=10,
                               classes=range(10), n_tasks=30, random_state=7))
    meta_acc = np.mean([meta.fit(t.X_support, t.y_support).score(t.X_query, t.y_query)
                        for t in test])
    random_acc = np.mean([random_init.fit(t.X_support, t.y_support).score(
        t.X_query, t.y_query) for t in test])
    assert meta_acc > random_acc + 0.1, (meta_acc, random_acc)


@pytest.mark.parametrize("estimator_class", CLASSIFIERS + REGRESSORS)
def test_fit_never_moves_the_meta_learned_init(estimator_class):
    X, y = _digits()
    if estimator_class in CLASSIFIERS:
        tasks = EpisodeSampler(X, y, 3, 4, 4, random_state=0)
    else:
        tasks = SinusoidTasks(random_state=0)
    est = estimator_class(hidden_layer_sizes=(16,), n_meta_iter=3, random_state=0)
    est.meta_fit(tasks)
    init = {k: v.clone() for k, v in est.meta_params_.items()}
    task_a, task_b = tasks.sample(1), tasks.sample(2)
    first = est.fit(task_a.X_support, task_a.y_support).predict(task_a.X_query)
    est.fit(task_b.X_support, task_b.y_support)
    again = est.fit(task_a.X_support, task_a.y_support).predict(task_a.X_query)
    np.testing.assert_array_equal(first, again)
    for name, value in est.meta_params_.items():
        assert torch.equal(value, init[name])
    for name, value in est.module_.named_parameters():
        assert torch.equal(value.detach(), init[name])


@pytest.mark.parametrize("estimator_class", [MAMLClassifier, ReptileRegressor])
def test_same_random_state_gives_bit_identical_weights(estimator_class):
    X, y = _digits()
    if estimator_class is MAMLClassifier:
        tasks = EpisodeSampler(X, y, 3, 4, 4, random_state=0)
        tasks_list = [tasks.sample(i) for i in range(40)]
    else:
        tasks_list = list(SinusoidTasks(n_tasks=40, random_state=0))
    runs = [
        estimator_class(hidden_layer_sizes=(16,), meta_batch_size=4, n_meta_iter=12,
                        random_state=3).meta_fit(tasks_list)
        for _ in range(2)
    ]
    for name, value in runs[0].meta_params_.items():
        assert torch.equal(value, runs[1].meta_params_[name])
    other = estimator_class(hidden_layer_sizes=(16,), meta_batch_size=4,
                            n_meta_iter=12, random_state=4).meta_fit(tasks_list)
    assert not all(torch.equal(v, other.meta_params_[k])
                   for k, v in runs[0].meta_params_.items())
    task = tasks_list[0]
    predictions = [r.fit(task[0], task[1]).predict(task[2]) for r in runs]
    np.testing.assert_array_equal(*predictions)


def test_classes_come_from_the_support_labels_of_any_type():
    X, y = _digits()
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven",
                      "eight", "nine"])
    tasks = EpisodeSampler(X, names[y], 3, 5, 5, random_state=0)
    clf = MAMLClassifier(hidden_layer_sizes=(16,), n_meta_iter=3, random_state=0)
    clf.meta_fit(tasks)
    assert clf.meta_n_outputs_ == 3
    task = tasks.sample(5)
    clf.fit(task.X_support, task.y_support)
    np.testing.assert_array_equal(clf.classes_, np.unique(task.y_support))
    assert set(clf.predict(task.X_query)) <= set(task.y_support)
    proba = clf.predict_proba(task.X_query)
    assert proba.shape == (15, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(1)],
                                  clf.predict(task.X_query))


def test_fewer_classes_than_outputs_use_the_first_outputs():
    X, y = _digits()
    clf = MAMLClassifier(hidden_layer_sizes=(16,), n_meta_iter=3, random_state=0)
    clf.meta_fit(EpisodeSampler(X, y, 5, 3, 3, random_state=0))
    task = EpisodeSampler(X, y, 2, 3, 3, random_state=1).sample()
    clf.fit(task.X_support, task.y_support)
    assert clf.predict_proba(task.X_query).shape == (6, 2)
    with pytest.raises(ValueError, match="6 classes, but the network was meta-trained"
                                         " with 5 outputs"):
        big = EpisodeSampler(X, y, 6, 3, 3, random_state=1).sample()
        clf.fit(big.X_support, big.y_support)


def test_network_width_is_the_most_classes_of_one_task():
    X, y = _digits()
    tasks = [EpisodeSampler(X, y, n, 2, 2, random_state=n).sample() for n in (2, 4, 3)]
    clf = MAMLClassifier(hidden_layer_sizes=(8,), meta_batch_size=1, n_meta_iter=3,
                         random_state=0).meta_fit(tasks)
    assert clf.meta_n_outputs_ == 4


def test_meta_training_labels_are_mapped_per_task_in_sorted_order():
    # a task labelled {7, 3} trains the same as the task labelled {1, 0}
    X, y = _digits()
    task = EpisodeSampler(X, y, 2, 4, 4, classes=[3, 7], random_state=0).sample()
    recoded = Task(task.X_support, (task.y_support == 7).astype(int), task.X_query,
                   (task.y_query == 7).astype(int))
    params = dict(hidden_layer_sizes=(8,), meta_batch_size=1, n_meta_iter=3,
                  random_state=0)
    a = MAMLClassifier(**params).meta_fit([task])
    b = MAMLClassifier(**params).meta_fit([recoded])
    for name, value in a.meta_params_.items():
        assert torch.equal(value, b.meta_params_[name])


def test_meta_inner_steps_is_separate_from_inner_steps():
    tasks = list(SinusoidTasks(n_tasks=4, random_state=0))
    params = dict(hidden_layer_sizes=(8,), meta_batch_size=4, n_meta_iter=1,
                  random_state=0)
    one = MAMLRegressor(inner_steps=5, meta_inner_steps=1, **params).meta_fit(tasks)
    same = MAMLRegressor(inner_steps=1, **params).meta_fit(tasks)
    five = MAMLRegressor(inner_steps=5, **params).meta_fit(tasks)
    for name, value in one.meta_params_.items():
        assert torch.equal(value, same.meta_params_[name])
    assert not all(torch.equal(v, five.meta_params_[k])
                   for k, v in one.meta_params_.items())


def test_fit_without_meta_fit_is_seeded_by_random_state():
    task = SinusoidTasks(random_state=0).sample()
    preds = [MAMLRegressor(random_state=s).fit(task.X_support, task.y_support)
             .predict(task.X_query) for s in (0, 0, 1)]
    np.testing.assert_array_equal(preds[0], preds[1])
    assert not np.array_equal(preds[0], preds[2])


def test_reptile_adam_inner_optimizer_differs_from_sgd():
    # one meta-iteration is θ + ε (mean φ - θ), each φ after torch.optim.Adam
    # with betas (0, 0.999), the Reptile paper's, on a task's support and
    # query sets; fit takes the same Adam steps on the support set alone
    tasks = list(SinusoidTasks(n_tasks=4, random_state=0))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
    epsilon, inner_lr, n_steps = 0.5, 0.01, 3
    params = dict(inner_lr=inner_lr, inner_steps=n_steps, meta_lr=epsilon,
                  meta_batch_size=4, n_meta_iter=1, random_state=0)
    adam = ReptileRegressor(net, inner_optimizer="adam", **params).meta_fit(tasks)
    sgd = ReptileRegressor(net, **params).meta_fit(tasks)

    def adam_steps(init, X, y):
        reference = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
        reference = reference.double()
        reference.load_state_dict(init)
        optimizer = torch.optim.Adam(reference.parameters(), lr=inner_lr,
                                     betas=(0.0, 0.999), eps=1e-8)
        X, y = torch.from_numpy(X).double(), torch.from_numpy(y).double()
        for _ in range(n_steps):
            optimizer.zero_grad()
            ((reference(X).squeeze(-1) - y) ** 2).mean().backward()
            optimizer.step()
        return {k: v.detach() for k, v in reference.named_parameters()}

    theta = {k: v.detach().double() for k, v in net.named_parameters()}
    phis = [adam_steps(theta, np.concatenate([t.X_support, t.X_query]),
                       np.concatenate([t.y_support, t.y_query])) for t in tasks]
    for name, value in adam.meta_params_.items():
        mean_phi = sum(phi[name] for phi in phis) / len(phis)
        expected = theta[name] + epsilon * (mean_phi - theta[name])
        torch.testing.assert_close(value.double(), expected, rtol=0, atol=1e-5)
    assert max(float((v - adam.meta_params_[k]).abs().max())
               for k, v in sgd.meta_params_.items()) > 1e-3
    task = tasks[0]
    adam.fit(task.X_support, task.y_support)
    expected = adam_steps(adam.meta_params_, task.X_support, task.y_support)
    for name, value in adam.params_.items():
        torch.testing.assert_close(value.double(), expected[name], rtol=0, atol=1e-5)
    sgd_fit = ReptileRegressor(net, **params).meta_fit(tasks).fit(task.X_support,
                                                                task.y_support)
    assert max(float((v - adam.params_[k]).abs().max())
               for k, v in sgd_fit.params_.items()) > 1e-3


# -- custom modules ----------------------------------------------------------------

class _RecurrentNet(nn.Module):
    def __init__(self, cell="gru", n_features=3, hidden=8, n_outputs=3):
        super().__init__()
        rnn = {"gru": nn.GRU, "lstm": nn.LSTM}[cell]
        self.rnn = rnn(n_features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_outputs)

    def forward(self, X):
        out, _ = self.rnn(X)
        return self.head(out[:, -1])


class _BatchNormMLP(nn.Module):
    def __init__(self, n_features=64, n_outputs=5):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_features, 32), nn.BatchNorm1d(32),
                                 nn.ReLU(), nn.Linear(32, n_outputs))

    def forward(self, X):
        return self.net(X)


def _sequence_tasks(n_tasks, seed):
    # 3-way classification of sequences by the sign pattern of their mean
    rng = np.random.default_rng(seed)
    tasks = []
    for _ in range(n_tasks):
        centers = rng.normal(size=(3, 1, 3))
        def draw(n):
            labels = np.repeat(np.arange(3), n)
            X = centers[labels] + 0.3 * rng.normal(size=(3 * n, 5, 3))
            return X.astype(np.float32), labels
        tasks.append((*draw(4), *draw(4)))
    return tasks


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_recurrent_modules_meta_fit_and_adapt(cell):
    tasks = _sequence_tasks(16, seed=0)
    clf = MAMLClassifier(_RecurrentNet, module_params={"cell": cell}, inner_lr=0.5,
                         inner_steps=3, meta_batch_size=8, n_meta_iter=10,
                         head_init="meta", random_state=0)
    clf.meta_fit(tasks)
    assert clf.meta_input_shape_ == (5, 3)
    assert clf._meta.training_state.forward_strategy == "loop"
    X_s, y_s, X_q, y_q = _sequence_tasks(1, seed=1)[0]
    clf.set_params(inner_steps=20).fit(X_s, y_s)
    assert clf.predict(X_q).shape == (12,)
    # the adaptation uses the recurrent layers' gradients: the support set is learned
    assert clf.score(X_s, y_s) > 0.8


@pytest.mark.parametrize("estimator_class", [MAMLClassifier, ReptileClassifier])
def test_conv_net_with_batch_norm_on_images(estimator_class):
    rng = np.random.default_rng(0)
    images = rng.random((60, 1, 28, 28)).astype(np.float32)
    labels = np.repeat(np.arange(6), 10)
    images += labels[:, None, None, None] * 0.2  # classes differ in brightness
    tasks = EpisodeSampler(images, labels, n_way=3, k_shot=2, n_query=2,
                           random_state=0)
    clf = estimator_class(Conv4, module_params={"n_outputs": 3, "n_filters": 4},
                          inner_lr=0.1, inner_steps=2, meta_batch_size=4,
                          n_meta_iter=4, random_state=0)
    clf.meta_fit(tasks)
    assert clf._meta.training_state.forward_strategy == "vmap"
    assert not any(isinstance(m, nn.BatchNorm2d) and m.track_running_stats
                   for m in clf.module_.modules())
    task = tasks.sample(3)
    clf.fit(task.X_support, task.y_support)
    assert clf.predict_proba(task.X_query).shape == (6, 3)


def test_batch_norm_module_instance_is_not_modified():
    X, y = _digits()
    module = _BatchNormMLP()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    clf = MAMLClassifier(module, n_meta_iter=3, meta_batch_size=2, random_state=0)
    clf.meta_fit(EpisodeSampler(X, y, 5, 3, 3, random_state=0))
    task = EpisodeSampler(X, y, 5, 3, 3, random_state=1).sample()
    proba = clf.fit(task.X_support, task.y_support).predict_proba(task.X_query)
    # neither meta_fit, fit nor predict touched the instance: its weights,
    # running statistics and train/eval mode are as they were
    for name, value in module.state_dict().items():
        assert torch.equal(value, before[name])
    assert module.net[1].track_running_stats
    assert module.training
    # the estimator's copy normalizes with the statistics of the batch at
    # hand, never with the instance's running statistics
    functional = torch.nn.functional
    p = {k: v.double() for k, v in clf.params_.items()}
    hidden = functional.linear(torch.from_numpy(task.X_query).double(),
                               p["net.0.weight"], p["net.0.bias"])
    hidden = functional.batch_norm(hidden, None, None, p["net.1.weight"],
                                   p["net.1.bias"], training=True)
    logits = functional.linear(functional.relu(hidden), p["net.3.weight"],
                               p["net.3.bias"])
    np.testing.assert_allclose(proba, logits.softmax(-1).numpy(), rtol=1e-4,
                               atol=1e-5)


def test_module_params_can_be_set_one_by_one():
    clf = MAMLClassifier(_RecurrentNet, module_params={"cell": "gru"})
    clf.set_params(module_params__hidden=4)
    assert clf.module_params == {"cell": "gru", "hidden": 4}


def test_module_with_too_few_outputs_is_rejected():
    X, y = _digits()
    clf = MAMLClassifier(_BatchNormMLP, module_params={"n_outputs": 2},
                         n_meta_iter=2)
    with pytest.raises(ValueError, match="module has 2 outputs, but the tasks have up"
                                         " to 5 classes"):
        clf.meta_fit(EpisodeSampler(X, y, 5, 3, 3, random_state=0))


def test_default_mlp_rejects_nd_input_with_a_hint():
    tasks = [(np.zeros((3, 2, 2)), np.arange(3), np.zeros((3, 2, 2)), np.arange(3))]
    with pytest.raises(ValueError, match="default MLP takes 2-D input"):
        MAMLClassifier(n_meta_iter=1).meta_fit(tasks)


# -- devices ----------------------------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_a_clear_error(device):
    task = SinusoidTasks(random_state=0).sample()
    with pytest.raises(ValueError, match="CUDA is not available"):
        MAMLRegressor(device=device).fit(task.X_support, task.y_support)
    with pytest.raises(ValueError, match="CUDA is not available"):
        MAMLRegressor(device=device, n_meta_iter=1).meta_fit([task])


def test_auto_device_falls_back_to_the_cpu():
    task = SinusoidTasks(random_state=0).sample()
    reg = MAMLRegressor(device="auto", n_meta_iter=2).meta_fit([task])
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    reg.fit(task.X_support, task.y_support)
    assert next(iter(reg.params_.values())).device.type == expected
    assert next(reg.module_.parameters()).device.type == "cpu"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("estimator_class", [MAMLClassifier, ReptileClassifier])
def test_cuda_meta_fit_and_fit_match_the_cpu(estimator_class):
    X, y = _digits()
    tasks = [EpisodeSampler(X, y, 5, 5, 5, random_state=0).sample(i) for i in range(32)]
    params = dict(hidden_layer_sizes=(32,), meta_batch_size=8, n_meta_iter=4,
                  random_state=0)
    cpu = estimator_class(**params).meta_fit(tasks)
    gpu = estimator_class(device="cuda", **params).meta_fit(tasks)
    for name, value in cpu.meta_params_.items():
        assert gpu.meta_params_[name].device.type == "cpu"
        torch.testing.assert_close(gpu.meta_params_[name], value, rtol=1e-3,
                                   atol=1e-4)
    task = tasks[0]
    np.testing.assert_allclose(
        gpu.fit(task.X_support, task.y_support).predict_proba(task.X_query),
        cpu.fit(task.X_support, task.y_support).predict_proba(task.X_query),
        rtol=1e-3, atol=1e-4,
    )


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_model_meta_trained_on_cuda_predicts_from_a_cpu_pickle():
    import pickle

    X, y = _digits()
    tasks = EpisodeSampler(X, y, 5, 5, 5, random_state=0)
    clf = MAMLClassifier(hidden_layer_sizes=(32,), meta_batch_size=8, n_meta_iter=3,
                         device="cuda", random_state=0).meta_fit(tasks)
    task = tasks.sample(1)
    clf.fit(task.X_support, task.y_support)
    assert next(iter(clf.params_.values())).is_cuda
    expected = clf.predict_proba(task.X_query)
    loaded = pickle.loads(pickle.dumps(clf))
    assert all(not v.is_cuda for v in loaded.params_.values())
    assert all(not p.is_cuda for p in loaded.module_.parameters())
    np.testing.assert_allclose(loaded.predict_proba(task.X_query), expected,
                               rtol=1e-4, atol=1e-5)
    # on a CPU-only machine the pickle's device='cuda' is overridden for fitting
    loaded.set_params(device="cpu").fit(task.X_support, task.y_support)


def _upsampled(X):
    """8x8 digits as 16x16 images."""
    return X.reshape(-1, 1, 8, 8).repeat(2, axis=2).repeat(2, axis=3)


class _StridedConv(nn.Module):
    """Strided convolutions with BatchNorm and no max-pooling.

    Conv-4's max-pooling makes a one-step MAML trajectory chaotic: near-tied
    maxima route the inner gradient one way or another, and on the CPU a
    1e-6 relative change of the inputs moved 12 meta-iterations' losses by
    up to 5 % (10 % with other rates). Without max-pooling the same change
    moves them by 1e-6, so a compiled-against-eager difference here is the
    compiled code's own.
    Convolutions without bias before BatchNorm: the bias would get a
    gradient of pure rounding noise, which Adam turns into steps of meta_lr.
    """

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Flatten(), nn.Linear(8 * 4 * 4, 5))

    def forward(self, x):
        return self.body(x)


@pytest.fixture
def float32_convolutions():
    """cuDNN convolutions in full float32 (TF32 by default) for the test."""
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("compile_mode", ["reduce-overhead"])
def test_compiled_meta_training_on_cuda_with_a_fresh_task_stream(
        compile_mode, float32_convolutions):
    # every meta-iteration samples new task tensors: CUDA graphs must not
    # hand out outputs that a later replay overwrites
    X, y = _digits()
    sampler = EpisodeSampler(X, y, 5, 1, 5, random_state=0)
    params = dict(module=_StridedConv, inner_lr=0.4, inner_steps=1,
                  meta_batch_size=8, n_meta_iter=12, device="cuda", random_state=0)
    episodes = [(_upsampled(t.X_support), t.y_support, _upsampled(t.X_query),
                 t.y_query) for t in (sampler.sample(i) for i in range(96))]
    eager = MAMLClassifier(**params).meta_fit(episodes)
    compiled = MAMLClassifier(compile=compile_mode, **params).meta_fit(episodes)
    np.testing.assert_allclose(compiled.meta_loss_curve_, eager.meta_loss_curve_,
                               rtol=2e-3, atol=2e-4)
    for name, value in eager.meta_params_.items():
        torch.testing.assert_close(compiled.meta_params_[name], value, rtol=0,
                                   atol=1e-3)


def test_reversed_and_strided_arrays_give_the_results_of_their_copies():
    rng = np.random.default_rng(0)
    wide = rng.normal(size=(12, 8)).astype(np.float32)
    X, y = wide[::-1, ::2], np.arange(12)[::-1] % 3  # negative and >1 strides
    clf = MAMLClassifier(hidden_layer_sizes=(8,), inner_steps=2, random_state=0)
    proba = clf.fit(X, y).predict_proba(X)
    copied = clone(clf).fit(X.copy(), y.copy())
    np.testing.assert_array_equal(proba, copied.predict_proba(X.copy()))


@pytest.mark.parametrize("estimator_class",
                         [MAMLClassifier, FOMAMLClassifier, ReptileClassifier])
def test_predictions_of_row_subsets_equal_those_of_the_whole_batch(estimator_class):
    # scikit-learn's check_methods_subset_invariance at float32's precision
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 4)).astype(np.float32) * 3
    y = np.tile(np.arange(3), 20)
    tasks = [(X[i::4][:9], y[i::4][:9], X[i::4][9:], y[i::4][9:]) for i in range(4)]
    clf = estimator_class(hidden_layer_sizes=(16,), n_meta_iter=2, random_state=0)
    clf.meta_fit(tasks).fit(X[:30], y[:30])
    whole = clf.predict_proba(X[30:])
    for rows in (slice(0, 1), slice(3, 10), slice(10, 30)):
        np.testing.assert_allclose(clf.predict_proba(X[30:][rows]), whole[rows],
                                   rtol=1e-5, atol=1e-6)
    assert (clf.predict(X[30:][3:10]) == clf.predict(X[30:])[3:10]).all()
