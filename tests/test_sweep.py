"""Sweeps (docs/sweeps.md): the summary's flags and tables, a local sweep through
scripts/sweep.sh summarised on a small real project, and the fan-out/fan-in of
.github/workflows/sweep.yml rehearsed with clones as runners, which must give the same table.
"""
import csv
import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scripts import sweep_keys, sweep_summary
from tests.conftest import ROOT, clone_origin, dvc, project_with_remotes, run
from tests.test_experiments import assert_same_metrics
from tests.test_plots import PNG_SIGNATURE
from tests.test_pr_report import actionlint

LR = "lecture.finetune_classifier.lr"
POINTS = (0.2, 1000000)  # a working lr and one that collapses the classifier
FAILING = "lecture.finetune_classifier.momentum=1.5"  # refused by check_params: a failed run
FILES = ("metrics/lecture/fashion_mnist.json", "metrics/lecture/mnist.json")


def test_workflow_passes_actionlint():
    workflow = ROOT / ".github" / "workflows" / "sweep.yml"
    done = subprocess.run([actionlint(), str(workflow)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"actionlint found problems:\n{done.stdout}{done.stderr}"


def test_grid_is_checked_by_sweep_keys_and_secrets_reach_only_the_steps_using_the_remote():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "sweep.yml").read_text())
    grid = next(step["run"] for step in workflow["jobs"]["grid"]["steps"] if "run" in step
                and "points" in step["run"])
    assert 'python -m scripts.sweep_keys --grid "$GRID"' in grid
    for name, job in workflow["jobs"].items():
        assert "secrets." not in json.dumps(job.get("env", {})), f"job {name}: secrets job-wide"
    with_secrets = {step["name"] for job in workflow["jobs"].values() for step in job["steps"]
                    if "secrets." in json.dumps(step.get("env", {}))}
    assert with_secrets == {"Run the experiment", "Push the experiment and its outputs"}


# ------------------------------------------------------------------ the grid's keys

BAD_KEYS = ["../outside.yaml:a=1", "params.yaml:lecture.finetune_classifier.lr=0.2",
            "lecture..finetune_classifier.lr=0.2", "lecture.finetune_classifier.nope=1",
            "+lecture.extra=1", "lecture.finetune_classifier=3", "lecture.finetune_classifier.lr"]


@pytest.mark.parametrize("assignment", BAD_KEYS)
def test_a_key_that_is_no_param_of_params_yaml_is_refused(assignment, monkeypatch):
    monkeypatch.chdir(ROOT)
    keys = sweep_keys.param_keys()
    assert sweep_keys.problem(assignment, keys).endswith(sweep_keys.ALLOWED)
    with pytest.raises(SystemExit, match="^error: "):
        sweep_keys.main(["--grid", json.dumps([f"{LR}=0.2", [assignment]])])


def test_params_of_params_yaml_pass_and_the_grid_becomes_the_matrix(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    keys = sweep_keys.param_keys()
    for assignment in (f"{LR}=0.1,0.2", "common.seed=3", "datasets=[mnist]"):
        assert sweep_keys.problem(assignment, keys) is None
    sweep_keys.main(["--grid", json.dumps([f"{LR}=0.1", ["common.seed=1", f"{LR}=0.2"]])])
    assert json.loads(capsys.readouterr().out) == [[f"{LR}=0.1"], ["common.seed=1", f"{LR}=0.2"]]
    assert sweep_keys.set_params(["-n", "x", "-S", "a=1", "--set-param=b=2", "-Sc=3",
                                  "--set-param", "d=4", "--queue"]) == ["a=1", "b=2", "c=3", "d=4"]
    for grid in ("[]", '"a=1"', "[[]]", "[1]", "not json"):
        with pytest.raises(SystemExit, match="^error: --grid: "):
            sweep_keys.main(["--grid", grid])


def test_sweep_sh_refuses_a_key_outside_params_yaml_before_queueing(tmp_path):
    shutil.copy(ROOT / "params.yaml", tmp_path)
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts",
                    ignore=shutil.ignore_patterns("__pycache__"))
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    done = subprocess.run(["bash", "scripts/sweep.sh", "-j", "1", "-S", f"{LR}=0.2", "-S",
                           "../outside.yaml:a=1"], cwd=tmp_path, capture_output=True,
                          text=True, env=dict(os.environ, PATH=path), timeout=120)
    assert done.returncode == 1
    assert done.stderr.startswith("error: the key '../outside.yaml:a' of '../outside.yaml:a=1' "
                                  "is no dotted params.yaml key"), done.stderr
    assert "sweep:" not in done.stdout and not (tmp_path.parent / "outside.yaml").exists()


