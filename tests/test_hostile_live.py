"""Issue 22, causes 4 and 7: the DVCLive folders.

Cause 4: `--live` naming a folder of the user's (a plain folder, or a link to one) is refused
before any work, as `--figures` is; a DVCLive folder the stage wrote earlier (DVC re-runs into
it when a repro was killed) is still accepted, broken or whole, and started afresh.
Cause 7: every reader of the per-epoch tables checks them (a repeated step, a binary table, a
missing table, a wrong header: one line naming the file); and two runs of a stage never write
one DVCLive folder at once: after `kill -9` of `dvc repro` its stage child runs on, and the
next run into the same folder crashed in DVCLive with a JSONDecodeError (it read the
metrics.json the other process was rewriting)."""
import json
import os
import signal
import subprocess
import sys

import pytest

from sae.atomic import OutputError
from sae.live import HistoryError, epoch_logger, history_frame, read_history
from tests.conftest import ROOT, load_stage, registered, write_tiny_idx

pytestmark = pytest.mark.usefixtures("float32_by_default")

ROWS = [{"epoch": 1, "train_loss": 0.5, "test_loss": 1.5, "test_accuracy": 0.25},
        {"epoch": 2, "train_loss": 0.125, "test_loss": 1.25, "test_accuracy": 0.5}]
SMALL = {"common.device": "cpu", "common.train_limit": 20, "common.test_limit": 20,
         "tuned.split.validation": 5, "lecture.pretrain_layer1.epochs": 2}


