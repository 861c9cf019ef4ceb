"""What every stage script shares: arguments, the history CSV, and how errors end a stage."""
import argparse
import csv
import io
import sys

from sae.atomic import write_text
from sae.datasets import DATASETS
from sae.params import ParamsError


def parse_args(description, argv, *paths, recipe=True):
    """--dataset (and --recipe) plus one required option per path; paths come from dvc.yaml
    only. The recipe is checked against params.yaml when the stage loads its params."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    if recipe:
        parser.add_argument("--recipe", required=True)
    for path in paths:
        parser.add_argument(f"--{path}", required=True)
    return parser.parse_args(argv)


def write_history(path, rows):
    """Per-epoch history as CSV, one column per key (DVC plots read it)."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, text.getvalue())


def read_history(path):
    """A history CSV written by write_history, as a list of {column: float} rows."""
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def run(main, *expected):
    """Run a stage's main() on the command line. Failures a user can fix (bad params, a
    missing file, and the stage's own `expected` errors) print one line and exit 1;
    anything else is a bug and keeps its traceback."""
    try:
        main()
    except (ParamsError, FileNotFoundError, *expected) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)