# ------------------------------------------------------------------ the summary's logic

def exp_entry(rev, lr, scores, error=None):
    """An entry of `dvc exp show --json`: params and {metrics file: (accuracy, nll)}."""
    return {"rev": rev, "error": error, "data": {
        "params": {"params.yaml": {"data": {"lecture": {"finetune_classifier": {"lr": lr}},
                                            "recipes": ["lecture"]}}},
        "metrics": {path: {"data": {"test_accuracy": a, "test_nll": n,
                                    "reconstruction_mse": {"layer1": 0.06}}}
                    for path, (a, n) in scores.items()}}}


def experiment(name, lr, scores, state="success", error=None):
    return {"name": name, "executor": {"state": state} if state else None,
            "revs": [exp_entry(name * 5, lr, scores, error)]}


def shown():
    """The issue's lr sweep as exp show reports it, with a failed and a queued run, which DVC
    lists with the baseline's metrics files."""
    good = {FILES[0]: (0.81, 0.52), FILES[1]: (0.91, 0.29)}
    head = exp_entry("a" * 40, 0.1, good) | {"name": "main"}
    head["experiments"] = [
        experiment("lr08", 0.8, {FILES[0]: (0.1, 2.3), FILES[1]: (0.098, 99.7)}),
        experiment("lr045", 0.45, {FILES[0]: (0.6, 12.5), FILES[1]: (0.46, 1.6)}),
        experiment("lr02", 0.2, {FILES[0]: (0.82, 0.5), FILES[1]: (0.93, 0.25)}, state=None),
        experiment("lr3", 3, good, state="failed", error={"msg": "Experiment run failed"}),
        experiment("lr5", 5, good, state="queued"),
    ]
    workspace = exp_entry("workspace", 0.2, good) | {"experiments": None}
    return [workspace, head]


def test_summary_flags_collapsed_and_diverged_runs_and_ignores_failed_runs_metrics():
    table, swept = sweep_summary.summary_table(shown())
    assert swept == [LR]
    rows = {(r["metrics"], r[LR]): r for r in table.to_dict("records")}
    assert len(rows) == len(table) == 2 * 6  # no workspace row
    mnist, fashion = FILES[1], FILES[0]
    assert rows[mnist, 0.1]["baseline"] and rows[mnist, 0.1]["experiment"] == "main"
    assert [rows[mnist, lr]["flag"] for lr in (0.1, 0.2, 0.45, 0.8, 3, 5)] == [
        "", "", "", "collapsed", "diverged", "queued"]  # 0.8: 9.8 % and NLL 99.7
    assert rows[fashion, 0.45]["flag"] == "collapsed"  # NLL 12.5 alone
    assert rows[fashion, 0.8]["flag"] == "collapsed"  # accuracy 10 % alone
    for lr in (3, 5):
        assert math.isnan(rows[mnist, lr]["test_accuracy"]), "stale baseline metrics shown"
    assert [r[LR] for r in table.to_dict("records")][:6] == [0.1, 0.2, 0.45, 0.8, 3, 5]
    # a baseline without results (none committed yet) is no diverged run
    assert sweep_summary.flag(None, True, math.nan, math.nan) == ""
    assert sweep_summary.flag(None, False, math.nan, math.nan) == "diverged"


def test_summary_writes_a_table_per_metrics_file_a_csv_and_a_png(tmp_path):
    sweep_summary.write_summary(shown(), tmp_path)
    text = (tmp_path / "summary.md").read_text()
    assert "## lecture/mnist" in text and "## lecture/fashion_mnist" in text
    assert f"| experiment | {LR} | test accuracy | test NLL | flag |" in text
    assert "| **main** (baseline) | 0.1 | 91.00 % | 0.29 |  |" in text
    assert "| lr08 | 0.8 | 9.80 % | 99.7 | **collapsed** |" in text
    assert "| lr3 | 3 | — | — | **diverged** |" in text
    assert "![" in text and (tmp_path / "summary.png").read_bytes().startswith(PNG_SIGNATURE)
    assert len(list(csv.DictReader(io.StringIO((tmp_path / "summary.csv").read_text())))) == 12


