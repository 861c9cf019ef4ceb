"""Atomic writes: after a kill the temporaries left are ignored by git and DVC, and the next
write of the same target removes them; a folder output never replaces what the stage did
not write; a refused write names the output; outputs are checked before any work."""
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sae import atomic
from sae.atomic import (TEMP_SUFFIX, OutputError, atomic_dir, atomic_path, check_folder_output,
                        check_writable, remove_stale, write_json)
from tests.conftest import ROOT, dvc, run

KILL = "    os.kill(os.getpid(), signal.SIGKILL)\n"
KILLED = {
    "file": "from sae.atomic import atomic_path as write\n"
            "with write(target) as tmp:\n    tmp.write_bytes(b'half')\n" + KILL,
    "folder": "from sae.atomic import atomic_dir as write\n"
              "with write(target) as tmp:\n    (tmp / 'a.png').write_bytes(b'half')\n" + KILL,
}


def killed_write(target, kind):
    """Start a write of `target` in another process and kill -9 it inside the block."""
    code = f"import os, signal\ntarget = {str(target)!r}\n" + KILLED[kind]
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT,  # cwd: this checkout's sae
                          timeout=120)
    assert done.returncode == -9


def names(folder):
    return sorted(p.name for p in folder.iterdir())


def make(folder, entry):
    """`folder` holding `entry`: a subfolder when it ends with /, else a file."""
    if entry.endswith("/"):
        (folder / entry).mkdir(parents=True)
    else:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / entry).write_text("the user's")


def test_a_killed_file_write_leaves_a_temporary_the_next_write_removes(tmp_path):
    target = tmp_path / "metrics" / "mnist.json"
    killed_write(target, "file")
    killed_write(target.with_name("mnist.json.bak"), "file")  # another target's
    [other] = [n for n in names(target.parent) if n.startswith(".mnist.json.bak.")]
    [mine] = [n for n in names(target.parent) if n != other]
    assert mine.startswith(".mnist.json.") and mine.endswith(TEMP_SUFFIX)
    write_json(target, {"test_accuracy": 0.9})
    assert names(target.parent) == [other, "mnist.json"]


def test_a_killed_folder_write_leaves_a_temporary_the_next_write_removes(tmp_path):
    target = tmp_path / "plots" / "figures"
    killed_write(target, "folder")
    [leftover] = names(target.parent)
    assert leftover.endswith(TEMP_SUFFIX) and (target.parent / leftover / "a.png").exists()
    with atomic_dir(target) as tmp:
        (tmp / "b.png").write_bytes(b"whole")
    assert names(target.parent) == ["figures"] and names(target) == ["b.png"]


def test_replacing_a_folder_of_the_same_files_leaves_only_the_new_one(tmp_path):
    target = tmp_path / "plots" / "figures"
    target.mkdir(parents=True)
    (target / "a.png").write_text("old")
    with atomic_dir(target) as tmp:
        (tmp / "a.png").write_text("new")
        (tmp / "b.png").write_text("new")
    assert names(target.parent) == ["figures"] and names(target) == ["a.png", "b.png"]
    assert (target / "a.png").read_text() == "new"


@pytest.mark.parametrize("content", ["train-images-idx3-ubyte", "notes.txt", "sub/"])
def test_a_folder_holding_what_the_stage_does_not_write_is_never_replaced(tmp_path, content):
    """`evaluate --figures data/fashion_mnist` once deleted that dataset."""
    target = tmp_path / "data" / "fashion_mnist"
    make(target, content)
    with pytest.raises(OutputError, match=f"refusing to replace {target}: it holds "
                                          f"{content.rstrip('/')}, which this stage does not"):
        with atomic_dir(target) as tmp:
            (tmp / "a.png").write_text("new")
    assert names(target) == [content.rstrip("/")] and names(target.parent) == ["fashion_mnist"]


def test_keep_others_replaces_the_files_written_and_keeps_the_rest(tmp_path):
    """A `persist` output: the user's own files in data/mnist survive a download."""
    target = tmp_path / "data" / "mnist"
    (target / "mine").mkdir(parents=True)
    (target / "notes.txt").write_text("the user's")
    (target / "train-images-idx3-ubyte.gz").write_text("the user's copy")
    (target / "train-images-idx3-ubyte").write_text("stale")
    with atomic_dir(target, keep_others=True) as tmp:
        (tmp / "train-images-idx3-ubyte").write_text("new")
    assert names(target) == ["mine", "notes.txt", "train-images-idx3-ubyte",
                             "train-images-idx3-ubyte.gz"]
    assert (target / "train-images-idx3-ubyte").read_text() == "new"
    assert (target / "notes.txt").read_text() == "the user's"
    assert names(target.parent) == ["mnist"]


def test_a_folder_that_cannot_be_renamed_has_its_files_replaced(tmp_path, monkeypatch):
    """A mount point (bind mount, container volume): renaming it gives EBUSY."""
    target = tmp_path / "mnist"
    target.mkdir()
    (target / "a").write_text("old")
    real_replace = os.replace

    def replace(source, destination):
        if Path(source) == target:
            raise OSError(errno.EBUSY, "Device or resource busy", str(source))
        real_replace(source, destination)
    monkeypatch.setattr(atomic.os, "replace", replace)
    inode = target.stat().st_ino
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("new")
    assert target.stat().st_ino == inode and (target / "a").read_text() == "new"
    assert names(tmp_path) == ["mnist"]


