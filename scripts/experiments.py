"""A study as queued DVC experiments, shared by the ablation (scripts/ablation.py) and the
code-size study (scripts/reconstruction.py): queue named runs, let DVC's workers run them
`jobs` at a time, and read back the ones that finished.

Every run is one `dvc exp run --queue -n NAME -S key=value ... TARGET`; runs that share
stages with an earlier one (same params, code and data) take them from DVC's run cache.
"""
import json
import os
import sys

import pandas as pd

from scripts import mean_ci95, run_queue as queue_runner
from scripts.run_queue import dvc, read

# How long a study may run its queue: a whole study takes hours on 2 cores (the label
# budget's, about two), so this only stops one that no longer moves. Resumable (--resume).
QUEUE_BUDGET_S = 24 * 3600


def remove_earlier(names):
    """Remove the experiments of an earlier study, so that every name is this study's."""
    earlier = set(read("exp", "list", "-A", "--name-only").split()) & set(names)
    if earlier:
        dvc("exp", "remove", *sorted(earlier))  # its own one line, should it time out


def queue(name, sets, target):
    """Queue one run: `sets` are its `key=value` params, `target` the stage it runs up to."""
    dvc("exp", "run", "--queue", "-n", name, *(arg for s in sets for arg in ("-S", s)), target,
        hint=f"see whether {name} is queued (`dvc queue status`), then {queue_runner.RESUME}")


def in_queue(names):
    """The names among `names` of tasks still Queued or Running in DVC's queue, e.g. of a
    study whose process was killed while its workers went on: wait for them, not again.
    A task Running whose process died unrecorded lost its worker too (killed, or a session
    that ended): waiting for it would end only in the queue runner's stall, so it is killed
    in the queue (then Failed) and left out, to be queued again like a failed run."""
    text = read("queue", "status")
    dead = queue_runner.orphans(text) & set(names)
    if dead:
        dvc("queue", "kill", *sorted(dead))
        print(f"queue: {' '.join(sorted(dead))}: Running with no process left (its worker "
              "was killed); marked failed, to run again", flush=True)
    tasks, _ = queue_runner.parse_status(text)
    return {name for name, state in tasks if name in set(names) - dead
            and state in ("Queued", "Running")}


def run_queue(jobs):
    """Run the queue `jobs` at a time, each stage with cores / jobs threads, to its end."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))  # yours wins
    queue_runner.run(jobs, env=env, poll_s=10, budget_s=QUEUE_BUDGET_S)


def finished(names):
    """{name: (rev, data)} of the experiments named `names` that finished: their commit and
    what `dvc exp show --json` holds for it (params, metrics)."""
    found = {}
    # All commits: the study's baseline need not be HEAD any more when it is collected.
    # A minute on 2 cores at most; tried again on a failure or a hang (exp show has hung
    # for good while a temporary copy was being removed).
    for baseline in json.loads(read("exp", "show", "--json", "-A", timeout_s=300)):
        for exp in baseline.get("experiments") or []:
            # Queued, running or failed runs show their baseline's metrics: skip them.
            state = (exp.get("executor") or {}).get("state", "success")
            if exp.get("name") in names and state == "success":
                found[exp["name"]] = (exp["revs"][0]["rev"], exp["revs"][0]["data"])
    return found


def metrics_of(data, path):
    """One metrics file of a run as a flat {dotted.key: value} dict ({} when it has none)."""
    return _flat(data, "metrics", path)


def params_of(data, path="params.yaml"):
    """A run's params file as a flat {dotted.key: value} dict ({} when it has none)."""
    return _flat(data, "params", path)


def _flat(data, kind, path):
    found = (data.get(kind) or {}).get(path) or {}
    flat = pd.json_normalize(found.get("data") or {}).to_dict("records")
    return flat[0] if flat else {}


def summarise(table, by, metrics):
    """Mean, standard deviation (over seeds, ddof=1), count and 95 % t-interval half-width of
    the mean (`<metric>_ci95`) of each metric per group of `by`; one seed has neither spread
    nor interval."""
    summary = table.groupby(by, sort=False)[list(metrics)].agg(["mean", "std", "count"])
    summary.columns = ["_".join(c) for c in summary.columns]
    for metric in metrics:
        summary.insert(summary.columns.get_loc(f"{metric}_count") + 1, f"{metric}_ci95", [
            mean_ci95(std, n) if n > 1 else float("nan")
            for std, n in zip(summary[f"{metric}_std"], summary[f"{metric}_count"])])
    return summary.reset_index()


def stage_paths(name):
    """The paths a stage of dvc.yaml reads and writes: (deps, outs), each a list of str."""
    from dvc.repo import Repo  # slow to import; only the studies' collection needs it

    with Repo() as repo:
        stage = next((s for s in repo.index.stages if s.addressing == name), None)
        if stage is None:
            sys.exit(f"error: dvc.yaml has no stage {name}")
        return [str(d) for d in stage.deps], [str(o) for o in stage.outs]