def tuned_run(name, dropout, test_accuracy, val_accuracy, state="success"):
    """A tuned-recipe run as exp show reports it: the headline file and fine-tuning's DVCLive
    file, which holds the validation accuracy."""
    entry = {"rev": name * 8, "error": None, "data": {
        "params": {"params.yaml": {"data": {"tuned": {"finetune_classifier": {
            "dropout": dropout}}}}},
        "metrics": {"metrics/tuned/mnist.json": {"data": {"test_accuracy": test_accuracy,
                                                          "test_nll": 0.05}},
                    "plots/tuned/mnist/finetune_classifier/metrics.json": {"data": {
                        "step": 49, "val_accuracy": val_accuracy, "val_loss": 0.06}}}}}
    return {"name": name, "executor": {"state": state}, "revs": [entry]}


def test_the_run_with_the_best_validation_accuracy_is_selected_whatever_its_test_score():
    head = tuned_run("base", 0.3, 0.987, 0.986)["revs"][0] | {"name": "main"}
    head["experiments"] = [tuned_run("d05", 0.5, 0.985, 0.9875),   # best on validation
                           tuned_run("d02", 0.2, 0.990, 0.9850),   # best on test: not chosen
                           tuned_run("d09", 0.9, 0.1, 0.999)]      # collapsed: never chosen
    table, swept = sweep_summary.summary_table([head])
    assert swept == ["tuned.finetune_classifier.dropout"]
    assert table.set_index("experiment").val_accuracy.to_dict() == {
        "main": 0.986, "d02": 0.985, "d05": 0.9875, "d09": 0.999}
    assert table[table.selected].experiment.tolist() == ["d05"]
    text = sweep_summary.markdown(table, swept, None)
    assert "| validation accuracy | selected | flag |" in text
    assert "| d05 | 0.5 | 98.50 % | 0.05 | 98.75 % | **selected** |  |" in text


def test_the_recipe_keeps_the_setting_with_the_best_mean_validation_accuracy_over_datasets():
    def run(name, dropout, mnist, fashion):
        entry = tuned_run(name, dropout, 0.9, mnist)
        metrics = entry["revs"][0]["data"]["metrics"]
        metrics["metrics/tuned/fashion_mnist.json"] = {"data": {"test_accuracy": 0.9,
                                                               "test_nll": 0.3}}
        metrics["plots/tuned/fashion_mnist/finetune_classifier/metrics.json"] = {
            "data": {"val_accuracy": fashion}}
        return entry
    head = run("base", 0.3, 0.986, 0.904)["revs"][0] | {"name": "main"}
    # a: best on MNIST alone; b: best on Fashion-MNIST and on the mean of both
    head["experiments"] = [run("a", 0.5, 0.990, 0.900), run("b", 0.2, 0.987, 0.907)]
    table, swept = sweep_summary.summary_table([head])
    assert sweep_summary.recipe_choices(table) == {"tuned": ("b", pytest.approx(0.947))}
    assert set(table[table.selected].experiment) == {"a", "b"}
    assert "Best for the **tuned** recipe as a whole (mean validation accuracy over its " \
        "datasets): **b**, 94.70 %." in sweep_summary.markdown(table, swept, None)


def test_without_a_validation_part_nothing_is_selected_and_the_table_has_no_such_column():
    table, swept = sweep_summary.summary_table(shown())
    assert table.val_accuracy.isna().all() and not table.selected.any()
    assert "selected" not in sweep_summary.markdown(table, swept, None)


@pytest.mark.parametrize("key, value, allowed", [
    ("test_accuracy", "0.17", "an accuracy must be a finite number in [0, 1]"),
    ("test_accuracy", True, "an accuracy must be a finite number in [0, 1]"),
    ("test_accuracy", float("nan"), "an accuracy must be a finite number in [0, 1]"),
    ("test_nll", -0.5, "it must be a finite number >= 0"),
])
def test_summary_refuses_metrics_that_are_no_numbers_in_range(key, value, allowed):
    shown_runs = shown()
    metrics = shown_runs[1]["experiments"][1]["revs"][0]["data"]["metrics"]  # lr045's
    metrics[FILES[1]]["data"][key] = value
    with pytest.raises(SystemExit) as stop:
        sweep_summary.summary_table(shown_runs)
    assert str(stop.value) == (f"error: experiment lr045, {FILES[1]}: {key} is {value!r}; "
                               f"{allowed}")


