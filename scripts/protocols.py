"""The label-budget study under its two protocols side by side (issue 25): does pretraining's
gain survive when nothing labelled beyond the N training labels is used for any choice?

    python -m scripts.protocols plots/label_budget plots/label_budget_fixed

reads each study's ablation.csv (scripts.ablation --early-stopping, then --fixed-length) and
writes, in the second study's folder:

- protocols.csv: per dataset, budget and arm, under each protocol, the test accuracy and the
  gain over no pretraining (paired by seed, so on the same labelled images), and what choosing
  the epoch on 10,000 validation images adds over the fixed length (`selection`: the same arm,
  budget and seed under the two protocols, paired): mean and 95 % t-interval each;
- protocols.png: the gains against labelled images under both protocols, and the selection's
  own worth per arm.

Only budgets both studies ran are compared (the fixed-length study has no "all labels": with
every training image labelled, 10,000 validation images are no luxury). The early-stopping
study was run before the portable CPU paths (issue 26), so its pretrained weights differ from
the fixed-length study's in rounding: pairs share their labelled images and initial weights,
not every bit of their pretraining: noise that widens the selection's interval, not a bias.
"""
import argparse
from pathlib import Path

import pandas as pd

from sae.atomic import write_text
from sae.datasets import DATASETS
from scripts import accuracy_columns, experiments, read_table
from scripts.ablation import ARMS, BASELINE, KEY, PRETRAINED, gains

# scripts.ablation's protocols compared, as the figure names them
PROTOCOLS = {"validation": "early stopping", "fixed": "fixed length"}
GROUP = ["dataset", "labels", "arm"]


def read_study(path):
    """A study's ablation.csv, its accuracies checked; one line of error otherwise."""
    if not path.is_file():
        raise SystemExit(f"error: {path} does not exist: run the study first (make label-budget, "
                         "make label-budget-fixed)")
    return accuracy_columns(read_table(path, [*KEY, "test_accuracy"]), path)


def both(validation, fixed):
    """The two studies' rows at the budgets both ran, with a `protocol` column."""
    shared = set(validation["labels"]) & set(fixed["labels"])
    if not shared:
        raise SystemExit("error: the two studies share no label budget: nothing to compare")
    tables = {"validation": validation, "fixed": fixed}
    return pd.concat([t[t["labels"].isin(shared)].assign(protocol=name)
                      for name, t in tables.items()], ignore_index=True)


def selection(table):
    """Each run's test accuracy under early stopping minus the same run's (arm, dataset,
    budget, seed) under the fixed length: what the big validation set buys, paired."""
    runs = table.pivot_table(index=KEY, columns="protocol", values="test_accuracy")
    paired = (runs["validation"] - runs["fixed"]).dropna().rename("selection").reset_index()
    return experiments.summarise(paired, GROUP, ["selection"])


def compare(table):
    """One row per dataset, budget and arm: accuracy and gain under each protocol, and the
    selection's worth, each as mean, count and 95 % interval half-width."""
    parts = []
    for name in PROTOCOLS:
        rows = table[table.protocol == name]
        accuracy = experiments.summarise(rows, GROUP, ["test_accuracy"])
        gain = gains(rows).drop(columns="recipe")
        merged = accuracy.merge(gain, on=GROUP, how="left").set_index(GROUP)
        parts.append(without_spread(merged).add_prefix(f"{name}_"))
    merged = parts[0].join(parts[1], how="outer").join(
        without_spread(selection(table).set_index(GROUP)), how="outer")
    order = {"dataset": list(DATASETS), "labels": None, "arm": list(ARMS)}
    return merged.reset_index().sort_values(GROUP, key=lambda c: c if order[c.name] is None
                                            else c.map(order[c.name].index))


def without_spread(frame):
    """`frame` less its standard deviations: the intervals say what a reader needs."""
    return frame.loc[:, ~frame.columns.str.endswith("_std")]


def figure(summary, path):
    """Against labelled images, one column per dataset: the pretrained arms' gain over no
    pretraining under each protocol (top), and what early stopping on validation adds to each
    arm (bottom), with 95 % intervals; lines at one budget are set a little apart to be read."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sae.plots import save_png

    datasets = [d for d in DATASETS if d in set(summary.dataset)]
    fig, axes = plt.subplots(2, len(datasets), figsize=(5.2 * len(datasets), 7.6),
                             squeeze=False, sharex=True, layout="constrained")
    for column, dataset in enumerate(datasets):
        part = summary[summary.dataset == dataset]
        top, bottom = axes[0, column], axes[1, column]
        lines = [(top, arm, name) for arm in PRETRAINED for name in PROTOCOLS]
        lines += [(bottom, arm, None) for arm in ARMS]
        for ax, arm, name in lines:
            rows = part[part.arm == arm]
            metric = f"{name}_gain" if name else "selection"
            shift = 1.05 ** (sum(line[0] is ax for line in lines[:lines.index((ax, arm, name))])
                             - 1.5)
            ax.errorbar(rows["labels"] * shift, 100 * rows[f"{metric}_mean"],
                        yerr=100 * rows[f"{metric}_ci95"].fillna(0), marker="o", capsize=3,
                        linestyle="--" if name == "fixed" else "-",
                        color=f"C{ARMS.index(arm)}",
                        label=arm.replace("_", " ") + (f", {PROTOCOLS[name]}" if name else ""))
        for ax in (top, bottom):
            ax.axhline(0, color="black", linewidth=0.8)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize="small")
        top.set(title=DATASETS[dataset].title, ylabel="gain over no pretraining (points)")
        bottom.set(xscale="log", xlabel="labelled training images",
                   ylabel="early stopping's gain over fixed length (points)")
        budgets = sorted(part["labels"].unique())
        bottom.set_xticks(budgets, [f"{n:,}" for n in budgets])
    fig.suptitle("Two protocols: early stopping on 10,000 validation images (solid) or a fixed "
                 "length that reads no labels (dashed);\nmean and 95 % t-interval over seeds, "
                 "paired by seed")
    save_png(fig, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("validation", help="the --early-stopping study's folder")
    parser.add_argument("fixed", help="the --fixed-length study's folder; the output's too")
    args = parser.parse_args(argv)
    tables = [read_study(Path(folder) / "ablation.csv")
              for folder in (args.validation, args.fixed)]
    summary = compare(both(*tables))
    if BASELINE not in set(summary.arm):
        raise SystemExit(f"error: neither study has the {BASELINE} arm the gains need")
    out = Path(args.fixed)
    write_text(out / "protocols.csv", summary.to_csv(index=False))
    figure(summary, out / "protocols.png")
    print(summary.to_string(index=False))


if __name__ == "__main__":
    main()
