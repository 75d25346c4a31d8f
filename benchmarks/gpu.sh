#!/usr/bin/env bash
# Training throughput on one GPU: keras_vit (TensorFlow, JAX, PyTorch backends) against timm with AMP
# and torch.compile, with model FLOPs utilisation; then the patch × depth search of
# benchmarks/tune_cifar10_patch_depth.py, whose 2-core CPU time is in benchmarks/README.md.
#
#   benchmarks/gpu.sh            ViT-S/16 (224², mixed bfloat16, batch 256) and the CIFAR ViT (batch 1024,
#                                mixed bfloat16), then the search (needs KERAS_VIT_DATA)
#   benchmarks/gpu.sh --quick    tiny batches, 2 rounds, no search: checks the script itself, on CPU too
#
# Environment: PYTHON (default .venv/bin/python), TIMM_PYTHON (default benchmarks/.venv-timm/bin/python),
# PEAK_TFLOPS (the GPU's dense bfloat16 peak; default: looked up from nvidia-smi's name, e.g. 989 for
# an H100/H200), OUT (default benchmarks/results/gpu).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
TIMM_PYTHON=${TIMM_PYTHON:-benchmarks/.venv-timm/bin/python}
OUT=${OUT:-benchmarks/results/gpu}
QUICK=0
[[ "${1:-}" == "--quick" ]] && QUICK=1
export TF_CPP_MIN_LOG_LEVEL=3
mkdir -p "$OUT"

if [[ -z "${PEAK_TFLOPS:-}" ]] && command -v nvidia-smi >/dev/null 2>&1; then
    name=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n1)
    case "$name" in
        *H200* | *H100*) PEAK_TFLOPS=989 ;;
        *A100*) PEAK_TFLOPS=312 ;;
        *L40S*) PEAK_TFLOPS=362 ;;
        *) PEAK_TFLOPS= ;;
    esac
    echo "GPU: $name (dense bf16 peak: ${PEAK_TFLOPS:-unknown} TFLOP/s)"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
else
    echo "No nvidia-smi: running on $(nproc) CPUs"
fi
PEAK=()
[[ -n "${PEAK_TFLOPS:-}" ]] && PEAK=(--peak-tflops "$PEAK_TFLOPS")

CONTESTANTS=ours_tf,ours_jax,ours_torch,timm,timm_compile
if ((QUICK)); then
    RUN=(--repeats 2 --iters 1 --warmup 1)
    "$PYTHON" benchmarks/train_speed.py --models cifar --batch-size 16 --mixed-precision "${PEAK[@]}" \
        --contestants "$CONTESTANTS" --timm-python "$TIMM_PYTHON" "${RUN[@]}" --output "$OUT/quick.md"
    exit 0
fi

RUN=(--repeats 5 --iters 20 --warmup 5)
"$PYTHON" benchmarks/train_speed.py --models vit_s16 --batch-size 256 --mixed-precision "${PEAK[@]}" \
    --contestants "$CONTESTANTS" --timm-python "$TIMM_PYTHON" "${RUN[@]}" --output "$OUT/vit_s16.md"
"$PYTHON" benchmarks/train_speed.py --models cifar --batch-size 1024 --mixed-precision "${PEAK[@]}" \
    --contestants "$CONTESTANTS" --timm-python "$TIMM_PYTHON" "${RUN[@]}" --output "$OUT/cifar.md"

# The patch × depth search (2-core CPU: 945 s in all, benchmarks/README.md); goal: >= 20× faster here.
for backend in tensorflow jax; do
    start=$(date +%s)
    KERAS_BACKEND=$backend "$PYTHON" benchmarks/tune_cifar10_patch_depth.py --out "$OUT/search_$backend"
    echo "patch × depth search on $backend: $(($(date +%s) - start)) s (2-core CPU: 945 s)" | tee -a "$OUT/search.txt"
done
