"""Per-epoch metrics through DVCLive, and reading them back.

Each training stage logs into its own DVCLive folder (named in dvc.yaml): `metrics.json`
holds the latest epoch, so `dvc exp show` shows a running or queued experiment's progress,
and `plots/metrics/<name>.tsv` holds one table per metric (`step`, the epoch, and the value)
for `dvc plots` and the VS Code extension, which DVCLive tells of each finished epoch.

Every table is read through one checked reader (`_checked_tables`): evaluate's read_history
and the reports' history_frame end in one line naming the file when a table is missing, not
text, without its header, or repeats a step. One run at a time writes a folder: DVCLive
rewrites metrics.json in place after each epoch and reads it back, so a second process in
the same folder (a stage left running by a killed `dvc repro`, and the next run) crashed on
the other's half-written file and mixed their tables.
"""
import contextlib
import csv
import json
import math
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

from sae.atomic import TEMP_SUFFIX, OutputError

try:
    import fcntl
except ImportError:  # not POSIX: no lock, as before
    fcntl = None

# The metrics each training stage logs, one table each: the autoencoders their training loss;
# fine-tuning also the held-out part's loss and accuracy, "val" with a validation part, else
# "test". A stage that logs a new metric adds it here: the readers accept these layouts only.
AUTOENCODER = ("train_loss",)
CLASSIFIER = ("train_loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy")
LAYOUTS = (AUTOENCODER, CLASSIFIER[:3], (CLASSIFIER[0], *CLASSIFIER[3:]))
NOTES = ("kept_epoch",)  # values of the whole run (log.note) beside the metrics and "step"
TABLES = ("plots", "metrics")  # where in a DVCLive folder the tables are
OWN_METRICS_MAX = 64 * 1024  # bytes; the stages' metrics.json holds a few numbers


class HistoryError(ValueError):
    """A DVCLive folder that does not hold the per-epoch tables a training stage writes."""


class MissingHistory(HistoryError):
    """A DVCLive folder with no per-epoch tables at all (no such run), as opposed to one
    whose tables are broken."""


@contextmanager
def epoch_logger(folder):
    """Yield log(row): each row, {"epoch": n, metric: value, ...}, becomes step n of `folder`;
    log.note(name, value) adds a value of the whole run to metrics.json.
    dvc.yaml is hand-written, so DVCLive writes none (dvcyaml=None), and the experiment is
    DVC's to save, not DVCLive's. DVCLive starts the folder afresh (resume=False): the stage
    re-trains every epoch. OutputError, before DVCLive touches the folder, while another
    process writes it."""
    made = [f for f in (Path(folder), *Path(folder).parents) if not f.exists()]  # deepest first
    try:
        with _sole_writer(Path(folder)):
            yield from _logging(folder)
    except BaseException:
        for made_folder in made:  # those left empty by a failed or refused run
            with contextlib.suppress(OSError):
                os.rmdir(made_folder)
        raise


def _logging(folder):
    from dvclive import Live  # imported here: evaluate only reads, and starts faster
    live = Live(str(folder), dvcyaml=None, save_dvc_exp=False, report=None)

    def log(row):
        live.step = int(row["epoch"])
        for name, value in row.items():
            if name != "epoch":
                live.log_metric(name, value)
        live.next_step()  # writes metrics.json and tells VS Code that an epoch ended

    def note(name, value):
        """One value of the whole run (not of an epoch), kept in metrics.json."""
        live.summary[name] = value

    log.note = note
    try:
        yield log
    except BaseException:
        _discard(live)  # a failed or interrupted run leaves no half-written history
        raise
    live.end()


def _discard(live):
    """Remove what DVCLive wrote (epoch_logger then removes the folders it made, if empty)."""
    Path(live.metrics_file).unlink(missing_ok=True)
    shutil.rmtree(Path(live.plots_dir) / "metrics", ignore_errors=True)
    with contextlib.suppress(OSError):
        os.rmdir(live.plots_dir)


@contextmanager
def _sole_writer(folder: Path):
    """Hold an exclusive lock on `folder` while the block runs; OutputError naming the
    holder's pid when another process holds it. The lock is a file beside the folder
    (never in it: the folder is a DVC output), named like the atomic writes' temporaries
    so that git and DVC ignore it, and removed after; the kernel releases it when its
    process ends, even by kill -9, so a killed run never blocks the next one."""
    if fcntl is None:
        yield
        return
    lock = folder.parent / f".{folder.name}.lock{TEMP_SUFFIX}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise OutputError(
                f"cannot write {folder}: another process (pid {holder}) is writing it, a run "
                f"of this stage still going (say, one that a killed `dvc repro` left "
                f"running); wait for it to end or stop it (kill {holder}), then run "
                f"again") from None
        try:  # the file locked must still be the one at `lock` (its holder removes it)
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


def written_by(names):
    """own(relative path, path) for sae.atomic.check_folder_output: whether a file or
    folder in a DVCLive folder is one epoch_logger writes there when the stage logs `names`
    (a layout above). A run killed half-way leaves its output in any state: tables without
    metrics.json, a metrics.json cut off mid-write; all of it is the stage's and is started
    afresh. A metrics.json is the stage's only if it holds nothing but the stage's keys: a
    user's folder of the same file names is never overwritten."""
    tables = {f"{'/'.join(TABLES)}/{name}.tsv" for name in names}
    keys = {*names, *NOTES, "step"}

    def own(relative, path):
        if relative in ("plots", "/".join(TABLES)):
            return path.is_dir()
        if relative in tables:
            return path.is_file()
        return relative == "metrics.json" and path.is_file() and _own_metrics(path, keys)
    return own


