"""The code-size study: stacked autoencoders against PCA at code sizes 16 to 256.

Hinton & Salakhutdinov (Science, 2006) showed a deep autoencoder's 30-unit code
reconstructing MNIST far better than PCA with 30 components. This study measures where the
pipeline's own network stands. For each dataset, code size k and seed, the tuned recipe's
784-400-k-400-784 autoencoder, trained for reconstruction (no masking noise, 10 epochs a
phase, the lecture's, whatever the recipe's pretraining), two ways:
  greedy       layer 1, then the stacked autoencoder from its weights (the pipeline);
  end_to_end   the whole autoencoder from random weights, for as many epochs as both phases;
beside PCA with k components (the reference stage's curve, fitted on every training image).
The test MSE is evaluate's `reconstruction_mse.stacked`; the classifier is no part of the
study, so its fine-tuning is cut to one epoch (evaluate needs one to run).

Every run is a queued DVC experiment named `rec-{method}-{dataset}-k{k}-s{seed}` (`rec30-...`
with --epochs 30); the runs of a dataset and seed share their layer 1 through DVC's run cache.
--print-grid prints the study as the sweep workflow's grid instead (one point a method, code
size and seed, every dataset; docs/sweeps.md); runs are found by their params, not their
names (scripts/experiments.py: `results`), so --collect-only reads a pulled sweep's too.

    python -m scripts.reconstruction                  # queue, run, collect (make reconstruction)
    python -m scripts.reconstruction --collect-only   # re-read the finished experiments
    python -m scripts.reconstruction --print-grid     # the runs as a sweep's grid (JSON)
    python -m scripts.reconstruction --epochs 30 --code-sizes 32 --methods greedy \
        --out plots/reconstruction/epochs30           # longer training, at one code size

Needs the reference stage's outputs (after `make pipeline` or `dvc repro`). Writes, in --out:
reconstruction.csv (one row per method, dataset, code size and seed), reconstruction_summary.csv
(mean, std, count and 95 % Student-t half-width of the test MSE over seeds, PCA's test MSE at
the same k and the ratio of the two means), reconstruction.png (test MSE against code size,
log scales) and reconstructions.png (test images at code size CODE_SHOWN: the original,
PCA, and each method's autoencoder of seed 0).
"""
import argparse
import json
import math
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import pandas as pd

from sae import params
from sae.atomic import write_text
from scripts import ablation, experiments

RECIPE = "tuned"
METHODS = ("greedy", "end_to_end")
CODE_SIZES = (16, 32, 64, 128, 256)
CODE_SHOWN = 32  # the code size of the reconstructions figure, Hinton & Salakhutdinov's scale
PREFIX = "rec"
# Each autoencoder phase trains the lecture's 10 epochs, whatever the recipe's pretraining
# (chosen for classification on validation: docs/sweeps.md): the study measures code size,
# and its runs stay the same runs when the recipe's pretraining changes.
EPOCHS = 10


def settings(method, k, recipe, epochs=None):
    """The params a run changes in the tuned recipe, as `-S key=value` assignments; with
    `epochs`, each autoencoder phase trains that long (end to end: both phases' sum)."""
    width = recipe.pretrain_layer1.layers[1]
    changes = {"pretrain_layer1.corruption": 0, "stack_layer2.corruption": 0,
               "stack_layer2.layers": f"[{width},{k}]",
               "finetune_classifier.layers": f"[{k},{params.N_CLASSES}]",
               "finetune_classifier.epochs": 1}
    if epochs:
        recipe = replace(recipe, pretrain_layer1=replace(recipe.pretrain_layer1, epochs=epochs),
                         stack_layer2=replace(recipe.stack_layer2, epochs=epochs))
        changes["pretrain_layer1.epochs"] = epochs
        if method == "greedy":  # the end-to-end arm sets its own
            changes["stack_layer2.epochs"] = epochs
    # The end-to-end arm is the ablation's: one definition of what it changes.
    return ([f"{RECIPE}.{key}={value}" for key, value in changes.items()]
            + ablation.arm_settings(method, RECIPE, recipe))


def run_name(method, dataset, k, seed, epochs=None):
    """rec-greedy-mnist-k32-s0, or rec30-... for runs trained 30 epochs a phase."""
    return f"{PREFIX}{'' if epochs in (None, EPOCHS) else epochs}-{method}-{dataset}-k{k}-s{seed}"


def runs(p, code_sizes, seeds, methods=METHODS):
    """(method, dataset, k, seed) of every run, in queue order: greedy first, and the
    datasets alternating, so that two workers train the two datasets' layer 1 of a seed
    side by side and every later run of that seed takes its layer 1 from the run cache."""
    return [(method, dataset, k, seed) for method in methods for seed in seeds
            for k in code_sizes for dataset in p.datasets]