def files(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def logged(folder, rows=ROWS):
    with epoch_logger(folder) as log:
        for row in rows:
            log(row)
    return folder


# ------------------------------------------------------------ cause 4: --live, a user's folder

@pytest.fixture
def tiny(in_project, tmp_path, monkeypatch):
    data = registered(monkeypatch, write_tiny_idx(tmp_path / "data" / "mnist"))
    return in_project(**SMALL), data


def pretrain(project, data, live):
    load_stage("pretrain_layer1").main(["--recipe", "lecture", "--dataset", "mnist", "--data",
                                        str(data), "--model", str(project / "m.pt"),
                                        "--live", str(live)])


def users_folder(folder, **extra):
    """A DVCLive folder of the user's own project: metrics.json and tables of other names."""
    tables = folder / "plots" / "metrics"
    tables.mkdir(parents=True)
    (folder / "metrics.json").write_text('{"loss": 0.1, "step": 3}\n')
    (tables / "loss.tsv").write_text("step\tloss\n1\t0.3\n2\t0.2\n3\t0.1\n")
    for name, text in extra.items():
        (folder / name).write_text(text)
    return folder


@pytest.mark.parametrize("make, expected", [
    (lambda p: users_folder(p / "mine"), "which this stage does not write"),
    (lambda p: users_folder(p / "mine", **{"notes.txt": "mine"}), "notes.txt"),
    # Only a metrics.json, but not one this stage writes: its keys are not the stage's.
    (lambda p: (p / "mine").mkdir() or (p / "mine/metrics.json").write_text(
        '{"my_score": 1}'), "metrics.json"),
    (lambda p: (p / "mine").mkdir() or (p / "mine/params.yaml").write_text("a: 1"),
     "params.yaml"),
])
def test_live_in_a_users_folder_is_refused_before_any_work(tiny, monkeypatch, make, expected):
    project, data = tiny
    make(project)
    before = files(project / "mine")
    monkeypatch.setattr(load_stage("pretrain_layer1"), "fit",
                        lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(OutputError) as info:
        pretrain(project, data, project / "mine")
    message = str(info.value)
    assert message.startswith(f"refusing to write into {project / 'mine'}: it holds "), message
    assert expected in message, message
    assert files(project / "mine") == before and not (project / "m.pt").exists()


@pytest.mark.parametrize("target", ["users", "empty"])
def test_live_through_a_symbolic_link_is_refused_before_any_work(tiny, tmp_path, monkeypatch,
                                                                  target):
    project, data = tiny
    outside = users_folder(tmp_path / "outside") if target == "users" else tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    before = files(outside)
    (project / "link").symlink_to(outside, target_is_directory=True)
    monkeypatch.setattr(load_stage("pretrain_layer1"), "fit",
                        lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(OutputError, match=r"it exists and is a symbolic link"):
        pretrain(project, data, project / "link")
    assert files(outside) == before


def test_a_folder_the_stage_wrote_earlier_is_accepted_and_rewritten(tiny):
    """DVC runs a stage into its existing folder when a repro was killed (or the output is
    persisted): the stage's own output, whole, is replaced by the new run's."""
    project, data = tiny
    pretrain(project, data, project / "live")
    first = files(project / "live")
    pretrain(project, data, project / "live")
    assert files(project / "live") == first
    assert len(read_history(project / "live")) == 2


@pytest.mark.parametrize("metrics", ["", '{\n    "train_loss": 0.1', '{"train_loss": 0.1, "st',
                                     '{"train_loss": 0.1, "step": 1}'])
def test_its_own_broken_output_is_started_afresh(tiny, metrics):
    """What a kill leaves: a half-written metrics.json, a table with a repeated step (two
    writers), or a table without metrics.json. It is the stage's, so it starts afresh."""
    project, data = tiny
    live = project / "live"
    (live / "plots" / "metrics").mkdir(parents=True)
    (live / "metrics.json").write_text(metrics)
    (live / "plots/metrics/train_loss.tsv").write_text("step\ttrain_loss\n1\t0.5\n1\t0.5\n2\t")
    pretrain(project, data, live)
    assert [row["epoch"] for row in read_history(live)] == [1, 2]
    assert json.loads((live / "metrics.json").read_text())["step"] == 2


def test_the_fine_tuning_stage_accepts_its_own_tables_of_either_held_out_part(tmp_path):
    from sae import live
    from sae.atomic import check_folder_output
    folder = logged(tmp_path / "live")  # test_loss, test_accuracy
    (folder / "plots/metrics/val_loss.tsv").write_text("step\tval_loss\n1\t0.5\n")
    check_folder_output(folder, live.written_by(live.CLASSIFIER))
    with pytest.raises(OutputError, match="test_accuracy.tsv"):
        check_folder_output(folder, live.written_by(live.AUTOENCODER))


# ------------------------------------------------------------ cause 7: the checked reader

def table(tmp_path, name, text, others=None):
    tables = tmp_path / "live/plots/metrics"
    tables.mkdir(parents=True, exist_ok=True)
    (tables / f"{name}.tsv").write_bytes(text if isinstance(text, bytes) else text.encode())
    for other, other_text in (others or {}).items():
        (tables / f"{other}.tsv").write_text(other_text)
    return tables / f"{name}.tsv"


GOOD = {"train_loss": "step\ttrain_loss\n1\t0.5\n2\t0.25\n",
        "test_loss": "step\ttest_loss\n1\t1.5\n2\t1.25\n",
        "test_accuracy": "step\ttest_accuracy\n1\t0.25\n2\t0.5\n"}


def others(name):
    return {k: v for k, v in GOOD.items() if k != name}


@pytest.mark.parametrize("name, text, problem", [
    ("test_accuracy", "step\ttest_accuracy\n1\t0.25\n1\t0.5\n",
     "line 3, step 1, repeats or goes back (after step 1)"),
    ("train_loss", "step\ttrain_loss\n2\t0.5\n1\t0.25\n", "line 3, step 1, repeats or goes back"),
    ("test_loss", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "not a text table"),
    ("train_loss", "epoch\ttrain_loss\n1\t0.5\n2\t0.25\n", "no header 'step<TAB>train_loss'"),
    ("test_loss", "step\ttest_loss\n1\t1.5\n", "its epochs (1) differ from"),
])
def test_history_frame_names_a_bad_table_in_one_line(tmp_path, name, text, problem):
    path = table(tmp_path, name, text, others(name))
    with pytest.raises(HistoryError) as info:
        history_frame(tmp_path / "live")
    message = str(info.value)
    assert message.startswith(f"{path}: {problem}"), message
    assert message.endswith("re-create it with `dvc repro`") and "\n" not in message


def test_history_frame_names_a_missing_table(tmp_path):
    table(tmp_path, "train_loss", GOOD["train_loss"], {"test_loss": GOOD["test_loss"]})
    with pytest.raises(HistoryError, match=rf"^{tmp_path}/live/plots/metrics/test_accuracy.tsv: "
                                           r"missing; .*re-create it with `dvc repro`$"):
        history_frame(tmp_path / "live")
    with pytest.raises(HistoryError, match=r"test_accuracy.tsv: missing"):
        history_frame(tmp_path / "live", ("epoch", "train_loss", "test_accuracy"))


def test_history_frame_of_good_tables_is_the_frame_pandas_reads(tmp_path):
    import pandas as pd
    folder = logged(tmp_path / "live")
    frame = history_frame(folder)
    tables = sorted((folder / "plots/metrics").glob("*.tsv"))
    expected = pd.concat([pd.read_csv(t, sep="\t", index_col="step") for t in tables],
                         axis=1).rename_axis("epoch")
    pd.testing.assert_frame_equal(frame, expected, check_exact=True)
    assert list(frame.columns) == ["test_accuracy", "test_loss", "train_loss"]


def test_every_committed_history_reads_the_same_as_before():
    import pandas as pd
    folders = sorted(p.parents[1] for p in ROOT.glob("plots/*/*/*/plots/metrics"))
    assert folders
    for folder in folders:
        tables = sorted((folder / "plots/metrics").glob("*.tsv"))
        expected = pd.concat([pd.read_csv(t, sep="\t", index_col="step") for t in tables],
                             axis=1).rename_axis("epoch")
        pd.testing.assert_frame_equal(history_frame(folder), expected, check_exact=True)


def test_read_history_refuses_a_repeated_step(tmp_path):
    path = table(tmp_path, "train_loss", "step\ttrain_loss\n1\t0.5\n2\t0.25\n2\t0.125\n")
    with pytest.raises(HistoryError, match=rf"^{path}: line 4, step 2, repeats or goes back"):
        read_history(tmp_path / "live")


# ------------------------------------------------------ cause 7: two writers of one folder

HOLDER = """
import sys
from sae.live import epoch_logger
with epoch_logger(sys.argv[1]) as log:
    log({"epoch": 1, "train_loss": 0.5})
    print("logging", flush=True)
    sys.stdin.read()  # runs on, as a stage child whose dvc repro was killed
"""


def test_a_second_run_into_a_folder_another_run_still_writes_is_one_line(tmp_path):
    folder = tmp_path / "live"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "logging\n"
        before = files(folder)
        with pytest.raises(OutputError) as info, epoch_logger(folder) as log:
            log({"epoch": 1, "train_loss": 0.25})
        assert str(info.value) == (
            f"cannot write {folder}: another process (pid {holder.pid}) is writing it, a run "
            f"of this stage still going (say, one that a killed `dvc repro` left running); "
            f"wait for it to end or stop it (kill {holder.pid}), then run again")
        assert files(folder) == before  # the other run's history, untouched
    finally:
        holder.send_signal(signal.SIGKILL)  # kill -9: the kernel drops its lock
        holder.communicate(timeout=30)
    assert read_history(logged(folder)) == [{"epoch": 1, "train_loss": 0.5},
                                             {"epoch": 2, "train_loss": 0.125}]
    assert sorted(os.listdir(tmp_path)) == ["live"]  # no lock file left behind
