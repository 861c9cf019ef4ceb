"""Timing hooks for benchmarks/turnaround.py: Python imports this file at start-up in every
process that has this folder on PYTHONPATH. In a stage process (`python -m stages.<name>`)
with SAE_TIMING_LOG set, it adds up where the process's time goes and appends one JSON line
to that file when the process ends; anywhere else it does nothing.

Categories: the time of the outermost timed call (a prediction inside an epoch counts as
the epoch's), so they never overlap and the rest of the process is what none of them holds.
The wrapped functions are looked up by name, so the same hooks time older revisions too.
With SAE_TIMING_PURE_YAML set, ruamel.yaml finds no C parser in any process (DVC as it ran
before ruamel.yaml.clib was a dependency).
"""
import atexit
import functools
import importlib.abc
import json
import os
import sys
import time

# module: {function (or Class.method): category}
TIMED = {
    "sae.stage": {"parse_args": "arguments and data check"},
    "sae.params": {"load": "params", "guard": "params"},
    "sae.train": {"load_data": "data loading", "labelled_subset": "data loading",
                  "fit": "epochs", "predict": "forward passes"},
    "sae.pca": {"mse": "PCA", "mse_by_code_size": "PCA", "load": "checkpoint I/O"},
    "sae.model": {"load_checkpoint": "checkpoint I/O", "save_checkpoint": "checkpoint I/O"},
    "sae.live": {"read_history": "histories"},
    "sae.plots": {name: "figures" for name in (
        "training_curves", "reconstructions", "filters", "confusion_heatmap",
        "per_class_accuracy", "misclassified")},
    "dvclive.live": {"Live.__init__": "DVCLive", "Live.end": "DVCLive"},
}
IMPORTS = {"torch": "import torch", "matplotlib": "import matplotlib", "dvclive": "DVCLive"}
totals, marks, depth = {}, {}, [0]


def timed(category, function, on_enter=None):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        if depth[0]:  # inside another timed call: its time is that call's
            return function(*args, **kwargs)
        if on_enter:
            on_enter()
        depth[0] += 1
        began = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            depth[0] -= 1
            totals[category] = totals.get(category, 0.0) + time.perf_counter() - began
    return wrapper


def wrap(module, names):
    for dotted, category in names.items():
        owner, _, name = dotted.rpartition(".")
        holder = getattr(module, owner) if owner else module
        if hasattr(holder, name):
            mark = (lambda: marks.setdefault("main", time.time())) \
                if dotted == "parse_args" else None  # a stage's main() starts here
            setattr(holder, name, timed(category, getattr(holder, name), mark))


class TimedImports(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the loader the other finders give the modules above."""

    def find_spec(self, name, path, target=None):
        if name not in TIMED and name not in IMPORTS:
            return None
        for finder in sys.meta_path:
            spec = None if finder is self else finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        execute = spec.loader.exec_module

        def exec_module(module):
            (timed(IMPORTS[name], execute) if name in IMPORTS else execute)(module)
            wrap(module, TIMED.get(name, {}))
        spec.loader.exec_module = exec_module
        return spec


def process_start():
    """When this process started (wall clock, s), from /proc: before the interpreter ran.
    (Its age against /proc/uptime, both in 10 ms ticks; /proc/stat's boot time is whole
    seconds.)"""
    with open("/proc/self/stat") as f:
        ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))


def stage_name(argv):
    module = argv[argv.index("-m") + 1].split(".", 1)[1]
    options = dict(zip(argv, argv[1:]))
    where = "-".join(options[o] for o in ("--recipe", "--dataset") if o in options)
    return f"{module}@{where}" if where else module


def report(log, name, started):
    if "reported" in marks:  # at os._exit, then not again at Python's shutdown
        return
    marks["reported"] = True
    record = {"stage": name, "start": started, "site": marks["site"],
              "main": marks.get("main"), "end": time.time(), "spans": totals}
    with open(log, "a") as f:
        f.write(json.dumps(record) + "\n")


def reporting_before(exit_now, *report_args):
    """os._exit (a successful stage ends with it, sae.stage) that reports first."""
    def exit_reporting(code):
        report(*report_args)
        exit_now(code)
    return exit_reporting


def install():
    if os.environ.get("SAE_TIMING_PURE_YAML"):  # --pure-yaml: any process, dvc's too
        sys.modules["_ruamel_yaml"] = None  # ruamel.yaml then finds no C parser
    log = os.environ.get("SAE_TIMING_LOG")
    with open("/proc/self/cmdline", "rb") as f:
        argv = f.read().decode().split("\0")[:-1]
    if not log or "-m" not in argv or not argv[argv.index("-m") + 1].startswith("stages."):
        return
    marks["site"] = time.time()
    sys.meta_path.insert(0, TimedImports())
    report_args = (log, stage_name(argv), process_start())
    atexit.register(report, *report_args)
    os._exit = reporting_before(os._exit, *report_args)


install()
