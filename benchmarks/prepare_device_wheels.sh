#!/usr/bin/env bash
# Download the wheels a GPU machine without network needs for benchmarks/gpu_check.py into .whl/.
#
# The GPU image has Python 3.12, torch, transformers, peft, sentencepiece, safetensors, numpy, PyYAML,
# tqdm, tensorboard and pytest, but not these project dependencies (nor their own needs, listed too).
# Run it from the repository root on a machine with PyPI access:
#     bash benchmarks/prepare_device_wheels.sh            # fills .whl/ (ignored by git)
# then carry .whl/ to the GPU machine and install with
#     python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
# (docs/benchmarks.md gives the whole command). Versions are pinned to the ones the tests run with.
# It also copies the tiny conformance golden (../shared/conformance/tiny15, 27 MB) into .conformance/
# (ignored by git), because only the repository travels to the GPU machine; the CUDA tests find it
# through INDEXTTS_CONFORMANCE_DIRS=.conformance.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
DEST="${1:-.whl}"
PACKAGES=(
    omegaconf==2.4.0
    wetext==0.1.8 kaldifst==1.8.3 contractions==0.1.73 textsearch==0.0.24 anyascii pyahocorasick
    soundfile==0.14.0 cffi==2.1.1 pycparser==3.12
    soxr==1.1.0
)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64
           manylinux2014_x86_64 manylinux1_x86_64)

mkdir -p "$DEST"
platform_args=()
for platform in "${PLATFORMS[@]}"; do platform_args+=(--platform "$platform"); done
for package in "${PACKAGES[@]}"; do
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${platform_args[@]}" -d "$DEST" "$package" \
    || "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation py \
        -d "$DEST" "$package"
done
ls -1 "$DEST"
du -sh "$DEST"

GOLDEN=../shared/conformance/tiny15
if [ -d "$GOLDEN" ]; then
    mkdir -p .conformance
    cp -r "$GOLDEN" .conformance/
    du -sh .conformance
fi
