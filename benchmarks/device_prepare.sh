#!/usr/bin/env bash
# Prepares, on a machine with PyPI, what benchmarks/device_check.sh needs on a bare GPU machine that
# reaches nothing: the wheels its image lacks in .whl/ (the image has torch, numpy, scipy,
# safetensors, transformers, sentencepiece, huggingface_hub; soundfile needs cffi's compiled
# backend, which it lacks too) and the parity fixtures in .fixtures/.
# Both folders are git-ignored; carry them: run(command="bash benchmarks/device_check.sh $OUT",
# carry=[".whl", ".fixtures"]). Together about 21 MB of the 64 MB a call may carry.
#
#   benchmarks/device_prepare.sh [FIXTURES]    (default ../shared/fixtures)
set -euo pipefail
cd "$(dirname "$0")/.."
fixtures=${1:-../shared/fixtures}
rm -rf .whl .fixtures
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl soundfile==0.14.0 cffi==2.0.0 pycparser==2.23 platformdirs==4.14.9
mkdir -p .fixtures
cp -r "$fixtures/sao-parity" "$fixtures/sao-t5" .fixtures/
du -sh .whl .fixtures
