"""The pretraining ablation: does greedy layer-wise pretraining help, and with how many labels?

For each recipe in params.yaml (or --recipes), dataset, label budget and seed, four arms of
the same network:
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
    python -m scripts.ablation --recipes tuned --labels 100 1000 10000 0 --early-stopping \
        --seeds 0 1 2 3 4 --out plots/label_budget   # the label-budget study (make label-budget)
    python -m scripts.ablation --recipes tuned --arms greedy --seeds 0 1 2 3 4 \
        --out plots/tuned_seeds                      # the tuned recipe over 5 seeds
    python -m scripts.ablation ... --print-grid      # the runs as the sweep workflow's grid

--labels sets finetune_classifier.labels (N labelled images, N / 10 a class, drawn by the
seed; 0 = all) while the autoencoders learn from every training image: the pretraining
stages do not depend on it, so every budget takes them from DVC's run cache.

--early-stopping (the label-budget study) fine-tunes every arm at every budget by one rule
chosen on validation images, never on the test set: keep the weights of the epoch with the
best validation accuracy (finetune_classifier.keep = best), out of the recipe's epochs or
enough epochs for MIN_STEPS optimiser steps, whichever is more (100 labels are one batch an
epoch). Its runs are named budget-..., apart from the plain ablation's abl-... ones.

--fixed-length is the realistic protocol for small budgets (issue 25): with N labels,
nothing labelled beyond those N is read for any choice. A validation set as small as the
labelled set cannot tell apart models a few points apart (Oliver et al. 2018, "Realistic
Evaluation of Deep Semi-Supervised Learning Algorithms"), so no epoch is chosen at all:
fine-tuning runs as many epochs as --early-stopping may (the same rule) and keeps the last
weights (finetune_classifier.keep = last), where the recipe's cosine schedule has brought
the learning rate to 0. Its runs are named fixed-....

--set KEY=VALUE ... studies a variant of the recipe: every run makes these assignments besides
its own (checked as scripts/sweep_keys.py checks a sweep's), is named with a tag of them
(abl-v1a2b3c-greedy-...), so that it never replaces the plain study's run, and is collected by
its params like any other. The pretraining grid's selected point was so run over
the seeds of plots/tuned_seeds, and every study that inherits it, before it replaced the
recipe's own (docs/sweeps.md).

--print-grid prints the study's points as one JSON list for .github/workflows/sweep.yml's
`grid` input, and runs nothing: a point is an arm, recipe, budget and seed, its `-S`
assignments, and covers every dataset (a sweep point runs the whole pipeline). After the
sweep, `dvc exp pull origin` and the same command with --collect-only (docs/sweeps.md).
Runs are found by their params, not their names (scripts/experiments.py: `results`), so the
sweep's experiments, named at random by DVC, count as the local queue's do.

--resume makes --out's ablation.csv the study's bank: its rows are kept and their runs (and
runs that finished experiments hold, local or pulled) are not run again; the others are added.
A row keeps only while it was made with what the study runs now: each carries params_digest,
a digest of its recipe's params (params.yaml's `common` and recipe sections, with --set) and
protocol, and rows of another digest (params.yaml changed since) are run again, said in a line.
A long study can so be run a few seeds at a time, over several sessions. A study stopped
half-way (its process killed, or the queue given up on: scripts/run_queue.py says what to
do) resumes with the same command: runs still queued or running are waited for, not queued
again, and failed ones are queued again.

writes, in --out: ablation.csv (one row per arm, recipe, dataset, label budget and seed),
ablation_summary.csv (mean, std, count over seeds and the half-width of the mean's 95 %
Student-t interval, `<metric>_ci95`), gain_summary.csv (each arm's test accuracy minus no
pretraining's on the same seed, so on the same labelled images: mean and paired 95 %
t-interval) and ablation.png (with several budgets: test accuracy, and the gain, against
labelled images, one line per arm with its interval).
"""
import argparse
import hashlib
import json
import math
import sys
from pathlib import Path

import pandas as pd

from sae import params
from sae.atomic import write_text
from sae.datasets import DATASETS
from scripts import experiments, sweep_keys

ARMS = ("greedy", "end_to_end", "no_pretraining", "linear_probe")
LABELS = ("greedy", "end to end", "no\npretraining", "linear\nprobe")
# How a study ends fine-tuning (its `protocol`): the recipe's own way (None, the plain
# ablation), the best epoch on validation ("validation", --early-stopping) or a fixed length
# that reads no labels ("fixed", --fixed-length); and the names of its runs.
PREFIXES = {None: "abl", "validation": "budget", "fixed": "fixed"}
KEEP = {"validation": "best", "fixed": "last"}  # finetune_classifier.keep
KEY = ["arm", "recipe", "dataset", "labels", "seed"]  # one run
ORDER = ["recipe", "dataset", "labels", "arm", "seed"]  # of the table's rows
MIN_STEPS = 400  # a protocol's fewest optimiser steps of fine-tuning
TRAINING_IMAGES = 60000  # in either dataset
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


