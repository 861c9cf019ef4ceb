"""Thread-aware stages: the number of compute threads (OMP_NUM_THREADS) never changes what a
stage writes, scripts/sweep.sh hands each of its J parallel experiments cores/J threads, and
every stage process, queued ones too, gets the OpenMP defaults of stages/__init__.py unless
the user set the variable."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sae import params
from sae.model import StackedNet, planned_config, save_checkpoint
from tests.conftest import ROOT, dvc, run, run_stage

THREADS = (1, 2, 4)
SMALL = {"common.device": "cpu", "common.train_limit": 1000, "common.test_limit": 200,
         "tuned.split.validation": 200,
         **{f"{recipe}.{phase}.epochs": 2 for recipe in ("lecture", "tuned")
            for phase in ("pretrain_layer1", "finetune_classifier")}}


def digests(folder):
    """md5 of every file under `folder`, by path relative to it."""
    return {str(path.relative_to(folder)): hashlib.md5(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def stacked_checkpoint(path, recipe):
    """An untrained stacked network as params.yaml plans it: fine-tuning starts from any
    weights."""
    torch.manual_seed(0)
    planned = planned_config(params.load().recipe(recipe), "stack_layer2")
    save_checkpoint(StackedNet.from_config(planned), path, "mnist", recipe)


@pytest.mark.parametrize("recipe", ["lecture", "tuned"])
@pytest.mark.parametrize("name", ["pretrain_layer1", "finetune_classifier"])
def test_stage_outputs_are_byte_identical_for_any_thread_count(name, recipe, in_project,
                                                               real_data, monkeypatch,
                                                               float32_by_default):
    # pretrain_layer1 checks the logged reconstruction loss, finetune_classifier the weights:
    # its 10-row weight gradient is a matrix product whose long sum MKL would split over
    # the threads. The tuned recipe adds random masking, dropout, Adam and a schedule.
    project = in_project(**SMALL)
    inputs = ["--recipe", recipe, "--dataset", "mnist", "--data", real_data / "mnist"]
    if name == "finetune_classifier":
        stacked_checkpoint(project / "stacked.pt", recipe)
        inputs += ["--stacked", "stacked.pt"]
    outputs = {}
    for threads in THREADS:
        out = project / f"threads{threads}"
        monkeypatch.setenv("OMP_NUM_THREADS", str(threads))  # the stage's own process reads it
        done = run_stage(name, *inputs, "--model", out / "model.pt",
                         "--live", out / "live", cwd=project)
        assert done.returncode == 0, done.stdout + done.stderr
        outputs[threads] = digests(out)
    assert outputs[1] == outputs[2] == outputs[4]
    assert {"live/metrics.json", "live/plots/metrics/train_loss.tsv", "model.pt"} <= set(outputs[1])


# ------------------------------------------- the environment of queued stage processes

PROBE_STAGE = """\
stages:
  threads:
    cmd: python -m stages.environment_probe > threads.txt
    params: [x]
    outs:
      - threads.txt:
          cache: false
"""
# A stage module of the probe project: it runs after the project's stages/__init__.py, as
# every stage does, and writes what its process got.
PROBE_MODULE = """\
import os
import torch
print(os.environ.get("OMP_NUM_THREADS"), torch.get_num_threads(),
      os.environ.get("GOMP_SPINCOUNT"), os.environ.get("OMP_WAIT_POLICY"))
"""


def probe_project(path):
    """A committed DVC project whose one stage records its thread settings, in a stages
    package that starts with the project's own stages/__init__.py."""
    (path / "stages").mkdir()
    (path / "stages" / "__init__.py").write_text((ROOT / "stages" / "__init__.py").read_text())
    (path / "stages" / "environment_probe.py").write_text(PROBE_MODULE)
    (path / "dvc.yaml").write_text(PROBE_STAGE)
    (path / "params.yaml").write_text("x: 1\n")
    run(["git", "init", "-q"], path)
    dvc("init", "-q", cwd=path)
    dvc("repro", cwd=path)
    run(["git", "add", "-A"], path)
    run(["git", "commit", "-qm", "baseline"], path)
    return path


def queued_sweep(path):
    """Run a 2-point grid through scripts/sweep.sh -j 2; what each queued stage recorded."""
    run(["bash", str(ROOT / "scripts" / "sweep.sh"), "-j", "2", "-S", "x=2,3"], path)
    revs = dvc("exp", "list", "--sha-only", cwd=path).split()
    assert len(revs) == 2
    return [run(["git", "show", f"{rev}:threads.txt"], path).split() for rev in revs]