@pytest.mark.parametrize("write", [atomic_path, atomic_dir], ids=["file", "folder"])
def test_a_write_the_system_refuses_names_the_output_not_its_temporary(tmp_path, write):
    target = tmp_path / "models" / "layer1.pt"
    with pytest.raises(OutputError) as info:
        with write(target) as tmp:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert str(info.value) == f"cannot write {target}: No space left on device"
    assert names(target.parent) == []


def test_an_input_error_inside_the_block_keeps_its_own_name(tmp_path):
    with pytest.raises(FileNotFoundError):
        with atomic_dir(tmp_path / "figures"):
            (tmp_path / "missing.csv").read_text()


@pytest.mark.parametrize("write", [atomic_path, atomic_dir], ids=["file", "folder"])
def test_ctrl_c_inside_a_write_leaves_the_old_output_and_no_temporary(tmp_path, write):
    target = tmp_path / "out"
    with write(target) as tmp:  # a first, finished write
        (tmp if write is atomic_path else tmp / "a").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with write(target) as tmp:
            (tmp if write is atomic_path else tmp / "a").write_text("half")
            raise KeyboardInterrupt
    assert names(tmp_path) == ["out"]
    assert (target if write is atomic_path else target / "a").read_text() == "old"


# ---------------------------------------------------------------- checked before any work


def test_an_output_under_a_regular_file_is_refused_and_nothing_is_left(tmp_path):
    (tmp_path / "README.md").write_text("a file")
    with pytest.raises(OutputError, match=f"cannot write {tmp_path}/README.md/m/x.pt: "
                                          f"{tmp_path}/README.md is a file, not a folder"):
        check_writable(tmp_path / "README.md" / "m" / "x.pt")


def test_the_writable_check_removes_the_folders_it_made(tmp_path):
    check_writable(tmp_path / "models" / "lecture" / "layer1.pt")
    assert names(tmp_path) == []


def test_a_file_system_that_refuses_a_file_is_found_before_any_work(tmp_path, monkeypatch):
    def read_only(**kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(kwargs["dir"]))
    monkeypatch.setattr(atomic.tempfile, "mkstemp", read_only)
    with pytest.raises(OutputError, match=f"^cannot write {tmp_path}/m/x.pt: Read-only file "
                                          f"system$"):
        check_writable(tmp_path / "m" / "x.pt")
    assert names(tmp_path) == []


@pytest.mark.parametrize("content", ["mnist/", "link"])
def test_a_folder_output_that_holds_subfolders_or_links_is_refused(tmp_path, content):
    """`download --out data` once deleted data/ with both datasets."""
    make(tmp_path / "data", content)
    if content == "link":
        (tmp_path / "data" / "link").unlink()
        (tmp_path / "data" / "link").symlink_to(tmp_path)
    with pytest.raises(OutputError, match=f"refusing to write into {tmp_path}/data: it holds "
                                          f"{content.rstrip('/')} "):
        check_folder_output(tmp_path / "data")


def test_a_folder_output_that_is_a_file_or_a_link_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "file")
    with pytest.raises(OutputError, match="it exists and is not a folder"):
        check_folder_output(tmp_path / "file")
    with pytest.raises(OutputError, match="it exists and is a symbolic link"):
        check_folder_output(tmp_path / "link")


def test_a_folder_output_of_plain_files_is_accepted(tmp_path):
    (tmp_path / "data" / "mnist").mkdir(parents=True)
    (tmp_path / "data" / "mnist" / "train-images-idx3-ubyte.gz").write_text("the user's")
    check_folder_output(tmp_path / "data" / "mnist")
    check_folder_output(tmp_path / "new")


@pytest.mark.parametrize("target_exists", [False, True])
def test_a_folder_parked_by_a_killed_swap_comes_back_unless_replaced(tmp_path, target_exists):
    """A kill between moving the old folder aside and the new one in: the old one may be a
    user's own files, so it is put back, and dropped only once a new folder is in place."""
    target = tmp_path / "mnist"
    parked = tmp_path / f".mnist.old{TEMP_SUFFIX}"
    parked.mkdir()
    (parked / "train-images-idx3-ubyte.gz").write_text("the user's")
    if target_exists:
        target.mkdir()
    remove_stale(target)
    assert names(tmp_path) == ["mnist"]
    assert names(target) == ([] if target_exists else ["train-images-idx3-ubyte.gz"])


def test_git_and_dvc_ignore_temporaries(tmp_path):
    """A temporary in metrics/ once showed up as a third row of `dvc metrics show`."""
    for name in (".gitignore", ".dvcignore"):
        shutil.copy(ROOT / name, tmp_path / name)
    run(["git", "init", "-q"], tmp_path)
    dvc("init", "-q", "--force", cwd=tmp_path)
    shutil.copy(ROOT / ".dvcignore", tmp_path / ".dvcignore")  # dvc init writes its own
    (tmp_path / "dvc.yaml").write_text("metrics:\n  - metrics\n")
    write_json(tmp_path / "metrics" / "mnist.json", {"test_accuracy": 0.9})
    killed_write(tmp_path / "metrics" / "mnist.json", "file")
    (tmp_path / "metrics" / f".mnist.json.abcd1234{TEMP_SUFFIX}").write_text('{"x": 1}')
    shown = json.loads(dvc("metrics", "show", "--json", cwd=tmp_path))
    assert list(shown[""]["data"]) == ["metrics/mnist.json"]  # "": the workspace
    untracked = run(["git", "status", "--porcelain", "--untracked-files=all"], tmp_path)
    assert TEMP_SUFFIX not in untracked and "metrics/mnist.json" in untracked