def budget_settings(p, recipe_name, labels, protocol):
    """A protocol's fine-tuning: at least MIN_STEPS steps, the best epoch on validation or
    the last."""
    phase = p.recipes[recipe_name].finetune_classifier
    steps_per_epoch = math.ceil(labelled_images(p, recipe_name, labels) / phase.batch_size)
    epochs = max(phase.epochs, math.ceil(MIN_STEPS / steps_per_epoch))
    return [f"{recipe_name}.finetune_classifier.keep={KEEP[protocol]}",
            f"{recipe_name}.finetune_classifier.epochs={epochs}"]


def run_name(arm, recipe, dataset, labels, seed, protocol=None, extra=()):
    """abl-greedy-tuned-mnist-l0-s1; a variant of the recipe (`extra`) adds a tag of its
    assignments, so that its runs never replace the plain study's of the same name."""
    tag = f"-v{hashlib.sha1(' '.join(extra).encode()).hexdigest()[:6]}" if extra else ""
    return f"{PREFIXES[protocol]}{tag}-{arm}-{recipe}-{dataset}-l{labels}-s{seed}"


def settings(p, arm, recipe, labels, seed, protocol=None, extra=()):
    """A point's `-S` assignments: its seed, label budget and arm (and its protocol's
    fine-tuning), then `extra`, what every run of a variant of the recipe changes (--set)."""
    return [f"common.seed={seed}", f"{recipe}.finetune_classifier.labels={labels}",
            *arm_settings(arm, recipe, p.recipes[recipe]),
            *(budget_settings(p, recipe, labels, protocol) if protocol else []), *extra]


def queue(p, runs, protocol=None, extra=()):
    """Queue `runs`, (arm, recipe, dataset, labels, seed) each, as experiments."""
    for arm, recipe, dataset, labels, seed in runs:
        experiments.queue(run_name(arm, recipe, dataset, labels, seed, protocol, extra),
                          settings(p, arm, recipe, labels, seed, protocol, extra),
                          f"evaluate@{recipe}-{dataset}")


def points(runs):
    """The distinct (arm, recipe, labels, seed) of `runs`, in their order: a run without its
    dataset, as a sweep point runs every dataset."""
    return list(dict.fromkeys((arm, recipe, labels, seed)
                              for arm, recipe, _, labels, seed in runs))


def grid(p, runs, protocol=None, extra=()):
    """The sweep workflow's grid of `runs`: one list of assignments a point."""
    return [settings(p, *point, protocol, extra) for point in points(runs)]


def runs(p, recipes, budgets, seeds, arms=ARMS):
    """(arm, recipe, dataset, labels, seed) of every run, in queue order: first one run of
    each distinct pretraining (greedy's, which no_pretraining and linear_probe share, and end
    to end's), so that every later run finds its autoencoders in DVC's run cache instead of
    training them again beside the first; then the rest, seed by seed."""
    every = [(arm, recipe, dataset, labels, seed) for seed in seeds for recipe in recipes
             for dataset in p.datasets for arm in arms for labels in budgets]
    first = {}
    for arm, recipe, dataset, labels, seed in every:
        pretraining = (arm == "end_to_end", recipe, dataset, seed)
        first.setdefault(pretraining, (arm, recipe, dataset, labels, seed))
    # Greedy's first: end to end's stack_layer2 then finds layer 1 (which it does not use but
    # depends on) cached, while the two workers train the first two leaders side by side.
    leaders = sorted(first.values(), key=lambda run: run[0] == "end_to_end")
    return leaders + [run for run in every if run not in leaders]


def collect(p, runs, protocol=None, extra=()):
    """One row per run of `runs` that a finished experiment holds, found by its params:
    arm, recipe, dataset, budget, seed and the metrics."""
    wanted = {point: (point[1], settings(p, *point, protocol, extra)) for point in points(runs)}
    found = experiments.results(wanted, p.datasets)
    rows = [row(point, dataset, data) for (point, dataset), (_, data) in found.items()]
    return pd.DataFrame(rows, columns=None if rows else KEY)


