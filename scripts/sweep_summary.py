"""Sweep summary: the experiments of the current commit beside its committed baseline, with
the params that differ between them and the headline metrics (test accuracy, test NLL) of
every metrics file, collapsed and diverged runs flagged. For a recipe that holds out a
validation part (tuned), each row also has fine-tuning's validation accuracy, and the run
with the best one is marked **selected**: settings are chosen on validation, never on test.

    python -m scripts.sweep_summary --out sweep [--rev BASELINE]

writes sweep/summary.md (one table per metrics file, e.g. metrics/lecture/mnist.json),
sweep/summary.csv (the same rows, one per experiment and metrics file) and sweep/summary.png
(each headline metric against each swept param). Everything comes from `dvc exp show
--json`, so queued, pulled and workspace experiments count alike and no path is assumed.

Flags:
- collapsed: test accuracy at most 1.5x chance (15 %) or test NLL above 10 (guessing
  uniformly scores ln 10 = 2.3): the classifier puts (almost) every image in one class;
- diverged: no metrics, because a stage failed; in a sweep over valid values that is a
  training loss that became NaN or infinite (`dvc queue logs <exp>` shows the error). DVC
  lists a failed queued run with its baseline's metrics files: those are not its results;
- queued, running: not finished yet.
"""
import argparse
import json
import math
import sys
from pathlib import Path

import matplotlib
import pandas as pd

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from sae.atomic import write_text  # noqa: E402
from sae.datasets import DATASETS  # noqa: E402
from sae.plots import save_png  # noqa: E402
from scripts import (accuracy, is_number, markdown_escape, markdown_table,  # noqa: E402
                     non_negative)
from scripts.run_queue import read  # noqa: E402

HEADLINE = {"test_accuracy": "test accuracy", "test_nll": "test NLL"}
# Fine-tuning's validation accuracy at its last epoch (its DVCLive metrics.json), for the
# recipes that hold out a validation part: the number a sweep chooses settings by.
VALIDATION = "val_accuracy"
TITLES = {**HEADLINE, VALIDATION: "validation accuracy"}
CHANCE = 0.1  # ten classes
COLLAPSED_ACCURACY = 1.5 * CHANCE
COLLAPSED_NLL = 10.0
PENDING = ("queued", "running")
IMAGE = "summary.png"


# ------------------------------------------------------------------ reading DVC

def exp_show(repo=".", rev=None):
    """The parsed `dvc exp show --json` of the repository at `repo`: the experiments of
    commit `rev` (default HEAD)."""
    # Tried again on a failure or a hang: exp show has hung for good while a temporary
    # copy of a finishing experiment was being removed (scripts/run_queue.py).
    return json.loads(read("exp", "show", "--json", *(["--rev", rev] if rev else []),
                           timeout_s=300, cwd=repo))


