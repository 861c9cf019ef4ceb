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
import math
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
BAND = "#f28e2b"  # orange: the base's last value +- the seed-noise interval
BAND_EPOCHS = 10  # up to this many epochs each is a label; beyond, a numeric axis's few ticks
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


def base_text(base, path):
    """The text of `path` at revision `base`, from git; None where the base has no such file
    (or git cannot name it: a NUL in the revision)."""
    try:
        done = subprocess.run(["git", "show", f"{base}:{path}"], capture_output=True,
                              text=True, timeout=GIT_TIMEOUT_S)
    except ValueError:
        return None
    return done.stdout if done.returncode == 0 else None


def base_name(base):
    """The base as the comment names it: its ref and its short commit, as code."""
    try:
        done = subprocess.run(["git", "rev-parse", "--verify", "--quiet", "--short=7",
                               f"{base}^{{commit}}"], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S)
    except ValueError:  # a NUL in the name
        done = subprocess.CompletedProcess([], 1, "", "")
    name = markdown_escape(base, "code")
    commit = done.stdout.strip()
    return f"{name} at {markdown_escape(commit, 'code')}" if done.returncode == 0 and commit \
        else name


def lock_stages(text):
    """{stage: entry} of a dvc.lock's text; {} for none."""
    from ruamel.yaml import YAML  # DVC's own YAML reader
    try:
        lock = YAML(typ="safe").load(text) if text else None
    except Exception:  # a broken lock on either side: nothing can be said unchanged
        return {}
    stages = lock.get("stages") if isinstance(lock, dict) else None
    return stages if isinstance(stages, dict) else {}


def re_run(base, runs):
    """The (recipe, dataset) pairs of `runs` re-run on this branch: those whose stages'
    entries in dvc.lock (every stage named "<stage>@<recipe>-<dataset>") differ from the
    base's, or that the base's dvc.lock does not hold (a first pull request)."""
    old = lock_stages(base_text(base, "dvc.lock"))
    path = Path("dvc.lock")
    new = lock_stages(path.read_text() if path.is_file() else None)
    changed = set()
    for recipe, dataset in runs:
        names = {n for n in (*old, *new) if n.partition("@")[2] == f"{recipe}-{dataset}"}
        if not names or any(n not in old or old[n] != new.get(n) for n in names):
            changed.add((recipe, dataset))
    return changed


def not_re_run(title, datasets):
    """The one line of a recipe, or a recipe's datasets, that this branch did not re-run."""
    shown = f" ({', '.join(map(markdown_escape, datasets))})" if datasets else ""
    return f"- **{markdown_escape(title)}**{shown}: not re-run on this branch: unchanged"


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
    changed = [(key, sides) for key, sides in rows if sides[0] != sides[1]]
    same = ", ".join(markdown_escape(key) for key, sides in rows if sides[0] == sides[1])
    if not changed:
        return f"All {len(rows)} rows unchanged ({same})."
    table = markdown_table(["metric", "base", "head", "change"],
                           [[markdown_escape(key), *cells(key, old, new)]
                            for key, (old, new) in changed])
    folded = len(rows) - len(changed)
    return table + (f"\n\n{folded} more row{'s' * (folded > 1)} unchanged ({same})."
                    if folded else "")


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


def charts(title, class_names, history, per_class, interval=None):
    """Mermaid charts of one evaluation: accuracy per fine-tuning epoch on the split the
    recipe scores after each epoch (validation or test), base and head as lines, with the
    base's last value +- `interval` (points: the seed noise) as a band where it is known; test
    accuracy per class, head as bars and base as a line. Each y range is fitted to its data."""
    sides = [h for h in history if h is not None]
    column = plots.held_out_accuracy(sides[0].columns) if sides else "test_accuracy"
    split = "validation" if column == "val_accuracy" else "test"
    curves = [("line", c, list(100 * h[plots.held_out_accuracy(h.columns)]))
              for h, c in zip(history, COLOURS) if h is not None]
    epochs = max((list(h.epoch) for h in sides), key=len, default=[])
    if interval is not None and history[0] is not None and len(curves) == 2 and epochs:
        last = curves[0][2][-1]
        curves = [("line", BAND, [min(100, max(0, last + sign * interval))] * len(epochs))
                  for sign in (-1, 1)] + curves  # within 0-100, where accuracies are
    numeric = len(epochs) > BAND_EPOCHS and epochs == list(range(1, len(epochs) + 1)) and \
        all(len(values) == len(epochs) for _, _, values in curves)
    accuracy = [None if s is None else s.set_index("class").test_accuracy.reindex(class_names)
                for s in per_class]
    bars = [(kind, c, 100 * a) for kind, c, a in zip(("line", "bar"), COLOURS, accuracy)
            if a is not None and a.notna().all()]
    band = (" Orange: the base's last value ± the 95 % prediction interval of a re-run "
            f"(±{interval:.2f} points, seed noise)." if len(curves) == 4 else "")
    return [xychart(f"{title}: {split} accuracy per epoch",
                    range(1, len(epochs) + 1) if numeric else epochs, f"{split} accuracy (%)",
                    axis(curves), curves, x_title="epoch") if curves else
            "_No fine-tuning history on either side._", "",
            xychart(f"{title}: test accuracy per class", class_names, "test accuracy (%)",
                    axis(bars), bars[::-1], x_title="class") if bars else
            "_No accuracy per class on either side._", "",
            "_Base grey, head blue; per class, the head as bars and the base as a line." + band
            + "_"]


