"""A study killed half-way resumes and completes (issue 21, part 3), on a small real project.

The study: `python -m scripts.ablation` over three arms of the lecture recipe on MNIST, one
seed, one run at a time (greedy, no pretraining, linear probe: three DVC experiments). While
it runs it is killed three ways, as a user or a session that ends would:
  - the study's process (SIGKILL to its whole process group) once its first run finished:
    its queue worker goes on;
  - the fine-tuning stage of the second run: that experiment fails;
  - the queue worker, with its experiment process, during the third run's fine-tuning:
    DVC shows that task Running for good.
The same command (with --resume, as it was started) then ends with exit status 0, without
running the first run again, and writes the same tables as the same study run without
interruption beside it, in a second copy of the project.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from scripts import run_queue
from tests.conftest import command_env, dvc, mnist_only_copy

STUDY = [sys.executable, "-m", "scripts.ablation", "--recipes", "lecture", "--arms", "greedy",
         "no_pretraining", "linear_probe", "--seeds", "0", "--jobs", "1", "--out", "study",
         "--resume"]
NAMES = [f"abl-{arm}-lecture-mnist-l0-s0" for arm in ("greedy", "no_pretraining",
                                                      "linear_probe")]  # in queue order
STUDY_TIMEOUT_S = 420  # the whole study, a minute or two on 2 cores
EVENT_TIMEOUT_S = 240  # for the next thing to kill to show up
METRIC_TOLERANCE = 1.01e-6  # test_nll can move in its 6th decimal: test_experiments.py


@pytest.fixture
def projects(reproduced, tmp_path):
    """Two copies of the reproduced tiny project on MNIST alone (half the stages a run):
    one to interrupt, one for the study run without interruption."""
    first = mnist_only_copy(reproduced, tmp_path / "interrupted")
    # a copy as conftest's copy_of makes one: DVC keys what it remembers by path, the copy starts afresh
    return first, shutil.copytree(first, tmp_path / "uninterrupted", symlinks=True)


def start_study(path):
    """The study as a process of its own group (so that a kill reaches all it started but
    the detached queue workers), its output in a log beside the project."""
    log = open(path.parent / f"{path.name}.log", "w")
    with log:
        return subprocess.Popen(STUDY, cwd=path, env=command_env(), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def log_of(path):
    return (path.parent / f"{path.name}.log").read_text()


def wait_for(find, what, study=None, path=None, timeout_s=EVENT_TIMEOUT_S):
    """What find() returns once it is truthy, polled; the test fails past timeout_s, or
    when `study` (the process of the study in `path`) ends first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := find():
            return found
        if study is not None and study.poll() is not None:
            pytest.fail(f"the study ended before {what}:\n{log_of(path)}")
        time.sleep(0.2)
    pytest.fail(f"no {what} within {timeout_s} s")


def experiment_refs(path):
    """{name: commit} of the finished experiments: DVC writes an experiment's ref when it
    collects it (a git read: no DVC lock taken, nothing to hang)."""
    lines = subprocess.run(["git", "for-each-ref", "--format=%(refname) %(objectname)",
                            "refs/exps"], cwd=path, capture_output=True, text=True,
                           check=True, timeout=60).stdout.splitlines()
    refs = dict(line.split() for line in lines)
    return {ref.rsplit("/", 1)[1]: commit for ref, commit in refs.items()
            if ref.rsplit("/", 1)[1] in NAMES}


def stage_process(path, name, stage):
    """The pid of `python -m stages.<stage>` running for experiment `name`, or None: a
    process with that module argument whose folder is the run's temporary copy, which DVC
    records beside the run's process (.dvc/tmp/exps/run/<task>/<task>.run)."""
    copies = set()
    for record in (path / run_queue.RUNS).glob("*/*.run"):
        try:
            info = json.loads(record.read_text())
        except ValueError:  # half-written: the next poll reads it
            continue
        if info.get("name") == name:
            copies.add(str(Path(info["root_dir"]).resolve()))
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = str((proc / "cwd").resolve())
        except OSError:  # gone meanwhile, or not ours
            continue
        if f"stages.{stage}".encode() in argv and cwd in copies:
            return int(proc.name)
    return None


def kill_group(pid):
    """SIGKILL to the process group of `pid`, which must not be this test's."""
    group = os.getpgid(pid)
    assert group != os.getpgrp()
    os.killpg(group, signal.SIGKILL)