def flatten(tree, prefix=""):
    """{"a.b": 1} from {"a": {"b": 1}}; lists stay values."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    return {key: value for name, sub in tree.items()
            for key, value in flatten(sub, f"{prefix}.{name}" if prefix else name).items()}


def run_record(entry, name, baseline, state):
    """One run (baseline or experiment) of exp show: its params, and its metrics per file
    unless it failed or has not finished (then DVC shows its baseline's files)."""
    data = entry.get("data") or {}
    if not baseline and entry.get("error") and state not in PENDING:
        state = "failed"
    params = {}
    for file, content in (data.get("params") or {}).items():
        prefix = "" if file == "params.yaml" else f"{file}:"
        params.update({prefix + k: v for k, v in flatten(content.get("data") or {}).items()})
    metrics = {} if state == "failed" or state in PENDING else {
        path: content.get("data") or {} for path, content in (data.get("metrics") or {}).items()
        if not stale(path, params)}
    return {"experiment": name, "rev": entry["rev"][:7], "baseline": baseline, "state": state,
            "params": params, "metrics": metrics}


def stale(path, params):
    """Whether the metrics file `path` is of a dataset that the run's params.yaml does not
    list in `datasets`: no stage of that run wrote it (committed results of an earlier
    setting), so it is no result of the run (as scripts.verify leaves such files out)."""
    listed = params.get("datasets")
    if not isinstance(listed, list):
        return False
    parts = {*Path(path).parts, Path(path).stem}
    return any(name in parts for name in DATASETS if name not in listed)


def runs(shown):
    """The baseline (HEAD) and its experiments; the workspace row is left out, as after a
    `dvc exp run` it merely repeats the last experiment."""
    for commit in shown:
        if commit["rev"] == "workspace":
            continue
        yield run_record(commit, commit.get("name") or commit["rev"][:7], True, None)
        for exp in commit.get("experiments") or []:
            rev = exp["revs"][0]
            yield run_record(rev, exp.get("name") or rev["rev"][:7], False,
                             (exp.get("executor") or {}).get("state"))


def swept_params(records):
    """The params whose values are not the same in every run, by name."""
    names = sorted({name for r in records for name in r["params"]})
    return [name for name in names
            if len({json.dumps(r["params"].get(name)) for r in records}) > 1]


# ------------------------------------------------------------------ the table

def flag(state, baseline, accuracy, nll):
    """'' for a healthy run (or a baseline without results), else what the module
    docstring lists."""
    if state in PENDING:
        return state
    if state == "failed" or math.isnan(accuracy):
        return "" if baseline else "diverged"
    if accuracy <= COLLAPSED_ACCURACY or not nll <= COLLAPSED_NLL:  # NaN NLL too
        return "collapsed"
    return ""


def param_order(value):
    """Numbers before text, numerically; missing last."""
    if value is None:
        return (2, 0, "")
    return (0, value, "") if is_number(value) else (1, 0, json.dumps(value))


def headline(metrics, where):
    """The headline metrics of one metrics file: NaN where absent (no result), else checked:
    an accuracy in [0, 1], an NLL >= 0 (infinite or NaN: a collapsed classifier)."""
    values = {key: metrics.get(key) for key in HEADLINE}
    if values["test_accuracy"] is not None:
        accuracy(values["test_accuracy"], where)
    nll = values["test_nll"]
    if nll is not None and not (is_number(nll) and (math.isnan(nll) or nll == math.inf)):
        non_negative(nll, where, "test_nll")
    return {key: math.nan if value is None else float(value) for key, value in values.items()}


def validation_accuracy(metrics, path, where):
    """The validation accuracy that goes with the headline file `path` of one run: that of
    the file of the same recipe and dataset that has one (e.g. plots/tuned/mnist/
    finetune_classifier/metrics.json beside metrics/tuned/mnist.json); NaN for none."""
    for other, values in metrics.items():
        if VALIDATION in values and f"/{label(path)}/" in f"/{other}":
            return float(accuracy(values[VALIDATION], where, VALIDATION))
    return math.nan


def mark_selected(table):
    """The `selected` column: per metrics file, the healthy finished run with the best
    validation accuracy (the first of equals); none where no run has one."""
    healthy = table[(table.flag == "") & table[VALIDATION].notna()]
    best = healthy.groupby("metrics", sort=False)[VALIDATION].idxmax()
    table["selected"] = table.index.isin(best.values)
    return table


def recipe_choices(table):
    """{recipe: (experiment, mean validation accuracy)}: per recipe, the run with the best
    mean validation accuracy over the recipe's datasets, among runs healthy on all of them:
    the one setting the recipe keeps (a recipe's params serve every dataset)."""
    healthy = table[table[VALIDATION].notna()].assign(
        recipe=[label(path).split("/")[0] for path in table.metrics[table[VALIDATION].notna()]])
    choices = {}
    for recipe, part in healthy.groupby("recipe", sort=False):
        files = part.metrics.nunique()
        scores = part.groupby("experiment", sort=False).agg(
            mean=(VALIDATION, "mean"), files=("metrics", "nunique"),
            healthy=("flag", lambda flags: (flags == "").all()))
        scores = scores[(scores.files == files) & scores.healthy]
        if len(scores):
            best = scores["mean"].idxmax()
            choices[recipe] = (best, scores["mean"][best])
    return choices


def summary_table(shown):
    """(table, swept params): the table has one row per run and metrics file (experiment,
    rev, baseline, the swept params, the headline metrics, the validation accuracy, the flag,
    and whether it is the run chosen on validation), sorted by metrics file, then by the
    swept params."""
    records = list(runs(shown))
    swept = swept_params(records)
    # The evaluate stages' headline files; the DVCLive files of per-epoch metrics hold no NLL.
    files = sorted({path for r in records for path, values in r["metrics"].items()
                    if all(key in values for key in HEADLINE)})
    rows = []
    for r in sorted(records, key=lambda r: [param_order(r["params"].get(p)) for p in swept]):
        for path in files:
            where = f"experiment {r['experiment']}, {path}"
            values = headline(r["metrics"].get(path, {}), where)
            values[VALIDATION] = validation_accuracy(r["metrics"], path, where)
            rows.append({"metrics": path, "experiment": r["experiment"], "rev": r["rev"],
                         "baseline": r["baseline"],
                         **{p: r["params"].get(p) for p in swept}, **values,
                         "flag": flag(r["state"], r["baseline"], values["test_accuracy"],
                                      values["test_nll"])})
    columns = ["metrics", "experiment", "rev", "baseline", *swept, *HEADLINE, VALIDATION, "flag"]
    table = pd.DataFrame(rows, columns=columns)
    return mark_selected(table.sort_values("metrics", kind="stable", ignore_index=True)), swept


# ------------------------------------------------------------------ markdown

def label(path):
    """'lecture/mnist' for metrics/lecture/mnist.json: the recipe and dataset."""
    return str(Path(path).with_suffix("")).removeprefix("metrics/")


def fmt(value, percent=False):
    if isinstance(value, float) and math.isnan(value):
        return "—"
    if percent:
        return f"{100 * value:.2f} %"
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value)


