"""How a stage ends: a failure the user can fix is one line `error: ...` and exit 1, a bug
keeps its traceback; and the history CSV the evaluate stage reads back."""
import subprocess
import sys

import pytest

from sae import stage
from sae.datasets import DataError
from sae.model import CheckpointError, load_checkpoint
from sae.params import ParamsError
from tests.conftest import ROOT

USER_FAILURES = [ParamsError("params.yaml: common.seed = -1 is not allowed; expected ..."),
                 DataError("data/mnist: IDX header promises shape (60000, 28, 28) but ..."),
                 stage.HistoryError("plots/x.csv: line 2, ...\nsecond line"),
                 FileNotFoundError(2, "No such file or directory", "models/mnist/layer1.pt"),
                 NotADirectoryError(20, "Not a directory", "data/mnist"),
                 IsADirectoryError(21, "Is a directory", "models/mnist/layer1.pt"),
                 PermissionError(13, "Permission denied", "metrics/mnist.json")]


def fail_with(error):
    def main():
        raise error
    return main


@pytest.mark.parametrize("error", USER_FAILURES, ids=lambda e: type(e).__name__)
def test_a_user_fixable_failure_is_one_line_and_exit_1(capsys, error):
    with pytest.raises(SystemExit) as exit_:
        stage.run(fail_with(error))
    assert exit_.value.code == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line == f"error: {' '.join(str(error).split())}"


def test_a_bug_keeps_its_traceback():
    with pytest.raises(KeyError):
        stage.run(fail_with(KeyError("encoder")))


def test_a_bad_checkpoint_in_a_stage_that_expects_it_is_one_line(tmp_path, capsys):
    path = tmp_path / "layer1.pt"
    path.write_bytes(b"\x80\x04random bytes")
    with pytest.raises(SystemExit):
        stage.run(lambda: load_checkpoint(path), CheckpointError)
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: {path} is not a checkpoint written by this pipeline (")


# ---------------------------------------------------------------- the history CSV


def test_history_round_trips(tmp_path):
    rows = [{"epoch": 1, "train_loss": 0.5, "test_accuracy": 0.25},
            {"epoch": 2, "train_loss": 0.125, "test_accuracy": 0.5}]
    stage.write_history(tmp_path / "h.csv", rows)
    assert stage.read_history(tmp_path / "h.csv") == rows


CONFLICTED = """<<<<<<< HEAD
epoch,train_loss
1,0.5
=======
epoch,train_loss
1,0.25
>>>>>>> branch
"""


@pytest.mark.parametrize("text, problem", [
    (CONFLICTED, "no header with an epoch column"),
    ("epoch,train_loss\n<<<<<<< HEAD\n1,0.5\n", "line 2, '<<<<<<< HEAD', is not 2 finite numbers"),
    ("epoch,train_loss\n1,0.5\n2\n", "line 3, '2', is not 2 finite numbers"),
    ("epoch,train_loss\n1,nan\n", "line 2, '1,nan', is not 2 finite numbers"),
    ("epoch,train_loss\n", "no header with an epoch column and rows below it"),
    ("epoch,train_loss\n1,\0\n", "line 2, '1,\\x00', is not 2 finite numbers"),
    ("\xff\xfe", "not a text CSV"),
])
def test_a_history_that_is_not_a_table_of_numbers_is_named(tmp_path, text, problem):
    path = tmp_path / "h.csv"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(stage.HistoryError) as info:
        stage.read_history(path)
    assert str(info.value).startswith(f"{path}: {problem}")


# ---------------------------------------------------------------- data the stage was told


def run_pretrain_layer1(cwd, dataset, data):
    return subprocess.run(
        [sys.executable, str(ROOT / "stages/pretrain_layer1.py"), "--dataset", dataset,
         "--data", str(data), "--model", "m/layer1.pt", "--history", "h/l1.csv"],
        cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("dataset, data, expected", [
    ("fashion_mnist", "mnist", "does not hold Fashion-MNIST (dataset fashion_mnist): its "
                               "train-images-idx3-ubyte is the MNIST one"),
    ("mnist", "mnist/train-images-idx3-ubyte", "is not a folder"),
    ("mnist", "nowhere", "does not exist"),
])
def test_a_stage_given_data_that_is_not_its_dataset_stops_with_one_line(
        in_project, real_data, dataset, data, expected):
    project = in_project(**{"common.device": "cpu"})
    result = run_pretrain_layer1(project, dataset, real_data / data)
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: {real_data / data} ") and expected in line
    assert not (project / "m").exists() and not (project / "h").exists()
