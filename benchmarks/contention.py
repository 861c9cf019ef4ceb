"""Training speed on a shared machine: the epoch time of each training stage alone, beside
one CPU-bound process (a busy Python loop) and beside a second training process, for the
OpenMP thread settings worth comparing (issue 17).

    python -m benchmarks.contention --data data/mnist
    python -m benchmarks.contention --data data/mnist --recipe tuned --settings a b e
    python -m benchmarks.contention --data data/mnist --quick        # a smoke run

OpenMP reads its variables once, when torch loads it, so every measurement is a worker
process of its own, started with one setting's environment: it trains each stage of the
recipe with sae.train.fit (the stages' own loop, on the CPU) for a warm-up epoch and
--epochs timed ones. The second training process runs the same worker, with the same
setting, in a loop. Settings and conditions take turns, round-robin, --repeats times, so
that a change in the machine's load hits all of them alike. The table gives the median
seconds per epoch, each condition as a ratio to the same setting alone, and each setting
alone as a ratio to setting a alone (today's default).
"""
import argparse
import contextlib
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONDITIONS = ("alone", "busy loop", "training")
OPENMP_VARIABLES = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS")


def thread_settings(cores):
    """{key: (description, environment)}: the settings the issue asks to compare."""
    fewer = max(1, cores - 1)
    return {
        "a": (f"{cores} threads, default wait", {"OMP_NUM_THREADS": cores}),
        "b": (f"{cores} threads, OMP_WAIT_POLICY=PASSIVE",
              {"OMP_NUM_THREADS": cores, "OMP_WAIT_POLICY": "PASSIVE"}),
        "c": (f"{cores} threads, GOMP_SPINCOUNT=10000",
              {"OMP_NUM_THREADS": cores, "GOMP_SPINCOUNT": "10000"}),
        "d": (f"{fewer} thread{'s' if fewer > 1 else ''}", {"OMP_NUM_THREADS": fewer}),
        "e": ("1 thread", {"OMP_NUM_THREADS": 1}),
        "f": (f"{cores} threads, GOMP_SPINCOUNT=1000",
              {"OMP_NUM_THREADS": cores, "GOMP_SPINCOUNT": "1000"}),
    }


# ------------------------------------------------------------- the worker (one setting)

def stage_network(recipe, name):
    """The network the stage trains, as params.yaml plans it (fresh weights: the speed is
    the same), with the stage's dropout and frozen layers."""
    from sae.model import StackedNet, planned_config
    net = StackedNet.from_config(planned_config(recipe, name))
    phase = getattr(recipe, name)
    if name == "finetune_classifier":
        net.set_dropout(phase.input_dropout, phase.dropout)
        if phase.train == "head":
            net.encoder.requires_grad_(False)
    return net


