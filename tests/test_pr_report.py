"""The pull-request report: the workflow that posts it passes actionlint, and
scripts/pr_report.py compares a base commit with the workspace on a tiny real project.

One repository serves every end-to-end test (each `dvc repro` of it takes about a minute):
  HEAD~1  the project before any run: a base without metrics or plots (a first PR);
  HEAD    after `dvc repro`: a base with metrics and plots;
  workspace  finetune_classifier.lr changed from 0.1 to 0.2 and reproduced: the head.
"""
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
import yaml

from sae.datasets import DATASETS
from tests.conftest import ROOT, dvc, run, tiny_project

WORKFLOW = ROOT / ".github" / "workflows" / "pr-report.yml"
SCRIPT = ROOT / "scripts" / "pr_report.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")
CHANGE = r"([+-]\d+\.\d\d|±0\.00) points"


def load_script():
    spec = importlib.util.spec_from_file_location("pr_report", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def actionlint():
    """The actionlint binary of this environment (the `test` extra installs it)."""
    beside = Path(sys.executable).parent / "actionlint"
    found = str(beside) if beside.is_file() else shutil.which("actionlint")
    if not found:
        pytest.fail("actionlint is not installed: run `pip install -e '.[test]'` "
                    "(or `make setup`), which installs it from the `test` extra")
    return found


def test_workflow_passes_actionlint():
    done = subprocess.run([actionlint(), str(WORKFLOW)], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0, f"actionlint found problems:\n{done.stdout}{done.stderr}"


def test_accuracy_changes_are_percentage_points_rounded_like_the_report():
    script = load_script()
    assert script.points(0.0077) == "+0.77 points"
    assert script.points(-0.01) == "-1.00 points"
    assert script.points(0.00004) == "±0.00 points"
    assert [script.arrow(d) for d in (0.01, -0.01, 0.00004)] == ["▲", "▼", "="]


# ------------------------------------------------------------------ end to end

@pytest.fixture(scope="module")
def repo(tmp_path_factory, real_data):
    path = tiny_project(tmp_path_factory.mktemp("pr_report") / "repo", real_data)
    dvc("repro", cwd=path)
    run(["git", "add", "-A"], path)
    run(["git", "commit", "-qm", "first run"], path)
    params_file = path / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    assert params["finetune_classifier"]["lr"] == 0.1
    params["finetune_classifier"]["lr"] = 0.2
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    dvc("repro", cwd=path)
    return path


def report(repo, base, out):
    """Run the script as CI does; the text of report.md and its folder."""
    run([sys.executable, "scripts/pr_report.py", "--base", base, "--out", out], repo)
    return (repo / out / "report.md").read_text(), repo / out


def dvc_json(*args, cwd):
    done = subprocess.run([sys.executable, "-m", "dvc", *args, "--json"], cwd=cwd,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def assert_images_are_pngs(text, folder):
    """Every image report.md links is a readable PNG beside it; returns their names."""
    names = IMAGE_LINK.findall(text)
    for name in names:
        assert "/" not in name, f"{name}: image links must be file names beside report.md"
        data = (folder / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE), name
        assert matplotlib.image.imread(folder / name).ndim == 3, name
    return names


def test_report_shows_the_lr_change_and_the_accuracy_change_dvc_measures(repo):
    text, folder = report(repo, "HEAD", "report")
    lr_rows = [line for line in text.splitlines() if "finetune_classifier.lr" in line]
    assert len(lr_rows) == 1 and "0.1" in lr_rows[0] and "0.2" in lr_rows[0], text
    diff = dvc_json("metrics", "diff", "HEAD", "--all", cwd=repo)
    for dataset, info in DATASETS.items():
        accuracy = diff[f"metrics/{dataset}.json"]["test_accuracy"]
        expected = round(100 * (accuracy["new"] - accuracy["old"]), 2)
        verdict = re.search(rf"\*\*{re.escape(info.title)}\*\*: test accuracy "
                            rf"(\d+\.\d\d) % → (\d+\.\d\d) % \({CHANGE}\)", text)
        assert verdict, f"no verdict line for {info.title}:\n{text}"
        old, new, change = verdict.groups()
        assert float(old) == round(100 * accuracy["old"], 2)
        assert float(new) == round(100 * accuracy["new"], 2)
        assert (0.0 if change.startswith("±") else float(change)) == expected
        row = re.search(rf"\| test accuracy \| {old} % \| {new} % \| {re.escape(change)} points",
                        text)
        assert row, f"no test-accuracy row for {info.title}:\n{text}"
        for name in info.class_names:
            assert f"accuracy of class {name} |" in text
    names = assert_images_are_pngs(text, folder)
    assert sorted(names) == sorted(f"{d}_{kind}.png" for d in DATASETS
                                   for kind in ("curves", "confusion"))
    assert "head only" not in text


def test_report_on_a_base_without_metrics_says_so_and_draws_the_head(repo):
    text, folder = report(repo, "HEAD~1", "report_first")
    for info in DATASETS.values():
        assert re.search(rf"\*\*{re.escape(info.title)}\*\*: no metrics at base `HEAD~1` yet",
                         text), text
    assert text.count("No training curves at base `HEAD~1`: head only.") == len(DATASETS)
    assert text.count("No confusion matrix at base `HEAD~1`: head only.") == len(DATASETS)
    names = assert_images_are_pngs(text, folder)
    assert len(names) == 2 * len(DATASETS)
