"""Where a one-param experiment's time goes (issue 24): the lecture recipe's
`dvc exp run -S lecture.finetune_classifier.lr=X evaluate@lecture-mnist
evaluate@lecture-fashion_mnist`, split into the fine-tuning epochs, each stage process's
start-up and own work outside them, and DVC's own time; then a no-op `dvc repro` of the
recipe.

    python -m benchmarks.turnaround               # after make pipeline; about 5 minutes
    python -m benchmarks.turnaround --repeats 3 --profile-dvc --rev 8324c56 --pure-yaml
                                          # as it was before issue 24's changes

It runs in a scratch clone of HEAD whose baseline comes from this repository's DVC cache (a
local remote, pulled), so this workspace is left alone; every repeat sets another lr, so
each really trains. benchmarks/timing_hooks/sitecustomize.py, on the stage processes'
PYTHONPATH, adds up where each stage process's time goes (epochs, imports, data, forward
passes, figures, ...); DVC's own time is the wall time less the stage processes' lives
(DVC runs them one after the other). --profile-dvc runs one more experiment under py-spy
(`pip install -e '.[bench]'`), which samples the dvc process 200 times a second without
stopping it, and splits its time by what DVC was doing. Prints Markdown tables, medians
over the repeats.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOOKS = ROOT / "benchmarks" / "timing_hooks"
KEY = "lecture.finetune_classifier.lr"
TARGETS = ["evaluate@lecture-mnist", "evaluate@lecture-fashion_mnist"]
NO_OP = ["repro", "--glob", "evaluate@lecture-*"]
RUN_TIMEOUT_S = 1800  # one experiment: 33-45 s on 2 cores here
STEP_TIMEOUT_S = 600
# Inside a stage process, in the table's order; "start-up" is the interpreter and imports.
PARTS = ("start-up", "epochs", "data loading", "forward passes", "PCA", "figures",
         "checkpoint I/O", "histories", "DVCLive", "params", "arguments and data check")
# DVC's own time, by py-spy's samples of the dvc process: a sample counts for the first
# (outermost) frame of its stack that one of these (file, function) names; "stage
# processes" is DVC waiting for a stage command, the stage processes' own time.
DVC_PARTS = (
    ("stage processes", [("dvc/stage/run.py", "cmd_run")]),
    ("writing dvc.lock", [("dvc/dvcfile.py", "dump_stages")]),
    ("reading dvc.yaml, dvc.lock and params.yaml", [("dvc/repo/index.py", "from_repo"),
                                                    ("dvc/repo/stage.py", "collect")]),
    ("checking what changed (hashes of deps, params)", [("dvc/stage/__init__.py", "changed")]),
    ("hashing and caching outputs", [("dvc/stage/__init__.py", "save"),
                                     ("dvc/stage/__init__.py", "commit")]),
    ("run cache", [("dvc/stage/cache.py", "save"), ("dvc/stage/cache.py", "restore")]),
)
FALLBACKS = (("other pipeline work", "dvc/repo/reproduce.py"),
             ("experiment set-up and commit", "dvc/repo/experiments/"),
             ("start-up and imports", "<frozen importlib._bootstrap>"))


def sh(args, cwd, env=None, timeout_s=STEP_TIMEOUT_S):
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout_s)
    if done.returncode:
        sys.exit(f"error: `{' '.join(args)}` failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


def scratch_clone(folder, rev):
    """A clone at `rev` with its results pulled from this repository's cache."""
    sh(["git", "clone", "-q", str(ROOT), str(folder)], ROOT)
    sh(["git", "checkout", "-q", rev], folder)
    cache = sh([dvc_bin(), "cache", "dir"], ROOT).strip()
    sh([dvc_bin(), "remote", "add", "--local", "-d", "source", cache], folder)
    pulled, changed = (subprocess.run([dvc_bin(), *args, *TARGETS], cwd=folder,
                                      capture_output=True, timeout=STEP_TIMEOUT_S).returncode
                       for args in (["pull", "-q", "--with-deps"], ["status", "-q"]))
    if pulled or changed:  # `dvc status -q` exits 1 when a stage would run
        sys.exit(f"error: this repository's DVC cache lacks the lecture recipe's results as "
                 f"{rev}'s dvc.lock names them; run `make pipeline` (at {rev}) first")
    return folder


def dvc_bin():
    return str(Path(sys.executable).with_name("dvc"))


def hooked_env(log=None):
    """The environment with the timing hooks on PYTHONPATH (and the venv first on PATH)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(HOOKS), os.environ.get("PYTHONPATH")])),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return env | ({"SAE_TIMING_LOG": str(log)} if log else {})


def timed_experiment(clone, value, log, spy=()):
    """Wall seconds of one experiment, its stage processes' records appended to `log`."""
    began = time.perf_counter()
    sh([*spy, dvc_bin(), "exp", "run", "-S", f"{KEY}={value}", *TARGETS], clone,
       hooked_env(log), RUN_TIMEOUT_S)
    return time.perf_counter() - began


def breakdown(wall, records):
    """{part: seconds} of one experiment from its stage processes' records."""
    parts = dict.fromkeys(PARTS, 0.0) | {"rest inside stage processes": 0.0}
    for record in records:
        spans = {k: v for k, v in record["spans"].items() if not k.startswith("import ")}
        main = record["main"] or record["end"]  # (imports are timed, and within start-up)
        parts["start-up"] += main - record["start"]
        for name, seconds in spans.items():
            parts[name] += seconds
        parts["rest inside stage processes"] += record["end"] - main - sum(spans.values())
    lives = sum(r["end"] - r["start"] for r in records)
    return parts | {"DVC's own (wall less the stage processes)": wall - lives, "wall": wall}


