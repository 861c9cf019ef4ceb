#!/usr/bin/env bash
# The GPU check, in one go (a few minutes on one recent NVIDIA card): the training benchmark
# on CUDA at float32, then the full pipeline with device auto, timed, and its metrics, then
# the 4-point lecture.finetune_classifier.lr sweep run one and two at a time, timed, and its
# summary (stages on CUDA run with deterministic algorithms: see sae/train.py setup()).
#
#   bash benchmarks/gpu_check.sh DATA_DIR  (from the repository root)
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
python3 -m benchmarks.train_speed --device cuda --precisions float32 --data "$scratch"

# The whole pipeline from those files (this edits params.yaml and, below, commits: run it in
# a scratch clone, `git clone` of this repository).
sed -i "s#^  source_dir: .*#  source_dir: $data#" params.yaml
time dvc repro --force
time dvc repro
dvc metrics show

# The sweep, queued and run one at a time, then again two at a time (queued runs are not
# restored from DVC's run cache; the GPU is shared by the two jobs), and its summary.
export GIT_AUTHOR_NAME=${GIT_AUTHOR_NAME:-gpu-check}
export GIT_AUTHOR_EMAIL=${GIT_AUTHOR_EMAIL:-gpu-check@localhost}
export GIT_COMMITTER_NAME=$GIT_AUTHOR_NAME GIT_COMMITTER_EMAIL=$GIT_AUTHOR_EMAIL
git add -A && git commit -qm "GPU check baseline" --allow-empty
grid=lecture.finetune_classifier.lr=0.1,0.2,0.4,0.8
for jobs in 1 2; do
  echo "sweep -j $jobs"
  time bash scripts/sweep.sh -j "$jobs" -S "$grid" >/dev/null
done
dvc queue status
python3 -m scripts.sweep_summary --out "$scratch/sweep" && cat "$scratch/sweep/summary.md"
