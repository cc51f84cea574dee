#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
#
# Install the baselines that benchmarks/bench_*.py compare sk_meta against:
# learn2learn 0.2.0 and higher, into the *active* Python environment, without
# letting pip replace or upgrade the torch that is already there.
#
# Usage (from the repository root, with the environment activated):
#
#     bash benchmarks/install_baselines.sh          # no-op if already installed
#     FORCE=1 bash benchmarks/install_baselines.sh  # rebuild learn2learn anyway
#
# Why learn2learn needs a custom build:
#   * its 0.2.0 sdist ships Cython-generated C files (learn2learn/data/*.c) made by
#     an old Cython; they do not compile against CPython 3.11, so we delete them and
#     re-cythonize the .pyx sources with Cython 3 (setup.py only cythonizes for
#     `develop`/`build_ext`, so we force `use_cython = True`);
#   * its install_requires list torchvision, gym, gsutil, qpth...: we install with
#     --no-deps and only add the pure-python packages that `import learn2learn`
#     really needs (requests for learn2learn.data; tqdm and numpy are already there);
#   * `learn2learn/__init__.py` imports its gym/text/vision subpackages
#     unconditionally; vision needs torchvision, which must NOT be installed here
#     (the PyPI wheel does not match this torch build), so we patch those imports
#     to be skipped when they fail. learn2learn.algorithms does not need them.
#
# The script is idempotent: it exits early when learn2learn 0.2.0 (with
# l2l.algorithms.MAML) and higher already import, and every pip call pins the
# current torch version on its command line so pip cannot swap it.
set -euo pipefail

PYTHON="${PYTHON:-python}"
L2L_VERSION="0.2.0"
HIGHER_VERSION="0.2.1"

TORCH_VERSION="$("$PYTHON" -c 'import torch; print(torch.__version__)')"
# Passed to every pip install that may resolve dependencies: torch stays as is.
TORCH_PIN="torch==${TORCH_VERSION}"
echo "Using $("$PYTHON" -c 'import sys; print(sys.executable)'), torch ${TORCH_VERSION}"

baselines_import() {
    "$PYTHON" - "$L2L_VERSION" <<'EOF' >/dev/null 2>&1
import sys
import higher  # noqa: F401
import learn2learn as l2l
assert l2l.__version__ == sys.argv[1], l2l.__version__
assert l2l.algorithms.MAML
EOF
}

if [[ "${FORCE:-0}" != "1" ]] && baselines_import; then
    echo "learn2learn ${L2L_VERSION} and higher already installed; nothing to do."
    exit 0
fi

pip_install() {
    "$PYTHON" -m pip install --disable-pip-version-check "$@"
}

# -- higher: pure python, its only dependency is torch --------------------------
pip_install --no-deps "higher==${HIGHER_VERSION}"

# -- pure-python runtime deps of `import learn2learn` (no torch among them) -----
pip_install "requests" "tqdm" "$TORCH_PIN"

# -- build tools for re-cythonizing learn2learn's data extensions ---------------
pip_install "cython>=3,<4" "setuptools" "wheel"

# -- learn2learn from a patched sdist ------------------------------------------
BUILD_DIR="$(mktemp -d)"
trap 'rm -rf "$BUILD_DIR"' EXIT

(
    cd "$BUILD_DIR"
    "$PYTHON" -m pip download --disable-pip-version-check --no-deps \
        --no-binary :all: "learn2learn==${L2L_VERSION}"
    tar -xzf "learn2learn-${L2L_VERSION}.tar.gz"
)
SRC_DIR="$BUILD_DIR/learn2learn-${L2L_VERSION}"

"$PYTHON" - "$SRC_DIR" <<'EOF'
import pathlib
import sys

src = pathlib.Path(sys.argv[1])

# Always cythonize from .pyx: the shipped .c files predate CPython 3.11.
setup_py = src / "setup.py"
text = setup_py.read_text()
old = "use_cython = 'develop' in sys.argv or 'build_ext' in sys.argv"
if old not in text:
    sys.exit("setup.py: use_cython line not found; is this learn2learn 0.2.0?")
setup_py.write_text(text.replace(old, "use_cython = True"))
for c_file in (src / "learn2learn" / "data").glob("*.c"):
    c_file.unlink()

# Skip gym/text/vision when their own imports fail (no torchvision, gym...).
init_py = src / "learn2learn" / "__init__.py"
text = init_py.read_text()
old = "from . import gym\nfrom . import text\nfrom . import vision\n"
new = '''\
# Patched by sk_meta benchmarks/install_baselines.sh: these subpackages need
# optional dependencies (gym, torchtext, torchvision); skip them if missing.
import importlib as _importlib
for _optional in ("gym", "text", "vision"):
    try:
        _importlib.import_module("." + _optional, __name__)
    except Exception:
        pass
del _importlib, _optional
'''
if old not in text:
    sys.exit("learn2learn/__init__.py: gym/text/vision imports not found")
init_py.write_text(text.replace(old, new))
print("patched", setup_py, "and", init_py)
EOF

# --no-build-isolation: build against the Cython 3 installed above (and never
# let an isolated build environment fetch its own torch).
pip_install --no-deps --no-build-isolation "$SRC_DIR"

if ! baselines_import; then
    echo "ERROR: learn2learn/higher still do not import; traceback:" >&2
    "$PYTHON" -c 'import higher, learn2learn as l2l; l2l.algorithms.MAML' >&2
    exit 1
fi

TORCH_AFTER="$("$PYTHON" -c 'import torch; print(torch.__version__)')"
if [[ "$TORCH_AFTER" != "$TORCH_VERSION" ]]; then
    echo "ERROR: torch changed from ${TORCH_VERSION} to ${TORCH_AFTER}" >&2
    exit 1
fi
"$PYTHON" -c 'from importlib.metadata import version
print("OK: learn2learn", version("learn2learn"), "| higher", version("higher"),
      "| torch", version("torch"))'
