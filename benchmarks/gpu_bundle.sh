#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
#
# Prepare .gpu/ (git-ignored) for benchmarks/gpu_checks.sh on a GPU machine
# without network access: skorch, higher and pytest wheels, a pure-Python copy of
# learn2learn (its compiled data modules skipped: algorithms.MAML does not
# need them) and the Omniglot archive.
#
# Usage, from the repository root, with the benchmark environment active
# (after `bash benchmarks/install_baselines.sh`):
#
#     bash benchmarks/gpu_bundle.sh [path/to/omniglot28.npz]
set -euo pipefail
PYTHON="${PYTHON:-python}"
OMNIGLOT="${1:-../shared/data/omniglot/omniglot28.npz}"
rm -rf .gpu && mkdir -p .gpu/whl .gpu/site
"$PYTHON" -m pip download --no-deps --only-binary=:all: -d .gpu/whl \
    "skorch==$("$PYTHON" -c 'import skorch; print(skorch.__version__)')" \
    higher==0.2.1 >/dev/null
# pytest for the CUDA tests, in case the GPU machine has none
"$PYTHON" -m pip download --only-binary=:all: -d .gpu/whl pytest >/dev/null
L2L="$("$PYTHON" -c 'import learn2learn, os; print(os.path.dirname(learn2learn.__file__))')"
cp -r "$L2L" .gpu/site/
find .gpu/site \( -name '__pycache__' -o -name '*.so' \) -prune -exec rm -rf {} +
"$PYTHON" - <<'PY'
from pathlib import Path

root = Path(".gpu/site/learn2learn")
init = root / "__init__.py"
init.write_text(init.read_text().replace(
    "from . import data\n",
    "try:  # compiled for another Python: not needed for algorithms.MAML\n"
    "    from . import data\nexcept Exception:\n    pass\n", 1))
algorithms = root / "algorithms" / "__init__.py"
text = algorithms.read_text()
start = text.index("from .lightning import (")
end = text.index(")", start) + 1
block = "\n".join("    " + line for line in text[start:end].splitlines())
algorithms.write_text(text[:start] + "try:\n" + block + "\nexcept Exception:\n    pass"
                      + text[end:])
PY
cp "$OMNIGLOT" .gpu/omniglot28.npz
du -sh .gpu
