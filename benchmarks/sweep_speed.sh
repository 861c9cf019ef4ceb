#!/usr/bin/env bash
# The sweep-speed table of issue 9: one experiment in the workspace, then the 4-point
# lecture.finetune_classifier.lr grid queued and run one at a time and two at a time, both
# through scripts/sweep.sh (which gives each of J parallel experiments cores/J threads).
#
#   bash benchmarks/sweep_speed.sh                         # on the committed baseline
#   bash benchmarks/sweep_speed.sh -S common.train_limit=300 -S common.test_limit=200
#
# It measures HEAD in a scratch clone with a DVC cache of its own, so this workspace and its
# experiments are left alone. The scratch baseline is taken from this repository's cache,
# as this workspace's dvc.lock describes it: results made here (after `make pipeline` in a
# fresh clone, say) need not be the committed bits, and HEAD's dvc.lock does not name them
# (that made the scratch clone re-make the PCA references and every training stage). A
# stage whose code or params differ from the lock there is restored from this repository's
# run cache when it ran here as HEAD has it, and reproduced otherwise. Before each timed
# step the scratch run cache is emptied, so that no timed experiment is restored from an
# earlier one (the -j 2 grid from the -j 1 grid, lr 0.2 from the workspace run). Options
# are `dvc exp run` options that set up the scratch baseline (a quick check on little data,
# as in the second line). Prints the wall times and the -j 2 / -j 1 ratio (the issue's
# target on 2 cores: at most 0.6).
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

# The baseline from this repository's cache (its layout is that of a remote), first the
# outputs this workspace's dvc.lock names; --pull then fetches the run cache and the outputs
# of each stage it restores from there.
if [ -f "$src/dvc.lock" ]; then cp "$src/dvc.lock" dvc.lock; fi
dvc remote add --local -d source "$(cd "$src" && dvc cache dir)"
dvc pull -q 2>/dev/null || echo "sweep_speed: not every result of dvc.lock cached; reproducing the rest"
if (($#)); then dvc exp run -q --pull "$@"; else dvc repro -q --pull; fi
dvc remote remove --local source  # the timed runs must not reach the source's run cache
git add -A
git commit -qm "sweep benchmark baseline" --allow-empty

# Each timed step starts with an empty run cache: every experiment really runs.
forget_runs() { rm -rf "$(dvc cache dir)/runs"; }

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

forget_runs
start=$(now)
dvc exp run -q -S lecture.finetune_classifier.lr=0.2
workspace=$(elapsed "$start")
git checkout -q -- . && dvc checkout -q  # back to the baseline: the queue copies the workspace

for jobs in 1 2; do
  forget_runs
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