def markdown(table, swept, image):
    """The text of summary.md."""
    names = table.drop_duplicates("experiment")
    baseline = names[names["baseline"]]["experiment"].tolist()
    lines = ["# Sweep summary", "",
             f"{len(names) - len(baseline)} experiments of baseline "
             f"{', '.join(markdown_escape(b, 'code') for b in baseline) or '(none)'}; swept: "
             f"{', '.join(markdown_escape(p, 'code') for p in swept) or 'nothing'}.", "",
             f"Flags: **collapsed**: test accuracy <= {100 * COLLAPSED_ACCURACY:.0f} % or test "
             f"NLL > {COLLAPSED_NLL:g}; **diverged**: no metrics, a stage failed "
             "(`dvc queue logs <exp>` says why).", ""]
    validated = table[VALIDATION].notna().any()
    if validated:
        lines += ["**selected**: per recipe and dataset, the run with the best validation "
                  "accuracy (fine-tuning's last epoch, on the held-out training images); the "
                  "test set plays no part in the choice.", ""]
        lines += [f"Best for the **{markdown_escape(recipe)}** recipe as a whole (mean "
                  f"validation accuracy over its datasets): **{markdown_escape(experiment)}**, "
                  f"{fmt(mean, True)}."
                  for recipe, (experiment, mean) in recipe_choices(table).items()] + [""]
    if image:
        lines += [f"![headline metrics against the swept params]({image})", ""]
    header = ["experiment", *map(markdown_escape, swept), *HEADLINE.values(),
              *([TITLES[VALIDATION], "selected"] if validated else []), "flag"]
    for path, group in table.groupby("metrics", sort=False):
        name = markdown_escape  # every name and value from DVC is text to show, not Markdown
        rows = [[f"**{name(row['experiment'])}** (baseline)" if row["baseline"]
                 else name(row["experiment"]),
                 *(name(fmt(row[p])) for p in swept), fmt(row["test_accuracy"], True),
                 fmt(row["test_nll"]),
                 *([fmt(row[VALIDATION], True), "**selected**" if row["selected"] else ""]
                   if validated else []),
                 f"**{row['flag']}**" if row["flag"] else ""]
                for row in group.to_dict("records")]
        lines += [f"## {markdown_escape(label(path))}", "", markdown_escape(path, "code"), "",
                  markdown_table(header, rows), ""]
    return "\n".join(lines)


# ------------------------------------------------------------------ figure

def numeric(values):
    return all(is_number(v) for v in values)