def row(point, dataset, data):
    """A run's arm, recipe, dataset, budget and seed; its test metrics; and its fine-tuning's
    epochs and the epoch whose weights it kept (the last, or the best on validation)."""
    arm, recipe, labels, seed = point
    found = {"arm": arm, "recipe": recipe, "dataset": dataset, "labels": labels, "seed": seed}
    values = experiments.metrics_of(data, f"metrics/{recipe}/{dataset}.json")
    finetuning = experiments.metrics_of(
        data, f"plots/{recipe}/{dataset}/finetune_classifier/metrics.json")
    epochs = experiments.params_of(data).get(f"{recipe}.finetune_classifier.epochs")
    return found | {column: values.get(key) for column, key in METRICS.items()} | {
        "epochs": epochs, "kept_epoch": finetuning.get("kept_epoch")}


def keys(table):
    """The runs, (arm, recipe, dataset, labels, seed) each, that a table has rows of."""
    return set(map(tuple, table[KEY].values.tolist()))


def run_study(p, study, kept, args):
    """Queue and run the runs of `study` that `kept` (--resume's bank) lacks; with --resume,
    also those that finished (locally or in a pulled sweep) or that are still queued."""
    names = {run: run_name(*run, args.protocol, args.set) for run in study}
    done = keys(kept)
    if args.resume:  # finished, or still in the queue of a study that was stopped
        # The queue first: a run that finishes between the two reads is then found finished.
        waiting = experiments.in_queue(set(names.values()))
        done |= keys(collect(p, study, args.protocol, args.set))
        done |= {run for run, name in names.items() if name in waiting}
    todo = [run for run in study if run not in done]
    experiments.remove_earlier([names[run] for run in todo])
    queue(p, todo, args.protocol, args.set)
    experiments.run_queue(args.jobs)


def digests(recipes, protocol=None, extra=()):
    """{recipe: digest} of what a study's rows are made with besides their own assignments:
    the recipe's `common` and recipe sections of params.yaml as the study runs them (with
    `extra`, --set) and the study's protocol."""
    base = experiments.expected_params(list(extra))
    return {recipe: hashlib.sha1(json.dumps([experiments.identity(base, recipe), protocol])
                                 .encode()).hexdigest()[:12] for recipe in recipes}


def banked(path, current):
    """The rows of an earlier ablation.csv (--resume) that were made as the study runs now:
    `current` maps its recipes to their digests. Rows of those recipes with another digest
    (or none: a table older than the column) are left out, to be run again; rows of other
    recipes are kept as they are. None when there is no table yet."""
    if not Path(path).exists():
        return pd.DataFrame(columns=KEY)
    table = pd.read_csv(path)
    made = table.get("params_digest", pd.Series(None, index=table.index, dtype=object))
    stale = table.recipe.isin(list(current)) & (made != table.recipe.map(current))
    if stale.any():
        print(f"{path}: {stale.sum()} of {len(table)} rows were made with other params of "
              f"{', '.join(sorted(set(table.recipe[stale])))} (params.yaml, --set or the "
              "protocol changed since): they are run again", flush=True)
    return table[~stale]


def summarise(table):
    """Mean, std, count and 95 % t-interval of test accuracy and NLL per arm, recipe, dataset
    and label budget."""
    return experiments.summarise(table, ["recipe", "dataset", "labels", "arm"],
                                 ["test_accuracy", "test_nll"])


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


BASELINE = "no_pretraining"  # what the gains are measured from
PRETRAINED = ("greedy", "end_to_end")  # the figure's gains: the probe's are off its scale


def gains(table):
    """Each arm's test accuracy minus the baseline arm's at the same recipe, dataset, budget
    and seed, i.e. on the same labelled images: a paired comparison, whose t-interval over
    seeds is tighter than the two arms' own intervals side by side."""
    run = ["recipe", "dataset", "labels", "seed"]
    base = table[table.arm == BASELINE].set_index(run).test_accuracy
    others = table[table.arm != BASELINE]
    gain = others.test_accuracy.values - base.reindex(
        pd.MultiIndex.from_frame(others[run])).values
    paired = others.assign(gain=gain).dropna(subset=["gain"])
    return experiments.summarise(paired, ["recipe", "dataset", "labels", "arm"], ["gain"])


