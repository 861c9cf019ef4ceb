"""Check the params a sweep sets, before anything is queued: every key must be a param of this
project's params.yaml, as a dotted path. DVC's `-S` also takes a `file:` prefix and writes
whatever YAML file it names, `../outside.yaml` included; a sweep has no business there.

    python -m scripts.sweep_keys -- <dvc exp run options>   # exit 1 if a key is bad
    python -m scripts.sweep_keys --grid '<JSON list>'       # .github/workflows/sweep.yml

in the project folder (it reads ./params.yaml); scripts/sweep.sh runs it by its path, so that
it works from any project folder, and it imports nothing of this project for that reason.

--grid takes the sweep workflow's grid (a list with one entry per experiment: a `key=value`
string or a list of them) and prints it as the matrix, each entry a list; or exits 1.

Every assignment is checked whole, not only its key: it must be one line of printable text, as
the workflow's run step reads each one as a line (a newline in a value would make a second,
unchecked `-S`). The options are read with DVC's own parser, so an abbreviation that it
expands (`--set-p`, `--se`) is found as `--set-param` is.
"""
import argparse
import contextlib
import io
import json
import logging.handlers
import re
import sys
from pathlib import Path

# Dotted names of params.yaml: no file prefix (":"), no "..", no Hydra "+"/"~" operators.
KEY = re.compile(r"[A-Za-z_]\w*(\.\w+)*")
ALLOWED = ("a sweep may set only params of params.yaml, as a dotted key without a file "
           "prefix or '..', e.g. lecture.finetune_classifier.lr=0.1,0.2")


def param_keys(path="params.yaml"):
    """The dotted key of every value in params.yaml that is not a section, as DVC reads it."""
    from ruamel.yaml import YAML  # DVC's own YAML reader (1.2), installed with DVC

    def walk(tree, prefix):
        for name, value in tree.items():
            key = f"{prefix}{name}"
            yield from walk(value, key + ".") if isinstance(value, dict) else [key]
    return set(walk(YAML(typ="safe").load(Path(path).read_text()) or {}, ""))


def problem(assignment, keys):
    """What is wrong with one `-S` assignment, or None."""
    key, equals, _ = assignment.partition("=")
    if not assignment.isprintable():  # line breaks, tabs, NUL, other control characters
        return (f"{assignment!r} is not one line of printable text (it holds "
                f"{next(c for c in assignment if not c.isprintable())!r}); {ALLOWED}")
    if not equals:
        return f"{assignment!r} is no key=value assignment; {ALLOWED}"
    if not KEY.fullmatch(key):
        return f"the key {key!r} of {assignment!r} is no dotted params.yaml key; {ALLOWED}"
    if key not in keys:
        return f"the key {key!r} of {assignment!r} is no param of params.yaml; {ALLOWED}"
    return None


def set_params(options):
    """The assignments of `-S`/`--set-param` among `dvc exp run` options, as DVC's own parser
    reads them (argparse: `--set-p` is `--set-param`); ValueError if DVC would refuse them."""
    from dvc.cli import DvcParserError, parse_args  # DVC's parser, not a copy of its rules
    said = logging.handlers.BufferingHandler(100)  # DVC logs its parser's refusal
    log = logging.getLogger("dvc")
    handlers, log.handlers = log.handlers, [said]  # its own print to the real stderr
    try:  # the usage and help that argparse prints go nowhere
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            parsed = parse_args(["exp", "run", *options])
    except (DvcParserError, SystemExit):  # argparse exits on --help, too
        reason = "; ".join(record.getMessage() for record in said.buffer)
        raise ValueError(f"`dvc exp run` would refuse the options {' '.join(options)}"
                         f"{f' ({reason})' if reason else ''}") from None
    finally:
        log.handlers = handlers
    return list(parsed.set_param or [])


def grid_points(text):
    """The workflow's grid input as a list of lists of assignments; ValueError if malformed."""
    points = json.loads(text)
    if not isinstance(points, list) or not points:
        raise ValueError("the grid must be a non-empty JSON list")
    points = [[p] if isinstance(p, str) else p for p in points]
    if not all(isinstance(p, list) and p and all(isinstance(a, str) for a in p) for p in points):
        raise ValueError("each point must be a key=value string or a list of them")
    return points


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", help="the sweep workflow's grid, a JSON list")
    parser.add_argument("options", nargs="*", help="dvc exp run options (after --)")
    args = parser.parse_args(argv)
    try:
        points = grid_points(args.grid) if args.grid else [set_params(args.options)]
    except ValueError as error:  # json.JSONDecodeError is one
        sys.exit(f"error: {'--grid: ' if args.grid else ''}{error}")
    keys = param_keys()
    problems = [p for point in points for a in point if (p := problem(a, keys))]
    if problems:
        sys.exit("\n".join(f"error: {p}" for p in problems))
    if args.grid:
        print(json.dumps(points, separators=(",", ":")))


if __name__ == "__main__":
    main()
