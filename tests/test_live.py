"""The per-epoch history: logged through DVCLive by the training stages, read back by
evaluate and the reports."""
import json

import pytest

from sae.live import HistoryError, epoch_logger, read_history

ROWS = [{"epoch": 1, "train_loss": 0.5, "val_accuracy": 0.25},
        {"epoch": 2, "train_loss": 0.125, "val_accuracy": 0.5}]


def logged(folder, rows=ROWS):
    with epoch_logger(folder) as log:
        for row in rows:
            log(row)
    return folder


def test_history_round_trips_through_dvclive(tmp_path):
    folder = logged(tmp_path / "live")
    assert read_history(folder, ("epoch", "train_loss", "val_accuracy")) == ROWS


def test_dvclive_writes_one_table_per_metric_by_epoch_and_the_last_epoch_as_metrics(tmp_path):
    folder = logged(tmp_path / "live")
    table = (folder / "plots/metrics/train_loss.tsv").read_text()
    assert table == "step\ttrain_loss\n1\t0.5\n2\t0.125\n"
    assert json.loads((folder / "metrics.json").read_text()) == {
        "train_loss": 0.125, "val_accuracy": 0.5, "step": 2}
    assert not (folder / "dvc.yaml").exists()  # dvc.yaml is ours, by hand


def test_metrics_show_the_epoch_reached_while_training_runs(tmp_path):
    folder = tmp_path / "live"
    with epoch_logger(folder) as log:
        log(ROWS[0])
        assert json.loads((folder / "metrics.json").read_text())["step"] == 1
        assert read_history(folder) == [{"epoch": 1, "train_loss": 0.5}]


def test_a_history_without_the_columns_asked_for_is_named(tmp_path):
    folder = logged(tmp_path / "live")
    with pytest.raises(HistoryError, match=r"test_loss.tsv: missing; expected the per-epoch"):
        read_history(folder, ("epoch", "test_loss"))


CONFLICTED = "<<<<<<< HEAD\nstep\ttrain_loss\n1\t0.5\n=======\nstep\ttrain_loss\n>>>>>>> b\n"


@pytest.mark.parametrize("text, problem", [
    (CONFLICTED, "no header 'step<TAB>train_loss'"),
    ("step\ttrain_loss\n<<<<<<< HEAD\n1\t0.5\n", "line 2, '<<<<<<< HEAD', is not an epoch"),
    ("step\ttrain_loss\n1\t0.5\n2\n", "line 3, '2', is not an epoch and a finite number"),
    ("step\ttrain_loss\n1\tnan\n", "line 2, '1 nan', is not an epoch and a finite number"),
    ("step\ttrain_loss\n", "no epochs with all of train_loss"),
    ("step\tloss\n1\t0.5\n", "no header 'step<TAB>train_loss'"),
    ("step\ttrain_loss\n1\t\0\n", "line 2, '1 \\x00', is not an epoch"),
    ("\xff\xfe", "not a text table"),
])
def test_a_table_that_is_not_epochs_and_numbers_is_named(tmp_path, text, problem):
    tables = tmp_path / "live/plots/metrics"
    tables.mkdir(parents=True)
    (tables / "train_loss.tsv").write_bytes(text.encode("latin-1"))
    with pytest.raises(HistoryError) as info:
        read_history(tmp_path / "live")
    assert problem in str(info.value) and "re-create it with `dvc repro`" in str(info.value)


def test_a_run_that_fails_leaves_no_history_but_keeps_other_files(tmp_path):
    folder = tmp_path / "live"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError), epoch_logger(folder) as log:
        log(ROWS[0])
        raise RuntimeError("diverged")
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    with pytest.raises(KeyboardInterrupt), epoch_logger(tmp_path / "other") as log:
        log(ROWS[0])
        raise KeyboardInterrupt
    assert not (tmp_path / "other").exists()
