"""Atomic writes: every output goes to a temporary sibling first, then is renamed into place,
so an interrupted stage never leaves a half-written artifact.

Temporaries are named .<target name>.<8 random characters>.sae-tmp; .gitignore and .dvcignore
list *.sae-tmp, so neither git nor DVC (e.g. `dvc metrics show` over metrics/) ever sees one.
A write first removes the temporaries that a killed earlier write of the same target left.
"""
import glob
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

TEMP_SUFFIX = ".sae-tmp"


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = _prepare(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; outputs are ordinary readable files
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_dir(path):
    """Yield a temporary folder beside `path`; it replaces `path` only if the block succeeds."""
    path = _prepare(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private
    try:
        yield tmp
        _replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _prepare(path) -> Path:
    """The target as a Path, its folder created and a killed earlier write's leftovers gone."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    return path


def remove_stale(path: Path):
    """Remove the temporaries of `path` that a killed write left; put back a parked old folder
    when the kill came between its two renames (it may hold a user's own files)."""
    parked = _parked(path)
    if os.path.lexists(parked):
        if os.path.lexists(path):
            _remove(parked)
        else:
            os.replace(parked, path)
    # Exactly mkstemp's 8 random characters: a temporary of another target, say
    # `layer1.pt.bak`, has a longer name and is left alone.
    pattern = glob.escape(f".{path.name}.") + "?" * 8 + glob.escape(TEMP_SUFFIX)
    for leftover in path.parent.glob(pattern):
        _remove(leftover)


def _replace_dir(new: Path, path: Path):
    """Put folder `new` at `path`; an old `path` is parked aside and removed only after."""
    if not os.path.lexists(path):
        os.replace(new, path)
        return
    parked = _parked(path)
    os.replace(path, parked)
    os.replace(new, path)
    _remove(parked)


def _parked(path: Path) -> Path:
    return path.with_name(f".{path.name}.old{TEMP_SUFFIX}")


def _remove(path: Path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def write_bytes(path, data: bytes):
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path, text: str):
    write_bytes(path, text.encode("utf-8"))


def write_json(path, obj):
    """Strict JSON (NaN or Infinity raise ValueError) with sorted keys, for stable diffs."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")
