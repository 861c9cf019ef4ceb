"""The experiments workflow of the README (docs/experiments.md) on a small real project.

One git + DVC repository, with a bare git repository as `origin` and a folder as the default
DVC remote, serves every test: two experiments are run one after the other in the workspace,
the same two are queued as a grid and run two at a time by DVC's queue workers, and one is
shared through the remotes and pulled into a fresh clone.
"""
import hashlib
import json
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from sae.datasets import DATASETS
from scripts.run_queue import parse_status
from tests.conftest import (answer, clone_origin, command_env, dvc, project_with_remotes,
                            recipe_stages, run, stages_run, tiny_project)

LRS = (0.05, 0.2)
SEQUENTIAL = {0.05: "seq-lr005", 0.2: "seq-lr02"}  # names given with -n
QUEUE_TIMEOUT_S = 300  # for the live-metrics run, a minute on 2 cores


def experiments(path):
    """{name: data} for every experiment of HEAD in `dvc exp show --json`: data holds the
    experiment's commit ("rev"), params, metrics, outs, and its queue "executor" (or None)."""
    return parse_experiments(dvc("exp", "show", "--json", cwd=path))


def parse_experiments(text):
    """experiments() from the JSON that `dvc exp show --json` printed."""
    found = {}
    for baseline in json.loads(text):
        for exp in baseline.get("experiments") or []:
            # A running experiment can list more than one rev for a moment, its newest first
            # (as scripts/experiments.py reads it), and its data can be null while DVC
            # cannot read its files mid-write. Both failed this helper now and then.
            rev = exp["revs"][0]
            found[exp["name"]] = dict(rev.get("data") or {}, executor=exp["executor"])
    return found


def lr_of(data):
    return data["params"]["params.yaml"]["data"]["lecture"]["finetune_classifier"]["lr"]


def flat(tree, prefix=""):
    """{"metrics/lecture/mnist.json:test_nll": 2.26, ...} from exp show's nested metrics."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    return {key: value for name, sub in tree.items()
            for key, value in flat(sub, f"{prefix}{':' if prefix else ''}{name}").items()}


def assert_same_metrics(got, expected):
    """Equal metrics, to the last of the 6 decimals sae/evaluation.py rounds to.

    The models, confusion data and figures come out byte-identical (compared exactly, via
    `outs`), but test_nll has been seen to differ by one unit in the 6th decimal between two
    runs on the same classifier.pt: a few float32 ulps that the rounding sometimes exposes."""
    got, expected = flat(got), flat(expected)
    assert got.keys() == expected.keys()
    different = {key: (got[key], expected[key]) for key in got if got[key] != expected[key]}
    assert all(abs(a - b) <= 1.01e-6 for a, b in different.values()), different


def md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def locked_md5(lock_text, out):
    """The md5 that a dvc.lock (its text) records for the output `out`."""
    for stage in yaml.safe_load(lock_text)["stages"].values():
        for entry in stage.get("outs", []):
            if entry["path"] == out:
                return entry["md5"]
    raise KeyError(out)


@pytest.fixture(scope="module")
def project(tmp_path_factory, reproduced):
    """The tiny project after one `dvc repro`, committed and pushed to `origin` and to the
    folder DVC remote `storage`."""
    return project_with_remotes(tmp_path_factory.mktemp("experiments"), reproduced)


@pytest.fixture(scope="module")
def sequential(project):
    """The two experiments run one after the other in the workspace, named with -n."""
    for lr, name in SEQUENTIAL.items():
        output = dvc("exp", "run", "-n", name, "-S", f"lecture.finetune_classifier.lr={lr}", cwd=project)
        assert stages_run(output) == {"check_params"} | recipe_stages(
            ("finetune_classifier", "evaluate"), recipes=["lecture"])
    return experiments(project)


def test_queued_grid_two_at_a_time_matches_sequential_runs(project, sequential):
    # Back to the baseline (lr 0.1): the queue copies the workspace, and the last sequential
    # run left lr 0.2 and its results there, which the queued lr 0.2 would merely reuse.
    run(["git", "checkout", "--", "."], project)
    dvc("checkout", cwd=project)
    # Without the run cache, the queue must really train again rather than restore the
    # sequential runs' outputs: that is what this test compares.
    shutil.rmtree(project / ".dvc" / "cache" / "runs")
    output = dvc("exp", "run", "--queue", "-S",
                 "lecture.finetune_classifier.lr=" + ",".join(map(str, LRS)), cwd=project)
    assert output.count("Queued experiment") == len(LRS)
    # as docs/experiments.md says to: two workers, returning when the queue is done
    assert "queue: 2 succeeded, 0 failed" in run(
        [sys.executable, "-m", "scripts.run_queue", "-j", "2"], project)

    found = experiments(project)
    queued = {name: data for name, data in found.items() if name not in SEQUENTIAL.values()}
    assert sorted(lr_of(data) for data in queued.values()) == sorted(LRS)
    for name, data in queued.items():
        assert data["executor"]["state"] == "success", (name, data["executor"])
        # really re-run in the temporary copy, not restored from DVC's run cache
        logs = dvc("queue", "logs", name, cwd=project)
        assert stages_run(logs) >= {
            f"finetune_classifier@lecture-{dataset}" for dataset in DATASETS}, logs
        twin = sequential[SEQUENTIAL[lr_of(data)]]
        assert data["outs"] == twin["outs"]  # every model, history, confusion and figure
        assert_same_metrics(data["metrics"], twin["metrics"])
    assert (found[SEQUENTIAL[0.05]]["metrics"] != found[SEQUENTIAL[0.2]]["metrics"])


def test_pushed_experiment_can_be_pulled_applied_and_checked_out_in_a_clone(
        project, sequential, tmp_path):
    name = SEQUENTIAL[0.2]
    output = dvc("exp", "push", "origin", name, cwd=project)
    assert f"Pushed experiment {name}" in output

    branch = run(["git", "branch", "--show-current"], project).strip()
    clone = clone_origin(project, tmp_path / "clone")
    assert dvc("exp", "list", "origin", cwd=clone).split() == [f"{branch}:", name]
    dvc("exp", "pull", "origin", name, cwd=clone)
    pulled = experiments(clone)
    assert list(pulled) == [name]
    assert pulled[name]["metrics"] == sequential[name]["metrics"]
    assert pulled[name]["outs"] == sequential[name]["outs"]

    dvc("exp", "apply", name, cwd=clone)
    dvc("checkout", cwd=clone)
    params = yaml.safe_load((clone / "params.yaml").read_text())
    assert params["lecture"]["finetune_classifier"]["lr"] == 0.2
    for dataset in DATASETS:
        for model in ("layer1", "stacked", "classifier"):
            out = f"models/lecture/{dataset}/{model}.pt"
            assert md5(clone / out) == locked_md5((clone / "dvc.lock").read_text(), out)
            assert md5(clone / out) == sequential[name]["outs"][out]["hash"]
        metrics = f"metrics/lecture/{dataset}.json"
        assert (clone / metrics).read_text() == run(
            ["git", "show", f"{sequential[name]['rev']}:{metrics}"], project)
    assert "up to date" in dvc("status", cwd=clone)
    baseline = run(["git", "show", "HEAD:dvc.lock"], clone)  # the baseline's lr 0.1
    assert md5(clone / "models/lecture/mnist/classifier.pt") != locked_md5(
        baseline, "models/lecture/mnist/classifier.pt")


# ---------------------------------------------------------------- live metrics (DVCLive)

LIVE = "plots/lecture/mnist/pretrain_layer1/metrics.json"
LIVE_EPOCHS = 8  # a few seconds each: time enough for several looks
POLL_TIMEOUT_S = 20  # one read while the queue runs: `exp show` ~2 s, `queue status` ~1 s
EXP_SHOW = [sys.executable, "-m", "dvc", "exp", "show", "--json"]


def experiments_now(path):
    """experiments(path), or None when `dvc exp show` failed or gave no answer within
    POLL_TIMEOUT_S. It has hung for good while the queue removed a finishing experiment's
    temporary repository (pygit2 waiting on a reader thread that had died, issue 21): a
    poll that meets that is one look without news, not a wait of the suite's 15 minutes."""
    text = answer(EXP_SHOW, path, POLL_TIMEOUT_S)
    return None if text is None else parse_experiments(text)


