"""Atomic writes after a kill: the temporaries left are ignored by git and DVC, and the next
write of the same target removes them."""
import json
import shutil
import subprocess
import sys

import pytest

from sae.atomic import TEMP_SUFFIX, atomic_dir, remove_stale, write_json
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
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT)  # cwd: this checkout's sae
    assert done.returncode == -9


def names(folder):
    return sorted(p.name for p in folder.iterdir())


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


def test_replacing_a_folder_leaves_only_the_new_one(tmp_path):
    target = tmp_path / "data" / "mnist"
    target.mkdir(parents=True)
    (target / "old").write_text("old")
    with atomic_dir(target) as tmp:
        (tmp / "new").write_text("new")
    assert names(target.parent) == ["mnist"] and names(target) == ["new"]


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
