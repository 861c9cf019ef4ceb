"""The ablation's arms start from the initialisation they claim, the training options do
what they say, and the reference stage's PCA equals a direct computation."""
import json

import numpy as np
import pytest
import torch

from sae import model, params, pca
from sae.params import ParamsError, Training
from sae.train import corrupt, learning_rate
from tests.conftest import load_stage, registered, write_tiny_idx

pytestmark = pytest.mark.usefixtures("float32_by_default")


@pytest.fixture
def project(in_project, tmp_path, monkeypatch):
    """Tiny data and a layer-1 and stacked checkpoint (random weights) in a params folder."""
    data = registered(monkeypatch, write_tiny_idx(tmp_path / "tiny"))
    folder = in_project(**{"common.device": "cpu", "lecture.stack_layer2.epochs": 1,
                           "lecture.finetune_classifier.epochs": 1})
    torch.manual_seed(123)
    layer1 = model.autoencoder(784, 400, "tanh", "sigmoid")
    model.save_checkpoint(layer1, folder / "layer1.pt", "mnist", "lecture")
    model.save_checkpoint(model.stack(layer1, 256, "tanh", "tanh"), folder / "stacked.pt",
                          "mnist", "lecture")
    return folder, data


def first_fit_state(monkeypatch, stage):
    """Run a stage's main with fit() replaced by a probe that keeps the net it was given,
    untrained; returns a dict that receives {"net": ...}."""
    seen = {}

    def probe(net, *args, **kwargs):
        seen["net"] = net
        return [{"epoch": 1, "train_loss": 0.0}]
    monkeypatch.setattr(stage, "fit", probe)
    return seen


def run_stack(folder, data, monkeypatch, **overrides):
    stage = load_stage("stack_layer2")
    seen = first_fit_state(monkeypatch, stage)
    stage.main(["--recipe", "lecture", "--dataset", "mnist", "--data", str(data),
                "--layer1", str(folder / "layer1.pt"), "--model", str(folder / "out.pt"),
                "--live", str(folder / "live")])
    return seen["net"]


def run_finetune(folder, data, monkeypatch, probe=True):
    stage = load_stage("finetune_classifier")
    seen = first_fit_state(monkeypatch, stage) if probe else {}
    stage.main(["--recipe", "lecture", "--dataset", "mnist", "--data", str(data),
                "--stacked", str(folder / "stacked.pt"), "--model", str(folder / "clf.pt"),
                "--live", str(folder / "live")])
    return seen.get("net")


def set_param(folder, key, value):
    import yaml
    path = folder / "params.yaml"
    raw = yaml.safe_load(path.read_text())
    *parents, leaf = key.split(".")
    section = raw
    for name in parents:
        section = section[name]
    section[leaf] = value
    path.write_text(yaml.safe_dump(raw))


