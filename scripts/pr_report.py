"""A pull-request report: what changed between a base revision and the workspace (the head).

    python -m scripts.pr_report --base origin/main --out report [--run-url URL]

Run after `dvc repro`; writes report/report.md, the body of the pull-request comment (tables
and Mermaid charts, which GitHub draws without any image host), and beside it the PNG figures
(training curves, confusion matrices) that the workflow keeps as its artifact, linked from the
comment through --run-url. Diffs are DVC's own, paths come from dvc.yaml through DVC, and the
base's plot files are read from git.
"""
import argparse
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from dvc.repo import Repo

from sae import evaluation, plots
from sae.atomic import write_text
from sae.datasets import DATASETS
from sae.live import HistoryError, MissingHistory, history_frame
from sae.params import PHASES
from scripts import (accuracy, accuracy_columns, markdown_escape, markdown_table, non_negative,
                     prediction95, read_summary, read_table, xychart)

# The first line of the comment: the workflow finds its earlier comment by it. No text from
# params, metrics or git reaches the report unescaped (markdown_escape), so none can hold it.
MARKER = "<!-- stacked-autoencoders report -->"
# The greedy arm is the pipeline as it runs, so its seed-to-seed spread says how far a re-run
# with another seed moves: a change outside the 95 % prediction interval of one more run is
# beyond seed noise. It is read from these studies' summaries, with all labels; where two
# hold a recipe and dataset, the later wins: the ablation (3 seeds, run before the tuned
# recipe was re-selected on validation), then the tuned recipe as it is now over 5 seeds.
SEED_SUMMARIES = (Path("plots/ablation/ablation_summary.csv"),
                  Path("plots/tuned_seeds/ablation_summary.csv"))
NOISE_ARM = "greedy"
# Class names are text: MNIST's "0" must not be read as the number 0.
CLASS_COLUMNS = {column: str for column in ("class", "actual", "predicted")}
COLOURS = ("#9e9e9e", "#1f77b4")  # base grey, head blue, as in the PNG curves
LIVE_TABLES = ("plots", "metrics")  # where in a DVCLive folder its per-epoch tables are
DVC_TIMEOUT_S = 600  # `dvc metrics diff` / `params diff`: seconds, minutes on a cold clone
GIT_TIMEOUT_S = 60  # one git read of a small file