def per_stage(records):
    """{stage: (life, start-up, epochs)} of one experiment."""
    return {r["stage"]: (r["end"] - r["start"], (r["main"] or r["end"]) - r["start"],
                         r["spans"].get("epochs", 0.0)) for r in records}


def dvc_profile(clone, log, value):
    """{part: seconds} of one experiment's dvc process, by py-spy's samples (DVC_PARTS)."""
    samples = Path(clone).parent / "dvc-samples.txt"
    spy = [str(Path(sys.executable).with_name("py-spy")), "record", "--idle", "--nonblocking",
           "--format", "raw", "--rate", "200", "-o", str(samples), "--"]
    if not Path(spy[0]).exists():
        sys.exit("error: --profile-dvc needs py-spy: pip install -e '.[bench]'")
    wall = timed_experiment(clone, value, log, spy=spy)
    counts = {}
    for line in samples.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if frames[0].startswith("<module> ("):  # the main thread's; others wait in threading
            part = dvc_part(frames)
            counts[part] = counts.get(part, 0) + int(count)
    total = sum(counts.values())
    return {part: wall * n / total for part, n in sorted(counts.items(), key=lambda kv: -kv[1])}


def dvc_part(frames):
    """The part of DVC_PARTS (or FALLBACKS) that a stack of py-spy frames, outermost first,
    belongs to."""
    for frame in frames:  # "Class.function (file:line)", the file within site-packages
        function, _, where = frame.partition(" (")
        function = function.rpartition(".")[2]
        for part, names in DVC_PARTS:
            if any(function == name and f"/{file}:" in f"/{where}" for file, name in names):
                return part
    return next((part for part, file in FALLBACKS if any(file in f for f in frames)), "other")


def no_op_seconds(clone, times=5):
    """Median wall seconds of `dvc repro` of the recipe with nothing to do."""
    walls = []
    for _ in range(times):
        began = time.perf_counter()
        out = sh([dvc_bin(), *NO_OP], clone, hooked_env())
        walls.append(time.perf_counter() - began)
        if "Running stage" in out:
            sys.exit("error: the no-op repro ran a stage")
    return statistics.median(walls)


def table(rows, header):
    lines = [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}"]
    return "\n".join(lines + [f"| {' | '.join(map(str, row))} |" for row in rows])


def report(runs, no_op, dvc_parts):
    parts = {name: statistics.median(run[0][name] for run in runs) for name in runs[0][0]}
    wall, epochs = parts["wall"], parts["epochs"]
    print(table([(name, f"{s:.1f}", f"{100 * s / wall:.0f} %") for name, s in parts.items()],
                ["part of the experiment", "seconds", "share of wall"]))
    print(f"\noverhead (wall less epochs) / epochs = {(wall - epochs) / epochs:.2f} "
          f"(target at most 0.5); no-op `dvc {' '.join(NO_OP)}`: {no_op:.2f} s "
          f"(target under 1.5 s, median of 5)")
    stages = runs[len(runs) // 2][1]
    print("\n" + table([(name, f"{life:.1f}", f"{start:.1f}", f"{ep:.1f}")
                        for name, (life, start, ep) in stages.items()],
                       ["stage process (middle repeat)", "life s", "start-up s", "epochs s"]))
    evaluate = [r for r in runs[len(runs) // 2][2] if r["stage"].startswith("evaluate")]
    for record in evaluate:
        own = record["end"] - record["main"]
        forward = record["spans"].get("forward passes", 0.0)
        print(f"\n{record['stage']}: work after start-up {own:.2f} s = "
              f"{own / forward:.1f}x its forward passes ({forward:.2f} s; target at most 2x)")
    if dvc_parts:
        print("\n" + table([(part, f"{s:.1f}") for part, s in dvc_parts.items()],
                           ["the dvc process of one more experiment, by py-spy", "seconds"]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile-dvc", action="store_true")
    parser.add_argument("--rev", default="HEAD", help="the commit to measure (HEAD)")
    parser.add_argument("--pure-yaml", action="store_true",
                        help="DVC without ruamel.yaml's C parser (as before issue 24)")
    args = parser.parse_args(argv)
    if args.pure_yaml:
        os.environ["SAE_TIMING_PURE_YAML"] = "1"
    with tempfile.TemporaryDirectory() as scratch:
        clone = scratch_clone(Path(scratch) / "repo", args.rev)
        log, runs = Path(scratch) / "timing.jsonl", []
        for repeat in range(args.repeats):
            log.unlink(missing_ok=True)
            wall = timed_experiment(clone, round(0.2 + 0.1 * repeat, 2), log)
            records = [json.loads(line) for line in log.read_text().splitlines()]
            runs.append((breakdown(wall, records), per_stage(records), records))
        no_op = no_op_seconds(clone)
        dvc_parts = dvc_profile(clone, log, 0.15) if args.profile_dvc else None
        print(f"at {sh(['git', 'rev-parse', '--short', 'HEAD'], clone).strip()}"
              f"{', pure-Python YAML' if args.pure_yaml else ''}, {args.repeats} repeats, "
              f"{os.cpu_count()} cores\n")
        report(runs, no_op, dvc_parts)


if __name__ == "__main__":
    main()
