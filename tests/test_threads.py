"""Thread-aware stages: the number of compute threads (OMP_NUM_THREADS) never changes what a
stage writes, and scripts/sweep.sh hands each of its J parallel experiments cores/J threads."""
import hashlib
import os

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


# ---------------------------------------------------------------- the sweep wrapper

THREADS_STAGE = """\
stages:
  threads:
    cmd: >-
      python -c "import os, torch;
      print(os.environ.get('OMP_NUM_THREADS'), torch.get_num_threads())"
      > threads.txt
    params: [x]
    outs:
      - threads.txt:
          cache: false
"""


def test_sweep_script_gives_each_queued_stage_cores_over_jobs_threads(tmp_path, monkeypatch):
    """The variable that scripts/sweep.sh sets reaches the stage processes that DVC's queue
    workers start, and torch takes it."""
    (tmp_path / "dvc.yaml").write_text(THREADS_STAGE)
    (tmp_path / "params.yaml").write_text("x: 1\n")
    run(["git", "init", "-q"], tmp_path)
    dvc("init", "-q", cwd=tmp_path)
    dvc("repro", cwd=tmp_path)
    run(["git", "add", "-A"], tmp_path)
    run(["git", "commit", "-qm", "baseline"], tmp_path)

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # let the script choose
    run(["bash", str(ROOT / "scripts" / "sweep.sh"), "-j", "2", "-S", "x=2,3"], tmp_path)
    expected = max(1, len(os.sched_getaffinity(0)) // 2)
    revs = dvc("exp", "list", "--sha-only", cwd=tmp_path).split()
    assert len(revs) == 2
    for rev in revs:
        shown = run(["git", "show", f"{rev}:threads.txt"], tmp_path).split()
        assert shown == [str(expected), str(expected)]