def weights(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_greedy_stacking_starts_from_layer1s_weights(project, monkeypatch):
    folder, data = project
    net = run_stack(folder, data, monkeypatch)
    layer1 = model.load_checkpoint(folder / "layer1.pt")
    assert torch.equal(net.encoder[0].linear.weight, layer1.encoder[0].linear.weight)
    assert torch.equal(net.head[-1].linear.weight, layer1.head[0].linear.weight)


def test_end_to_end_arm_starts_from_a_fresh_seeded_init_not_layer1(project, monkeypatch):
    folder, data = project
    set_param(folder, "lecture.stack_layer2.init", "random")
    net = run_stack(folder, data, monkeypatch)
    layer1 = model.load_checkpoint(folder / "layer1.pt")
    assert not torch.equal(net.encoder[0].linear.weight, layer1.encoder[0].linear.weight)
    torch.manual_seed(0)  # common.seed, as the stage's setup() seeds it
    fresh = model.stack(model.StackedNet.from_config(layer1.config()), 256, "tanh", "tanh")
    for key, value in weights(fresh).items():
        assert torch.equal(net.state_dict()[key], value), key


def test_no_pretraining_arm_starts_from_a_fresh_seeded_init(project, monkeypatch):
    folder, data = project
    set_param(folder, "lecture.finetune_classifier.init", "random")
    net = run_finetune(folder, data, monkeypatch)
    stacked = model.load_checkpoint(folder / "stacked.pt")
    torch.manual_seed(0)
    fresh = model.classifier(model.StackedNet.from_config(stacked.config()), 10)
    for key, value in weights(fresh).items():
        assert torch.equal(net.state_dict()[key], value), key
    assert not torch.equal(net.encoder[0].linear.weight, stacked.encoder[0].linear.weight)


def test_pretrained_finetuning_starts_from_the_stacked_encoder(project, monkeypatch):
    folder, data = project
    net = run_finetune(folder, data, monkeypatch)
    stacked = model.load_checkpoint(folder / "stacked.pt")
    for i in (0, 1):
        assert torch.equal(net.encoder[i].linear.weight, stacked.encoder[i].linear.weight)


def test_linear_probe_leaves_the_encoder_bit_for_bit_unchanged(project, monkeypatch):
    folder, data = project
    set_param(folder, "lecture.finetune_classifier.train", "head")
    set_param(folder, "lecture.finetune_classifier.weight_decay", 0.1)  # must not touch it
    run_finetune(folder, data, monkeypatch, probe=False)
    stacked, trained = (model.load_checkpoint(folder / name) for name in ("stacked.pt", "clf.pt"))
    for before, after in zip(stacked.encoder, trained.encoder):
        assert torch.equal(before.linear.weight, after.linear.weight)
        assert torch.equal(before.linear.bias, after.linear.bias)
    torch.manual_seed(0)
    untrained_head = model.classifier(stacked, 10).head
    assert not torch.equal(trained.head[0].linear.weight, untrained_head[0].linear.weight)


def test_keep_best_saves_the_weights_of_the_best_validation_epoch(project, monkeypatch):
    """Early stopping: of 4 epochs with validation accuracies 0.1, 0.5, 0.3, 0.5 the saved
    classifier is the one after epoch 2 (the earliest of equals), and metrics.json says so."""
    folder, data = project
    set_param(folder, "lecture.split.validation", 10)
    set_param(folder, "lecture.finetune_classifier.epochs", 4)
    set_param(folder, "lecture.finetune_classifier.keep", "best")
    stage = load_stage("finetune_classifier")
    after_epoch, accuracies = [], iter([0.1, 0.5, 0.3, 0.5])

    def scores(log_probs, labels, prefix):
        assert prefix == "val"  # chosen on validation images, never on the test set
        return {"val_loss": 1.0, "val_accuracy": next(accuracies)}

    def predict(net, images, batch_size):
        after_epoch.append(weights(net))
        return torch.zeros(len(images), 10)
    monkeypatch.setattr(stage, "classification_scores", scores)
    monkeypatch.setattr(stage, "predict", predict)
    run_finetune(folder, data, monkeypatch, probe=False)
    saved = model.load_checkpoint(folder / "clf.pt").state_dict()
    assert not torch.equal(after_epoch[1]["encoder.0.linear.weight"],
                           after_epoch[3]["encoder.0.linear.weight"])  # it did train on
    for key, value in after_epoch[1].items():
        assert torch.equal(saved[key], value), key
    assert json.loads((folder / "live" / "metrics.json").read_text())["kept_epoch"] == 2


def test_keep_last_saves_the_last_epoch_and_says_so(project, monkeypatch):
    folder, data = project
    run_finetune(folder, data, monkeypatch, probe=False)
    assert json.loads((folder / "live" / "metrics.json").read_text())["kept_epoch"] == 1


def test_keep_best_without_a_validation_part_is_refused(project):
    folder, _ = project
    set_param(folder, "lecture.finetune_classifier.keep", "best")
    with pytest.raises(ParamsError, match=r"lecture\.finetune_classifier\.keep = 'best' .*"
                                          r"split\.validation is 0"):
        params.load()


# ---------------------------------------------------------------- training options

def test_masking_corruption_zeroes_about_the_fraction_and_nothing_else():
    batch = torch.rand(200, 784) + 0.5
    noisy = corrupt(batch, 0.25, torch.Generator().manual_seed(0))
    zeroed = (noisy == 0).double().mean().item()
    assert 0.24 < zeroed < 0.26
    kept = noisy != 0
    assert torch.equal(noisy[kept], batch[kept])
    assert corrupt(batch, 0.0, None) is batch


def test_cosine_schedule_decays_from_lr_towards_zero_and_constant_stays():
    cosine = Training((784, 400), 1, 10, "adam", 0.002, 0.0, schedule="cosine")
    assert learning_rate(cosine, 0, 100) == 0.002
    assert learning_rate(cosine, 50, 100) == pytest.approx(0.001)
    assert learning_rate(cosine, 99, 100) < 1e-6
    constant = Training((784, 400), 1, 10, "sgd", 0.1, 0.0)
    assert {learning_rate(constant, s, 100) for s in (0, 50, 99)} == {0.1}


def test_dropout_acts_only_while_training():
    torch.manual_seed(0)
    net = model.classifier(model.stack(model.autoencoder(784, 40, "tanh", "sigmoid"),
                                       20, "tanh", "tanh"), 10).set_dropout(0.5, 0.5)
    x = torch.rand(8, 784)
    net.eval()
    assert torch.equal(net(x), net(x))
    net.train()
    assert not torch.equal(net(x), net(x))


# ---------------------------------------------------------------- the reference stage

def test_pca_reconstruction_error_equals_a_direct_svd_computation():
    rng = np.random.default_rng(0)
    train = torch.from_numpy(rng.random((300, 784)) ** 3)
    test = torch.from_numpy(rng.random((50, 784)) ** 3)
    fitted = pca.fit(train)
    curve = pca.mse_by_code_size(fitted, test)
    mean = train.numpy().mean(0)
    _, _, vt = np.linalg.svd(train.numpy() - mean, full_matrices=False)
    for k in (0, 10, 64):
        basis = vt[:k].T
        direct = (test.numpy() - mean) @ basis @ basis.T + mean
        assert curve[k] == pytest.approx(np.mean((direct - test.numpy()) ** 2), rel=1e-9)
    assert curve[0] == pytest.approx(np.mean((test.numpy() - mean) ** 2))


def test_reference_stage_writes_the_pca_of_all_training_images(tmp_path, monkeypatch):
    data = registered(monkeypatch, write_tiny_idx(tmp_path / "tiny", n_train=60))
    load_stage("reference").main(["--dataset", "mnist", "--data", str(data),
                                  "--out", str(tmp_path / "pca.pt"),
                                  "--curve", str(tmp_path / "pca.csv")])
    fitted = pca.load(tmp_path / "pca.pt")
    from sae.datasets import load_split
    images, _ = load_split(data, train=True)
    assert torch.allclose(fitted["mean"], images.double().mean(0))
    components = fitted["components"]
    assert torch.allclose(components.T @ components, torch.eye(784, dtype=torch.float64),
                          atol=1e-8)


@pytest.mark.parametrize("content", [b"", b"not a torch file", "state_dict"])
def test_a_file_that_is_not_a_pca_is_one_named_error(tmp_path, content):
    path = tmp_path / "pca.pt"
    if content == "state_dict":
        model.save_checkpoint(model.autoencoder(784, 4, "tanh", "sigmoid"), path, "mnist",
                              "lecture")
    else:
        path.write_bytes(content)
    with pytest.raises(model.CheckpointError, match=str(path)):
        pca.load(path)
