#!/usr/bin/env bash
# The GPU check, in one go (a few minutes on one recent NVIDIA card): the training benchmark
# on CUDA at float32, then the full pipeline with device auto, timed, and its metrics.
#
#   bash benchmarks/gpu_check.sh DATA_DIR
#
# DATA_DIR holds mnist/ and fashion_mnist/ with the four IDX files each (gzipped is fine), as
# GPU machines often have no network. Needs python3 with the project's packages installed
# (`make setup`, or torch, torchvision, dvc, pandas, matplotlib and pyyaml already there).
set -euo pipefail
data=$(realpath "${1:?usage: bash benchmarks/gpu_check.sh DATA_DIR}")
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv

# The benchmark reads plain IDX files: unpack one dataset's copy into a scratch folder.
scratch=$(mktemp -d)
for f in "$data"/mnist/*; do
  case "$f" in *.gz) gunzip -c "$f" >"$scratch/$(basename "$f" .gz)" ;; *) cp "$f" "$scratch/" ;; esac
done
python3 benchmarks/train_speed.py --device cuda --precisions float32 --data "$scratch"

# The whole pipeline from those files (this edits params.yaml: run it in a scratch copy).
sed -i "s#^  source_dir: .*#  source_dir: $data#" params.yaml
time dvc repro --force
time dvc repro
dvc metrics show
