#!/usr/bin/env bash
# On the GPU machine: join the parts bench/gpu_pack.sh made (copied into $1 by earlier calls), check
# them, install the wheels beside the machine's own torch and Lightning, and install mnms without its
# pinned dependencies (the machine's torch stays). Prints the MNMS_DATA_DIR to export.
set -euo pipefail
PARTS=${1:?usage: bench/gpu_unpack.sh <folder holding part-* and SHA256SUMS>}
cd "$PARTS"
cat part-* > pack.tar
sha256sum -c SHA256SUMS
mkdir -p unpacked && tar -C unpacked -xf pack.tar
python -m pip install -q --no-index --no-deps unpacked/wheels/*.whl
cd - > /dev/null
python -m pip install -q --no-index --no-deps --no-build-isolation -e .
echo "export MNMS_DATA_DIR=$PARTS/unpacked/datasets"