def test_a_collapsed_run_s_infinite_or_nan_nll_is_a_result_not_bad_data():
    shown_runs = shown()
    metrics = shown_runs[1]["experiments"][0]["revs"][0]["data"]["metrics"]  # lr08's
    metrics[FILES[1]]["data"]["test_nll"] = float("inf")
    metrics[FILES[0]]["data"]["test_nll"] = float("nan")
    table, _ = sweep_summary.summary_table(shown_runs)
    assert set(table[table.experiment == "lr08"].flag) == {"collapsed"}


def test_out_naming_a_file_is_one_line_and_leaves_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "summary.md").write_text("mine\n")
    with pytest.raises(SystemExit, match=r"^error: --out summary.md is a file; name a folder"):
        sweep_summary.main(["--out", "summary.md"])
    assert (tmp_path / "summary.md").read_text() == "mine\n"


# ------------------------------------------------------------------ on a real project

def summarise(path, out="summary"):
    """Run the summary as the docs and the workflow do; the rows of its CSV."""
    run([sys.executable, "-m", "scripts.sweep_summary", "--out", out], path)
    return list(csv.DictReader(io.StringIO((path / out / "summary.csv").read_text())))


def by_lr(rows):
    """{(metrics file, lr): row} of the rows that are not flagged diverged."""
    return {(row["metrics"], float(row[LR])): row for row in rows if row["flag"] != "diverged"}


def headline(rows):
    """{"<metrics file>@<lr>": {metric: value}}, the shape assert_same_metrics compares."""
    return {f"{path}@{lr}": {key: float(row[key]) for key in sweep_summary.HEADLINE}
            for (path, lr), row in rows.items()}


@pytest.fixture(scope="module")
def origin(tmp_path_factory, reproduced):
    return project_with_remotes(tmp_path_factory.mktemp("sweep"), reproduced)


@pytest.fixture(scope="module")
def local_sweep(origin):
    """A failing point queued, then the grid run two at a time by scripts/sweep.sh."""
    dvc("exp", "run", "--queue", "-S", FAILING, cwd=origin)
    output = run(["bash", "scripts/sweep.sh", "-j", "2", "-S",
                  f"{LR}={','.join(map(str, POINTS))}"], origin)
    assert "OMP_NUM_THREADS=" in output
    return summarise(origin)


def test_local_sweep_summary_flags_the_collapsed_and_the_failed_run(local_sweep):
    files = {row["metrics"] for row in local_sweep}
    assert set(FILES) <= files
    for path in files:
        rows = [row for row in local_sweep if row["metrics"] == path]
        assert [row["baseline"] for row in rows].count("True") == 1
        failed = [row for row in rows if row["lecture.finetune_classifier.momentum"] == "1.5"]
        assert [(row["flag"], row["test_accuracy"]) for row in failed] == [("diverged", "")]
    for path in FILES:  # the lecture recipe's, which the lr changes
        collapsed = by_lr(local_sweep)[path, POINTS[1]]
        assert collapsed["flag"] == "collapsed" and float(collapsed["test_nll"]) > 10


def test_grid_fanned_out_over_two_runners_and_pulled_gives_the_local_sweep_table(
        origin, local_sweep, tmp_path):
    # What each job of .github/workflows/sweep.yml runs, on a fresh clone of its own.
    for i, lr in enumerate(POINTS):
        runner = clone_origin(origin, tmp_path / f"runner{i}")
        dvc("exp", "run", "--pull", "-S", f"{LR}={lr}", cwd=runner)
        dvc("exp", "push", "origin", cwd=runner)
    # The summary job: every experiment of the commit, the git part only.
    fan_in = clone_origin(origin, tmp_path / "fan-in")
    dvc("exp", "pull", "--no-cache", "origin", cwd=fan_in)
    pulled, local = by_lr(summarise(fan_in)), by_lr(local_sweep)
    assert set(pulled) == set(local)
    assert {(path, lr) for path, lr in pulled if path in FILES} == {
        (path, lr) for path in FILES for lr in (0.1, *POINTS)}
    assert {key: row["flag"] for key, row in pulled.items()} == {
        key: row["flag"] for key, row in local.items()}
    assert_same_metrics(headline(pulled), headline(local))