def _own_metrics(path: Path, keys):
    """Whether metrics.json holds only `keys`, whole or cut off (a run killed mid-write)."""
    if path.stat().st_size > OWN_METRICS_MAX:
        return False
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return False
    try:
        found = json.loads(text)
    except ValueError:  # cut off: an object's start, with the stage's keys so far
        if text.strip() and not text.lstrip().startswith("{"):
            return False
        found = dict.fromkeys(re.findall(r'"((?:[^"\\]|\\.)*)"\s*:', text))
    return isinstance(found, dict) and set(found) <= keys


def read_history(folder, columns=("epoch", "train_loss")):
    """The epochs of a DVCLive folder as rows {"epoch": n, metric: value}, for `columns`;
    HistoryError naming the file when a table is missing or not finite numbers by epoch."""
    tables = _checked_tables(folder, columns[1:])
    epochs = next(iter(tables.values()))
    return [{"epoch": epoch, **{name: tables[name][epoch] for name in columns[1:]}}
            for epoch in epochs]


def history_frame(folder, columns=None):
    """The per-epoch tables of a DVCLive folder as one pandas frame indexed by epoch, for the
    reports: those of `columns` ("epoch", then metrics), or every table it holds, which must
    then be those of one training stage (LAYOUTS). Read through the same checks as
    read_history (HistoryError naming the file; MissingHistory when there are no tables),
    then by pandas, so that the values are those the reports always read."""
    import pandas as pd

    checked = _checked_tables(folder, None if columns is None else columns[1:])
    frames = [pd.read_csv(_tables(folder) / f"{name}.tsv", sep="\t", index_col="step")
              for name in sorted(checked)]
    return pd.concat(frames, axis=1).rename_axis("epoch")


def _tables(folder) -> Path:
    return Path(folder, *TABLES)


def _checked_tables(folder, names=None):
    """{name: {epoch: value}} of the tables `names` (each required) or, when None, of every
    table in the folder, which must make up one of LAYOUTS; every table checked by
    _read_table, and all of them of the same epochs. HistoryError naming the file."""
    tables = _tables(folder)
    if names is None:
        names = _layout(tables)
    read = {name: _read_table(tables / f"{name}.tsv", name) for name in names}
    first = next(iter(read), None)
    if first is None or not read[first]:
        raise _bad(tables, f"no epochs with all of {', '.join(names)}")
    for name, rows in read.items():
        if list(rows) != list(read[first]):
            raise _bad(tables / f"{name}.tsv",
                       f"its epochs ({_epochs(rows)}) differ from those of {first}.tsv "
                       f"({_epochs(read[first])})")
    return read


def _epochs(rows):
    shown = ", ".join(map(str, list(rows)[:5]))
    return shown + (", ..." if len(rows) > 5 else "") if rows else "none"


def _layout(tables: Path):
    """The table names of the one layout the tables in `tables` make up."""
    found = {path.stem for path in tables.glob("*.tsv")} if tables.is_dir() else set()
    if not found:
        raise MissingHistory(f"{tables}: no per-epoch tables; expected those a training "
                             f"stage logs through DVCLive; re-create them with `dvc repro`")
    fitting = [layout for layout in LAYOUTS if found <= set(layout)]
    if not fitting:
        raise _bad(tables, f"holds the tables {', '.join(sorted(found))}, which are not "
                           f"those of one training stage ({' or '.join(map('+'.join, LAYOUTS))})")
    layout = min(fitting, key=len)
    missing = [name for name in layout if name not in found]
    if missing:
        raise _bad(tables / f"{missing[0]}.tsv", "missing")
    return layout


def _read_table(path, name):
    """{epoch: value} of one DVCLive metric table, its epochs increasing."""
    try:
        with open(path, newline="") as f:
            lines = list(csv.reader(f, delimiter="\t"))
    except FileNotFoundError:
        raise _bad(path, "missing") from None
    except (csv.Error, UnicodeDecodeError) as error:  # NUL bytes, binary data
        raise _bad(path, f"not a text table ({error})") from None
    if not lines or lines[0] != ["step", name]:
        raise _bad(path, f"no header 'step<TAB>{name}'")
    rows, last = {}, None
    for number, line in enumerate(lines[1:], start=2):
        epoch, value = _numbers(path, number, line)
        if last is not None and epoch <= last:
            # Two runs that wrote one folder at once, or tables pasted together.
            raise _bad(path, f"line {number}, step {epoch}, repeats or goes back (after "
                             f"step {last})")
        rows[epoch], last = value, epoch
    return rows


def _numbers(path, number, line):
    try:
        epoch, value = int(line[0]), float(line[1])
    except (ValueError, IndexError):
        epoch, value = None, math.nan
    if len(line) != 2 or epoch is None or not math.isfinite(value):
        raise _bad(path, f"line {number}, {' '.join(line)!r}, is not an epoch and a finite number")
    return epoch, value


def _bad(path, problem) -> HistoryError:
    return HistoryError(f"{path}: {problem}; expected the per-epoch table a training stage "
                        f"logs through DVCLive; re-create it with `dvc repro`")
