"""How a stage ends: a failure the user can fix is one line `error: ...` and exit 1, Ctrl-C
one line and exit 130, a bug keeps its traceback; outputs are checked before any work."""
import errno
import shutil
import subprocess
import sys

import pytest
import torch

from sae import pca, stage
from sae.atomic import OutputError
from sae.live import epoch_logger
from sae.datasets import DataError
from sae.model import (CheckpointError, autoencoder, classifier, load_checkpoint,
                       save_checkpoint, stack)
from sae.params import PHASES, ParamsError
from tests.conftest import ROOT, load_stage, registered, run_stage, write_tiny_idx

USER_FAILURES = [ParamsError("params.yaml: common.seed = -1 is not allowed; expected ..."),
                 DataError("data/mnist: IDX header promises shape (60000, 28, 28) but ..."),
                 FileNotFoundError(2, "No such file or directory", "models/mnist/layer1.pt"),
                 NotADirectoryError(20, "Not a directory", "data/mnist"),
                 IsADirectoryError(21, "Is a directory", "models/mnist/layer1.pt"),
                 PermissionError(13, "Permission denied", "metrics/mnist.json"),
                 OSError(errno.ENOSPC, "No space left on device", "models/mnist/layer1.pt"),
                 OutputError("cannot write models/x.pt: Read-only file system")]


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


def test_ctrl_c_is_one_line_and_exit_130(capsys):
    with pytest.raises(SystemExit) as exit_:
        stage.run(fail_with(KeyboardInterrupt()))
    assert exit_.value.code == 130
    assert capsys.readouterr().err == "error: interrupted\n"