def budget_figure(summary, gain_summary, path):
    """Against labelled images (log scale), one column per recipe and dataset: test accuracy
    per arm (top) and its gain over no pretraining (bottom), each with its 95 % interval;
    "all" labels at the training part's size."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sae.plots import save_png

    panels = summary[["recipe", "dataset"]].drop_duplicates().values.tolist()
    fig, axes = plt.subplots(2, len(panels), figsize=(5.2 * len(panels), 7.6), squeeze=False,
                             sharex=True, layout="constrained")
    for column, (recipe, dataset) in enumerate(panels):
        top, bottom = axes[0, column], axes[1, column]
        for arm, label in zip(ARMS, LABELS):
            label = label.replace("\n", " ")
            for ax, table, metric in ((top, summary, "test_accuracy"),
                                      (bottom, gain_summary, "gain")):
                if ax is bottom and arm not in PRETRAINED:
                    continue
                part = table[(table.recipe == recipe) & (table.dataset == dataset)
                             & (table.arm == arm)].sort_values("labelled")
                ax.errorbar(part.labelled, 100 * part[f"{metric}_mean"],
                            yerr=100 * part[f"{metric}_ci95"].fillna(0), marker="o",
                            capsize=3, label=label, color=f"C{ARMS.index(arm)}")
        bottom.axhline(0, color="black", linewidth=0.8)
        top.set(title=f"{recipe}, {DATASETS[dataset].title}", ylabel="test accuracy (%)")
        bottom.set(xscale="log", xlabel="labelled training images",
                   ylabel="gain over no pretraining (points)")
        budgets = sorted(summary.labelled.unique())
        bottom.set_xticks(budgets, [f"{n:,}" for n in budgets[:-1]] + [f"all\n{budgets[-1]:,}"])
        for ax in (top, bottom):
            ax.grid(alpha=0.3, which="both")
            ax.legend()
    fig.suptitle("Where pretraining pays: test accuracy by label budget, mean and 95 % "
                 "t-interval over seeds (gain: paired by seed)")
    save_png(fig, path)


def labelled_images(p, recipe, labels):
    """The images fine-tuning learns from at a budget: `labels`, or all (0) of the training
    part the recipe does not hold out."""
    return labels or (p.common.train_limit or TRAINING_IMAGES) - p.recipes[recipe].split.validation


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--recipes", nargs="+", help="default: every recipe in params.yaml")
    parser.add_argument("--labels", type=int, nargs="+", default=[0],
                        help="label budgets (finetune_classifier.labels; 0 = all)")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS),
                        help="default: all four (greedy alone: a recipe over seeds)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default="plots/ablation")
    ending = parser.add_mutually_exclusive_group()
    ending.add_argument("--early-stopping", dest="protocol", action="store_const",
                        const="validation", help="keep the best epoch on validation (above)")
    ending.add_argument("--fixed-length", dest="protocol", action="store_const",
                        const="fixed", help="the realistic protocol: the last epoch (above)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the runs already in --out, run and add the others")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="params every run changes besides its own: a variant of the "
                             "recipe (above)")
    parser.add_argument("--collect-only", action="store_true")
    parser.add_argument("--print-grid", action="store_true",
                        help="print the runs as the sweep workflow's grid; run nothing")
    args = parser.parse_args(argv)
    if args.print_grid and (args.collect_only or args.resume):
        sys.exit("error: --print-grid prints the whole study and runs nothing: not with "
                 "--collect-only or --resume")
    keys = sweep_keys.param_keys()
    bad = [why for why in (sweep_keys.problem(a, keys) for a in args.set) if why]
    if bad:
        sys.exit(f"error: --set: {bad[0]}")
    p = params.load()
    recipes = args.recipes or list(p.recipes)
    for recipe in recipes:
        p.recipe(recipe)  # one line of error for a recipe params.yaml does not name
    arms = [arm for arm in ARMS if arm in args.arms]  # greedy first, whatever the order given
    study = runs(p, recipes, args.labels, args.seeds, arms)
    if args.print_grid:
        print(json.dumps(grid(p, study, args.protocol, args.set)))
        return
    out = Path(args.out)
    current = digests(recipes, args.protocol, args.set)
    kept = banked(out / "ablation.csv", current) if args.resume else pd.DataFrame(columns=KEY)
    if not args.collect_only:
        run_study(p, study, kept, args)
    fresh = collect(p, study, args.protocol, args.set)
    fresh["params_digest"] = fresh.recipe.map(current)  # found by these params: made with them
    table = pd.concat([t for t in (kept, fresh) if len(t)] or [fresh])
    table = table.drop_duplicates(KEY, keep="last").sort_values(ORDER)
    summary = summarise(table)
    write_text(out / "ablation.csv", table.to_csv(index=False))
    write_text(out / "ablation_summary.csv", summary.to_csv(index=False))
    if len(args.labels) > 1 and BASELINE in arms:
        gain_summary = gains(table)
        write_text(out / "gain_summary.csv", gain_summary.to_csv(index=False))
        for frame in (summary, gain_summary):
            frame["labelled"] = [labelled_images(p, r, n) for r, n in
                                 zip(frame.recipe, frame["labels"])]
        budget_figure(summary, gain_summary, out / "ablation.png")
    else:
        figure(table, out / "ablation.png")
    print(summary.to_string(index=False))


if __name__ == "__main__":
    main()
