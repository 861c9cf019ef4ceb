"""A study as queued DVC experiments, shared by the ablation (scripts/ablation.py) and the
code-size study (scripts/reconstruction.py): queue named runs, let DVC's workers run them
`jobs` at a time, and read back the ones that finished.

Every run is one `dvc exp run --queue -n NAME -S key=value ... TARGET`; runs that share
stages with an earlier one (same params, code and data) take them from DVC's run cache.

Results are found by params, not by name: a point of a study is an experiment whose
params.yaml is this one with the point's `-S` assignments, so the same point run by the
local queue (named, one dataset as its target) or by the sweep workflow (a random name,
every dataset) is found alike (`results`).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

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


def finished():
    """[(rev, data)] of every experiment that finished: its commit and what `dvc exp show
    --json` holds for it (params, metrics); queued, running and failed ones are left out."""
    found, revs = [], [arg for rev in baselines() for arg in ("--rev", rev)]
    # Every baseline: the study's need not be HEAD any more when it is collected.
    # A minute on 2 cores at most; tried again on a failure or a hang (exp show has hung
    # for good while a temporary copy was being removed).
    for baseline in json.loads(read("exp", "show", "--json", *revs, timeout_s=300)
                               if revs else "[]"):
        for exp in baseline.get("experiments") or []:
            # Queued, running or failed runs show their baseline's metrics: skip them.
            # Pulled experiments have no executor: they finished where they ran.
            state = (exp.get("executor") or {}).get("state", "success")
            if state == "success":
                found.append((exp["revs"][0]["rev"], exp["revs"][0].get("data") or {}))
    return found


def baselines():
    """The commits that experiments were run from, as their git refs name them
    (refs/exps/<2 hex>/<38 hex>/<name>). Not `dvc exp show -A`, which walks every commit and
    fails in a shallow clone, such as the sweep workflow's checkout."""
    refs = subprocess.run(["git", "for-each-ref", "--format=%(refname)", "refs/exps/"],
                          capture_output=True, text=True, timeout=60, check=True).stdout
    found = {"".join(ref.split("/")[2:4]) for ref in refs.split() if ref.count("/") == 4}
    return sorted(rev for rev in found if re.fullmatch("[0-9a-f]{40}", rev))


def results(points, datasets):
    """{(point, dataset): (rev, data)}: the finished experiment that ran each point of a
    study for each dataset. `points` maps a point to (its recipe, its `-S` assignments).
    An experiment is a point when its `common` and recipe sections (what the recipe's
    stages read) are this params.yaml's with the point's assignments; it ran a dataset when
    its dvc.lock says so (`ran`). One experiment a point and dataset: duplicates (a point
    run twice, or both locally and by a sweep) give one row."""
    wanted = {(recipe, identity(expected_params(sets), recipe)): point
              for point, (recipe, sets) in points.items()}
    found = {}
    for rev, data in finished():
        params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
        for recipe in {recipe for recipe, _ in wanted}:
            point = wanted.get((recipe, identity(params, recipe)))
            if point is None:
                continue
            lock = dvc_lock(rev)
            for dataset in datasets:
                if ran(lock, params, f"@{recipe}-{dataset}"):
                    found.setdefault((point, dataset), (rev, data))
    return found


def expected_params(assignments, path="params.yaml"):
    """params.yaml as `dvc exp run -S` writes it from `assignments`: DVC's own code writes a
    copy, so every value has the type the experiment's file will hold."""
    from dvc.utils.hydra import apply_overrides
    from dvc.utils.serialize import load_yaml

    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "params.yaml"
        shutil.copyfile(path, copy)
        apply_overrides(copy, assignments)
        return load_yaml(copy)


def identity(params, recipe):
    """What identifies a run of `recipe` in a params.yaml (nested dict): its `common` and
    recipe sections, as one text. Other sections (another recipe's, `datasets`) do not."""
    return json.dumps([params.get("common"), params.get(recipe)], sort_keys=True)


def dvc_lock(rev):
    """The dvc.lock of commit `rev`, parsed ({} when it has none)."""
    from dvc.utils.serialize import parse_yaml

    done = subprocess.run(["git", "show", f"{rev}:dvc.lock"], capture_output=True, text=True,
                          timeout=60)
    return parse_yaml(done.stdout, "dvc.lock") if done.returncode == 0 else {}


def ran(lock, params, suffix):
    """Whether `lock` has stages named ...`suffix` (e.g. @tuned-mnist), each run with the
    experiment's `params`. A run queued with one dataset's evaluate as its target leaves the
    other dataset's stages, and metrics files, as its baseline had them: not its results."""
    stages = [stage for name, stage in (lock.get("stages") or {}).items()
              if name.endswith(suffix)]
    flat = flatten(params)
    return bool(stages) and all(
        flat.get(key) == value for stage in stages
        for key, value in flatten((stage.get("params") or {}).get("params.yaml") or {}).items())


def flatten(tree, prefix=""):
    """{"a.b": 1} from {"a": {"b": 1}}; lists stay values."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    return {key: value for name, sub in tree.items()
            for key, value in flatten(sub, f"{prefix}.{name}" if prefix else name).items()}


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
