"""Issue 22, cause 8: errors that misled. A labelled subset larger than the smallest class
allows names the real bound (set by that class) and the key with its recipe, and the bound
it suggests is itself accepted; a validation part as large as the training images is refused
by params validation (check_params), naming the recipe; `labels: 1e3` says an integer is
wanted (YAML 1.2 reads 1e3 as the float 1000.0)."""
import pytest
import torch
import yaml

from sae import params, train
from sae.params import ParamsError
from tests.conftest import load_stage, params_with, registered, write_tiny_idx

pytestmark = pytest.mark.usefixtures("float32_by_default")


def error_of(raw):
    with pytest.raises(ParamsError) as caught:
        params.parse(raw)
    return str(caught.value)


# ------------------------------------------------------------ the labelled subset's bound

def unbalanced():
    """Labels of 10 classes where class 5 is the smallest (3 images) and class 0 the first
    too small for 40 labels (class 0 has 3 as well, class 1 has 9)."""
    counts = [3, 9, 9, 9, 9, 3, 9, 9, 9, 9]
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    return torch.zeros(len(labels), 1), labels[torch.randperm(len(labels),
                                                              generator=torch.Generator()
                                                              .manual_seed(0))]


def test_too_many_labels_name_the_smallest_class_the_key_and_an_accepted_bound():
    images, labels = unbalanced()
    with pytest.raises(ParamsError) as caught:
        train.labelled_subset(images, labels, 50, seed=0,
                              key="tuned.finetune_classifier.labels")
    message = str(caught.value)
    assert message == ("params.yaml: tuned.finetune_classifier.labels = 50 needs 5 images of "
                       "each class, but the training part has only 3 of class 0, its smallest "
                       f"(of {len(labels)} images); expected at most 30 (10 times that class's "
                       "3)"), message
    suggested = int(message.rsplit("at most ", 1)[1].split()[0])
    params.parse(params_with(**{"tuned.finetune_classifier.labels": suggested}))  # accepted
    chosen, chosen_labels = train.labelled_subset(images, labels, suggested, seed=0)
    assert torch.bincount(chosen_labels, minlength=10).tolist() == [3] * 10


def test_a_class_missing_from_the_training_part_suggests_all_labels():
    labels = torch.tensor([0, 1, 2, 3, 4, 6, 7, 8, 9] * 2)
    with pytest.raises(ParamsError, match=r"has no image of class 5; expected 0 \(all labels\)"):
        train.labelled_subset(torch.zeros(len(labels), 1), labels, 10, seed=0,
                              key="tuned.finetune_classifier.labels")


def test_the_fine_tuning_stage_names_the_recipe_in_the_key(in_project, tmp_path,
                                                          monkeypatch):
    """labels: 50000 with a validation part, as in the issue, on tiny data registered as
    MNIST: the stage stops before any training, naming tuned.finetune_classifier.labels."""
    data = registered(monkeypatch, write_tiny_idx(tmp_path / "tiny", n_train=200))
    in_project(**{"common.device": "cpu", "tuned.split.validation": 50,
                  "tuned.finetune_classifier.labels": 50000})
    stage = load_stage("finetune_classifier")
    monkeypatch.setattr(stage, "fit", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(ParamsError, match=r"^params.yaml: tuned.finetune_classifier.labels = "
                                          r"50000 needs 5000 images of each class, but the "
                                          r"training part has only \d+ of class \d, its "
                                          r"smallest \(of 150 images\); expected at most \d+0 "):
        stage.main(["--recipe", "tuned", "--dataset", "mnist", "--data", str(data),
                    "--stacked", str(tmp_path / "stacked.pt"), "--model",
                    str(tmp_path / "c.pt"), "--live", str(tmp_path / "live")])


# ------------------------------------------------------- the validation part's bound

@pytest.mark.parametrize("train_limit, validation, images", [
    (1000, 1000, "the 1000 training images common.train_limit keeps"),
    (1000, 5000, "the 1000 training images common.train_limit keeps"),
    (0, 60000, "the 60000 training images"),
    (70000, 60000, "the 60000 training images"),
])
def test_a_validation_part_that_holds_out_every_training_image_is_refused_by_validation(
        train_limit, validation, images):
    message = error_of(params_with(**{"common.train_limit": train_limit,
                                      "tuned.split.validation": validation}))
    assert message == (f"params.yaml: tuned.split.validation = {validation} is not allowed; "
                       f"expected fewer than {images}, so that some are left to train on")


def test_a_validation_part_below_the_training_images_is_accepted():
    params.parse(params_with(**{"common.train_limit": 1000, "tuned.split.validation": 999}))
    params.parse(params_with(**{"tuned.split.validation": 59999}))


def test_check_params_refuses_a_validation_part_as_large_as_train_limit(in_project):
    from tests.conftest import run_stage
    project = in_project(**{"common.train_limit": 10000})  # tuned holds out 10000
    result = run_stage("check_params", "--out", "valid.txt", cwd=project)
    assert result.returncode == 1
    assert result.stderr.startswith("error: params.yaml: tuned.split.validation = 10000 is not "
                                    "allowed; expected fewer than the 10000 training images "
                                    "common.train_limit keeps"), result.stderr
    assert not (project / "valid.txt").exists()


# ------------------------------------------------------------------ integers, not floats

def test_labels_written_as_1e3_says_an_integer_is_wanted(in_project):
    project = in_project()
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["tuned"]["finetune_classifier"]["labels"] = "LABELS"
    text = yaml.safe_dump(raw)
    assert text.count("labels: LABELS\n") == 1
    (project / "params.yaml").write_text(text.replace("labels: LABELS\n", "labels: 1e3\n"))
    with pytest.raises(ParamsError) as caught:
        params.load()
    assert str(caught.value) == (
        "params.yaml: tuned.finetune_classifier.labels = 1000.0 is not allowed; expected 0 "
        "(all labels) or a multiple of 10 (the same number from each class) (an integer: YAML "
        "reads 1e3 or 1000.0 as a float, 1000.0; write 1000)")


@pytest.mark.parametrize("key, value, integer", [
    ("common.seed", 1e1, 10), ("lecture.pretrain_layer1.epochs", 2.0, 2),
])
def test_any_integer_key_given_a_whole_float_says_to_write_the_integer(key, value, integer):
    assert error_of(params_with(**{key: value})).endswith(
        f"(an integer: YAML reads 1e3 or 1000.0 as a float, {value!r}; write {integer})")


def test_a_float_with_a_fraction_gets_no_such_hint():
    assert "an integer: YAML" not in error_of(
        params_with(**{"lecture.pretrain_layer1.epochs": 2.5}))
