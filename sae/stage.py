"""What every stage script shares: arguments, the history CSV, and how errors end a stage."""
import argparse
import csv
import io
import math
import sys

from sae.atomic import write_text
from sae.datasets import DATASETS, DataError, verify_data_dir
from sae.params import ParamsError


class HistoryError(ValueError):
    """A history CSV that is not the table of numbers write_history writes."""


# Failures a user can fix: a bad params.yaml, input files that are missing, of the wrong kind
# or not what the stage was told. Each names the file or key, so one line says it all.
# (A stage that loads checkpoints adds sae.model.CheckpointError: this module imports only
# what every stage declares in dvc.yaml.)
USER_ERRORS = (ParamsError, DataError, HistoryError, FileNotFoundError, NotADirectoryError,
               IsADirectoryError, PermissionError)


def parse_args(description, argv, *paths, recipe=True):
    """--dataset (and --recipe) plus one required option per path; paths come from dvc.yaml
    only. The recipe is checked against params.yaml when the stage loads its params.
    A stage that reads --data first checks that it holds the dataset --dataset names."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    if recipe:
        parser.add_argument("--recipe", required=True)
    for path in paths:
        parser.add_argument(f"--{path}", required=True)
    args = parser.parse_args(argv)
    if "data" in paths:
        verify_data_dir(args.data, args.dataset)
    return args


def write_history(path, rows):
    """Per-epoch history as CSV, one column per key (DVC plots read it)."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, text.getvalue())


def read_history(path, columns=("epoch", "train_loss")):
    """The rows of a history CSV as dicts of floats; HistoryError naming the file and line
    when it is not a header with `columns` and rows of finite numbers (say, git conflict
    markers)."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (csv.Error, UnicodeDecodeError) as error:  # NUL bytes, binary data
        raise _bad_history(path, f"not a text CSV ({error})") from None
    if len(rows) < 2 or not set(columns) <= set(rows[0]):
        raise _bad_history(path, f"no header with the columns {', '.join(columns)} and rows "
                                 f"below it")
    header = rows[0]
    return [dict(zip(header, _numbers(path, line, row, len(header))))
            for line, row in enumerate(rows[1:], start=2)]


def _numbers(path, line, row, width):
    """The finite floats of one CSV row of `width` fields."""
    try:
        values = [float(v) for v in row]
    except ValueError:
        values = []
    if len(values) != width or not all(map(math.isfinite, values)):
        raise _bad_history(path, f"line {line}, {','.join(row)!r}, is not {width} finite numbers")
    return values


def _bad_history(path, problem) -> HistoryError:
    return HistoryError(f"{path}: {problem}; expected the per-epoch history a training stage "
                        f"writes; re-create it with `dvc repro`")


def run(main, *expected):
    """Run a stage's main() on the command line. Failures a user can fix (USER_ERRORS and the
    stage's own `expected` errors) print one line and exit 1; anything else is a bug and
    keeps its traceback."""
    try:
        main()
    except (*USER_ERRORS, *expected) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        sys.exit(1)
