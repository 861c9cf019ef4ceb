"""End to end: the real pipeline under DVC on a small real subset of both datasets.

The project is copied into a temporary git repository, so these tests run `dvc repro` and
`dvc exp run` exactly as a user would, and read what re-ran from DVC's own output.
"""
import sys

import pytest
import yaml

from sae.datasets import DATASETS
from tests.conftest import (ROOT, RECIPES, all_stages, copy_of, dvc, recipe_stages, run,
                            stages_run)


@pytest.fixture(scope="module")
def project(tmp_path_factory, reproduced):
    """A git + DVC repository of the project on 300 training and 200 test images, one epoch
    per phase, after one full `dvc repro`: (path, what that repro printed)."""
    return copy_of(reproduced, tmp_path_factory.mktemp("pipeline") / "project"), reproduced[1]


def test_repro_runs_every_stage_for_both_recipes_and_datasets(project):
    path, first_run = project
    assert stages_run(first_run) == all_stages()
    for recipe in RECIPES:
        for dataset in DATASETS:
            metrics = yaml.safe_load((path / "metrics" / recipe / f"{dataset}.json").read_text())
            assert 0 <= metrics["test_accuracy"] <= 1
            assert set(metrics["reconstruction_mse"]) == {
                "layer1", "pca_layer1", "stacked", "pca_stacked", "mean_image"}
            plots = path / "plots" / recipe / dataset
            assert len((plots / "confusion.csv").read_text().splitlines()) == 1 + 200
            assert len((plots / "per_class.csv").read_text().splitlines()) == 1 + 10
            for name in ("training_curves", "reconstructions", "filters", "confusion_matrix",
                         "per_class_accuracy", "misclassified"):
                assert (plots / "figures" / f"{name}.png").stat().st_size > 0


def test_repro_after_repro_does_nothing(project):
    path, _ = project
    output = dvc("repro", cwd=path)
    assert stages_run(output) == set()


def test_forced_rerun_writes_byte_identical_outputs(project):
    """dvc.lock holds the md5 of every output: equal lock files mean equal bytes. MNIST's
    stages alone run every stage script of both recipes, in half the time of all."""
    path, _ = project
    before = (path / "dvc.lock").read_text()
    output = dvc("repro", "--force", *(f"evaluate@{recipe}-mnist" for recipe in RECIPES),
                 cwd=path)
    assert stages_run(output) == all_stages(datasets=["mnist"])
    assert (path / "dvc.lock").read_text() == before


def test_changing_the_classifier_lr_reruns_only_that_recipes_finetune_and_evaluate(project):
    """check_params re-runs on any edit of params.yaml; its output does not change, so it
    re-runs nothing downstream by itself."""
    path, _ = project
    output = dvc("exp", "run", "-S", "lecture.finetune_classifier.lr=0.2", cwd=path)
    assert stages_run(output) == {"check_params"} | recipe_stages(
        ("finetune_classifier", "evaluate"), recipes=["lecture"])
    assert_compare_shows_the_change(path)


def assert_compare_shows_the_change(path):
    """`make compare` (its dvc command, run here) names the changed param and shows the
    changed accuracies of the committed run and the experiment, in a handful of columns."""
    command = next(line for line in run(["make", "-n", "-C", str(ROOT), "compare"], path)
                   .splitlines() if line.startswith("dvc exp show"))
    table = run(["bash", "-c", command.replace("dvc ", f"{sys.executable} -m dvc ", 1)], path)
    header, _, *rows = [line.strip("|").split("|") for line in table.splitlines()
                        if line.startswith("|")]
    header = [cell.strip() for cell in header]
    assert "lecture.finetune_classifier.lr" in header and len(header) <= 15, header
    accuracy = header.index("metrics/lecture/mnist.json:test_accuracy")
    lr = header.index("lecture.finetune_classifier.lr")
    committed, experiment = rows[1], rows[2]  # below the workspace row
    assert (committed[lr].strip(), experiment[lr].strip()) == ("0.1", "0.2")
    assert committed[accuracy].strip() != experiment[accuracy].strip()
    assert all(0 <= float(row[accuracy]) <= 1 for row in (committed, experiment))
