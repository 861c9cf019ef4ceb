"""scripts/verify.py in a small git + DVC repository: committed metrics, then the workspace's
within or beyond the tolerances (no training needed)."""
import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, dvc, run

COMMITTED = {"test_accuracy": 0.9133, "test_nll": 0.291864, "epochs": 10,
             "reconstruction_mse": {"layer1": 0.066003, "stacked": 0.067488},
             "confusion_matrix": [[1, 0], [0, 1]]}  # DVC leaves lists out
METRICS = "metrics/lecture/mnist.json"


@pytest.fixture
def repo(tmp_path):
    """A git + DVC repository whose dvc.yaml lists metrics/, with METRICS committed."""
    run(["git", "init", "-q"], tmp_path)
    dvc("init", "-q", cwd=tmp_path)
    (tmp_path / "dvc.yaml").write_text("metrics:\n  - metrics\n")
    write(tmp_path)
    run(["git", "add", "-A"], tmp_path)
    run(["git", "commit", "-qm", "results"], tmp_path)
    return tmp_path


def write(repo, **changes):
    (repo / METRICS).parent.mkdir(parents=True, exist_ok=True)
    (repo / METRICS).write_text(json.dumps({**COMMITTED, **changes}))


def verify(repo):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "verify.py")], cwd=repo,
                          capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


def statuses(stdout):
    """{metric: "ok" or "FAIL"} from the printed table."""
    return {line.split()[1]: line.split()[-1] for line in stdout.splitlines()
            if line.startswith("metrics/")}


def test_unchanged_metrics_pass_with_a_table_of_every_metric(repo):
    code, out, _ = verify(repo)
    assert code == 0, out
    assert out.splitlines()[0].split() == ["file", "metric", "committed", "workspace",
                                           "difference", "tolerance", "ok"]
    assert set(statuses(out)) == {"test_accuracy", "test_nll", "epochs",
                                  "reconstruction_mse.layer1", "reconstruction_mse.stacked"}
    assert set(statuses(out).values()) == {"ok"}
    assert "5 of 5 metrics within tolerance of HEAD" in out


def test_differences_within_tolerance_pass(repo):
    write(repo, test_accuracy=0.9133 + 0.0029, test_nll=0.291864 * 1.019,
          reconstruction_mse={"layer1": 0.066003 * 0.981, "stacked": 0.067488})
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
    write(repo, **change)
    code, out, _ = verify(repo)
    assert code == 1, out
    assert [m for m, ok in statuses(out).items() if ok == "FAIL"] == [metric]


def test_a_metric_missing_from_the_workspace_fails(repo):
    (repo / METRICS).write_text(json.dumps({"test_accuracy": 0.9133}))
    code, out, _ = verify(repo)
    assert code == 1
    assert "missing" in out and statuses(out)["test_nll"] == "FAIL"


def test_it_refuses_while_the_pipeline_is_not_up_to_date(repo):
    (repo / "dvc.yaml").write_text("stages:\n  train:\n    cmd: echo\n    outs: [model.pt]\n"
                                   "metrics:\n  - metrics\n")
    code, _, err = verify(repo)
    assert code == 2
    assert err.strip() == ("error: the pipeline is not up to date (see `dvc status`); run "
                           "`dvc repro` (make pipeline) first, then verify")
