"""A stage never reports params it did not train with: params.yaml changed under a running
stage (an edit; a `dvc exp run -S` that DVC refuses on the running repro's lock, after it has
rewritten params.yaml) stops the stage before it writes, so neither dvc.lock nor the run
cache pairs the new values with a model trained on the old ones."""
import subprocess
import sys
import time

import pytest
import yaml

from sae import params
from tests.conftest import ROOT, command_env, dvc, params_with, stages_run, tiny_project

STAGE = "pretrain_layer1@lecture-mnist"
MODEL = "models/lecture/mnist/layer1.pt"
LIVE = "plots/lecture/mnist/pretrain_layer1/metrics.json"
LR = "lecture.pretrain_layer1.lr"
RUN_TIMEOUT_S = 300


# ------------------------------------------------------------------------ the guard itself

def test_the_sections_a_stage_guards_are_the_ones_dvc_yaml_declares():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name in (*params.PHASES, "evaluate"):
        listed = [p.replace("${item.recipe}", "tuned") for p in stages[name]["params"]]
        assert tuple(listed) == params.declared(name, "tuned"), name


def test_a_changed_value_names_its_key_and_both_values(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params_with()))
    loaded = params.load(path)
    path.write_text(yaml.safe_dump(params_with(**{LR: 0.5})))
    with pytest.raises(params.ParamsChanged, match=rf"{LR} changed from 0.98 to 0.5 while "
                                                   r"pretrain_layer1 ran.*re-run the stage"):
        params.guard(loaded, "pretrain_layer1", "lecture", path)


def test_changes_outside_the_stages_sections_and_reordered_keys_pass(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params_with()))
    loaded = params.load(path)
    changed = params_with(**{"tuned.pretrain_layer1.lr": 0.5, "evaluate.examples": 3})
    path.write_text(yaml.safe_dump(changed, sort_keys=True))
    params.guard(loaded, "pretrain_layer1", "lecture", path)
    with pytest.raises(params.ParamsChanged, match="evaluate.examples changed from 10 to 3"):
        params.guard(loaded, "evaluate", "lecture", path)


def test_a_new_or_removed_key_is_a_change(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params_with()))
    loaded = params.load(path)
    raw = params_with()
    del raw["common"]["test_limit"]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(params.ParamsChanged, match=r"common.test_limit changed from 0 to "
                                                   r"\(missing\)"):
        params.guard(loaded, "evaluate", "lecture", path)


# ------------------------------------------------- through real DVC, while the stage runs

@pytest.fixture
def slow_project(tmp_path, real_data):
    """A tiny project whose layer-1 stage takes some seconds: 60 epochs in batches of 1."""
    path = tiny_project(tmp_path / "project", real_data)
    raw = yaml.safe_load((path / "params.yaml").read_text())
    raw["lecture"]["pretrain_layer1"].update(epochs=60, batch_size=1, lr=0.01)
    (path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def while_the_stage_trains(path, change):
    """Start `dvc repro STAGE`, call change() once its first epoch is logged (params read,
    training under way), and return the repro's exit status and output."""
    repro = subprocess.Popen([sys.executable, "-m", "dvc", "repro", STAGE], cwd=path,
                             env=command_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not (path / LIVE).exists() and repro.poll() is None:
            assert time.monotonic() < deadline, "the stage never logged its first epoch"
            time.sleep(0.05)
        assert repro.poll() is None, "the stage ended before params.yaml could change"
        change()
        output, _ = repro.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        repro.kill()
    return repro.returncode, output


def set_lr(path, value):
    raw = yaml.safe_load((path / "params.yaml").read_text())
    raw["lecture"]["pretrain_layer1"]["lr"] = value
    (path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def assert_refused_and_nothing_recorded(path, status, output, new_lr):
    assert status != 0, output
    assert f"error: params.yaml: {LR} changed from 0.01 to {new_lr} while pretrain_layer1 " \
           "ran" in output, output
    assert not (path / MODEL).exists() and not (path / LIVE).exists()
    lock = yaml.safe_load((path / "dvc.lock").read_text()) if (path / "dvc.lock").exists() \
        else {}
    assert STAGE not in lock.get("stages", {})
    # The run cache holds nothing for the new lr: the stage trains again, with it.
    again = dvc("repro", STAGE, cwd=path)
    assert STAGE in stages_run(again) and "skipping run" not in again, again
    locked = yaml.safe_load((path / "dvc.lock").read_text())["stages"][STAGE]
    assert locked["params"]["params.yaml"]["lecture.pretrain_layer1"]["lr"] == new_lr


def test_an_edit_while_the_stage_trains_stops_it_before_it_writes(slow_project):
    status, output = while_the_stage_trains(slow_project, lambda: set_lr(slow_project, 0.5))
    assert_refused_and_nothing_recorded(slow_project, status, output, 0.5)


def test_an_experiment_refused_on_the_lock_stops_the_running_stage(slow_project):
    refused = []

    def experiment():
        # DVC writes the experiment's params into the workspace, then finds the repro's lock.
        done = subprocess.run([sys.executable, "-m", "dvc", "exp", "run", "-S", f"{LR}=0.2",
                               STAGE], cwd=slow_project, env=command_env(),
                              capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
        refused.append(done)

    status, output = while_the_stage_trains(slow_project, experiment)
    assert refused[0].returncode != 0, refused[0].stdout
    if yaml.safe_load((slow_project / "params.yaml").read_text())["lecture"][
            "pretrain_layer1"]["lr"] != 0.2:
        pytest.skip("this DVC version no longer rewrites params.yaml before it takes the lock")
    assert_refused_and_nothing_recorded(slow_project, status, output, 0.2)
