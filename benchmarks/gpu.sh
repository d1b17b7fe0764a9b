#!/usr/bin/env bash
# I3D on an NVIDIA GPU in under 5 minutes: the old port's computation against
# the fast path in fp32 (TF32 off), tf32, bf16 and fp16 at batch 1, 4 and 16
# (frames/s, TFLOP/s against the GPU's peak, peak memory), then `i3d extract`
# end to end on a synthetic 10-minute video, RGB and two-stream (frames/s), then
# TV-L1 flow pairs/s at 256x341: the torch engine on the GPU against OpenCV's
# on every CPU core (goal: >= 300 pairs/s). See bench_gpu.py and bench_flow.py.
#
#   benchmarks/gpu.sh                       # on the GPU machine, from anywhere
#   benchmarks/gpu.sh --device cpu --quick  # a dry run of the same code on the CPU
#
# Extra arguments go to bench_gpu.py (e.g. --peak-tflops 312 for a GPU that
# its table does not know, --cache-dir DIR to keep the video).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
cd "$root"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>/dev/null || true
python -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())'
python benchmarks/bench_gpu.py --extract "$@"
pairs=256
[[ " $* " == *" --quick "* ]] && pairs=4  # the dry run: a few pairs
exec python benchmarks/bench_flow.py --speed-only --rounds 2 --speed-pairs "$pairs"
