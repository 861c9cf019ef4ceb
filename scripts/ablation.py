"""The pretraining ablation: does greedy layer-wise pretraining help?

For each recipe in params.yaml, dataset and seed, four arms of the same network:
  greedy          layer 1, then the stacked autoencoder, then fine-tuning (the pipeline);
  end_to_end      the deep 784-400-256-400-784 autoencoder from random weights, for as many
                  epochs as layer 1 and stacking together, then fine-tuning;
  no_pretraining  fine-tuning from random weights, with the same fine-tuning budget;
  linear_probe    the greedy encoder frozen, only the 256-10 layer trained.

Every run is a DVC experiment, queued and run by DVC's workers (`-j` at a time, each with
cores / jobs threads); runs that share stages with an earlier one (same params and data)
take those from DVC's run cache. Results are read back through `dvc exp show --json`.

    python -m scripts.ablation                  # the whole study: queue, run, collect
    python -m scripts.ablation --collect-only   # re-read the finished experiments

writes, in --out: ablation.csv (one row per arm, recipe, dataset and seed),
ablation_summary.csv (mean, std, count over seeds and the half-width of the mean's 95 %
Student-t interval, `<metric>_ci95`) and ablation.png.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from sae import params
from sae.atomic import write_text
from scripts import mean_ci95

ARMS = ("greedy", "end_to_end", "no_pretraining", "linear_probe")
LABELS = ("greedy", "end to end", "no\npretraining", "linear\nprobe")
PREFIX = "abl"
METRICS = {"test_accuracy": "test_accuracy", "test_nll": "test_nll",
           "mse_layer1": "reconstruction_mse.layer1", "mse_stacked": "reconstruction_mse.stacked",
           "mse_pca_stacked": "reconstruction_mse.pca_stacked"}


def arm_settings(arm, recipe_name, recipe):
    """The params an arm changes in one recipe, as `-S key=value` assignments."""
    epochs = recipe.pretrain_layer1.epochs + recipe.stack_layer2.epochs
    changes = {"greedy": {},
               "end_to_end": {"stack_layer2.init": "random", "stack_layer2.epochs": epochs},
               "no_pretraining": {"finetune_classifier.init": "random"},
               "linear_probe": {"finetune_classifier.train": "head"}}[arm]
    return [f"{recipe_name}.{key}={value}" for key, value in changes.items()]


def run_name(arm, recipe, dataset, seed):
    return f"{PREFIX}-{arm}-{recipe}-{dataset}-s{seed}"


def dvc(*args, env=None):
    done = subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True,
                          text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"error: dvc {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def remove_earlier(names):
    """Remove the experiments of an earlier study, so that every name is this study's."""
    earlier = set(dvc("exp", "list", "-A", "--name-only").split()) & set(names)
    if earlier:
        dvc("exp", "remove", *sorted(earlier))


def queue(p, seeds):
    """Queue every run, greedy arms first so that the others find their stages cached."""
    names = []
    for arm in ARMS:
        for recipe_name, recipe in p.recipes.items():
            for dataset in p.datasets:
                for seed in seeds:
                    name = run_name(arm, recipe_name, dataset, seed)
                    sets = [f"common.seed={seed}", *arm_settings(arm, recipe_name, recipe)]
                    dvc("exp", "run", "--queue", "-n", name,
                        *(arg for s in sets for arg in ("-S", s)),
                        f"evaluate@{recipe_name}-{dataset}")
                    names.append(name)
    return names


def run_queue(jobs):
    """Start `jobs` workers, each stage with cores / jobs threads, and wait for the queue."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    dvc("queue", "start", "-j", str(jobs), env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
    while any(state in dvc("queue", "status") for state in ("Queued", "Running")):
        time.sleep(10)


def collect(names):
    """One row per finished run: arm, recipe, dataset, seed and the metrics."""
    rows = []
    # All commits: the study's baseline need not be HEAD any more when it is collected.
    for baseline in json.loads(dvc("exp", "show", "--json", "-A")):
        for exp in baseline.get("experiments") or []:
            # Queued, running or failed runs show their baseline's metrics: skip them.
            state = (exp.get("executor") or {}).get("state", "success")
            if exp.get("name") in names and state == "success":
                rows.append(row(exp["name"], exp["revs"][0]["data"]))
    return pd.DataFrame(rows).sort_values(["recipe", "dataset", "arm", "seed"])


def row(name, data):
    _, arm, recipe, dataset, seed = name.split("-")
    found = {"arm": arm, "recipe": recipe, "dataset": dataset, "seed": int(seed[1:])}
    metrics = (data.get("metrics") or {}).get(f"metrics/{recipe}/{dataset}.json") or {}
    flat = pd.json_normalize(metrics.get("data") or {}).to_dict("records")
    values = flat[0] if flat else {}
    return found | {column: values.get(key) for column, key in METRICS.items()}


def summarise(table):
    """Mean, standard deviation (over seeds, ddof=1), count and 95 % t-interval half-width
    of the mean per arm, recipe, dataset; one seed has neither spread nor interval."""
    grouped = table.groupby(["recipe", "dataset", "arm"], sort=False)
    summary = grouped[["test_accuracy", "test_nll"]].agg(["mean", "std", "count"])
    summary.columns = ["_".join(c) for c in summary.columns]
    for metric in ("test_accuracy", "test_nll"):
        summary.insert(summary.columns.get_loc(f"{metric}_count") + 1, f"{metric}_ci95", [
            mean_ci95(std, n) if n > 1 else float("nan")
            for std, n in zip(summary[f"{metric}_std"], summary[f"{metric}_count"])])
    return summary.reset_index()


def figure(table, path):
    """Test accuracy per arm, one panel per recipe and dataset, every seed a dot."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sae.plots import save_png

    panels = table[["recipe", "dataset"]].drop_duplicates().values.tolist()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False,
                             layout="constrained")
    for ax, (recipe, dataset) in zip(axes.flat, panels):
        part = table[(table.recipe == recipe) & (table.dataset == dataset)]
        for x, arm in enumerate(ARMS):
            values = 100 * part[part.arm == arm].test_accuracy.dropna()
            ax.plot([x] * len(values), values, "o", alpha=0.7, color="tab:blue")
            if len(values):
                ax.hlines(values.mean(), x - 0.3, x + 0.3, color="tab:red")
        ax.set_xticks(range(len(ARMS)), LABELS)
        ax.set(title=f"{recipe}, {dataset}", ylabel="test accuracy (%)")
        ax.grid(alpha=0.3)
    fig.suptitle("Pretraining ablation: test accuracy, every seed a dot, the mean a red line")
    save_png(fig, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default="plots/ablation")
    parser.add_argument("--collect-only", action="store_true")
    args = parser.parse_args(argv)
    p = params.load()
    names = [run_name(arm, r, d, s) for arm in ARMS for r in p.recipes for d in p.datasets
             for s in args.seeds]
    if not args.collect_only:
        remove_earlier(names)
        queue(p, args.seeds)
        run_queue(args.jobs)
    table = collect(set(names))
    out = Path(args.out)
    write_text(out / "ablation.csv", table.to_csv(index=False))
    write_text(out / "ablation_summary.csv", summarise(table).to_csv(index=False))
    figure(table, out / "ablation.png")
    print(summarise(table).to_string(index=False))


if __name__ == "__main__":
    main()
