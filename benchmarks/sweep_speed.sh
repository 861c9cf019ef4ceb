#!/usr/bin/env bash
# The sweep-speed table of issue 9: one experiment in the workspace, then the 4-point
# lecture.finetune_classifier.lr grid queued and run one at a time and two at a time, both
# through scripts/sweep.sh (which gives each of J parallel experiments cores/J threads).
#
#   bash benchmarks/sweep_speed.sh                         # on the committed baseline
#   bash benchmarks/sweep_speed.sh -S common.train_limit=300 -S common.test_limit=200
#
# It measures HEAD in a scratch clone with a DVC cache of its own, filled from this
# repository's cache, so no earlier run is restored from DVC's run cache and this workspace
# and its experiments are left alone. Options are `dvc exp run` options that set up the
# scratch baseline (a quick check on little data, as in the second line); without them the
# committed results are used and only what is missing is reproduced. Prints the wall times
# and the -j 2 / -j 1 ratio (the issue's target on 2 cores: at most 0.6).
set -euo pipefail
grid=lecture.finetune_classifier.lr=0.1,0.2,0.4,0.8
src=$(git rev-parse --show-toplevel)
scratch=$(mktemp -d)
# On the way out, also on ^C: stop the scratch clone's queue workers, delete the clone.
stop() { (cd "$scratch/repo" 2>/dev/null && dvc queue stop --kill >/dev/null 2>&1) || true; }
trap 'stop; rm -rf "$scratch"' EXIT
trap 'exit 130' INT TERM
git clone -q "$src" "$scratch/repo"
cd "$scratch/repo"

# The committed results from this repository's cache (its layout is that of a remote).
dvc remote add --local source "$src/.dvc/cache"
dvc pull -q -r source 2>/dev/null || echo "sweep_speed: some results not cached; reproducing them"
if (($#)); then dvc exp run -q "$@"; else dvc repro -q; fi
git add -A
git commit -qm "sweep benchmark baseline" --allow-empty

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

start=$(now)
dvc exp run -q -S lecture.finetune_classifier.lr=0.2
workspace=$(elapsed "$start")
git checkout -q -- . && dvc checkout -q  # back to the baseline: the queue copies the workspace

for jobs in 1 2; do
  start=$(now)
  bash scripts/sweep.sh -j "$jobs" -S "$grid" >"$scratch/sweep-j$jobs.log"
  wall[jobs]=$(elapsed "$start")
  threads[jobs]=$(grep -o 'OMP_NUM_THREADS=[0-9]*' "$scratch/sweep-j$jobs.log")
done

per() { awk -v w="$1" 'BEGIN { printf "%.1f", w / 4 }'; }
echo "machine: $(nproc) cores, $(uname -m); grid $grid;" \
  "failed runs: $(dvc queue status | grep -c Failed || true)"
echo "| how | wall time | per experiment |"
echo "|---|---|---|"
echo "| one workspace \`dvc exp run -S ${grid%%=*}=0.2\` | $workspace s | $workspace s |"
for j in 1 2; do
  echo "| \`scripts/sweep.sh -j $j\` (${threads[j]}) | ${wall[j]} s | $(per "${wall[j]}") s |"
done
echo "-j 2 / -j 1: $(awk -v a="${wall[2]}" -v b="${wall[1]}" 'BEGIN { printf "%.2f", a / b }')"
