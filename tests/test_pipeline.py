"""End to end: the real pipeline under DVC on a small real subset of both datasets.

The project is copied into a temporary git repository, so these tests run `dvc repro` and
`dvc exp run` exactly as a user would, and read what re-ran from DVC's own output.
"""
import pytest
import yaml

from sae.datasets import DATASETS
from tests.conftest import all_stages, dvc, run, stages_run, tiny_project


@pytest.fixture(scope="module")
def project(tmp_path_factory, real_data):
    """A git + DVC repository of the project on 300 training and 200 test images, one epoch
    per phase; after one full `dvc repro`, whose output is kept as project.first_run."""
    path = tiny_project(tmp_path_factory.mktemp("project"), real_data)
    first_run = dvc("repro", cwd=path)
    run(["git", "add", "-A"], path)
    run(["git", "commit", "-qm", "first run"], path)
    return path, first_run


def test_repro_runs_every_stage_for_both_datasets(project):
    path, first_run = project
    assert stages_run(first_run) == all_stages()
    for dataset in DATASETS:
        metrics = yaml.safe_load((path / "metrics" / f"{dataset}.json").read_text())
        assert 0 <= metrics["test_accuracy"] <= 1
        assert len(metrics["confusion_matrix"]) == 10
        assert sum(map(sum, metrics["confusion_matrix"])) == 200
        for name in ("training_curves", "reconstructions", "filters", "confusion_matrix",
                     "per_class_accuracy", "misclassified"):
            assert (path / "plots" / dataset / "figures" / f"{name}.png").stat().st_size > 0


def test_repro_after_repro_does_nothing(project):
    path, _ = project
    output = dvc("repro", cwd=path)
    assert stages_run(output) == set()


def test_forced_rerun_writes_byte_identical_outputs(project):
    """dvc.lock holds the md5 of every output: equal lock files mean equal bytes."""
    path, _ = project
    before = (path / "dvc.lock").read_text()
    output = dvc("repro", "--force", cwd=path)
    assert stages_run(output) == all_stages()
    assert (path / "dvc.lock").read_text() == before


def test_changing_the_classifier_lr_reruns_only_finetune_and_evaluate(project):
    path, _ = project
    output = dvc("exp", "run", "-S", "finetune_classifier.lr=0.2", cwd=path)
    assert stages_run(output) == {f"{stage}@{dataset}" for dataset in DATASETS
                                  for stage in ("finetune_classifier", "evaluate")}