def panel(ax, table, x_name, metric, connect):
    """One metric against one param, a series per metrics file; baseline starred, collapsed
    ringed in red, diverged as red crosses on the x axis."""
    scale = 100 if metric.endswith("accuracy") else 1
    for i, (path, group) in enumerate(table.groupby("metrics", sort=False)):
        x = group[x_name] if numeric(group[x_name]) else group[x_name].map(fmt)
        y = scale * group[metric]
        colour = f"C{i % 10}"
        ax.plot(x, y, "o-" if connect else "o", color=colour, label=label(path))
        ax.plot(x[group["baseline"]], y[group["baseline"]], "*", ms=16, mfc="none",
                mec="black", mew=1.5)
        collapsed = group["flag"] == "collapsed"
        ax.plot(x[collapsed], y[collapsed], "o", ms=13, mfc="none", mec="red", mew=2)
        diverged = (group["flag"] == "diverged").to_numpy()
        ax.plot(x[diverged], [0.04] * diverged.sum(), "x", color="red", ms=11, mew=2.5,
                transform=ax.get_xaxis_transform(), clip_on=False)
    threshold = scale * (COLLAPSED_NLL if metric == "test_nll" else COLLAPSED_ACCURACY)
    values = scale * table[metric].dropna()
    # The threshold line only where a run comes near it: drawn far away, it would stretch the
    # axis until the differences between healthy runs vanish.
    if len(values) == 0 or (values.min() <= 2 * threshold if metric != "test_nll"
                            else values.max() >= threshold / 2):
        ax.axhline(threshold, color="red", lw=0.8, ls=":")
    if metric == "test_nll":
        ax.set_yscale("log")
    xs = [v for v in table[x_name] if v is not None]
    if numeric(xs) and xs and min(xs) > 0 and max(xs) >= 10 * min(xs):
        ax.set_xscale("log")
    ax.set(xlabel=x_name, ylabel=TITLES[metric] + (" (%)" if scale == 100 else ""))
    ax.grid(alpha=0.3)


def figure(path, table, swept):
    """Each headline metric, and the validation accuracy where runs have one (rows), against
    each swept param (columns), as a PNG."""
    xs = swept or ["experiment"]
    metrics = [*HEADLINE, *([VALIDATION] if table[VALIDATION].notna().any() else [])]
    fig, axes = plt.subplots(len(metrics), len(xs), figsize=(5.5 * len(xs) + 2.5,
                                                             3.75 * len(metrics)),
                             squeeze=False, layout="constrained")
    for col, x_name in enumerate(xs):
        for row, metric in enumerate(metrics):
            panel(axes[row][col], table, x_name, metric, connect=len(swept) == 1)
    handles, labels = axes[0][0].get_legend_handles_labels()
    marks = [Line2D([], [], ls="none", marker="*", ms=14, mfc="none", mec="black"),
             Line2D([], [], ls="none", marker="o", ms=11, mfc="none", mec="red", mew=2),
             Line2D([], [], ls="none", marker="x", ms=10, color="red", mew=2.5),
             Line2D([], [], color="red", lw=0.8, ls=":")]
    fig.legend(handles + marks, labels + ["baseline", "collapsed", "diverged (no metrics)",
                                          "collapse threshold"], loc="outside right upper")
    fig.suptitle("Sweep: headline metrics per metrics file", fontsize=13)
    save_png(fig, path)


# ------------------------------------------------------------------ main

def write_summary(shown, out):
    """Write summary.md, summary.csv and summary.png into `out`; returns the table."""
    out.mkdir(parents=True, exist_ok=True)
    table, swept = summary_table(shown)
    image = IMAGE if len(table) else None
    if image:
        figure(out / IMAGE, table, swept)
    write_text(out / "summary.csv", table.to_csv(index=False))
    write_text(out / "summary.md", markdown(table, swept, image))
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path,
                        help="folder for summary.md, summary.csv and summary.png")
    parser.add_argument("--rev", help="the sweep's baseline commit, when it is no longer HEAD")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        sys.exit(f"error: --out {args.out} is a file; name a folder (created if missing)")
    write_summary(exp_show(rev=args.rev), args.out)
    print(f"wrote {args.out / 'summary.md'}")


if __name__ == "__main__":
    main()