def test_queued_stages_get_cores_over_jobs_threads_and_the_stages_wait_policy(tmp_path,
                                                                               monkeypatch):
    """The thread count that scripts/sweep.sh sets reaches the stage processes that DVC's
    queue workers start, and torch takes it; the OpenMP defaults of stages/__init__.py are
    in effect there, though neither the script nor the worker sets them."""
    probe_project(tmp_path)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # let the script choose
    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        monkeypatch.delenv(name, raising=False)  # let the stages choose
    expected = str(max(1, len(os.sched_getaffinity(0)) // 2))
    assert queued_sweep(tmp_path) == [[expected, expected, "1000", "None"]] * 2


# scripts/sweep.sh's helpers, replaced by stubs: each records the environment it got
STUB = """import json, os, sys
with open(os.environ["SWEEP_RECORD"], "a") as record:
    record.write(json.dumps([sys.argv[0], os.environ.get("OMP_NUM_THREADS"),
                             os.environ.get("OMP_WAIT_POLICY")]) + "\\n")
"""


def sweep_environment(tmp_path, env):
    """(OMP_NUM_THREADS, OMP_WAIT_POLICY) as scripts/sweep.sh -j 2 hands them to `dvc exp run
    --queue` and to the queue runner, whose workers and stages inherit them (the test above):
    here `dvc` and the script's two helpers are stubs, so no queue runs."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "sweep.sh", tmp_path / "scripts")
    for helper in ("sweep_keys.py", "run_queue.py"):
        (tmp_path / "scripts" / helper).write_text(STUB)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "dvc").write_text(f"#!{sys.executable}\n{STUB}")
    (tmp_path / "bin" / "dvc").chmod(0o755)
    env = {**env, "SWEEP_RECORD": str(tmp_path / "record"),
           "PATH": os.pathsep.join([str(tmp_path / "bin"), os.path.dirname(sys.executable),
                                    os.environ["PATH"]])}
    subprocess.run(["bash", str(tmp_path / "scripts" / "sweep.sh"), "-j", "2", "-S", "x=2,3"],
                   env=env, check=True, capture_output=True, timeout=120)
    calls = [json.loads(line) for line in (tmp_path / "record").read_text().splitlines()]
    assert [Path(name).name for name, *_ in calls] == ["sweep_keys.py", "dvc", "run_queue.py"]
    return {tuple(values) for _, *values in calls[1:]}


def test_thread_settings_the_user_sets_win_in_what_the_sweep_queues(tmp_path):
    mine = {"OMP_NUM_THREADS": "7", "OMP_WAIT_POLICY": "ACTIVE"}
    assert sweep_environment(tmp_path, os.environ | mine) == {("7", "ACTIVE")}
    (tmp_path / "again").mkdir()
    unset = {k: v for k, v in os.environ.items() if k not in mine}
    expected = str(max(1, (os.cpu_count() or 1) // 2))  # the script's cores / jobs
    assert sweep_environment(tmp_path / "again", unset) == {(expected, None)}


def test_thread_settings_the_user_sets_win_in_a_stage_process():
    """torch takes the user's thread count, and the user's wait policy leaves the stages no
    spin count of their own to set (stages/__init__.py)."""
    cores = str(len(os.sched_getaffinity(0)))
    done = subprocess.run(
        [sys.executable, "-c", "import os, stages, torch; "
         "print(torch.get_num_threads(), os.environ.get('GOMP_SPINCOUNT'))"], cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
        | {"OMP_NUM_THREADS": cores, "OMP_WAIT_POLICY": "ACTIVE"},
        capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.split() == [cores, "None"]


def test_a_spin_count_the_user_sets_wins_over_the_stages_default():
    """The same path as above (the queue passes the user's environment through), in one
    process rather than a second sweep."""
    done = subprocess.run(
        [sys.executable, "-c", "import os, stages; print(os.environ['GOMP_SPINCOUNT'])"],
        cwd=ROOT, env={k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        | {"GOMP_SPINCOUNT": "5"}, capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.split() == ["5"]


def test_stage_package_sets_openmp_defaults_before_torch_is_imported():
    """libgomp reads its variables when torch loads it: a default set after that is none."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys, stages; print('torch' in sys.modules)"],
        cwd=ROOT, env={k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"},
        capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.split() == ["False"]