def axis(series):
    """The y range of percentages fitted to the values: a tenth of their span (at least 0.1
    points) beyond each end, rounded outwards to whole points (to tenths for a span under
    5 points), within 0-100; all of 0-100 without values."""
    values = [v for _, _, vs in series for v in vs]
    if not values:
        return 0, 100
    low, high = min(values), max(values)
    pad = max(0.1 * (high - low), 0.1)
    step = 1 if high - low + 2 * pad > 5 else 0.1
    return (max(0, round(math.floor((low - pad) / step + 1e-9) * step, 1)),
            min(100, round(math.ceil((high + pad) / step - 1e-9) * step, 1)))


def build_report(base, out, run_url=None):
    """The text of report.md: what changed. A recipe or dataset this branch did not re-run is
    one line; a re-run one gets its verdict, the rows that changed (the rest as a count) and
    its charts. Draws the re-run ones' PNG figures into `out` on the way."""
    metrics, params, noise = dvc_diff("metrics", base, "--all"), dvc_diff("params", base), \
        seed_noise()
    runs = list(evaluations())
    check_readable(base, [*metrics, *(run[2] for run in runs)], ["params.yaml", *params])
    ran = re_run(base, [(recipe, dataset) for recipe, dataset, *_ in runs])
    verdicts, sections = [], []
    for recipe in dict.fromkeys(recipe for recipe, *_ in runs):
        mine = [run for run in runs if run[0] == recipe]
        if not any((recipe, dataset) in ran for _, dataset, *_ in mine):
            verdicts.append(not_re_run(recipe, [DATASETS[d].title for _, d, *_ in mine]))
            continue
        for _, dataset, metrics_file, csvs in mine:
            info = DATASETS[dataset]
            title = f"{info.title}, {recipe}"
            if (recipe, dataset) not in ran:
                verdicts.append(not_re_run(title, []))
                continue
            found = checked_metrics(metrics.get(metrics_file, {}), metrics_file, base)
            verdicts.append(verdict(title, *found.get("test_accuracy", (None, None)),
                                    noise.get((recipe, dataset))))
            per_class = read_sides(base, csvs["per_class"], ("class", "test_accuracy"))
            figures(out, f"{recipe}_{dataset}", title, info.class_names, base, csvs)
            spread = noise.get((recipe, dataset))
            interval = None if spread is None else prediction95(100 * spread[0], int(spread[1]))
            sections += [f"## {markdown_escape(title)}", "",
                         metrics_table(info.class_names, found, per_class), "",
                         *charts(title, info.class_names,
                                 history_sides(base, csvs["finetune_classifier"]), per_class,
                                 interval), ""]
    changed = [[markdown_escape(text, "code") for text in (key, old, new)]
               for keys in params.values() for key, (old, new) in keys.items()]
    where = (f"the artifact `pr-report` of [this workflow run]({markdown_escape(run_url)})"
             if run_url else "the PNG files beside this report")
    figures_line = ([f"Training curves and confusion matrices of what was re-run: {where}.", ""]
                    if ran else [])
    return "\n".join([
        MARKER, "# Stacked autoencoders: pull-request report", "",
        f"Base {base_name(base)} → head (this branch after `dvc repro`). A change beyond "
        "seed noise is outside the 95 % prediction interval of one re-run with another "
        "seed (how: `docs/pull-request-reports.md`).",
        "", *verdicts, "", *figures_line,
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
    ignore = args.out / ".gitignore"  # the report is no source: `git add -A` leaves it out
    if not ignore.exists():
        write_text(ignore, "# written by scripts.pr_report: nothing here is committed\n*\n")
    text = build_report(args.base, args.out, args.run_url)
    write_text(args.out / "report.md", text.rstrip() + "\n")
    print(f"wrote {args.out / 'report.md'}")


if __name__ == "__main__":
    main()
