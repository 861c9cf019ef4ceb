"""What the portable CPU paths cost: one epoch of each training phase, as its stage trains it,
under SAE_CPU_PATHS=portable (ATen and MKL pinned to their AVX2 code, stages/__init__.py)
against native (each library picks its code for this CPU), at float32 and float64.

    python -m benchmarks.cpu_paths --data data/mnist

The settings are read when torch loads, so each measurement is its own process; the two
settings alternate (portable, native, portable, ...) so that a change in the machine's load
hits both alike, and each row gives the best epoch of each (the machine is shared and noisy:
the fastest epoch is the one least disturbed) and their ratio.
"""
import argparse
import os
import platform
import subprocess
import sys

PHASES = ("pretrain_layer1", "stack_layer2", "finetune_classifier")
SETTINGS = ("portable", "native")
WORKER_TIMEOUT_S = 600


def worker(data, recipe, phase_name, precision, epochs):
    """In a process that imported stages first: train `epochs` timed epochs after a warm-up,
    print each epoch's seconds."""
    import dataclasses

    import torch

    from benchmarks.train_speed import stage_trainer
    from sae import params
    from sae.train import load_data, setup

    p = params.load()
    recipe_params = p.recipe(recipe)
    common = dataclasses.replace(p.common, precision=precision)
    device = setup(common)
    images, labels = load_data(data, common, device, "train", recipe_params.split)
    test_images, test_labels = load_data(data, common, device, "test")
    epoch = stage_trainer(phase_name, recipe_params, images, labels, test_images, test_labels)
    print(torch.backends.cpu.get_cpu_capability(), *(f"{epoch():.4f}" for _ in range(epochs)))


def measure(args, recipe, phase, precision, setting):
    """(capability, epoch seconds) of one worker process under `setting`."""
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR")}
    done = subprocess.run([sys.executable, "-m", "benchmarks.cpu_paths", "--worker", recipe,
                           phase, precision, "--data", args.data, "--epochs", str(args.epochs)],
                          env=env | {"SAE_CPU_PATHS": setting}, capture_output=True,
                          text=True, timeout=WORKER_TIMEOUT_S)
    if done.returncode != 0:
        sys.exit(f"error: the {setting} worker failed:\n{done.stderr}")
    capability, *seconds = done.stdout.split()
    return capability, list(map(float, seconds))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/mnist")
    parser.add_argument("--recipes", nargs="+", default=["lecture", "tuned"])
    parser.add_argument("--precisions", nargs="+", default=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=3, help="processes per setting")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per process")
    parser.add_argument("--worker", nargs=3, metavar=("RECIPE", "PHASE", "PRECISION"))
    args = parser.parse_args(argv)
    if args.worker:
        import stages  # noqa: F401  the stages' environment, before torch loads
        return worker(args.data, *args.worker, args.epochs)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"best epoch seconds of {args.repeats} x {args.epochs} epochs per setting\n")
    print("| recipe | phase | precision | portable (AVX2) | native | portable / native |")
    print("| --- | --- | --- | --- | --- | --- |")
    for recipe in args.recipes:
        for precision in args.precisions:
            for phase in PHASES:
                seconds = {setting: [] for setting in SETTINGS}
                for _ in range(args.repeats):
                    for setting in SETTINGS:
                        capability, times = measure(args, recipe, phase, precision, setting)
                        seconds[setting] += times
                        seconds[f"{setting} capability"] = capability
                portable, native = (min(seconds[s]) for s in SETTINGS)
                print(f"| {recipe} | {phase} | {precision} | {portable:.2f} s "
                      f"({seconds['portable capability']}) | {native:.2f} s "
                      f"({seconds['native capability']}) | {portable / native:.2f} |",
                      flush=True)


if __name__ == "__main__":
    main()
