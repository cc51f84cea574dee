#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
#
# The GPU checks in one run, for a machine with a CUDA GPU and no network:
# the CUDA tests, speed against learn2learn on the same card, eager against
# compiled (steady state: a cold compile in a fresh process outlasts the
# stage's limit), and the Omniglot 5-way 1-shot MAML protocol. Needs .gpu/ from
# benchmarks/gpu_bundle.sh, copied beside the checkout on the GPU machine
# (it is git-ignored). Results (JSON and logs) go to $OUT (default
# benchmarks/results/gpu).
#
# Usage:  bash benchmarks/gpu_checks.sh [stage...]
# stages: tests speed compile protocol (default: all four). Each stage has
# its own time limit (below; 240 + 150 + 200 + 300 s at most): on a machine
# that allows 10 minutes per command, run `tests speed`, then `compile
# protocol`. The tests need about 3 minutes on an H200 (the compiled CUDA
# test compiles for 111 s with a cold cache).
set -uo pipefail
OUT="${OUT:-benchmarks/results/gpu}"
PYTHON="${PYTHON:-python3}"
DATA=.gpu/omniglot28.npz
mkdir -p "$OUT" /tmp/gpu_site
"$PYTHON" -m pip install -q --no-index --no-deps --target /tmp/gpu_site .gpu/whl/*.whl
export PYTHONPATH="$PWD:$PWD/.gpu/site:/tmp/gpu_site${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt"

stage() {  # name seconds command...
    local name=$1 seconds=$2; shift 2
    echo "== $name (limit ${seconds} s)"
    local start=$SECONDS
    timeout -s INT -k 20 "$seconds" "$@" > "$OUT/$name.log" 2>&1
    echo "   exit $? after $((SECONDS - start)) s"; tail -25 "$OUT/$name.log"
}

for s in "${@:-tests speed compile protocol}"; do for name in $s; do case $name in
tests) stage tests 240 "$PYTHON" -m pytest -q -m cuda -p no:cacheprovider tests ;;
speed) stage speed 150 "$PYTHON" -m benchmarks.bench_speed --device cuda \
        --workloads omniglot --omniglot-path "$DATA" ;;
compile) stage compile 200 "$PYTHON" -m benchmarks.bench_compile --device cuda \
        --no-end-to-end --workloads omniglot --omniglot-path "$DATA" ;;
protocol) stage protocol 300 "$PYTHON" -m benchmarks.fidelity_omniglot --device cuda \
        --compile --non-transductive --algorithm maml --n-way 5 --k-shot 1 \
        --time-budget 200 \
        --path "$DATA" --results-dir "$OUT" --name omniglot_gpu_maml_5w1s_compiled ;;
*) echo "unknown stage $name" ;;
esac; done; done
cp benchmarks/results/*.json "$OUT/" 2>/dev/null || true
