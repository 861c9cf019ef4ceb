#!/usr/bin/env bash
# Queue a grid of experiments and run it J at a time, each stage with cores/J compute
# threads, so that parallel experiments share the cores instead of oversubscribing them:
#
#   bash scripts/sweep.sh -j 2 -S 'finetune_classifier.lr=0.1,0.2,0.4,0.8'
#
# Everything after -j J goes to `dvc exp run --queue` (a comma list queues one experiment per
# value; every key must be a param of params.yaml, see scripts/sweep_keys.py).
# OMP_NUM_THREADS, when set, wins; the thread count never changes a result, so it is
# no param and re-runs nothing. The OpenMP wait policy is each stage's own default
# (stages/__init__.py: a short spin count); yours wins there. Returns when the
# queue is empty; summarise with
# `python -m scripts.sweep_summary --out sweep`. Run it with the venv active (or via make).
set -euo pipefail
if [ "${1:-}" != -j ] || [ -z "${2:-}" ]; then
  echo "usage: bash scripts/sweep.sh -j JOBS -S 'section.key=v1,v2' [dvc exp run options]" >&2
  exit 2
fi
jobs=$2
shift 2
# Only params of params.yaml, as dotted keys: DVC's -S would also write any YAML file that a
# `file:` prefix names, ../ included.
python "$(dirname "${BASH_SOURCE[0]}")/sweep_keys.py" -- "$@"
# DVC's queue workers, and the stages they start, inherit this environment.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( $(nproc) / jobs > 1 ? $(nproc) / jobs : 1 ))}
echo "sweep: $jobs at a time, OMP_NUM_THREADS=$OMP_NUM_THREADS${OMP_WAIT_POLICY:+ OMP_WAIT_POLICY=$OMP_WAIT_POLICY}${GOMP_SPINCOUNT:+ GOMP_SPINCOUNT=$GOMP_SPINCOUNT}"
dvc exp run --queue "$@"
# Not `dvc exp run --run-all -j J`: it can wait forever on a worker (scripts/run_queue.py).
python "$(dirname "${BASH_SOURCE[0]}")/run_queue.py" -j "$jobs"