def test_a_stage_that_succeeds_exits_0_at_once_with_all_its_output(tmp_path):
    """stage.run ends a successful stage with os._exit(0), after flushing: nothing printed
    is lost, even to a pipe (block-buffered), and atexit handlers do not run."""
    script = ("import atexit, sys\nfrom sae import stage\n"
              "atexit.register(lambda: print('shutdown ran'))\n"
              "stage.run(lambda: [print(f'line {i}') for i in range(20000)] and "
              "print('to stderr', file=sys.stderr))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0
    assert done.stdout.splitlines() == [f"line {i}" for i in range(20000)]
    assert done.stderr == "to stderr\n"


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


# ---------------------------------------------------------------- data the stage was told


def run_pretrain_layer1(cwd, dataset, data):
    return run_stage("pretrain_layer1", "--recipe", "lecture", "--dataset", dataset,
                     "--data", data, "--model", "m/layer1.pt", "--live", "h/l1", cwd=cwd)


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


# ---------------------------------------------------------------- checkpoints and histories


SMALL = {"common.device": "cpu", "common.train_limit": 20, "common.test_limit": 20,
         "tuned.split.validation": 5}  # fewer than train_limit keeps


@pytest.fixture
def inputs(tmp_path):
    """The files evaluate reads, of the lecture's architecture (untrained weights)."""
    folder = tmp_path / "inputs"
    torch.manual_seed(0)
    layer1 = autoencoder(784, 400, "tanh", "sigmoid")
    stacked = stack(layer1, 256, "tanh", "tanh")
    for name, net in (("layer1", layer1), ("stacked", stacked),
                      ("classifier", classifier(stacked, 10))):
        save_checkpoint(net, folder / f"{name}.pt", "mnist", "lecture")
    pca.save(pca.fit(torch.rand(20, 784)), folder / "pca.pt")
    for phase in PHASES:
        scores = {"test_loss": 2.3, "test_accuracy": 0.1} if phase == PHASES[-1] else {}
        with epoch_logger(folder / phase) as log:
            log({"epoch": 1, "train_loss": 0.5, **scores})
    return folder


def run_evaluate(project, data, inputs):
    return run_stage("evaluate", "--recipe", "lecture", "--dataset", "mnist", "--data", data,
                     *(f"--{name}={inputs / f'{name}.pt'}"
                       for name in ("pca", "layer1", "stacked", "classifier")),
                     *(f"--live-{phase}={inputs / phase}" for phase in PHASES),
                     "--metrics", "out/m.json", "--confusion", "out/c.csv",
                     "--per-class", "out/p.csv", "--figures", "out/figures", cwd=project)


def test_evaluate_runs_on_these_inputs(in_project, real_data, inputs):
    """The cases below fail for the one reason each sets up, not for another."""
    result = run_evaluate(in_project(**SMALL), real_data / "mnist", inputs)
    assert result.returncode == 0, result.stderr


BAD_LAYER1 = {
    "random bytes": (lambda path: path.write_bytes(bytes(range(256)) * 8),
                     "is not a checkpoint written by this pipeline (not a zip archive"),
    "a 784-300 layer 1": (lambda path: save_checkpoint(autoencoder(784, 300, "tanh", "sigmoid"),
                                                       path, "mnist", "lecture"),
                          "has layers 784-300-784 (tanh, sigmoid) but params.yaml "
                          "(lecture.pretrain_layer1) says 784-400-784 (tanh, sigmoid)"),
    "a Fashion-MNIST layer 1": (lambda path: save_checkpoint(
        autoencoder(784, 400, "tanh", "sigmoid"), path, "fashion_mnist", "lecture"),
        "was trained on fashion_mnist with recipe lecture, but this stage runs mnist with "
        "recipe lecture"),
}


@pytest.mark.parametrize("kind", list(BAD_LAYER1))
def test_stack_layer2_on_a_bad_layer1_stops_with_one_line(in_project, real_data, inputs, kind):
    write, expected = BAD_LAYER1[kind]
    write(inputs / "layer1.pt")
    project = in_project(**SMALL)
    result = run_stage("stack_layer2", "--recipe", "lecture", "--dataset", "mnist",
                       "--data", real_data / "mnist", "--layer1", inputs / "layer1.pt",
                       "--model", "m/stacked.pt", "--live", "h/s", cwd=project)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: {inputs / 'layer1.pt'} ") and expected in line, line
    assert not (project / "m").exists() and not (project / "h").exists()


def test_finetune_on_a_layer1_given_as_the_stacked_net_stops_with_one_line(in_project, real_data,
                                                                          inputs):
    project = in_project(**SMALL)
    result = run_stage("finetune_classifier", "--recipe", "lecture", "--dataset", "mnist",
                       "--data", real_data / "mnist", "--stacked", inputs / "layer1.pt",
                       "--model", "m/classifier.pt", "--live", "h/c", cwd=project)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line == (f"error: {inputs / 'layer1.pt'} has layers 784-400-784 (tanh, sigmoid) but "
                    "params.yaml (lecture.pretrain_layer1, lecture.stack_layer2) says "
                    "784-400-256-400-784 (tanh, tanh, tanh, sigmoid); re-create it with "
                    "`dvc repro`")
    assert not (project / "m").exists() and not (project / "h").exists()


@pytest.mark.parametrize("damage, expected", [
    (lambda inputs: save_checkpoint(autoencoder(784, 400, "tanh", "tanh"),
                                    inputs / "layer1.pt", "mnist", "lecture"),
     "layer1.pt has layers 784-400-784 (tanh, tanh) but params.yaml"),
    (lambda inputs: (inputs / "finetune_classifier/plots/metrics/test_loss.tsv").write_text(
        "<<<<<<< HEAD\n"), "test_loss.tsv: no header 'step<TAB>test_loss'"),
    (lambda inputs: pca.save({"mean": torch.rand(784), "components": torch.rand(784, 5)},
                             inputs / "pca.pt"),
     "pca.pt is not a PCA written by the reference stage (5 components; expected 400 to 784"),
])
def test_evaluate_on_a_bad_input_stops_with_one_line(in_project, real_data, inputs, damage,
                                                     expected):
    damage(inputs)
    project = in_project(**SMALL)
    result = run_evaluate(project, real_data / "mnist", inputs)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: {inputs}/") and expected in line, line
    assert not (project / "out").exists()


def test_evaluate_never_replaces_a_folder_of_files_it_does_not_write(in_project, real_data,
                                                                    inputs):
    """`--figures` naming a data folder once deleted the dataset."""
    project = in_project(**SMALL)
    figures = project / "out" / "figures"
    figures.mkdir(parents=True)
    (figures / "train-images-idx3-ubyte").write_bytes(b"a dataset")
    result = run_evaluate(project, real_data / "mnist", inputs)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("error: refusing to replace out/figures: it holds "
                           "train-images-idx3-ubyte, which this stage does not write"), line
    assert sorted(p.name for p in (project / "out").iterdir()) == ["figures"]
    assert [p.name for p in figures.iterdir()] == ["train-images-idx3-ubyte"]


# ---------------------------------------------------------------- outputs, before any work


@pytest.fixture
def tiny(in_project, tmp_path, monkeypatch):
    """A params folder and tiny data registered as MNIST: (project, data folder)."""
    data = registered(monkeypatch, write_tiny_idx(tmp_path / "data" / "mnist"))
    return in_project(**SMALL), data


def files(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("stage_name, args, expected", [
    ("stack_layer2", ["--layer1", "x.pt", "--model", "x.pt", "--live", "h"],
     "--model x.pt is the same path as --layer1 x.pt"),
    ("pretrain_layer1", ["--model", "m.pt", "--live", "DATA"],
     "--live DATA is the same path as --data DATA"),
    ("pretrain_layer1", ["--model", "DATA/m.pt", "--live", "h"],
     "--model DATA/m.pt lies inside --data DATA"),
    ("pretrain_layer1", ["--model", ".", "--live", "h"],
     "--model . holds --data DATA"),
    ("pretrain_layer1", ["--model", "m.pt", "--live", "m.pt"],
     "--model m.pt is the same path as --live m.pt"),
    ("pretrain_layer1", ["--model", "params.yaml", "--live", "h"],
     "--model params.yaml is the same path as params.yaml"),
    ("pretrain_layer1", ["--model", "", "--live", "h"], "--model is empty"),
    ("pretrain_layer1", ["--model", "m.pt", "--live", "x.pt/h"],
     "cannot write x.pt/h: x.pt is a file, not a folder"),
])
def test_an_output_that_would_overwrite_an_input_or_cannot_be_written_stops_before_any_work(
        tiny, monkeypatch, stage_name, args, expected):
    project, data = tiny
    save_checkpoint(autoencoder(784, 400, "tanh", "sigmoid"), project / "x.pt", "mnist",
                    "lecture")
    before = files(project)  # the data folder lies inside it
    stage_module = load_stage(stage_name)
    monkeypatch.setattr(stage_module, "fit", lambda *a, **k: pytest.fail("training started"))
    argv = ["--recipe", "lecture", "--dataset", "mnist", "--data", str(data),
            *(str(data) if a == "DATA" else a.replace("DATA", str(data)) for a in args)]
    with pytest.raises(OutputError) as info:
        stage_module.main(argv)
    assert str(info.value).startswith(expected.replace("DATA", str(data))), str(info.value)
    assert files(project) == before


def test_check_params_refuses_to_write_over_params_yaml(tiny):
    project, _ = tiny
    before = (project / "params.yaml").read_text()
    result = run_stage("check_params", "--out", "params.yaml", cwd=project)
    assert result.returncode == 1
    assert result.stderr == ("error: --out params.yaml is the same path as params.yaml; an "
                             "output must not overwrite an input, params.yaml or another "
                             "output\n")
    assert (project / "params.yaml").read_text() == before


def test_evaluate_refuses_figures_in_its_own_data_folder(in_project, real_data, inputs):
    project = in_project(**SMALL)
    data = project / "mnist"
    shutil.copytree(real_data / "mnist", data)
    before = files(data)
    result = run_stage("evaluate", "--recipe", "lecture", "--dataset", "mnist", "--data", data,
                       *(f"--{name}={inputs / f'{name}.pt'}"
                         for name in ("pca", "layer1", "stacked", "classifier")),
                       *(f"--live-{phase}={inputs / phase}" for phase in PHASES),
                       "--metrics", "m.json", "--confusion", "c.csv", "--per-class", "p.csv",
                       "--figures", data, cwd=project)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: --figures {data} is the same path as --data {data};")
    assert files(data) == before and not (project / "m.json").exists()
