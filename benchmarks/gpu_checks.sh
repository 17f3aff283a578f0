#!/usr/bin/env bash
# Every GPU check and GPU figure the project asks for, in one prepared run for a lent machine
# (the device tool gives about 15 minutes a session): the `gpu`-marked tests, then the HAAQI
# throughput by batch size, BSSEval per track, and the speech systems' real-time factors on
# CUDA. Each step has its own time limit so that one slow step cannot eat the others' time;
# everything it prints goes to $OUT (default ./gpu-out) as one log per step.
#
#   bash benchmarks/gpu_checks.sh            # after the README's install command
#
# Needs a CUDA torch build (on the lent machines: pip install torch, the CUDA wheel).
set -u
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit} s)" | tee -a "$OUT/summary.txt"
    local t0=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "   exit $rc after $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
    tail -n 15 "$OUT/$name.log" >> "$OUT/summary.txt"
}
python -c "import torch; print(torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')" \
    | tee "$OUT/summary.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$OUT/summary.txt" 2>&1
step gpu-tests 240 python -m pytest -m gpu -p no:randomly -q -n 0 -rA tests
step haaqi-gpu 300 python benchmarks/haaqi_gpu.py --device cuda --batches 8 32 128 512 --seconds 30 \
    --dtypes float32 float64 --check 4 --workers 1 4 8
step bsseval-gpu 60 python benchmarks/bsseval_speed.py --device cuda --tracks 1 --stems 4 --seconds 30
step speech-rtf-gpu 60 python benchmarks/speech_enhancement_speed.py --device cuda --seconds 10
echo "done: $OUT/summary.txt"
