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
