#!/usr/bin/env bash
# Run HERE (not on the GPU machine) before a session's GPU checks: downloads, into .whl/
# (ignored by git), the Python 3.12 wheels of the harness's dependencies that the lent GPU
# machines' image lacks (it has torch, numpy, scipy, pandas, numba, typer, rich, safetensors,
# matplotlib, onnxruntime, torchmetrics, ...: /work/.library/device/KINDS.md), and pesq's source
# (it ships no wheel; the machine builds it with its own Cython and compiler). Nothing can be
# fetched there.
#
#   bash benchmarks/gpu_wheels.sh
#
# Then one device call, with carry [".whl"]:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#       --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD \
#   && python3 -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/site .whl/pesq-*.tar.gz \
#   && python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . \
#   && OUT=$OUT bash benchmarks/gpu_checks.sh
#
# The list was made from the wheels' Requires-Dist against the image's package list; it has not
# yet been tried on a lent machine (none was lent to the session that wrote it). A missing
# module there shows in $OUT/gpu-tests.log: add it here.
set -eu
cd "$(git rev-parse --show-toplevel)"
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
PACKAGES=(
    pyclarity==0.9.0 museval musdb stempeg simplejson jsonschema jsonschema-specifications
    referencing rpds-py pystoi soundfile cffi pycparser soxr pyloudnorm gammatone audioread
    resampy librosa soxr omegaconf antlr4-python3-runtime hydra-core importlib-metadata
    pyroomacoustics mido noisereduce nara-wpe auraloss norbert demucs julius lameenc
    speechmos distillmos
)
for p in "${PACKAGES[@]}"; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
        -d .whl "$p" || echo "no wheel for $p"
done
python3 -m pip download -q --no-deps --no-binary=:all: --no-build-isolation -d .whl pesq  # needs Cython + numpy here
du -sh .whl  # a device call carries at most 64 MiB