def train_stages(args, ready=None):
    """{stage: [seconds of each timed epoch]}; `ready()` is called once, after the first
    (warm-up) epoch."""
    from sae import params
    from sae.evaluation import classification_scores
    from sae.train import classification_loss, fit, load_data, predict, reconstruction_loss, setup
    p = params.load(ROOT / "params.yaml")
    common = dataclasses.replace(p.common, device="cpu", train_limit=args.train_limit,
                                 test_limit=args.train_limit and max(1, args.train_limit // 6))
    recipe, device = p.recipe(args.recipe), setup(common)
    split = recipe.split
    if args.train_limit and split.validation:  # hold out a sixth of a small training set
        split = dataclasses.replace(split, validation=max(1, args.train_limit // 6))
    # As the stage: it trains on the training part and scores validation or test each epoch.
    images, labels = load_data(args.data, common, device, "train", split)
    test_images, test_labels = load_data(args.data, common, device,
                                         "validation" if split.validation else "test", split)
    seconds = {}
    for name in args.stages:
        phase = dataclasses.replace(getattr(recipe, name), epochs=1 + args.epochs)
        classify = name == "finetune_classifier"
        stamps = [time.perf_counter()]

        def after_epoch(net):  # the stage's test pass is part of its epoch
            scores = (classification_scores(predict(net, test_images, phase.batch_size),
                                            test_labels) if classify else {})
            stamps.append(time.perf_counter())
            if ready and len(stamps) == 2 and name == args.stages[0]:
                ready()
            return scores
        with contextlib.redirect_stdout(sys.stderr):  # fit's epoch lines; stdout is the result
            fit(stage_network(recipe, name), images, labels if classify else None,
                classification_loss if classify else reconstruction_loss, phase, common.seed,
                name, after_epoch)
        seconds[name] = [b - a for a, b in zip(stamps[1:], stamps[2:])]  # after the warm-up
    return seconds


def worker(args):
    if not args.forever:
        print(json.dumps(train_stages(args)))
        return
    # The competing training process: it says when its warm-up epoch is done, then trains
    # until the parent stops it.
    stdout = sys.stdout  # fit's lines go to stderr while it runs
    train_stages(args, ready=lambda: print("ready", file=stdout, flush=True))
    while True:
        train_stages(args)


# ------------------------------------------------------------- the parent (all settings)

def environment(setting):
    """This process's environment without OpenMP variables, plus the setting's."""
    env = {k: v for k, v in os.environ.items() if k not in OPENMP_VARIABLES}
    return {**env, **{k: str(v) for k, v in setting.items()}, "PYTHONPATH": str(ROOT)}


def worker_command(args, *extra):
    return [sys.executable, "-m", "benchmarks.contention", "--worker", "--data", args.data,
            "--recipe", args.recipe, "--epochs", str(args.epochs), "--train-limit",
            str(args.train_limit), "--stages", *args.stages, *extra]


@contextlib.contextmanager
def competitor(condition, args, env):
    """The process that shares the machine with the measured worker, running."""
    if condition == "alone":
        yield
        return
    if condition == "busy loop":
        other = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    else:
        other = subprocess.Popen(worker_command(args, "--forever"), cwd=ROOT, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if other.stdout.readline().strip() != "ready":  # its warm-up epoch is done
            other.kill()
            sys.exit("error: the competing training process stopped before its first epoch")
    try:
        yield
    finally:
        other.kill()
        other.wait()


def measure(args, env, condition):
    """{stage: [epoch seconds]} of one worker beside `condition`'s competitor."""
    with competitor(condition, args, env):
        done = subprocess.run(worker_command(args), cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=3600)
    if done.returncode:
        sys.exit(f"error: the worker failed ({condition}):\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def table(args, settings, epochs):
    """Markdown rows: median s/epoch per condition and its ratios."""
    conditions = " | ".join(f"{c} s/epoch | x alone" for c in CONDITIONS[1:])
    rows = [f"| stage | setting | alone s/epoch | {conditions} | alone / {args.settings[0]} alone |",
            "|---|---|---|" + "---|---|" * (len(CONDITIONS) - 1) + "---|"]
    for name in args.stages:
        base = statistics.median(epochs[args.settings[0], "alone"][name])
        for key in args.settings:
            alone = statistics.median(epochs[key, "alone"][name])
            cells = [f"{statistics.median(epochs[key, c][name]):.2f} | "
                     f"{statistics.median(epochs[key, c][name]) / alone:.2f}"
                     for c in CONDITIONS[1:]]
            rows.append(f"| {name} | {key}: {settings[key][0]} | {alone:.2f} | "
                        f"{' | '.join(cells)} | {alone / base:.3f} |")
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/mnist", help="folder with the MNIST IDX files")
    parser.add_argument("--recipe", default="lecture")
    parser.add_argument("--stages", nargs="+", default=None,
                        help="training stages to time (default: all three)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per worker (2)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds over all conditions (3)")
    parser.add_argument("--settings", nargs="+", default=list("abcdef"), choices=list("abcdef"),
                        help="thread settings to compare (the first is the ratios' base)")
    parser.add_argument("--train-limit", type=int, default=0, help="first N training images")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 epoch, 1 round, 600 training images")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--forever", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from sae.params import PHASES
    args.stages = args.stages or list(PHASES)
    if not set(args.stages) <= set(PHASES):
        parser.error(f"--stages: {' '.join(args.stages)}; allowed: {' '.join(PHASES)}")
    if not Path(args.data).is_dir():
        parser.error(f"--data {args.data}: no such folder; give the folder with the MNIST "
                     f"IDX files (data/mnist after `dvc repro`)")
    if min(args.epochs, args.repeats) < 1:
        parser.error(f"--epochs {args.epochs}, --repeats {args.repeats}: each must be at least 1")
    if args.quick:
        args.epochs, args.repeats, args.train_limit = 1, 1, args.train_limit or 600
    if args.worker:
        return worker(args)
    cores = len(os.sched_getaffinity(0))
    settings = thread_settings(cores)
    epochs = {}  # (setting, condition): {stage: [seconds...]}
    load_before = os.getloadavg()
    for round_ in range(1, args.repeats + 1):
        for key in args.settings:
            env = environment(settings[key][1])
            for condition in CONDITIONS:
                print(f"round {round_}/{args.repeats}: setting {key}, {condition}",
                      file=sys.stderr, flush=True)
                for name, seconds in measure(args, env, condition).items():
                    epochs.setdefault((key, condition), {}).setdefault(name, []).extend(seconds)
    print(f"# {platform.machine()}, {cores} cores, torch {version('torch')}, "
          f"python {platform.python_version()}; "
          f"recipe {args.recipe}, {args.train_limit or 'all'} training images, {args.epochs} "
          f"timed epochs x {args.repeats} rounds; load average {load_before[0]:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after")
    print(table(args, settings, epochs))


if __name__ == "__main__":
    main()
