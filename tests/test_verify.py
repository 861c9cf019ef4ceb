"""scripts/verify.py in a small git + DVC repository: committed metrics, then the workspace's
within or beyond the tolerances (no training: `dvc commit` records a file as a stage's output,
as a re-run would)."""
import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, dvc, run

COMMITTED = {"test_accuracy": 0.9133, "test_nll": 0.291864, "epochs": 10,
             "reconstruction_mse": {"layer1": 0.066003, "stacked": 0.067488},
             "confusion_matrix": [[1, 0], [0, 1]]}  # DVC leaves lists out
RECIPES = ("lecture", "tuned")
# A stage per recipe of params.yaml that "writes" metrics/<recipe>/mnist.json from
# in-<recipe>.txt.
DVC_YAML = """stages:
  evaluate:
    matrix:
      recipe: ${recipes}
    cmd: exit 1
    deps:
      - in-${item.recipe}.txt
    metrics:
      - metrics/${item.recipe}/mnist.json:
          cache: false
metrics:
  - metrics
"""


@pytest.fixture
def repo(tmp_path):
    """A git + DVC repository with both recipes' metrics committed as their stages' outputs."""
    run(["git", "init", "-q"], tmp_path)
    dvc("init", "-q", cwd=tmp_path)
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    (tmp_path / "params.yaml").write_text(f"recipes: [{', '.join(RECIPES)}]\n")
    for recipe in RECIPES:
        (tmp_path / f"in-{recipe}.txt").write_text("data\n")
        rerun(tmp_path, recipe)
    run(["git", "add", "-A"], tmp_path)
    run(["git", "commit", "-qm", "results"], tmp_path)
    return tmp_path


def rerun(repo, recipe="lecture", metrics=None):
    """What a re-run of the recipe's stage leaves: its metrics file, recorded in dvc.lock."""
    path = repo / "metrics" / recipe / "mnist.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(COMMITTED if metrics is None else metrics))
    dvc("commit", "-f", "-q", f"evaluate@{recipe}", cwd=repo)


def verify(repo):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "verify.py")], cwd=repo,
                          capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


def statuses(stdout, recipe="lecture"):
    """{metric: "ok" or "FAIL"} of one recipe's metrics file, from the printed table."""
    return {line.split()[1]: line.split()[-1] for line in stdout.splitlines()
            if line.startswith(f"metrics/{recipe}/")}


def test_unchanged_metrics_pass_with_a_table_of_every_metric(repo):
    code, out, _ = verify(repo)
    assert code == 0, out
    assert out.splitlines()[0].split() == ["file", "metric", "committed", "workspace",
                                           "difference", "tolerance", "ok"]
    for recipe in RECIPES:
        assert statuses(out, recipe) == {
            metric: "ok" for metric in ("test_accuracy", "test_nll", "epochs",
                                        "reconstruction_mse.layer1", "reconstruction_mse.stacked")}
    assert "10 of 10 metrics within tolerance of HEAD" in out


def test_differences_within_tolerance_pass(repo):
    rerun(repo, metrics={**COMMITTED, "test_accuracy": 0.9133 + 0.0029,
                         "test_nll": 0.291864 * 1.019,
                         "reconstruction_mse": {"layer1": 0.066003 * 0.981, "stacked": 0.067488}})
    code, out, _ = verify(repo)
    assert code == 0, out


@pytest.mark.parametrize("change, metric", [
    ({"test_accuracy": 0.9133 - 0.0031}, "test_accuracy"),
    ({"test_nll": 0.291864 * 1.021}, "test_nll"),
    ({"reconstruction_mse": {"layer1": 0.066003 * 0.979, "stacked": 0.067488}},
     "reconstruction_mse.layer1"),
    ({"epochs": 11}, "epochs"),  # a metric without a tolerance must be equal
])
def test_a_difference_beyond_tolerance_fails_on_its_row(repo, change, metric):
    rerun(repo, metrics={**COMMITTED, **change})
    code, out, _ = verify(repo)
    assert code == 1, out
    assert [m for m, ok in statuses(out).items() if ok == "FAIL"] == [metric]
    assert set(statuses(out, "tuned").values()) == {"ok"}


def test_a_metric_missing_from_the_workspace_fails(repo):
    rerun(repo, metrics={"test_accuracy": 0.9133})
    code, out, _ = verify(repo)
    assert code == 1
    assert "missing" in out and statuses(out)["test_nll"] == "FAIL"


def test_metrics_not_re_run_here_are_listed_not_compared(repo):
    """make pipeline re-runs the lecture recipe only; a hand-edited file is no result either."""
    (repo / "in-tuned.txt").write_text("other data\n")
    code, out, _ = verify(repo)
    assert code == 0, out
    assert statuses(out, "tuned") == {} and set(statuses(out).values()) == {"ok"}
    assert ("not compared, as not re-run here (see `dvc status`): metrics/tuned/mnist.json"
            in out)
    (repo / "metrics" / "lecture" / "mnist.json").write_text(json.dumps(
        {**COMMITTED, "test_accuracy": 0.99}))
    code, _, err = verify(repo)
    assert code == 2
    assert err.strip() == ("error: no metrics re-run here to compare (see `dvc status`); run "
                           "`dvc repro` (make pipeline) first, then verify")


def test_metrics_of_a_recipe_left_out_of_params_are_listed_not_compared(repo):
    """With `recipes: [lecture]` the tuned recipe's file is stale: no stage writes it."""
    (repo / "params.yaml").write_text("recipes: [lecture]\n")
    code, out, _ = verify(repo)
    assert code == 0, out
    assert statuses(out, "tuned") == {} and set(statuses(out).values()) == {"ok"}
    assert ("not compared, as no stage writes them (recipe or dataset not in params.yaml): "
            "metrics/tuned/mnist.json") in out
    assert "5 of 5 metrics within tolerance of HEAD" in out
