"""Long runs do not grow memory (slow: ``python -m pytest -m slow``)."""

import json
import subprocess
import sys
import textwrap

import pytest

_SCRIPT = textwrap.dedent("""
    import json, os
    import numpy as np
    from sk_meta import MAMLClassifier, MAMLRegressor
    from sk_meta.tasks import EpisodeSampler, SinusoidTasks

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    reg = MAMLRegressor(hidden_layer_sizes=(40, 40), inner_steps=1,
                        meta_batch_size=25, random_state=0)
    stream = iter(SinusoidTasks(random_state=0))
    meta = []
    for chunk in range(20):  # 20 x 100 meta-iterations
        reg.meta_partial_fit([next(stream) for _ in range(25 * 100)])
        meta.append(rss_mb())

    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 20))
    y = np.repeat(np.arange(10), 50)
    sampler = EpisodeSampler(X, y, 5, 5, 5, random_state=0)
    clf = MAMLClassifier(n_meta_iter=20, inner_steps=10, random_state=0)
    clf.meta_fit(sampler)
    task = sampler.sample(1)
    fits = []
    for i in range(1000):
        clf.fit(task.X_support, task.y_support).predict(task.X_query)
        if i % 100 == 99:
            fits.append(rss_mb())
    print(json.dumps({"meta": meta, "fits": fits, "n_meta_iter": reg.n_meta_iter_}))
""")


@pytest.mark.slow
def test_memory_is_flat_over_2000_meta_iterations_and_1000_fits():
    result = subprocess.run([sys.executable, "-c", _SCRIPT], check=True,
                            capture_output=True, text=True, timeout=1800)
    rss = json.loads(result.stdout.strip().splitlines()[-1])
    assert rss["n_meta_iter"] == 2000
    # after the first 200 meta-iterations (allocator warm-up), flat within 10 MB
    assert max(rss["meta"][2:]) - rss["meta"][1] < 10, rss["meta"]
    assert max(rss["fits"][1:]) - rss["fits"][0] < 5, rss["fits"]
