"""What every stage script shares: arguments, and how errors end a stage."""
import argparse
import sys

from sae.datasets import DATASETS, DataError, verify_data_dir
from sae.params import ParamsError


# Failures a user can fix: a bad params.yaml, input files that are missing, of the wrong kind
# or not what the stage was told. Each names the file or key, so one line says it all.
# (A stage that loads checkpoints adds sae.model.CheckpointError: this module imports only
# what every stage declares in dvc.yaml.)
USER_ERRORS = (ParamsError, DataError, FileNotFoundError, NotADirectoryError,
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


def run(main, *expected):
    """Run a stage's main() on the command line. Failures a user can fix (USER_ERRORS and the
    stage's own `expected` errors) print one line and exit 1; anything else is a bug and
    keeps its traceback."""
    try:
        main()
    except (*USER_ERRORS, *expected) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        sys.exit(1)
