"""The tuned recipe's protocol on the data the stages actually use: every stage trains on the
training part only, fine-tuning scores the held-out validation part, the test set is read
only by evaluate; and the labelled subset of the label-budget study."""
import pytest
import torch
import yaml

from sae import datasets, params, train
from sae.model import StackedNet, planned_config, save_checkpoint
from tests.conftest import load_stage, registered, write_tiny_idx

pytestmark = pytest.mark.usefixtures("float32_by_default")

N_TRAIN, HELD_OUT = 200, 50
OUTPUTS = {"pretrain_layer1": [], "stack_layer2": ["--layer1", "layer1.pt"],
           "finetune_classifier": ["--stacked", "stacked.pt"]}


@pytest.fixture
def project(in_project, tmp_path, monkeypatch):
    """Tiny data, the tuned recipe holding out its last images, untrained checkpoints."""
    data = registered(monkeypatch, write_tiny_idx(tmp_path / "tiny", n_train=N_TRAIN))
    folder = in_project(**{"common.device": "cpu", "tuned.split.validation": HELD_OUT})
    torch.manual_seed(0)
    recipe = params.load().recipe("tuned")
    for name, phase in (("layer1.pt", "pretrain_layer1"), ("stacked.pt", "stack_layer2")):
        save_checkpoint(StackedNet.from_config(planned_config(recipe, phase)), folder / name,
                        "mnist", "tuned")
    return folder, data


@pytest.fixture
def seen(monkeypatch):
    """What the stages hand to fit() and predict(), and which splits they read from disk."""
    record = {"fit": [], "predict": [], "splits": []}
    load_split = train.load_split

    def reading(data_dir, is_train, limit=0):
        record["splits"].append("train" if is_train else "test")
        return load_split(data_dir, is_train, limit)

    def predicting(net, inputs, batch_size):
        record["predict"].append(inputs)
        return torch.zeros(len(inputs), 10)

    def fitting(net, inputs, targets, *args, after_epoch=None, **kwargs):
        record["fit"].append((inputs, targets))
        if after_epoch is not None:
            after_epoch(net)
        return [{"epoch": 1, "train_loss": 0.0}]

    monkeypatch.setattr(train, "load_split", reading)
    for name in OUTPUTS:
        stage = load_stage(name)
        monkeypatch.setattr(stage, "fit", fitting)
        if hasattr(stage, "predict"):
            monkeypatch.setattr(stage, "predict", predicting)
    return record


def run(name, folder, data, recipe="tuned"):
    load_stage(name).main(["--recipe", recipe, "--dataset", "mnist", "--data", str(data),
                           *(str(folder / arg) if arg.endswith(".pt") else arg
                             for arg in OUTPUTS[name]),
                           "--model", str(folder / "out.pt"), "--live", str(folder / "live")])


def all_training_images(data):
    images, labels = datasets.load_split(data, True)
    return images.float(), labels


@pytest.mark.parametrize("name", list(OUTPUTS))
def test_each_tuned_stage_trains_on_the_training_part_only(project, seen, name):
    folder, data = project
    run(name, folder, data)
    images, _ = all_training_images(data)
    [(inputs, _)] = seen["fit"]
    assert torch.equal(inputs, images[:N_TRAIN - HELD_OUT])  # the first images, no others


def test_fine_tuning_scores_the_held_out_part_and_never_reads_the_test_set(project, seen):
    folder, data = project
    run("finetune_classifier", folder, data)
    images, _ = all_training_images(data)
    [scored] = seen["predict"]
    assert torch.equal(scored, images[N_TRAIN - HELD_OUT:])
    assert seen["splits"] == ["train", "train"]  # the training part, then the validation part


def test_no_training_stage_of_the_tuned_recipe_reads_the_test_set(project, seen):
    folder, data = project
    for name in OUTPUTS:
        run(name, folder, data)
    assert "test" not in seen["splits"]


def test_the_lecture_recipe_scores_the_test_set_every_epoch_as_the_lecture_did(project, seen):
    folder, data = project
    torch.manual_seed(0)
    lecture = planned_config(params.load().recipe("lecture"), "stack_layer2")
    save_checkpoint(StackedNet.from_config(lecture), folder / "stacked.pt", "mnist", "lecture")
    run("finetune_classifier", folder, data, recipe="lecture")
    [(inputs, _)] = seen["fit"]
    assert len(inputs) == N_TRAIN and seen["splits"] == ["train", "test"]


# ---------------------------------------------------------------- the labelled subset


def labelled(folder, data, seen, **overrides):
    """Fine-tune the tuned recipe with its finetune_classifier settings overridden; the
    (inputs, targets) it trained on."""
    path = folder / "params.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["tuned"]["finetune_classifier"].update(overrides)
    path.write_text(yaml.safe_dump(raw))
    run("finetune_classifier", folder, data)
    return seen["fit"][-1]


def test_the_labelled_subset_is_class_balanced_of_the_size_asked_and_from_the_training_part(
        project, seen):
    folder, data = project
    inputs, targets = labelled(folder, data, seen, labels=50)
    assert torch.bincount(targets, minlength=10).tolist() == [5] * 10
    images, _ = all_training_images(data)
    training_part = images[:N_TRAIN - HELD_OUT]
    assert all((training_part == row).all(1).any() for row in inputs)


def test_every_arm_fine_tunes_on_the_same_labelled_images_at_one_seed(project, seen):
    folder, data = project
    first = labelled(folder, data, seen, labels=50)
    probe = labelled(folder, data, seen, train="head")
    fresh = labelled(folder, data, seen, init="random")
    for inputs, targets in (probe, fresh):
        assert torch.equal(inputs, first[0]) and torch.equal(targets, first[1])


def test_another_seed_draws_other_labelled_images(project, seen):
    images = torch.arange(100.0).unsqueeze(1)
    labels = torch.arange(100) % 10
    zero, _ = train.labelled_subset(images, labels, 20, seed=0)
    one, _ = train.labelled_subset(images, labels, 20, seed=1)
    assert not torch.equal(zero, one)
    assert train.labelled_subset(images, labels, 0, seed=0)[0] is images  # 0: all of them


def test_more_labels_than_a_class_has_is_one_clear_error():
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0])
    with pytest.raises(params.ParamsError, match=r"finetune_classifier.labels = 20 needs 2 "
                                                 r"images of each class, but the training part "
                                                 r"has only 1 of class 1, its smallest"):
        train.labelled_subset(torch.zeros(11, 1), labels, 20, seed=0)


def test_a_validation_part_as_large_as_the_training_set_is_one_clear_error(project):
    folder, data = project
    common = params.load().common
    with pytest.raises(params.ParamsError, match=rf"split.validation = {N_TRAIN} holds out "
                                                 rf"every one of the {N_TRAIN} training images"):
        train.load_data(data, common, "cpu", "train", params.Split(validation=N_TRAIN))
