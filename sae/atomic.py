"""Atomic writes: every output goes to a temporary sibling first, then is renamed into place,
so an interrupted stage never leaves a half-written artifact. A folder output replaces only
a folder of the files it writes itself (never a user's or another stage's folder), and a
failed write is an OutputError naming the output, not its temporary.

Temporaries are named .<target name>.<8 random characters>.sae-tmp; .gitignore and .dvcignore
list *.sae-tmp, so neither git nor DVC (e.g. `dvc metrics show` over metrics/) ever sees one.
A write first removes the temporaries that a killed earlier write of the same target left.
"""
import errno
import glob
import json
import os
import shutil
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path

TEMP_SUFFIX = ".sae-tmp"


class OutputError(ValueError):
    """An output that cannot be written (say, a read-only or full file system), or must not
    be (it would replace a folder this stage did not write)."""


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    with _naming(path):
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
def atomic_dir(path, keep_others=False):
    """Yield a temporary folder beside `path`; its files replace `path` only if the block
    succeeds. An existing `path` must hold nothing but files of the names the block wrote
    (OutputError otherwise, `path` untouched), unless keep_others: then the files it holds
    besides those stay (a user's own files in a `persist` output)."""
    with _naming(path):
        path = _prepare(path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX,
                                    dir=path.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private
        try:
            yield tmp
            _install(tmp, path, keep_others)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def _naming(path):
    """An OSError while writing `path` (disk full, read-only, no permission) becomes an
    OutputError naming `path`, not its temporary; one on another file (an input read inside
    the block) keeps its own."""
    try:
        yield
    except OSError as error:
        temporary = f".{Path(path).name}."
        if error.filename and temporary not in str(error.filename) \
                and Path(error.filename) != Path(path):
            raise
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from None


def _prepare(path) -> Path:
    """The target as a Path, its folder created and a killed earlier write's leftovers gone."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    return path


def check_writable(path):
    """OutputError unless a file can be created where `path` goes: the folders it needs are
    made and a temporary file written there, then both removed again. Run before any work, it
    finds a read-only file system, a missing permission or a parent that is a file then."""
    path = Path(path)
    missing = [folder for folder in (path.parent, *path.parent.parents)
               if not os.path.lexists(folder)]
    existing = (path.parent, *path.parent.parents)[len(missing)]
    if not existing.is_dir():
        raise OutputError(f"cannot write {path}: {existing} is a file, not a folder")
    made = []
    try:
        for folder in reversed(missing):
            folder.mkdir()
            made.append(folder)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX,
                                     dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from None
    finally:
        for folder in reversed(made):
            with suppress(OSError):  # someone else's file appeared in it meanwhile: keep it
                folder.rmdir()


def check_folder_output(path, own=None):
    """OutputError unless `path` is new or a folder that this stage writes: without `own`, a
    folder of plain files only (a folder that holds subfolders or links, say data/ with the
    datasets, is not one a stage writes); with `own(relative path, path)`, which says
    whether a file or subfolder is one the stage writes there (a DVCLive folder's
    metrics.json and plots/metrics/<name>.tsv), a folder of nothing else. A link, the folder
    itself or anything in it, is never written through."""
    path = Path(path)
    if not os.path.lexists(path):
        return
    if path.is_symlink() or not path.is_dir():
        what = "a symbolic link" if path.is_symlink() else "not a folder"
        raise OutputError(f"cannot write the folder {path}: it exists and is {what}; give a "
                          f"folder of its own")
    if own is None:
        foreign = sorted(entry.name for entry in path.iterdir()
                         if entry.is_symlink() or not entry.is_file())
        if foreign:
            raise OutputError(f"refusing to write into {path}: it holds {_some(foreign)} "
                              f"(subfolders or links), so it is not a folder this stage "
                              f"writes; give a folder of its own")
        return
    foreign = []
    for folder, subfolders, names in os.walk(path):  # links are listed, never followed
        for name in sorted([*subfolders, *names]):
            entry = Path(folder, name)
            relative = entry.relative_to(path).as_posix()
            if entry.is_symlink() or not own(relative, entry):
                foreign.append(relative)
        subfolders[:] = [name for name in subfolders
                         if Path(folder, name).relative_to(path).as_posix() not in foreign]
    if foreign:
        raise OutputError(f"refusing to write into {path}: it holds {_some(sorted(foreign))}, "
                          f"which this stage does not write, so it is not a folder of this "
                          f"stage's; give a folder of its own")


def _some(names):
    return f"{', '.join(names[:4])}{', ...' if len(names) > 4 else ''}"


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


def _install(new: Path, path: Path, keep_others):
    """Put the files of folder `new` at `path`: by renaming the folder when `path` is new;
    an old `path` is parked aside and removed only after, or, to keep its other files or when
    it cannot be renamed (a mount point: EBUSY), file by file into it."""
    if not os.path.lexists(path):
        os.replace(new, path)
        return
    written = {entry.name for entry in new.iterdir()}
    others = sorted(entry.name for entry in path.iterdir()
                    if entry.name not in written or not entry.is_file() or entry.is_symlink())
    if others and not keep_others:
        raise OutputError(f"refusing to replace {path}: it holds {', '.join(others[:4])}"
                          f"{', ...' if len(others) > 4 else ''}, which this stage does not "
                          f"write; remove them or give a folder of its own")
    if keep_others or os.path.ismount(path):
        return _replace_files(new, path)
    parked = _parked(path)
    try:
        os.replace(path, parked)
    except OSError as error:
        if error.errno != errno.EBUSY:
            raise
        return _replace_files(new, path)
    os.replace(new, path)
    _remove(parked)


def _replace_files(new: Path, path: Path):
    """Each file of `new` renamed into the folder `path`: each one whole, the folder kept."""
    for entry in sorted(new.iterdir()):
        os.replace(entry, path / entry.name)


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
