"""The pull-request report: its workflow passes actionlint and posts with GitHub's own means,
its verdict weighs a change against seed noise, its charts are Mermaid blocks that render, and
`python -m scripts.pr_report` compares a base commit with the workspace on a tiny real project.

One repository, a copy of the session's reproduced tiny project, serves the end-to-end tests:
  HEAD~1     the project before any run: a base without metrics or plots (a first PR);
  HEAD       after `dvc repro`: a base with metrics and plots;
  workspace  lecture.finetune_classifier.lr 0.1 -> 0.2, reproduced, and a small ablation
             summary: the head.
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest
import yaml

from scripts import pr_report, render_mermaid
from sae.datasets import DATASETS
from tests.conftest import RECIPES, ROOT, copy_of, dvc, run

WORKFLOW = ROOT / ".github" / "workflows" / "pr-report.yml"
RUN_URL = "https://github.com/owner/repo/actions/runs/123"
# Seed std of test accuracy in the fixture ablation summary: MNIST's so small that any change
# (a multiple of 0.5 points on 200 test images) is beyond it, Fashion-MNIST's so large that
# every change is within it.
NOISE = {"mnist": 0.0001, "fashion_mnist": 0.5}
SUMMARY_HEADER = ("recipe,dataset,arm,test_accuracy_mean,test_accuracy_std,test_accuracy_count,"
                  "test_accuracy_ci95\n")


def actionlint():
    """The actionlint binary of this environment (the `test` extra installs it)."""
    beside = Path(sys.executable).parent / "actionlint"
    found = str(beside) if beside.is_file() else shutil.which("actionlint")
    if not found:
        pytest.fail("actionlint is not installed: run `pip install -e '.[test]'` "
                    "(or `make setup`), which installs it from the `test` extra")
    return found


def test_workflow_passes_actionlint_and_runs_the_report_as_a_module():
    done = subprocess.run([actionlint(), str(WORKFLOW)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"actionlint found problems:\n{done.stdout}{done.stderr}"
    text = WORKFLOW.read_text()
    assert "python -m scripts.pr_report --base" in text and '--run-url "$RUN_URL"' in text
    # GitHub's own means: gh with the job's token, no CML, nothing from npm
    assert "gh api" in text and "GH_TOKEN: ${{ github.token }}" in text
    assert "cml" not in text.lower() and "npx" not in text
    # the comment is found by the first line of report.md, which is the marker
    assert "marker=$(head -n 1 report/report.md)" in text


def test_charts_are_one_mermaid_block_each_base_grey_head_blue():
    history = pd.DataFrame({"epoch": [1, 2, 3], "test_accuracy": [0.5, 0.8, 0.9]})
    per_class = pd.DataFrame({"class": ["a", "b"], "test_accuracy": [0.95, 0.625]})
    curves, _, classes, _, legend = pr_report.charts(
        "MNIST, lecture", ["a", "b"], [history, history[:2]], [None, per_class])
    assert curves.splitlines()[1:] == [
        '%%{init: {"themeVariables": {"xyChart": {"plotColorPalette": "#9e9e9e, #1f77b4"}}}}%%',
        "xychart-beta",
        '    title "MNIST, lecture: test accuracy per epoch"',  # the split, by name
        '    x-axis "epoch" ["1", "2", "3"]', '    y-axis "test accuracy (%)" 46 --> 94',
        "    line [50.00, 80.00, 90.00]", "    line [50.00, 80.00]", "```"]
    assert classes.startswith("```mermaid\n") and classes.endswith("\n```")
    assert '"plotColorPalette": "#1f77b4"' in classes  # no base: the head's bars alone
    assert "\n    bar [95.00, 62.50]\n" in classes and "\n    line " not in classes
    assert legend.startswith("_Base grey, head blue")
    assert pr_report.charts("t", ["a"], [None, None], [None, None])[0:3:2] == [
        "_No fine-tuning history on either side._", "_No accuracy per class on either side._"]


def test_long_histories_get_a_numeric_epoch_axis_a_fitted_range_and_the_noise_band():
    epochs = range(1, 51)
    base = pd.DataFrame({"epoch": epochs, "val_accuracy": [0.97 + 0.0003 * e for e in epochs]})
    head = base.assign(val_accuracy=base.val_accuracy + 0.001)
    curves = pr_report.charts("MNIST, tuned", ["a"], [base, head], [None, None],
                              interval=0.18)[0].splitlines()
    assert curves[3] == '    title "MNIST, tuned: validation accuracy per epoch"'
    # Mermaid labels a numeric axis with a handful of round ticks, not 50 labels
    assert curves[4] == '    x-axis "epoch" 1 --> 50'
    low, high = map(float, re.fullmatch(r'    y-axis "validation accuracy \(%\)" (\S+) --> (\S+)',
                                        curves[5]).groups())
    # fitted to the data (97.03-98.60 %) and the band (98.50 +- 0.18), not 10 points below
    assert 96.5 <= low < 97.03 and 98.68 < high <= 99.0, curves[5]
    # the band first (drawn under the runs): the base's last value +- the interval, in orange
    assert curves[1] == ('%%{init: {"themeVariables": {"xyChart": {"plotColorPalette": '
                         '"#f28e2b, #f28e2b, #9e9e9e, #1f77b4"}}}}%%')
    lines = [line for line in curves if line.startswith("    line ")]
    assert [set(line[10:-1].split(", ")) for line in lines[:2]] == [{"98.32"}, {"98.68"}]
    assert [len(line.split(", ")) for line in lines] == [50] * 4


def test_a_fitted_range_keeps_a_little_room_and_never_passes_0_or_100():
    assert pr_report.axis([("line", "c", [50.0, 90.0])]) == (46, 94)
    assert pr_report.axis([("line", "c", [99.5, 99.9])]) == (99.4, 100)
    assert pr_report.axis([("bar", "c", [0.0, 3.0])]) == (0, 3.3)
    assert pr_report.axis([]) == (0, 100)


def test_unchanged_rows_fold_into_a_count():
    metrics = {"test_accuracy": (0.9, 0.91), "test_nll": (0.3, 0.3),
               "reconstruction_mse.layer1": (0.06, 0.06)}
    per_class = [pd.DataFrame({"class": ["0", "1"], "test_accuracy": [0.9, 0.8]}),
                 pd.DataFrame({"class": ["0", "1"], "test_accuracy": [0.95, 0.8]})]
    table = pr_report.metrics_table(["0", "1"], metrics, per_class)
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows[2:]] == ["| test_accuracy",
                                                          "| accuracy of class 0"]
    assert table.endswith("\n\n3 more rows unchanged (test_nll, reconstruction_mse.layer1, "
                          "accuracy of class 1).")
    same = pr_report.metrics_table(["0"], {"test_accuracy": (0.9, 0.9)}, [per_class[0]] * 2)
    assert same == "All 2 rows unchanged (test_accuracy, accuracy of class 0)."


def test_stages_whose_lock_entries_match_the_base_were_not_re_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lock = {"schema": "2.0", "stages": {
        "download@mnist": {"cmd": "a"},
        "finetune_classifier@lecture-mnist": {"cmd": "b", "params": {"lr": 0.1}},
        "evaluate@lecture-mnist": {"cmd": "c"}, "evaluate@tuned-mnist": {"cmd": "d"}}}
    head = {**lock, "stages": {**lock["stages"], "finetune_classifier@lecture-mnist": {
        "cmd": "b", "params": {"lr": 0.2}}}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(head))
    monkeypatch.setattr(pr_report, "base_text", lambda base, path: yaml.safe_dump(lock))
    assert pr_report.re_run("main", [("lecture", "mnist"), ("tuned", "mnist")]) == {
        ("lecture", "mnist")}
    monkeypatch.setattr(pr_report, "base_text", lambda base, path: None)  # a first PR
    assert pr_report.re_run("main", [("lecture", "mnist"), ("tuned", "mnist")]) == {
        ("lecture", "mnist"), ("tuned", "mnist")}


def test_the_verdict_of_a_run_not_re_run_says_so():
    assert pr_report.not_re_run("tuned", ["MNIST", "Fashion-MNIST"]) == (
        "- **tuned** (MNIST, Fashion-MNIST): not re-run on this branch: unchanged")


def test_the_base_is_named_by_ref_and_short_commit():
    short = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60).stdout.strip()
    assert pr_report.base_name("HEAD") == f"`HEAD` at `{short}`"
    assert pr_report.base_name("no-such-ref-\x00") == "<code>no-such-ref-\\x00</code>" or \
        pr_report.base_name("no-such-ref-\x00").startswith("`no-such-ref-")


def test_verdict_weighs_the_change_against_the_prediction_interval_of_a_re_run():
    title = "**MNIST, lecture**: test accuracy 91.33 % → "
    # std 0.25 points over 3 seeds: t(0.975, 2) 4.3027 * 0.25 * sqrt(1 + 1/3) = 1.24 points
    assert pr_report.verdict("MNIST, lecture", 0.9133, 0.9173, (0.0025, 3, "s.csv")) == (
        f"- {title}91.73 %: +0.40 points, within seed noise (95 % prediction interval of a "
        "re-run: ±1.24 points, from a seed std of 0.25 over 3 seeds, `s.csv`)")
    # std 0.10 over 5 seeds: 2.7764 * 0.10 * sqrt(1.2) = 0.30 points; twice the std (the rule
    # before) would have called 0.50 points within
    assert pr_report.verdict("MNIST, lecture", 0.9133, 0.9083, (0.0010, 5, "s.csv")) == (
        f"- {title}90.83 %: -0.50 points, beyond seed noise (95 % prediction interval of a "
        "re-run: ±0.30 points, from a seed std of 0.10 over 5 seeds, `s.csv`)")
    assert pr_report.verdict("MNIST, lecture", 0.9133, 0.9133, None).endswith(
        ": +0.00 points, seed noise unknown (no ablation summary for this recipe and dataset)")
    assert pr_report.verdict("MNIST, lecture", None, 0.9133, None) == (
        "- **MNIST, lecture**: no metrics at the base yet; test accuracy 91.33 %")


def write_ablation_summary(folder, rows, path=pr_report.SEED_SUMMARIES[0]):
    """A small ablation_summary.csv as scripts.ablation writes it: (arm, recipe, dataset,
    test_accuracy_std) rows, 3 seeds each (1 where std is "", as one seed has no spread)."""
    path = folder / path
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{recipe},{dataset},{arm},0.9,{std},{3 if std != '' else 1},{std}"
             for arm, recipe, dataset, std in rows]
    path.write_text("\n".join([SUMMARY_HEADER.strip(), *lines]) + "\n")


def test_seed_noise_is_the_greedy_arms_spread(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert pr_report.seed_noise() == {}
    write_ablation_summary(tmp_path, [("greedy", "lecture", "mnist", 0.0025),
                                      ("end_to_end", "lecture", "mnist", 0.01),
                                      ("greedy", "tuned", "mnist", "")])  # one seed: no std
    assert pr_report.seed_noise() == {
        ("lecture", "mnist"): (0.0025, 3, pr_report.SEED_SUMMARIES[0])}


def test_seed_noise_of_the_tuned_recipe_as_it_is_now_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_ablation_summary(tmp_path, [("greedy", "tuned", "mnist", 0.002),
                                      ("greedy", "lecture", "mnist", 0.003)])
    write_ablation_summary(tmp_path, [("greedy", "tuned", "mnist", 0.0006)],
                           pr_report.SEED_SUMMARIES[1])
    noise = pr_report.seed_noise()
    assert noise[("tuned", "mnist")] == (0.0006, 3, pr_report.SEED_SUMMARIES[1])
    assert noise[("lecture", "mnist")][0] == 0.003


# ------------------------------------------------------------------ end to end

@pytest.fixture(scope="module")
def repo(tmp_path_factory, reproduced):
    path = copy_of(reproduced, tmp_path_factory.mktemp("pr_report") / "repo")
    params_file = path / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    assert params["lecture"]["finetune_classifier"]["lr"] == 0.1
    params["lecture"]["finetune_classifier"]["lr"] = 0.2
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    dvc("repro", cwd=path)
    write_ablation_summary(path, [("greedy", "lecture", d, std) for d, std in NOISE.items()])
    return path


def report(repo, base, out):
    """Run the script as CI does; the text of report.md and its folder."""
    run([sys.executable, "-m", "scripts.pr_report", "--base", base, "--out", out,
         "--run-url", RUN_URL], repo)
    return (repo / out / "report.md").read_text(), repo / out


def check_comment(text, folder, charts):
    """The comment body: the marker first, no image links (nothing to host), `charts` Mermaid
    blocks, the artifact's run linked; the PNGs it points to are readable, in `folder`."""
    assert text.startswith(pr_report.MARKER + "\n")
    assert "![" not in text and "<img" not in text.lower(), "no image links in the comment"
    assert re.findall(r"https?://[^\s)]+", text) == [RUN_URL]
    blocks = render_mermaid.mermaid_blocks(text)
    assert len(blocks) == text.count("```mermaid") == charts
    assert all("\nxychart-beta\n" in block for block in blocks)
    pngs = sorted(path.name for path in folder.glob("*.png"))
    for name in pngs:
        assert matplotlib.image.imread(folder / name).ndim == 3, name
    return pngs