def experiments_at_last(path, tries=3):
    """experiments(path) once the queue is done, tried again after a failed or hung read."""
    for _ in range(tries):
        if (found := experiments_now(path)) is not None:
            return found
        time.sleep(5)
    pytest.fail(f"`dvc exp show --json` gave no answer in {tries} tries")


def queue_pending(path):
    """Whether a task is still Queued or Running; True when `dvc queue status` gave no
    answer in time (keep waiting, within the test's deadline)."""
    text = answer([sys.executable, "-m", "dvc", "queue", "status"], path, POLL_TIMEOUT_S)
    tasks = None if text is None else parse_status(text)[0]
    return tasks is None or any(state in ("Queued", "Running") for _, state in tasks)


def epoch_reached(data):
    """The epoch a run's layer-1 DVCLive metrics show, or None before its first epoch."""
    metrics = (data.get("metrics") or {}).get(LIVE) or {}
    return (metrics.get("data") or {}).get("step")


def test_a_queued_experiment_shows_its_epochs_in_exp_show_while_it_runs(tmp_path, real_data):
    """Layer 1 on 3,000 images in batches of one: a few seconds an epoch, so that
    `dvc exp show` (about two seconds a call) can be read while the queue worker trains."""
    path = tmp_path / "project"
    path.mkdir()
    tiny_project(path, real_data, train_limit=3000)
    dvc("exp", "run", "--queue", "-n", "slow", "-S", f"lecture.pretrain_layer1.epochs={LIVE_EPOCHS}",
        "-S", "lecture.pretrain_layer1.batch_size=1", "-S", "lecture.pretrain_layer1.lr=0.01",
        "pretrain_layer1@lecture-mnist", cwd=path)
    # Not through dvc(): the worker it starts would hold the captured output open, and the
    # call would return only when the queue is done.
    subprocess.run([sys.executable, "-m", "dvc", "queue", "start"], cwd=path, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=command_env(),
                   timeout=120)
    seen_running, deadline = [], time.monotonic() + QUEUE_TIMEOUT_S

    def partial_seen():
        return any(0 < epoch < LIVE_EPOCHS for epoch in seen_running)

    # Watch `dvc exp show` until it shows a partial epoch count (or the run has ended).
    while time.monotonic() < deadline and not partial_seen():
        slow = (experiments_now(path) or {}).get("slow") or {}  # {}: no answer this time
        state = (slow.get("executor") or {}).get("state")
        if state == "running" and epoch_reached(slow):
            seen_running.append(epoch_reached(slow))
        if state is not None and state not in ("queued", "running"):
            break
        time.sleep(1)
    # Then wait through `dvc queue status`: exp show is the read that hangs while the
    # queue removes the experiment's temporary repository.
    while time.monotonic() < deadline and queue_pending(path):
        time.sleep(2)
    slow = experiments_at_last(path)["slow"]
    assert slow["executor"]["state"] == "success", dvc("queue", "logs", "slow", cwd=path)
    assert partial_seen(), seen_running
    assert epoch_reached(slow) == LIVE_EPOCHS