def stop_everything(studies, folder):
    """The studies' process groups and the queue workers working under `folder`, killed
    (an idle worker would linger a while; a failed test's go on): nothing left running."""
    for study in studies:
        if study.poll() is None:
            os.killpg(study.pid, signal.SIGKILL)
            study.wait(timeout=30)
    folder = folder.resolve()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            command = (proc / "cmdline").read_bytes()
            if b"queue-worker" in command and folder in (proc / "cwd").resolve().parents:
                kill_group(int(proc.name))
        except OSError:  # gone meanwhile, or not ours
            continue


def interrupt(path, study):
    """Kill the study once its first run finished, then the second run's fine-tuning, then
    the worker during the third's; the first run's experiment commit."""
    refs = wait_for(lambda: experiment_refs(path), "a finished run", study, path)
    os.killpg(study.pid, signal.SIGKILL)
    study.wait(timeout=30)
    assert list(refs) == NAMES[:1], refs  # half-way: the others still to run
    stage = wait_for(lambda: stage_process(path, NAMES[1], "finetune_classifier"),
                     f"fine-tuning of {NAMES[1]}")
    os.kill(stage, signal.SIGKILL)
    stage = wait_for(lambda: stage_process(path, NAMES[2], "finetune_classifier"),
                     f"fine-tuning of {NAMES[2]}")
    kill_group(stage)  # the worker, its experiment process, dvc repro and the stage
    return refs[NAMES[0]]


def tasks_by_name(path):
    """{name: sorted states of its tasks} from `dvc queue status`."""
    found = {}
    for name, state in run_queue.parse_status(dvc("queue", "status", cwd=path))[0]:
        found.setdefault(name, []).append(state)
    return {name: sorted(states) for name, states in found.items()}


def assert_same_table(got, expected):
    """The same rows in the same order, equal columns; metrics to METRIC_TOLERANCE."""
    got, expected = pd.read_csv(got), pd.read_csv(expected)
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=0,
                                  atol=METRIC_TOLERANCE)


def test_a_study_killed_half_way_resumes_with_the_same_command_and_the_same_tables(
        projects, tmp_path):
    interrupted, uninterrupted = projects
    reference = start_study(uninterrupted)
    study = start_study(interrupted)
    try:
        first_run = interrupt(interrupted, study)
        resumed = subprocess.run(STUDY, cwd=interrupted, env=command_env(),
                                 capture_output=True, text=True, timeout=STUDY_TIMEOUT_S)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert f"queue: {NAMES[2]}: Running with no process left" in resumed.stdout
        assert reference.wait(timeout=STUDY_TIMEOUT_S) == 0, log_of(uninterrupted)
    finally:
        stop_everything([reference, study], tmp_path)
    # the finished run was not run again; the failed and the orphaned one ran once more
    assert experiment_refs(interrupted)[NAMES[0]] == first_run
    assert tasks_by_name(interrupted) == {NAMES[0]: ["Success"],
                                          NAMES[1]: ["Failed", "Success"],
                                          NAMES[2]: ["Failed", "Success"]}
    for table in ("ablation.csv", "ablation_summary.csv"):
        assert_same_table(interrupted / "study" / table, uninterrupted / "study" / table)
    assert len(pd.read_csv(interrupted / "study" / "ablation.csv")) == len(NAMES)


def test_a_running_task_whose_process_died_unrecorded_is_an_orphan(tmp_path, monkeypatch):
    """What the resume kills in the queue (then queues again) rather than waits for: DVC
    recorded the process's start and no end, and the process is gone."""
    monkeypatch.chdir(tmp_path)
    records = tmp_path / run_queue.RUNS
    for rev, pid, returncode in (("aaaa111", 999999999, None),  # died unrecorded
                                 ("bbbb222", os.getpid(), None),  # alive
                                 ("cccc333", 999999999, 0)):  # ended, recorded
        (records / rev).mkdir(parents=True)
        (records / rev / f"{rev}.json").write_text(
            json.dumps({"pid": pid, "returncode": returncode}))
    status = ("Task     Name  Created    Status\n"
              "aaaa111  dead  10:43 PM   Running\n"
              "bbbb222  live  10:43 PM   Running\n"
              "cccc333  done  10:43 PM   Running\n"  # collecting: its worker records it
              "dddd444  next  10:43 PM   Queued\n\n"
              "Worker status: 0 active, 0 idle\n")
    assert run_queue.orphans(status) == {"dead"}