def test_report_shows_what_the_lr_change_changed_and_only_that(repo):
    text, folder = report(repo, "HEAD", "report")
    assert re.search(r"^\| `lecture\.finetune_classifier\.lr` +\| `0\.1` +\| `0\.2` +\|$", text,
                     re.MULTILINE), text
    assert text.count("finetune_classifier.lr") == 1, text
    short = run(["git", "rev-parse", "--short=7", "HEAD"], repo).strip()
    assert f"Base `HEAD` at `{short}` → head" in text
    for recipe in RECIPES:
        if recipe != "lecture":  # not re-run: one line, no section, no figures
            titles = ", ".join(info.title for info in DATASETS.values())
            assert (f"- **{recipe}** ({titles}): not re-run on this branch: unchanged"
                    in text.splitlines()), text
            assert f", {recipe}" not in text, text
            continue
        for dataset, info in DATASETS.items():
            path = f"metrics/{recipe}/{dataset}.json"
            new = json.loads((repo / path).read_text())["test_accuracy"]
            old = json.loads(run(["git", "show", f"HEAD:{path}"], repo))["test_accuracy"]
            change = round(100 * (new - old), 2) + 0.0
            where = "within" if dataset == "fashion_mnist" or change == 0 else "beyond"
            line = (f"- **{info.title}, {recipe}**: test accuracy {100 * old:.2f} % → "
                    f"{100 * new:.2f} %: {change:+.2f} points, {where} seed noise (95 % "
                    "prediction interval of a re-run: ±")
            assert line in text, f"no verdict {line!r} in:\n{text}"
            assert f"## {info.title}, {recipe}" in text
            for name in info.class_names:  # a row, or named among the unchanged
                assert f"accuracy of class {name}" in text
    assert "| +0 |" not in text  # unchanged rows are folded into a count
    assert check_comment(text, folder, 2 * len(DATASETS)) == sorted(
        f"lecture_{d}_{kind}.png" for d in DATASETS
        for kind in ("curves", "confusion_base", "confusion_head"))
    # the report folder ignores itself: `git add -A` commits none of it
    assert run(["git", "status", "--porcelain", "--", "report"], repo).strip() == ""


