"""Import-time properties of the package."""

import subprocess
import sys

import sk_meta


def test_tasks_and_datasets_load_without_torch():
    code = (
        "import sys\n"
        "import sk_meta.tasks, sk_meta.datasets, sk_meta.model_selection\n"
        "from sk_meta.tasks import EpisodeSampler, SinusoidTasks, Task, split_classes\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "from sk_meta import MAMLClassifier\n"
        "assert 'torch' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_public_names():
    assert set(sk_meta.__all__) == {
        "MAMLClassifier", "MAMLRegressor", "FOMAMLClassifier", "FOMAMLRegressor",
        "ReptileClassifier", "ReptileRegressor", "load",
    }
    for name in sk_meta.__all__:
        assert getattr(sk_meta, name).__name__ == name
    assert set(sk_meta.estimator_classes()) == set(sk_meta.__all__) - {"load"}


def test_defaults_of_each_estimator_are_those_of_its_signature():
    import inspect

    expected = {
        "MAMLClassifier": {"inner_lr": 0.1, "first_order": False},
        "FOMAMLClassifier": {"inner_lr": 0.1, "first_order": True},
        "MAMLRegressor": {"inner_lr": 0.01, "first_order": False},
        "FOMAMLRegressor": {"inner_lr": 0.01, "first_order": True},
        "ReptileClassifier": {"inner_lr": 0.1, "inner_optimizer": "sgd"},
        "ReptileRegressor": {"inner_lr": 0.01, "inner_optimizer": "sgd"},
    }
    for name, defaults in expected.items():
        cls = getattr(sk_meta, name)
        parameters = inspect.signature(cls).parameters
        estimator = cls()
        for param, value in defaults.items():
            assert parameters[param].default == value
            assert getattr(estimator, param) == value
        assert repr(estimator) == f"{name}()"  # repr shows only changed values
