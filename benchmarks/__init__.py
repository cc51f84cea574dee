# SPDX-License-Identifier: BSD-3-Clause
"""Speed, memory and fidelity benchmarks of sk_meta (not part of the package).

Run the scripts as modules from the repository root, for example
``python -m benchmarks.bench_speed --quick``; ``README.md`` lists them.

* ``_workloads``: the benchmark problems (tasks, seeded networks, settings).
* ``baselines``: the meta-training loops sk_meta is timed against.
* ``_estimators``: sk_meta's estimators on those workloads, public API only.
* ``_harness``: threads, interleaved timing, peak memory in a subprocess.
* ``_report``: the environment record, tables and the results files.
* ``_stats``: means with 95% intervals (fidelity scripts).
* ``_cli``: the options the ``bench_*`` scripts share.
"""