def dvc_diff(kind, base, *options):
    """`dvc <kind> diff <base> --json` as {file: {key: (old, new)}}."""
    command = [sys.executable, "-m", "dvc", kind, "diff", base, *options, "--json"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=DVC_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        sys.exit(f"dvc {kind} diff {base} did not finish in {DVC_TIMEOUT_S} s; run it "
                 "yourself to see why")
    if done.returncode:
        sys.exit(f"dvc {kind} diff {base} failed:\n{done.stderr}")
    return {path: {key: (v.get("old"), v.get("new")) for key, v in keys.items()}
            for path, keys in json.loads(done.stdout or "{}").items()}


def evaluations():
    """(recipe, dataset, metrics file, {name: path}) of each evaluate stage in dvc.yaml: the
    CSVs it writes by stem (e.g. "per_class"), and by phase the DVCLive tables it reads
    (`<phase>/plots/metrics`)."""
    with Repo() as repo:
        stages = [s for s in repo.index.stages if s.addressing.startswith("evaluate@")]
    for stage in stages:
        paths = [Path(str(f)) for f in (*stage.deps, *stage.outs)]
        recipe, dataset = stage.addressing.split("@")[1].split("-")  # names hold no "-"
        yield (recipe, dataset, str(next(p for p in paths if p.suffix == ".json")),
               {**{p.stem: str(p) for p in paths if p.suffix == ".csv"},
                **{p.parents[1].name: str(p) for p in paths if p.parts[-2:] == LIVE_TABLES}})


def history_sides(base, tables):
    """[base, head] per-epoch frames (an "epoch" column, one per metric) of a DVCLive folder's
    tables, the base's from git; None for a side without them."""
    listed = subprocess.run(["git", "ls-tree", "--name-only", f"{base}:{tables}"],
                            capture_output=True, text=True, timeout=GIT_TIMEOUT_S)
    with tempfile.TemporaryDirectory() as copy:  # the base's tables, where the reader looks
        folder = Path(copy, *LIVE_TABLES)
        folder.mkdir(parents=True)
        for name in listed.stdout.split() if listed.returncode == 0 else []:
            shown = subprocess.run(["git", "show", f"{base}:{tables}/{name}"],
                                   capture_output=True, text=True, timeout=GIT_TIMEOUT_S)
            (folder / name).write_text(shown.stdout)
        return [history(copy, f"{tables} at {base}"),
                history(Path(tables).parents[1], f"{tables} (workspace)")]


def history(folder, where):
    try:
        frame = history_frame(folder)
    except MissingHistory:  # no tables: the side has no such run
        return None
    except HistoryError as error:  # tables a report must not believe: one line, no report
        sys.exit(f"error: {where}: {' '.join(str(error).split())}")
    return accuracy_columns(frame.reset_index(), where)


def read_sides(base, path, columns=()):
    """[base, head] tables of a CSV, the base's from git; None for a side without it. Each
    has `columns`, and its accuracies are accuracies, or the report stops with one line."""
    done = subprocess.run(["git", "show", f"{base}:{path}"], capture_output=True, text=True,
                          timeout=GIT_TIMEOUT_S)
    sources = {f"{path} at {base}": io.StringIO(done.stdout) if done.returncode == 0 else None,
               f"{path} (workspace)": path if Path(path).is_file() else None}
    return [None if s is None else
            accuracy_columns(read_table(s, columns, where, CLASS_COLUMNS), where)
            for where, s in sources.items()]


def sides_text(base, path):
    """{where: text} of `path` at `base` (from git) and in the workspace, for the sides that
    have it; text None where its bytes are no UTF-8."""
    try:
        done = subprocess.run(["git", "show", f"{base}:{path}"], capture_output=True,
                              timeout=GIT_TIMEOUT_S)
    except ValueError:  # a NUL in the name: no revision of git has it
        done = subprocess.CompletedProcess([], 1, b"", b"")
    sides = {f"{path} at {base}": done.stdout if done.returncode == 0 else None,
             f"{path} (workspace)": Path(path).read_bytes() if Path(path).is_file() else None}
    texts = {}
    for where, data in sides.items():
        if data is not None:
            try:
                texts[where] = data.decode()
            except UnicodeDecodeError:
                texts[where] = None
    return texts


def check_readable(base, metrics_files, params_files):
    """Stop in one line naming the file when a metrics file (a JSON object) or a params file
    (a YAML mapping) on either side exists but cannot be read: DVC's diffs would show it as
    absent ("no metrics at the base", every param "changed from None")."""
    from ruamel.yaml import YAML  # DVC's own YAML reader
    for kind, paths in (("metrics", metrics_files), ("params", params_files)):
        for path in sorted(set(paths)):
            for where, text in sides_text(base, path).items():
                try:
                    if text is None:
                        raise ValueError("not UTF-8 text")
                    value = json.loads(text) if kind == "metrics" else YAML(typ="safe").load(text)
                    if not isinstance(value, dict) and not (kind == "params" and value is None):
                        raise ValueError(f"a {type(value).__name__}, not a mapping")
                except Exception as error:  # JSON's, ruamel's (several kinds), ours
                    reason = " ".join(str(error).split())[:200]
                    sys.exit(f"error: {where} " + (
                        f"is no metrics file, as it is not a JSON object ({reason})"
                        if kind == "metrics" else f"cannot be read as a params file ({reason})")
                        + "; fix or restore it there, then run the report again")


def checked_metrics(found, path, base):
    """`dvc metrics diff` of one metrics file, {key: (old, new)}, every value checked: an
    accuracy in [0, 1], any other metric a number >= 0; one line of error otherwise."""
    for key, sides in found.items():
        for where, value in zip((f"{path} at {base}", f"{path} (workspace)"), sides):
            if value is not None:
                (accuracy if "accuracy" in key else non_negative)(value, where, key)
    return found


def seed_noise():
    """{(recipe, dataset): (std of test accuracy, seeds, summary file)} of the greedy arm with
    all labels, from SEED_SUMMARIES."""
    noise = {}
    for path in filter(Path.is_file, SEED_SUMMARIES):
        table = read_summary(path).query("arm == @NOISE_ARM")
        if "labels" in table:
            table = table[table["labels"] == 0]
        table = table[table.test_accuracy_count > 1]  # one seed has no spread
        noise |= {(r.recipe, r.dataset): (r.test_accuracy_std, r.test_accuracy_count, path)
                  for r in table.itertuples()}
    return noise


def verdict(title, old, new, noise):
    """One line: test accuracy base -> head, and whether the change exceeds seed noise."""
    title = markdown_escape(title)
    if new is None:
        return f"- **{title}**: no metrics in the workspace (run `dvc repro`)"
    if old is None:
        return f"- **{title}**: no metrics at the base yet; test accuracy {100 * new:.2f} %"
    change = round(100 * (new - old), 2) + 0.0  # + 0.0 turns -0.0 into 0.0
    line = (f"- **{title}**: test accuracy {100 * old:.2f} % → {100 * new:.2f} %: "
            f"{change:+.2f} points")
    if noise is None:
        return line + ", seed noise unknown (no ablation summary for this recipe and dataset)"
    std, seeds, source = 100 * noise[0], int(noise[1]), noise[2]
    interval = prediction95(std, seeds)
    where = "within" if abs(change) <= interval else "beyond"
    return line + (f", {where} seed noise (95 % prediction interval of a re-run: "
                   f"±{interval:.2f} points, from a seed std of {std:.2f} over {seeds} seeds, "
                   f"{markdown_escape(source, 'code')})")


def metrics_table(class_names, metrics, per_class):
    """Headline metrics from DVC's diff (test scores first), then accuracy per class by name
    from per_class.csv."""
    accuracy = [side if side is None else side.set_index("class").test_accuracy
                for side in per_class]
    rows = [*sorted(metrics.items(), key=lambda item: (not item[0].startswith("test"), item[0])),
            *((f"accuracy of class {name}", [a if a is None else a.get(name) for a in accuracy])
              for name in class_names)]
    return markdown_table(["metric", "base", "head", "change"],
                          [[markdown_escape(key), *cells(key, old, new)]
                           for key, (old, new) in rows])


def cells(key, old, new):
    """Base, head and change of a metric as the table shows them: accuracies in percent."""
    percent = "accuracy" in key
    shown = ["—" if v is None else f"{100 * v:.2f} %" if percent else f"{v:.4g}"
             for v in (old, new)]
    if old is None or new is None:
        return [*shown, "—"]
    return [*shown, f"{100 * (new - old):+.2f} points" if percent else f"{new - old:+.3g}"]


def confusion(rows, class_names):
    """The confusion matrix of a confusion CSV (one row per test image)."""
    codes = {name: i for i, name in enumerate(class_names)}
    actual, predicted = (torch.tensor(rows[column].map(codes).to_numpy())
                         for column in ("actual", "predicted"))
    return evaluation.confusion_matrix(actual, predicted, len(class_names)).numpy()


def figures(out, name, title, class_names, base, csvs):
    """Draw one evaluation's base-vs-head PNGs into `out`, for the artifact."""
    histories = {phase: history_sides(base, csvs[phase]) for phase in PHASES}
    sides = [{p: h[i].to_dict("records") for p, h in histories.items() if h[i] is not None}
             for i in (0, 1)]
    plots.curves_base_vs_head(out / f"{name}_curves.png", *sides, title)
    confusions = read_sides(base, csvs["confusion"], ("actual", "predicted"))
    for side, rows in zip(("base", "head"), confusions):
        if rows is not None:
            plots.confusion_heatmap(out / f"{name}_confusion_{side}.png",
                                    confusion(rows, class_names), class_names, f"{title}, {side}")


def charts(title, class_names, history, per_class):
    """Mermaid charts of one evaluation: fine-tuning test accuracy per epoch, base and head
    as lines; accuracy per class, head as bars and base as a line."""
    curves = [("line", c, 100 * h[plots.held_out_accuracy(h.columns)]) for h, c in zip(history, COLOURS)
              if h is not None]
    epochs = max((h.epoch for h in history if h is not None), key=len, default=[])
    accuracy = [None if s is None else s.set_index("class").test_accuracy.reindex(class_names)
                for s in per_class]
    bars = [(kind, c, 100 * a) for kind, c, a in zip(("line", "bar"), COLOURS, accuracy)
            if a is not None and a.notna().all()]
    return [xychart(f"{title}: held-out accuracy per epoch", epochs, "accuracy (%)",
                    axis(curves), curves) if curves else
            "_No fine-tuning history on either side._", "",
            xychart(f"{title}: test accuracy per class", class_names, "test accuracy (%)",
                    axis(bars), bars[::-1]) if bars else
            "_No accuracy per class on either side._", "",
            "_Base grey, head blue; per class, the head as bars and the base as a line._"]


def axis(series):
    """The y range of percentages: from 10 points below the lowest value (floored to tens)."""
    lowest = min((min(values, default=100) for _, _, values in series), default=0)
    return max(0, 10 * (lowest // 10) - 10), 100


def build_report(base, out, run_url=None):
    """The text of report.md; draws the PNG figures into `out` on the way."""
    metrics, params, noise = dvc_diff("metrics", base, "--all"), dvc_diff("params", base), \
        seed_noise()
    runs = list(evaluations())
    check_readable(base, [*metrics, *(run[2] for run in runs)], ["params.yaml", *params])
    verdicts, sections = [], []
    for recipe, dataset, metrics_file, csvs in runs:
        info = DATASETS[dataset]
        found = checked_metrics(metrics.get(metrics_file, {}), metrics_file, base)
        title = f"{info.title}, {recipe}"
        verdicts.append(verdict(title, *found.get("test_accuracy", (None, None)),
                                noise.get((recipe, dataset))))
        per_class = read_sides(base, csvs["per_class"], ("class", "test_accuracy"))
        figures(out, f"{recipe}_{dataset}", title, info.class_names, base, csvs)
        sections += [f"## {markdown_escape(title)}", "", metrics_table(info.class_names, found, per_class), "",
                     *charts(title, info.class_names,
                             history_sides(base, csvs["finetune_classifier"]), per_class), ""]
    changed = [[markdown_escape(text, "code") for text in (key, old, new)]
               for keys in params.values() for key, (old, new) in keys.items()]
    where = (f"the artifact `pr-report` of [this workflow run]({markdown_escape(run_url)})"
             if run_url else
        "the PNG files beside this report")
    return "\n".join([
        MARKER, "# Stacked autoencoders: pull-request report", "",
        f"Base {markdown_escape(base, 'code')} → head (this branch after `dvc repro`). Seed noise: the 95 % "
        "prediction interval of one re-run with another seed, t(0.975, n−1) · s · √(1 + 1/n), "
        f"from the std s of test accuracy over the n seeds of the {NOISE_ARM} arm with all "
        "labels (each line names its study's summary); a change outside it is beyond seed "
        "noise.",
        "", *verdicts, "", f"All training curves and both confusion matrices: {where}.", "",
        "## Params", "",
        markdown_table(["param", "base", "head"], changed) if changed else "No params changed.",
        "", *sections])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision to compare with")
    parser.add_argument("--out", required=True, type=Path, help="folder for report.md")
    parser.add_argument("--run-url", help="the workflow run whose artifact holds the PNGs")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        sys.exit(f"error: --out {args.out} is a file; name a folder (created if missing)")
    args.out.mkdir(parents=True, exist_ok=True)
    text = build_report(args.base, args.out, args.run_url)
    write_text(args.out / "report.md", text.rstrip() + "\n")
    print(f"wrote {args.out / 'report.md'}")


if __name__ == "__main__":
    main()