def point_settings(p, method, k, seed, epochs=None):
    """A point's `-S` assignments: its seed, and what its method and code size change."""
    return [f"common.seed={seed}", *settings(method, k, p.recipe(RECIPE), epochs)]


def queue(p, code_sizes, seeds, methods=METHODS, epochs=None):
    for method, dataset, k, seed in runs(p, code_sizes, seeds, methods):
        experiments.queue(run_name(method, dataset, k, seed, epochs),
                          point_settings(p, method, k, seed, epochs),
                          f"evaluate@{RECIPE}-{dataset}")


def points(p, code_sizes, seeds, methods=METHODS):
    """The distinct (method, k, seed) of the runs: a sweep point runs every dataset."""
    return list(dict.fromkeys((method, k, seed)
                              for method, _, k, seed in runs(p, code_sizes, seeds, methods)))


def collect(p, points, epochs=None):
    """One row per run of `points` that a finished experiment holds, found by its params:
    method, dataset, k, seed, test MSE (and PCA's at that k, as evaluate measured it), and
    the experiment's commit."""
    wanted = {point: (RECIPE, point_settings(p, *point, epochs)) for point in points}
    rows = []
    for ((method, k, seed), dataset), (rev, data) in experiments.results(
            wanted, p.datasets).items():
        values = experiments.metrics_of(data, f"metrics/{RECIPE}/{dataset}.json")
        rows.append({"method": method, "dataset": dataset, "code_size": k, "seed": seed,
                     "test_mse": values.get("reconstruction_mse.stacked"),
                     "pca_test_mse": values.get("reconstruction_mse.pca_stacked"), "rev": rev})
    if not rows:
        sys.exit("error: no finished experiment holds a run of the code-size study: run it "
                 "(make reconstruction), or pull a sweep's experiments (docs/sweeps.md)")
    return pd.DataFrame(rows).sort_values(["dataset", "code_size", "method", "seed"])


def output(stage, suffix=""):
    """The path of the output of a dvc.yaml stage whose name ends with `suffix`."""
    _, outs = experiments.stage_paths(stage)
    return next(out for out in outs if out.endswith(suffix))


def pca_curves(datasets):
    """{dataset: Series of PCA's test MSE indexed by code size}, from the reference stage."""
    curves = {}
    for dataset in datasets:
        path = output(f"reference@{dataset}", ".csv")
        if not Path(path).is_file():
            raise SystemExit(f"error: {path} is missing; run `dvc repro reference@{dataset}`")
        curves[dataset] = pd.read_csv(path).set_index("code_size").test_mse
    return curves


def summarise(table, curves):
    """Mean, std, count and 95 % interval of the test MSE per dataset, code size and method,
    with PCA's test MSE at that code size and the autoencoder's mean as a multiple of it."""
    summary = experiments.summarise(table, ["dataset", "code_size", "method"], ["test_mse"])
    summary["pca_test_mse"] = [curves[d][k] for d, k in zip(summary.dataset, summary.code_size)]
    summary["ratio_to_pca"] = summary.test_mse_mean / summary.pca_test_mse
    return summary.sort_values(["dataset", "code_size", "method"])


def crossings(summary):
    """{(dataset, method): k} where the autoencoder's mean test MSE meets PCA's, interpolated
    in log-log between the two study sizes around it (None: it does not cross in range)."""
    found = {}
    for (dataset, method), part in summary.groupby(["dataset", "method"], sort=False):
        ratio = part.set_index("code_size").ratio_to_pca.sort_index()
        found[dataset, method] = None
        for (k1, r1), (k2, r2) in zip(ratio.items(), list(ratio.items())[1:]):
            if (r1 < 1) != (r2 < 1):
                step = math.log(k2 / k1) * math.log(r1) / (math.log(r1) - math.log(r2))
                found[dataset, method] = round(k1 * math.exp(step))
                break
    return found


def pipeline_points(datasets):
    """{dataset: (code size, test MSE)} of the pipeline's own tuned stacked autoencoder,
    trained with masking noise, from its committed metrics (evaluate's output)."""
    import json

    points = {}
    for dataset in datasets:
        metrics = json.loads(Path(output(f"evaluate@{RECIPE}-{dataset}", ".json")).read_text())
        code = params.load().recipe(RECIPE).stack_layer2.layers[1]
        points[dataset] = (code, metrics["reconstruction_mse"]["stacked"])
    return points


