#!/usr/bin/env bash
# The GPU half of the benchmarks in one run of about ten minutes, for a session that is lent a GPU:
# the targets (few-shot 512x256 batch 1 streaming, vid2vid 1024x512), the CUDA variants (bf16,
# torch.compile, CUDA graphs), TFLOP/s against the device's peak, training steps up to 1024x512, peak training
# memory against clip length, fused flow stacking and the reference cache. Runs from the repository root with a
# python3 that has CUDA torch and this project's dependencies; each table goes to $OUT (or benchmarks/gpu_out) as
# markdown, for RESULTS.md.
#
#     OUT=/some/folder bash benchmarks/gpu_check.sh
set -uo pipefail
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out="${OUT:-benchmarks/gpu_out}"
mkdir -p "$out"
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())" \
    || exit 1
python3 -c "import numpy, safetensors, yaml" || { echo "missing dependencies: pip install -e ."; exit 1; }
# Only the training benchmark reads video code (PyAV, OpenCV); without them it fails alone.
python3 -c "import av, cv2" || echo "no PyAV or OpenCV: the training benchmark will fail (pip install av opencv-python-headless)"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$out/machine.txt"

# Each step has its own limit, so that one slow compile cannot take the rest of the run with it.
run() {
    local name="$1" limit="$2"
    shift 2
    echo "## $name: $*" | tee "$out/$name.md"
    timeout "$limit" python3 "$@" 2>"$out/$name.err" | tee -a "$out/$name.md"
    echo "(exit $?)" | tee -a "$out/$name.md"
}

run generator_fs 200 benchmarks/bench_generator.py --models fs_vid2vid --sizes 512x256 --frames 30 --batch 4 \
    --compile --variants "fp32, spectral norm folded" "fp32, folded, torch.compile" "bf16 autocast, folded" \
    "bf16 autocast, folded, torch.compile" "bf16 autocast, folded, CUDA graphs"
run generator_v2v 150 benchmarks/bench_generator.py --models vid2vid --sizes 1024x512 --frames 10 --batch 0 \
    --compile --variants "fp32, spectral norm folded" "bf16 autocast, folded" "fp32, folded, CUDA graphs"
run train 120 benchmarks/bench_train.py --sizes 256x256 512x256 1024x512 --iterations 5
# Peak memory against clip length at the dancing recipe's size (per-frame updates: flat in T).
run train_memory 90 benchmarks/bench_train.py --memory --recipe train_fs_vid2vid_dancing --sizes 512x256 --batch 1 \
    --clip-lengths 2 8 16 --iterations 1
run fused_flow 30 benchmarks/bench_fused_flow.py --sizes 512x256 1024x512 --repeats 20
run reference_cache 40 benchmarks/bench_reference_cache.py --sizes 512x256 --ks 1 4 8 --frames 10
