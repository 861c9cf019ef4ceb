"""Check the params a sweep sets, before anything is queued: every key must be a param of this
project's params.yaml, as a dotted path. DVC's `-S` also takes a `file:` prefix and writes
whatever YAML file it names, `../outside.yaml` included; a sweep has no business there.

    python -m scripts.sweep_keys -- <dvc exp run options>   # exit 1 if a key is bad
    python -m scripts.sweep_keys --grid '<JSON list>'       # .github/workflows/sweep.yml

in the project folder (it reads ./params.yaml); scripts/sweep.sh runs it by its path, so that
it works from any project folder, and it imports nothing of this project for that reason.

--grid takes the sweep workflow's grid (a list with one entry per experiment: a `key=value`
string or a list of them) and prints it as the matrix, each entry a list; or exits 1.
"""
import argparse
import json
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
    if not equals:
        return f"{assignment!r} is no key=value assignment; {ALLOWED}"
    if not KEY.fullmatch(key):
        return f"the key {key!r} of {assignment!r} is no dotted params.yaml key; {ALLOWED}"
    if key not in keys:
        return f"the key {key!r} of {assignment!r} is no param of params.yaml; {ALLOWED}"
    return None


def set_params(options):
    """The assignments of `-S`/`--set-param` among `dvc exp run` options."""
    found, options = [], iter(options)
    for option in options:
        if option in ("-S", "--set-param"):
            found.append(next(options, ""))
        elif option.startswith("--set-param="):
            found.append(option.split("=", 1)[1])
        elif option.startswith("-S"):
            found.append(option[2:])
    return found


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
        sys.exit(f"error: --grid: {error}")
    keys = param_keys()
    problems = [p for point in points for a in point if (p := problem(a, keys))]
    if problems:
        sys.exit("\n".join(f"error: {p}" for p in problems))
    if args.grid:
        print(json.dumps(points, separators=(",", ":")))


if __name__ == "__main__":
    main()
