"""A pull-request report: what changed between a base revision and the workspace (the head).

Usage, in the repository root after `dvc repro` has produced the head's metrics and plots:

    python scripts/pr_report.py --base origin/main --out report

writes report/report.md and the PNG images it links, by relative name, beside it:

- a one-line verdict per dataset (test accuracy base -> head), or a note that the base has
  no metrics yet (a first pull request);
- the params that changed (`dvc params diff`);
- a table of metrics per dataset (`dvc metrics diff`), per-class accuracy by class name;
- training curves (base dashed, head solid) and base/head confusion matrices per dataset,
  drawn with matplotlib from the plot CSVs: the head's from the workspace, the base's from
  git (`git show <base>:<path>`); what the base lacks is left out and said so.

The datasets are those of params.yaml. Nothing here needs a network or a browser.
"""
import argparse
import csv
import io
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from the repo root

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from sae import params  # noqa: E402
from sae.atomic import write_text  # noqa: E402
from sae.datasets import DATASETS  # noqa: E402
from sae.plots import class_xticks, save_png  # noqa: E402

REPORT = "report.md"
TITLE = "Stacked autoencoders: pipeline report"
HISTORIES = ("pretrain_layer1", "stack_layer2", "finetune_classifier")
# Curve panels: (history, column, panel title, y label, factor for the values).
PANELS = (("pretrain_layer1", "train_loss", "layer 1 (784-400-784)", "train reconstruction MSE", 1),
          ("stack_layer2", "train_loss", "stacked (784-400-256-400-784)",
           "train reconstruction MSE", 1),
          ("finetune_classifier", "test_accuracy", "classifier", "test accuracy (%)", 100))
# Metric keys of metrics/<dataset>.json shown first and by these names; others follow as is.
LABELS = {"test_accuracy": "test accuracy", "test_nll": "test NLL",
          "reconstruction_mse.layer1": "reconstruction MSE, layer 1",
          "reconstruction_mse.stacked": "reconstruction MSE, stacked"}
PER_CLASS = "per_class_accuracy."


# ------------------------------------------------------------------ git and DVC

