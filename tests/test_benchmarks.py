"""The benchmarks' arithmetic that must never print an impossible figure, and the contention
benchmark's thread settings (no timing here: the figures themselves need a quiet machine)."""
import argparse

import pytest

from benchmarks.contention import environment, table, thread_settings
from benchmarks.train_speed import ImpossibleShare, batch_rows, matmul_share


def test_matmul_share_is_the_products_fraction_of_the_epoch():
    assert matmul_share(0.62, 0.81) == pytest.approx(0.765, abs=1e-3)
    assert matmul_share(1.0, 1.0) == 1.0  # nothing but matrix products: possible, just


def test_a_share_above_100_percent_is_refused_with_the_figures_and_why():
    # issue 17: the products were timed while the machine was busy, the epoch when it was not
    with pytest.raises(ImpossibleShare) as refused:
        matmul_share(2.04, 1.0)
    message = str(refused.value)
    assert "204 %" in message and "2.040 s" in message and "1.000 s" in message
    assert "impossible" in message and "no share printed" in message


def test_the_matmul_reference_counts_the_short_last_batch_at_its_own_size():
    # A reference that counted 300 images as one batch of 1000 gave shares over 300 %.
    assert batch_rows(60000, 1000) == {1000: 60}
    assert batch_rows(60000, 128) == {128: 468, 96: 1}
    assert batch_rows(300, 1000) == {300: 1}


def test_each_thread_setting_runs_with_only_its_own_openmp_variables(monkeypatch):
    """A variable from the caller's shell (or the stages' defaults) must not leak into the
    settings that compare against it: setting a is OpenMP's own default wait policy."""
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setenv("GOMP_SPINCOUNT", "0")
    settings = thread_settings(cores=4)
    assert [env for _, env in settings.values()] == [
        {"OMP_NUM_THREADS": 4}, {"OMP_NUM_THREADS": 4, "OMP_WAIT_POLICY": "PASSIVE"},
        {"OMP_NUM_THREADS": 4, "GOMP_SPINCOUNT": "10000"}, {"OMP_NUM_THREADS": 3},
        {"OMP_NUM_THREADS": 1}, {"OMP_NUM_THREADS": 4, "GOMP_SPINCOUNT": "1000"}]
    default_wait = environment(settings["a"][1])
    assert default_wait["OMP_NUM_THREADS"] == "4"
    assert "OMP_WAIT_POLICY" not in default_wait and "GOMP_SPINCOUNT" not in default_wait
    assert environment(settings["c"][1])["GOMP_SPINCOUNT"] == "10000"


def test_contention_table_gives_medians_and_ratios_to_the_same_setting_alone():
    args = argparse.Namespace(stages=["finetune_classifier"], settings=["a", "b"])
    epochs = {("a", "alone"): {"finetune_classifier": [1.0, 9.0, 2.0]},  # median 2
              ("a", "busy loop"): {"finetune_classifier": [8.0]},
              ("a", "training"): {"finetune_classifier": [5.0]},
              ("b", "alone"): {"finetune_classifier": [2.1]},
              ("b", "busy loop"): {"finetune_classifier": [3.15]},
              ("b", "training"): {"finetune_classifier": [4.2]}}
    rows = table(args, thread_settings(cores=2), epochs).splitlines()
    assert rows[0].endswith("| alone / a alone |")
    assert rows[2:] == [
        "| finetune_classifier | a: 2 threads, default wait | 2.00 | 8.00 | 4.00 | 5.00 | 2.50 "
        "| 1.000 |",
        "| finetune_classifier | b: 2 threads, OMP_WAIT_POLICY=PASSIVE | 2.10 | 3.15 | 1.50 "
        "| 4.20 | 2.00 | 1.050 |"]


def test_an_experiments_parts_add_up_to_its_wall_time():
    from benchmarks.turnaround import breakdown

    records = [{"stage": "finetune_classifier@lecture-mnist", "start": 100.0, "main": 104.0,
                "end": 130.0, "spans": {"import torch": 3.0, "epochs": 20.0, "DVCLive": 1.0}},
               {"stage": "evaluate@lecture-mnist", "start": 131.0, "main": 135.0, "end": 140.0,
                "spans": {"forward passes": 1.0, "figures": 2.0}}]
    parts = breakdown(45.0, records)
    assert parts["start-up"] == 8.0 and parts["epochs"] == 20.0
    assert parts["rest inside stage processes"] == pytest.approx(5.0 + 2.0)
    assert parts["DVC's own (wall less the stage processes)"] == pytest.approx(45 - 30 - 9)
    assert sum(v for k, v in parts.items() if k != "wall") == pytest.approx(45.0)


def test_a_dvc_sample_counts_for_its_outermost_named_frame():
    from benchmarks.turnaround import dvc_part

    frame = lambda function, file: f"{function} ({file}:1)"  # noqa: E731  (as py-spy writes)
    lock_in_stage = [frame("reproduce", "dvc/repo/reproduce.py"),
                     frame("Lockfile.dump_stages", "dvc/dvcfile.py"),
                     frame("from_repo", "dvc/repo/index.py")]
    assert dvc_part(lock_in_stage) == "writing dvc.lock"
    assert dvc_part([frame("run", "dvc/repo/experiments/run.py"),
                     frame("cmd_run", "dvc/stage/run.py")]) == "stage processes"
    assert dvc_part([frame("run", "dvc/repo/experiments/executor/base.py")]) == \
        "experiment set-up and commit"
    assert dvc_part([frame("main", "elsewhere.py")]) == "other"


def test_the_timing_hooks_record_a_real_stage_process(tmp_path):
    """benchmarks/timing_hooks/sitecustomize.py, on PYTHONPATH, times a stage's parts."""
    import json
    import os
    import subprocess
    import sys

    from benchmarks.turnaround import HOOKS, ROOT

    log = tmp_path / "timing.jsonl"
    env = {**os.environ, "PYTHONPATH": f"{HOOKS}{os.pathsep}{ROOT}", "SAE_TIMING_LOG": str(log)}
    subprocess.run([sys.executable, "-m", "stages.check_params", "--out",
                    str(tmp_path / "valid.txt")], cwd=ROOT, env=env, check=True, timeout=120)
    (record,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert record["stage"] == "check_params"
    assert record["start"] < record["site"] < record["main"] < record["end"]
    assert set(record["spans"]) == {"arguments and data check", "params"}
