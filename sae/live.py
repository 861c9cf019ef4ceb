"""Per-epoch metrics through DVCLive, and reading them back.

Each training stage logs into its own DVCLive folder (named in dvc.yaml): `metrics.json`
holds the latest epoch, so `dvc exp show` shows a running or queued experiment's progress,
and `plots/metrics/<name>.tsv` holds one table per metric (`step`, the epoch, and the value)
for `dvc plots` and the VS Code extension, which DVCLive tells of each finished epoch.
"""
import contextlib
import csv
import math
import os
import shutil
from contextlib import contextmanager
from pathlib import Path


class HistoryError(ValueError):
    """A DVCLive folder that does not hold the per-epoch tables a training stage writes."""


@contextmanager
def epoch_logger(folder):
    """Yield log(row): each row, {"epoch": n, metric: value, ...}, becomes step n of `folder`;
    log.note(name, value) adds a value of the whole run to metrics.json.
    dvc.yaml is hand-written, so DVCLive writes none (dvcyaml=None), and the experiment is
    DVC's to save, not DVCLive's."""
    from dvclive import Live  # imported here: evaluate only reads, and starts faster
    made = [f for f in (Path(folder), *Path(folder).parents) if not f.exists()]  # deepest first
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
        _discard(live, made)  # a failed or interrupted run leaves no half-written history
        raise
    live.end()


def _discard(live, made):
    """Remove what DVCLive wrote, and the folders made for it if nothing else is in them."""
    Path(live.metrics_file).unlink(missing_ok=True)
    shutil.rmtree(Path(live.plots_dir) / "metrics", ignore_errors=True)
    for folder in (live.plots_dir, *made):
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def read_history(folder, columns=("epoch", "train_loss")):
    """The epochs of a DVCLive folder as rows {"epoch": n, metric: value}, for `columns`;
    HistoryError naming the file when a table is missing or not finite numbers by epoch."""
    tables = Path(folder) / "plots" / "metrics"
    by_epoch = {}
    for name in columns[1:]:
        for epoch, value in _read_table(tables / f"{name}.tsv", name):
            by_epoch.setdefault(epoch, {"epoch": epoch})[name] = value
    rows = [by_epoch[epoch] for epoch in sorted(by_epoch)]
    if not rows or any(len(row) != len(columns) for row in rows):
        raise _bad(tables, f"no epochs with all of {', '.join(columns[1:])}")
    return rows


def _read_table(path, name):
    """(epoch, value) pairs of one DVCLive metric table."""
    try:
        with open(path, newline="") as f:
            lines = list(csv.reader(f, delimiter="\t"))
    except FileNotFoundError:
        raise _bad(path, "missing") from None
    except (csv.Error, UnicodeDecodeError) as error:  # NUL bytes, binary data
        raise _bad(path, f"not a text table ({error})") from None
    if not lines or lines[0] != ["step", name]:
        raise _bad(path, f"no header 'step<TAB>{name}'")
    return [_numbers(path, number, line) for number, line in enumerate(lines[1:], start=2)]


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


def history_frame(folder):
    """Every per-epoch table of a DVCLive folder as one pandas frame indexed by epoch, for the
    reports (unchecked: they read committed results, which evaluate has read and checked)."""
    import pandas as pd

    tables = sorted((Path(folder) / "plots" / "metrics").glob("*.tsv"))
    if not tables:
        raise _bad(Path(folder) / "plots" / "metrics", "no per-epoch tables")
    frames = [pd.read_csv(table, sep="\t", index_col="step") for table in tables]
    return pd.concat(frames, axis=1).rename_axis("epoch")