def git(*args):
    """stdout of a git command, or None when it fails (e.g. a path absent at a revision)."""
    done = subprocess.run(["git", *args], capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


def dvc_json(*args):
    """The parsed --json output of a dvc command (run with this Python's dvc)."""
    done = subprocess.run([sys.executable, "-m", "dvc", *args, "--json"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"dvc {' '.join(args)} failed:\n{done.stderr}")
    return json.loads(done.stdout or "{}")


def params_diff(base):
    """{param: (old, new)} of the params that differ between `base` and the workspace."""
    changed = {}
    for by_param in dvc_json("params", "diff", base).values():
        for name, change in by_param.items():
            changed[name] = (change.get("old"), change.get("new"))
    return dict(sorted(changed.items()))


def metrics_diff(base):
    """{metrics file: {metric: (old, new)}}, unchanged metrics included; old None if absent."""
    raw = dvc_json("metrics", "diff", base, "--all")
    return {path: {name: (v.get("old"), v.get("new")) for name, v in by_metric.items()}
            for path, by_metric in raw.items()}


def read_csv_rows(text):
    return list(csv.DictReader(io.StringIO(text))) if text else None


def head_rows(path):
    """Rows of a CSV in the workspace, or None."""
    path = Path(path)
    return read_csv_rows(path.read_text()) if path.is_file() else None


def base_rows(base, path):
    """Rows of a CSV as committed at `base`, or None."""
    return read_csv_rows(git("show", f"{base}:{path}"))


# ------------------------------------------------------------------ formatting

def percent(value):
    return f"{100 * value:.2f} %"


def points(diff):
    """A change of accuracy in percentage points: '+0.77 points', '±0.00 points' if it rounds
    to zero."""
    rounded = round(100 * diff, 2)
    return "±0.00 points" if rounded == 0 else f"{rounded:+.2f} points"


def arrow(diff):
    rounded = round(100 * diff, 2)
    return "=" if rounded == 0 else "▲" if rounded > 0 else "▼"


def is_accuracy(key):
    return "accuracy" in key


def fmt_value(key, value):
    if value is None:
        return "—"
    return percent(value) if is_accuracy(key) else f"{value:.4g}"


def fmt_change(key, old, new):
    if old is None or new is None:
        return "—"
    if is_accuracy(key):
        return points(new - old)
    return "±0" if new == old else f"{new - old:+.4g}"


def fmt_param(value):
    if value is None:
        return "—"
    return f"`{json.dumps(value) if isinstance(value, (list, dict)) else value}`"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


# ------------------------------------------------------------------ report sections

def metrics_file(dataset):
    return f"metrics/{dataset}.json"


def verdict(dataset, metrics, base):
    title = DATASETS[dataset].title
    old, new = metrics.get("test_accuracy", (None, None))
    if new is None:
        return f"- **{title}**: no metrics in the workspace (run `dvc repro`)"
    if old is None:
        return f"- **{title}**: no metrics at base `{base}` yet; test accuracy {percent(new)}"
    return (f"- {arrow(new - old)} **{title}**: test accuracy {percent(old)} → {percent(new)} "
            f"({points(new - old)})")


def metric_label(dataset, key):
    if key.startswith(PER_CLASS):
        index = key[len(PER_CLASS):]
        names = DATASETS[dataset].class_names
        name = names[int(index)] if index.isdigit() and int(index) < len(names) else index
        return f"accuracy of class {name}"
    return LABELS.get(key, key)


def metric_order(key):
    """Known metrics in LABELS order, then others by name, then per-class by class index."""
    if key in LABELS:
        return (0, list(LABELS).index(key), "")
    if key.startswith(PER_CLASS) and key[len(PER_CLASS):].isdigit():
        return (2, int(key[len(PER_CLASS):]), "")
    return (1, 0, key)


def metrics_section(dataset, metrics):
    rows = [[metric_label(dataset, key), fmt_value(key, old), fmt_value(key, new),
             fmt_change(key, old, new)]
            for key, (old, new) in sorted(metrics.items(), key=lambda kv: metric_order(kv[0]))]
    lines = [f"### {DATASETS[dataset].title}", ""]
    if not rows:
        return lines + ["No metrics on either side.", ""]
    return lines + table(["metric", "base", "head", "change"], rows) + [""]


def params_section(changed):
    lines = ["## Params", ""]
    if not changed:
        return lines + ["No params changed.", ""]
    rows = [[f"`{name}`", fmt_param(old), fmt_param(new)] for name, (old, new) in changed.items()]
    return lines + table(["param", "base", "head"], rows) + [""]


def images_section(dataset, images, notes):
    title = DATASETS[dataset].title
    lines = [f"### {title}", ""]
    for note in notes:
        lines += [f"_{note}_", ""]
    for caption, name in images:
        lines += [f"![{title}: {caption}]({name})", ""]
    return lines


# ------------------------------------------------------------------ figures

def column(rows, key, factor=1):
    return (np.array([float(r["epoch"]) for r in rows]),
            np.array([factor * float(r[key]) for r in rows]))


def curves_figure(path, title, base, head):
    """Panels of PANELS; each side a {history: rows or None}; base dashed, head solid."""
    fig, axes = plt.subplots(1, len(PANELS), figsize=(14, 4.2), layout="constrained")
    for ax, (history, key, panel, ylabel, factor) in zip(axes, PANELS):
        for label, side, style in (("base", base, "o--"), ("head", head, "o-")):
            if side.get(history):
                ax.plot(*column(side[history], key, factor), style, label=label,
                        color="tab:grey" if label == "base" else "tab:blue")
        ax.set(title=panel, xlabel="epoch", ylabel=ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend()
    fig.suptitle(f"{title}: training curves, base (dashed) and head (solid)", fontsize=13)
    save_png(fig, path)


def confusion_matrix(rows, class_names):
    """Counts of (actual, predicted) class-name pairs, rows true, columns predicted."""
    index = {name: i for i, name in enumerate(class_names)}
    matrix = np.zeros((len(class_names), len(class_names)), dtype=int)
    for row in rows:
        matrix[index[row["actual"]], index[row["predicted"]]] += 1
    return matrix


def draw_heatmap(ax, matrix, class_names, vmax, title):
    image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=vmax)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                color="white" if count > vmax / 2 else "black")
    class_xticks(ax, class_names)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set(title=title, xlabel="predicted", ylabel="true")
    return image


def confusion_figure(path, title, class_names, matrices):
    """One heatmap per (label, matrix) in `matrices`, side by side on one colour scale."""
    vmax = max(1, max(int(m.max()) for _, m in matrices))
    fig, axes = plt.subplots(1, len(matrices), figsize=(8 * len(matrices), 7.2),
                             layout="constrained", squeeze=False)
    for ax, (label, matrix) in zip(axes[0], matrices):
        image = draw_heatmap(ax, matrix, class_names, vmax, label)
    fig.colorbar(image, ax=list(axes[0]), label="test images")
    fig.suptitle(f"{title}: confusion matrices on the test set", fontsize=13)
    save_png(fig, path)


def side_notes(what, base, have_base, have_head):
    """What a figure lacks, as notes for the report (none when it has both sides)."""
    if have_base and have_head:
        return []
    if have_head:
        return [f"No {what} at base `{base}`: head only."]
    if have_base:
        return [f"No {what} in the workspace (run `dvc repro`): base only."]
    return [f"No {what} at base `{base}` nor in the workspace."]


def curves_image(dataset, base, out):
    """Draw `<dataset>_curves.png` into `out`: ([(caption, file name)], [note])."""
    paths = {h: f"plots/{dataset}/{h}.csv" for h in HISTORIES}
    old = {h: base_rows(base, path) for h, path in paths.items()}
    new = {h: head_rows(path) for h, path in paths.items()}
    notes = side_notes("training curves", base, any(old.values()), any(new.values()))
    if not (any(old.values()) or any(new.values())):
        return [], notes
    name = f"{dataset}_curves.png"
    curves_figure(out / name, DATASETS[dataset].title, old, new)
    return [("training curves", name)], notes


def confusion_image(dataset, base, out):
    """Draw `<dataset>_confusion.png` into `out`: ([(caption, file name)], [note])."""
    info, path = DATASETS[dataset], f"plots/{dataset}/confusion.csv"
    old, new = base_rows(base, path), head_rows(path)
    notes = side_notes("confusion matrix", base, bool(old), bool(new))
    sides = [(label, rows) for label, rows in ((f"base ({base})", old), ("head", new)) if rows]
    if not sides:
        return [], notes
    name = f"{dataset}_confusion.png"
    matrices = [(label, confusion_matrix(rows, info.class_names)) for label, rows in sides]
    confusion_figure(out / name, info.title, info.class_names, matrices)
    return [("confusion matrices", name)], notes


def dataset_images(dataset, base, out):
    """Both figures of a dataset: ([(caption, file name)], [note])."""
    curves, curve_notes = curves_image(dataset, base, out)
    confusion, confusion_notes = confusion_image(dataset, base, out)
    return curves + confusion, curve_notes + confusion_notes


# ------------------------------------------------------------------ main

def build_report(base, out):
    """The text of report.md; draws the images into `out` on the way."""
    short = (git("rev-parse", "--short", base) or "").strip()
    if not short:
        sys.exit(f"unknown git revision: {base}")
    datasets = params.load().datasets
    metrics = metrics_diff(base)
    per_dataset = {d: metrics.get(metrics_file(d), {}) for d in datasets}
    lines = [f"# {TITLE}", "",
             f"Base `{base}` (`{short}`) → head (this branch's workspace after `dvc repro`).", ""]
    lines += [verdict(d, per_dataset[d], base) for d in datasets] + [""]
    lines += params_section(params_diff(base))
    lines += ["## Metrics", ""]
    for d in datasets:
        lines += metrics_section(d, per_dataset[d])
    lines += ["## Plots", ""]
    for d in datasets:
        lines += images_section(d, *dataset_images(d, base, out))
    return "\n".join(lines).rstrip() + "\n"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True,
                        help="git revision to compare with, e.g. origin/main")
    parser.add_argument("--out", required=True, type=Path, help="folder for report.md and images")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / REPORT, build_report(args.base, args.out))
    print(f"wrote {args.out / REPORT}")


if __name__ == "__main__":
    main()
