#!/usr/bin/env bash
# Download the wheels a GPU machine without network needs for benchmarks/gpu_check.py.
#
# The GPU image has Python 3.12, torch, transformers, peft, sentencepiece, protobuf, safetensors,
# numpy, PyYAML, tqdm, tensorboard and pytest, but not these project dependencies (nor their own
# needs, listed too). Run it from the repository root on a machine with PyPI access:
#     bash benchmarks/prepare_device_wheels.sh              # .whl/ (cp312 manylinux) and .conformance/
#     bash benchmarks/prepare_device_wheels.sh --python-version 3.11 --no-conformance DIR
# (the second form is how tests/test_device_command.py gets cp311 wheels the same way; `make test`
# runs it once). Carry .whl/ to the GPU machine and install with
#     python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=$PWD:/tmp/site
# (docs/benchmarks.md gives the whole command). Versions are pinned to the ones the tests run with.
# Unless --no-conformance, it also copies the tiny conformance golden (../shared/conformance/tiny15,
# 27 MB) into .conformance/ (ignored by git), because only the repository travels to the GPU machine;
# the CUDA tests find it through INDEXTTS_CONFORMANCE_DIRS=.conformance.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
PYTHON_VERSION=3.12
CONFORMANCE=1
DEST=.whl
while [ $# -gt 0 ]; do
    case "$1" in
        --python-version) PYTHON_VERSION="$2"; shift 2 ;;
        --no-conformance) CONFORMANCE=0; shift ;;
        -*) echo "unknown option $1 (use --python-version X.Y, --no-conformance, DEST)" >&2; exit 2 ;;
        *) DEST="$1"; shift ;;
    esac
done
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
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYTHON_VERSION" --implementation cp \
        "${platform_args[@]}" -d "$DEST" "$package" \
    || "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYTHON_VERSION" --implementation py \
        -d "$DEST" "$package"
done
ls -1 "$DEST"
du -sh "$DEST"

GOLDEN=../shared/conformance/tiny15
if [ "$CONFORMANCE" = 1 ] && [ -d "$GOLDEN" ]; then
    mkdir -p .conformance
    cp -r "$GOLDEN" .conformance/
    du -sh .conformance
fi