def figure(summary, curves, pipeline, path):
    """Test MSE against code size, log scales: PCA's curve, both autoencoders' means with
    their 95 % intervals, half of PCA (the aim at k = 32) dotted, and the pipeline's own
    denoising autoencoder; one panel a dataset."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sae.datasets import DATASETS
    from sae.plots import save_png

    fig, axes = plt.subplots(1, len(curves), figsize=(5.6 * len(curves), 4.4), squeeze=False,
                             layout="constrained")
    for ax, (dataset, curve) in zip(axes.flat, curves.items()):
        low, high = summary.code_size.min(), summary.code_size.max()
        shown = curve[(curve.index >= low / 2) & (curve.index <= high * 1.5)]
        ax.plot(shown.index, shown.values, color="black", label="PCA")
        ax.plot(shown.index, shown.values / 2, color="gray", linestyle=":", label="PCA / 2")
        for method in METHODS:
            part = summary[(summary.dataset == dataset) & (summary.method == method)]
            ax.errorbar(part.code_size, part.test_mse_mean, yerr=part.test_mse_ci95.fillna(0),
                        marker="o", capsize=3, label=method.replace("_", " "))
        ax.plot(*pipeline[dataset], marker="*", markersize=12, linestyle="none",
                color="tab:red", label=f"pipeline's {RECIPE} recipe (masking noise)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set(title=DATASETS[dataset].title, xlabel="code size (units or components)",
               ylabel="test MSE per pixel")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    fig.suptitle("Reconstruction: 784-400-k-400-784 autoencoders against PCA, mean and 95 % "
                 "t-interval over seeds")
    save_png(fig, path)


def experiment_checkpoint(path, rev, dataset):
    """The network an experiment's commit `rev` holds at `path` (from DVC's cache)."""
    import dvc.api

    from sae import model

    with tempfile.TemporaryDirectory() as scratch, \
            dvc.api.open(path, rev=rev, mode="rb") as saved:
        copy = Path(scratch) / Path(path).name
        copy.write_bytes(saved.read())
        return model.load_checkpoint(copy, dataset, RECIPE)


def reconstructions(table, datasets, path, k=CODE_SHOWN, seed=0):
    """Test images and their reconstructions at code size k, every dataset: the original, PCA,
    and each method's autoencoder of `seed` (read from its experiment's commit)."""
    from sae import pca, plots
    from sae.datasets import DATASETS, load_split
    from sae.train import predict

    shown = params.load().evaluate.examples
    rows = []
    for dataset in datasets:
        data = output(f"download@{dataset}")
        fitted = pca.load(output(f"reference@{dataset}", ".pt"), k)
        stacked = output(f"stack_layer2@{RECIPE}-{dataset}", ".pt")
        images = load_split(data, train=False, limit=shown)[0].double()
        title = DATASETS[dataset].title
        rows += [(f"{title}\noriginal", images), (f"PCA-{k}", pca.reconstruct(fitted, images, k))]
        for method in METHODS:
            run = table[(table.dataset == dataset) & (table.method == method)
                        & (table.code_size == k) & (table.seed == seed)]
            if len(run):
                net = experiment_checkpoint(stacked, run.rev.iloc[0], dataset)
                rows.append((method.replace("_", " "), predict(net.double(), images, len(images))))
    plots.reconstructions(path, [(label, x.detach().numpy()) for label, x in rows],
                          f"Code size {k} (seed {seed})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--code-sizes", type=int, nargs="+", default=list(CODE_SIZES))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="epochs of each "
                        f"autoencoder phase (end to end: twice that); default {EPOCHS}")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default="plots/reconstruction")
    parser.add_argument("--collect-only", action="store_true")
    parser.add_argument("--print-grid", action="store_true",
                        help="print the runs as the sweep workflow's grid; run nothing")
    args = parser.parse_args(argv)
    if args.print_grid and args.collect_only:
        sys.exit("error: --print-grid prints the whole study and runs nothing: not with "
                 "--collect-only")
    p = params.load()
    methods = [m for m in METHODS if m in args.methods]  # greedy first
    study = points(p, args.code_sizes, args.seeds, methods)
    if args.print_grid:
        print(json.dumps([point_settings(p, *point, args.epochs) for point in study]))
        return
    names = [run_name(*run, args.epochs) for run in runs(p, args.code_sizes, args.seeds, methods)]
    curves = pca_curves(p.datasets)  # before the runs: a missing reference stops it early
    if not args.collect_only:
        experiments.remove_earlier(names)
        queue(p, args.code_sizes, args.seeds, methods, args.epochs)
        experiments.run_queue(args.jobs)
    table = collect(p, study, args.epochs)
    summary = summarise(table, curves)
    out = Path(args.out)
    write_text(out / "reconstruction.csv", table.drop(columns="rev").to_csv(index=False))
    write_text(out / "reconstruction_summary.csv", summary.to_csv(index=False))
    figure(summary, curves, pipeline_points(p.datasets), out / "reconstruction.png")
    reconstructions(table, p.datasets, out / "reconstructions.png")
    print(summary.to_string(index=False))
    for (dataset, method), k in crossings(summary).items():
        print(f"{dataset}, {method}: " + (f"as good as PCA at a code of about {k} units; better "
                                          f"below, worse above" if k else "no crossing in range"))


if __name__ == "__main__":
    main()