def test_report_on_a_base_without_metrics_says_so_and_draws_the_head(repo):
    text, folder = report(repo, "HEAD~1", "report_first")
    for recipe in RECIPES:
        for info in DATASETS.values():
            assert f"- **{info.title}, {recipe}**: no metrics at the base yet" in text, text
    pngs = check_comment(text, folder, 2 * len(RECIPES) * len(DATASETS))
    assert len(pngs) == 2 * len(RECIPES) * len(DATASETS)  # curves and the head's confusion


def test_the_comment_and_the_plots_page_render_in_chromium(repo, tmp_path):
    """As a person sees them: every Mermaid block of the comment renders (Mermaid's own
    parser and renderer, in headless Chromium, as GitHub draws them), the comment renders
    as a page with its charts, and `dvc plots diff` of the same branch, on the project's
    page template, draws every chart with local Vega. The screenshots go to tmp_path, or
    to $SAE_SCREENSHOTS where set, to be looked at."""
    if render_mermaid.browser() is None:
        pytest.skip("no Chromium on PATH (Debian: apt-get install chromium)")
    if render_mermaid.mermaid_script() is None:
        pytest.skip("no mermaid.min.js: `npm install --no-save mermaid@11` in the repository "
                    "root, or set MERMAID_JS to its path")
    shots = Path(os.environ.get("SAE_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    text, _ = report(repo, "HEAD", "report_rendered")
    blocks = render_mermaid.mermaid_blocks(text)
    assert render_mermaid.render(blocks) == ["ok"] * len(blocks)
    # and a broken block is caught, so that "ok" means something
    assert render_mermaid.render(["xychart-beta\n    line [1, 2"])[0].startswith("error: ")
    assert render_mermaid.render_markdown(text, shots / "comment.png") == ["ok"] * len(blocks)
    assert matplotlib.image.imread(shots / "comment.png").shape[1] == 920
    if render_mermaid.vega_scripts() is None:
        pytest.skip("no Vega: `npm install --no-save vega@5 vega-lite@5 vega-embed@6` in the "
                    "repository root")
    page = ROOT / ".dvc" / "plots" / "page.html"
    run([sys.executable, "-m", "dvc", "plots", "diff", "HEAD", "--html-template", str(page),
         "-o", str(tmp_path / "dvc_plots")], repo)
    html_text = (tmp_path / "dvc_plots" / "index.html").read_text("utf-8")
    assert '<meta charset="utf-8">' in html_text
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)  # node_modules is the repository's
        drawn = render_mermaid.render_plots_page(tmp_path / "dvc_plots" / "index.html",
                                                 shots / "plots.png")
    assert drawn["errors"] == [] and drawn["drawn"] == drawn["charts"] > 0, drawn


# ------------------------------------------------------------------ bad data

@pytest.mark.parametrize("text, message", [
    ("", "is not a readable CSV table"),
    ("recipe,dataset,arm\nlecture,mnist,greedy\n", "has no column 'test_accuracy_mean'"),
    (SUMMARY_HEADER + "<<<<<<< HEAD\nlecture,mnist,greedy,0.9,0.01,3,0.02\n=======\n"
     "lecture,mnist,greedy,0.8,0.01,3,0.02\n>>>>>>> other\n", "line 2: test_accuracy_count"),
    (SUMMARY_HEADER + "lecture,mnist,greedy,0.9,-0.5,3,0.02\n",
     "line 2: test_accuracy_std is -0.5; it must be a finite number >= 0"),
    (SUMMARY_HEADER + "lecture,mnist,greedy,nan,0.01,3,0.02\n",
     "line 2: test_accuracy_mean is nan; an accuracy must be a finite number in [0, 1]"),
    (SUMMARY_HEADER + "lecture,mnist,greedy,0.9,0.01,3,lots\n",
     "line 2: test_accuracy_ci95 is 'lots'"),
])
def test_seed_noise_refuses_a_broken_summary_in_one_line(tmp_path, monkeypatch, text, message):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / pr_report.SEED_SUMMARIES[0]
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(SystemExit) as stop:
        pr_report.seed_noise()
    assert str(stop.value).startswith(f"error: {pr_report.SEED_SUMMARIES[0]}")
    assert message in str(stop.value) and "\n" not in str(stop.value)


@pytest.mark.parametrize("key, value, allowed", [
    ("test_accuracy", float("nan"), "an accuracy must be a finite number in [0, 1]"),
    ("test_accuracy", True, "an accuracy must be a finite number in [0, 1]"),
    ("test_accuracy", "0.17", "an accuracy must be a finite number in [0, 1]"),
    ("test_accuracy", 1.5, "an accuracy must be a finite number in [0, 1]"),
    ("test_nll", -0.2, "it must be a finite number >= 0"),
])
def test_metrics_that_are_no_numbers_in_range_stop_the_report(key, value, allowed):
    found = {"test_accuracy": (0.9, 0.91), "test_nll": (0.3, 0.29), key: (0.5, value)}
    with pytest.raises(SystemExit) as stop:
        pr_report.checked_metrics(found, "metrics/lecture/mnist.json", "main")
    assert str(stop.value) == (f"error: metrics/lecture/mnist.json (workspace): {key} is "
                               f"{value!r}; {allowed}")
    good = {"test_accuracy": (None, 0.91), "reconstruction_mse.layer1": (0.066, 0.065)}
    assert pr_report.checked_metrics(good, "m.json", "main") == good


def test_a_per_class_table_with_a_bad_accuracy_stops_the_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no git here: the base side is absent
    (tmp_path / "per_class.csv").write_text("class,test_accuracy\n0,0.98\n1,1.7\n")
    with pytest.raises(SystemExit, match=r"^error: per_class.csv \(workspace\): test_accuracy "
                                         r"is 1.7; an accuracy must be"):
        pr_report.read_sides("main", "per_class.csv", ("class", "test_accuracy"))
    (tmp_path / "per_class.csv").write_text("klass,accuracy_of\n0,0.98\n")
    with pytest.raises(SystemExit, match="has no column 'class'"):
        pr_report.read_sides("main", "per_class.csv", ("class", "test_accuracy"))


def test_out_naming_a_file_is_one_line_and_leaves_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.md").write_text("mine\n")
    with pytest.raises(SystemExit, match=r"^error: --out notes.md is a file; name a folder"):
        pr_report.main(["--base", "main", "--out", "notes.md"])
    assert (tmp_path / "notes.md").read_text() == "mine\n"
