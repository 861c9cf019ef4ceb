"""What every stage script shares: arguments, params, data on the device, outputs, errors."""
import argparse
import csv
import io
import sys

from sae.atomic import write_text
from sae.datasets import DATASETS, load_split
from sae.download import DownloadError
from sae.params import ParamsError
from sae.train import DTYPES, TrainingDiverged


def parse_args(description, argv, *paths):
    """--dataset plus one required option per path; paths come from dvc.yaml only."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    for path in paths:
        parser.add_argument(f"--{path}", required=True)
    return parser.parse_args(argv)


def load_data(data_dir, common, device, train: bool):
    """(images, labels) of one split as tensors on `device` in the configured precision."""
    limit = common.train_limit if train else common.test_limit
    images, labels = load_split(data_dir, train, limit)
    return images.to(device, DTYPES[common.precision]), labels.to(device)


def write_history(path, rows):
    """Per-epoch history as CSV, one column per key (DVC plots read it)."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, text.getvalue())


# Failures a user can fix: one clear message, no traceback. Anything else is a bug: traceback.
EXPECTED_ERRORS = (ParamsError, TrainingDiverged, DownloadError, FileNotFoundError)


def run(main):
    """Run a stage's main() on the command line; an expected error prints one line, exits 1."""
    try:
        main()
    except EXPECTED_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)

