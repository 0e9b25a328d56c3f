#!/usr/bin/env bash
# One-command GPU check for a machine with an NVIDIA GPU and torch, JAX and CuPy already
# installed (no internet needed):
#
#     bench/gpu_check.sh              # whole test suite, then the short GPU benchmark
#     bench/gpu_check.sh tests/test_cupy.py   # arguments replace the pytest targets
#
# Installs xcorr in place without touching dependencies (falls back to PYTHONPATH), prints
# the GPU and framework versions, runs pytest (CuPy, JAX-on-GPU and torch-on-CUDA tests run
# instead of skipping), then bench/gpu_bench.py, and writes everything under bench/results/.
# Budget: pytest 270 s + benchmark 170 s (+ under a minute of install and imports) < 8 min.
# Exit status: non-zero if the tests or the benchmark failed.
set -uo pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python3 || command -v python)}
stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p bench/results
log="bench/results/gpu_check_${stamp}.log"
table="bench/results/gpu_bench_${stamp}.md"
# JAX would otherwise take 75% of the GPU memory at start and starve CuPy and torch.
export XLA_PYTHON_CLIENT_PREALLOCATE=false

{
    echo "== xcorr GPU check, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit ${XCORR_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo '?')}"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
        || echo "nvidia-smi not found: is this a GPU machine?"

    if ! "$PY" -m pip install --no-deps --no-build-isolation -q -e . ; then
        echo "pip install -e . failed; using PYTHONPATH=$PWD instead"
        export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    fi

    "$PY" - <<'EOF'
import xcorr
for name, info in xcorr.backend_info().items():
    state = "available" if info["available"] else f"unavailable ({info['reason']})"
    print(f"{name:6s} {info['version'] or '-':14s} {state} {info['devices']}")
EOF

    echo "== tests"
    targets=("$@")
    [ ${#targets[@]} -eq 0 ] && targets=(tests)
    # pytest-xdist, where installed, spreads the suite over processes (each its own CUDA context).
    workers=()
    "$PY" -c "import xdist" 2>/dev/null && workers=(-n "${XCORR_TEST_WORKERS:-8}")
    timeout 270 "$PY" -m pytest -q -rs -p no:cacheprovider "${workers[@]}" "${targets[@]}"
    test_status=$?
    echo "pytest exit status: $test_status"

    echo "== benchmark (float32; median of synchronised calls)"
    timeout 170 "$PY" bench/gpu_bench.py --budget-s 130 --out "$table"
    bench_status=$?
    echo "benchmark exit status: $bench_status"
    echo "== done: log $log, table $table"
    [ "$test_status" -eq 0 ] && [ "$bench_status" -eq 0 ]
} 2>&1 | tee "$log"
