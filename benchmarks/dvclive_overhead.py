"""What DVCLive adds to a training stage: opening and closing its logger once per stage, and
logging one epoch (the metrics a fine-tuning epoch logs), in milliseconds, beside an epoch's
time for scale.

    python -m benchmarks.dvclive_overhead [--epochs 50] [--repeats 5]

Run from the repository root, as the stages run: DVCLive then finds this DVC repository,
as it does inside `dvc repro`. It writes into a temporary folder and leaves nothing behind.
"""
import argparse
import statistics
import tempfile
import time

from sae.live import epoch_logger

ROW = {"train_loss": 0.25, "val_loss": 0.125, "val_accuracy": 0.5}  # fine-tuning's metrics


def one_stage(epochs):
    """(seconds to open and close the logger, seconds per logged epoch) of one stage."""
    with tempfile.TemporaryDirectory(dir=".") as folder:
        start = time.perf_counter()
        with epoch_logger(f"{folder}/live") as log:
            opened = time.perf_counter()
            for epoch in range(1, epochs + 1):
                log({"epoch": epoch, **ROW})
            logged = time.perf_counter()
        closed = time.perf_counter()
    return (opened - start) + (closed - logged), (logged - opened) / epochs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=50, help="epochs per stage (50)")
    parser.add_argument("--repeats", type=int, default=5, help="stages timed (5)")
    args = parser.parse_args(argv)
    first, _ = one_stage(1)  # as in a stage's process: it imports dvclive and dvc first
    runs = [one_stage(args.epochs) for _ in range(args.repeats)]
    fixed, per_epoch = (statistics.median(column) for column in zip(*runs))
    print(f"DVCLive: {1000 * first:.0f} ms for a stage process's first logger (imports "
          f"included); then, median of {args.repeats} stages of {args.epochs} epochs, "
          f"{1000 * fixed:.0f} ms to open and close one, {1000 * per_epoch:.1f} ms per epoch")


if __name__ == "__main__":
    main()
