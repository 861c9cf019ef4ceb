"""What every stage script shares: arguments and the checks on their paths, and how errors
end a stage."""
import argparse
import os
import sys
from pathlib import Path

from sae.atomic import OutputError, check_folder_output, check_writable
from sae.datasets import DATASETS, DataError, verify_data_dir
from sae.params import PARAMS_FILE, ParamsError


# Failures a user can fix: a bad params.yaml, input files that are missing, of the wrong kind
# or not what the stage was told, outputs that cannot or must not be written, and what the
# operating system refuses (a full disk, a read-only file system: OSError names the path).
# Each names the file or key, so one line says it all. (A stage that loads checkpoints adds
# sae.model.CheckpointError: this module imports only what every stage declares in dvc.yaml.)
USER_ERRORS = (ParamsError, DataError, OutputError, OSError)
INTERRUPTED = 130  # the shell's exit status for a process ended by Ctrl-C (128 + SIGINT)

# The path options that name what a stage writes; every other path option names an input.
OUTPUTS = ("out", "curve", "model", "live", "metrics", "confusion", "per-class", "figures")


def parse_args(description, argv, *paths, recipe=True, dataset=True, folders=()):
    """--dataset (and --recipe) plus one required option per path; paths come from dvc.yaml
    only. The recipe is checked against params.yaml when the stage loads its params.
    Before any work: every output (OUTPUTS; `folders` names those that are folders) must be
    writable and must not be, hold or lie inside an input, params.yaml or another output;
    an existing output folder must be one the stage writes (`folders` maps a folder to the
    own() of sae.atomic.check_folder_output, or lists folders of plain files); a stage that
    reads --data checks that it holds the dataset --dataset names."""
    parser = argparse.ArgumentParser(description=description)
    if dataset:
        parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    if recipe:
        parser.add_argument("--recipe", required=True)
    for path in paths:
        parser.add_argument(f"--{path}", required=True)
    args = parser.parse_args(argv)
    named = {f"--{path}": getattr(args, path.replace("-", "_")) for path in paths}
    outputs = {option: value for option, value in named.items() if option[2:] in OUTPUTS}
    folders = folders if isinstance(folders, dict) else dict.fromkeys(folders)
    check_outputs(outputs, {**named, PARAMS_FILE: PARAMS_FILE},
                  {f"--{folder}": own for folder, own in folders.items()})
    if "data" in paths:
        verify_data_dir(args.data, args.dataset)
    return args


def check_outputs(outputs, named, folders=()):
    """OutputError unless each output {option: path} is writable, is not, holds or lies in
    any other of the `named` paths, and, for the `folders` ({option: own or None}), is new
    or a folder of the files the stage writes there (sae.atomic.check_folder_output)."""
    folders = folders if isinstance(folders, dict) else dict.fromkeys(folders)
    for option, value in outputs.items():
        if not value:
            raise OutputError(f"{option} is empty; expected the path of the file or folder "
                              f"to write")
        for other, other_value in named.items():
            relation = _overlap(Path(value), Path(other_value)) if other != option else None
            if relation:
                shown = f"{other} {other_value}" if other.startswith("--") else other_value
                raise OutputError(f"{option} {value} {relation} {shown}; an output must not "
                                  f"overwrite an input, params.yaml or another output")
        check_writable(value)
        if option in folders:
            check_folder_output(value, folders[option])


def _overlap(output: Path, other: Path):
    """How `output` overlaps `other`, in words, or None."""
    output, other = output.resolve(), other.resolve()
    if output == other:
        return "is the same path as"
    if output in other.parents:
        return "holds"
    if other in output.parents:
        return "lies inside"
    return None


def run(main, *expected):
    """Run a stage's main() on the command line (only there: success ends the process).
    Failures a user can fix (USER_ERRORS and the stage's own `expected` errors) print one
    line and exit 1, Ctrl-C one line and exit 130 (the atomic writes have removed their
    temporaries by then); anything else is a bug and keeps its traceback."""
    try:
        main()
    except (*USER_ERRORS, *expected) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(INTERRUPTED)
    end_at_once()


def end_at_once():
    """Exit 0 without Python's shutdown. Every output is written, closed and renamed into
    place by now (sae.atomic), and DVCLive has ended; the shutdown would only tear down
    torch, matplotlib and DVC's modules: 0.5-0.9 s a process (measured), five processes an
    experiment (benchmarks/README.md, "An experiment's turnaround")."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
