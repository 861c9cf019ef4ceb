"""The training loop (losses fall, runs repeat, the reported loss is the lecture's, divergence
stops a stage cleanly) and the evaluation scores."""
import copy
import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from sae import optim
from sae.evaluation import classification_scores, confusion_matrix, per_class_accuracy
from sae.model import autoencoder, classifier
from sae.params import Training
from sae.train import TrainingDiverged, classification_loss, fit, reconstruction_loss
from tests.conftest import run_stage

HIDDEN = 64  # a narrow code keeps the loop fast; fit does not care about the sizes


pytestmark = pytest.mark.usefixtures("float32_by_default")


def phase(epochs=5, batch_size=10, lr=0.98, optimizer="sgd", momentum=0.0):
    return Training((784, HIDDEN), epochs, batch_size, optimizer, lr, momentum,
                    encoder_activation="tanh", decoder_activation="sigmoid")


def structured(n=200, seed=0, dtype=torch.float32):
    """Images made of ten binary prototypes times noise, and their prototype labels."""
    g = torch.Generator().manual_seed(seed)
    prototypes = (torch.rand(10, 784, generator=g) < 0.3).to(dtype)
    labels = torch.randint(0, 10, (n,), generator=g)
    noise = 0.7 + 0.3 * torch.rand(n, 784, generator=g, dtype=dtype)
    return prototypes[labels] * noise, labels


def new_autoencoder(decoder_activation="sigmoid", dtype=torch.float32):
    torch.manual_seed(0)
    return autoencoder(784, HIDDEN, "tanh", decoder_activation).to(dtype)


def losses(history):
    return [row["train_loss"] for row in history]


# ---------------------------------------------------------------- fit learns


def test_fit_lowers_the_reconstruction_loss():
    images, _ = structured()
    history = fit(new_autoencoder(), images, None, reconstruction_loss, phase(), 0, "ae")
    assert [row["epoch"] for row in history] == [1, 2, 3, 4, 5]
    assert losses(history)[-1] < 0.9 * losses(history)[0]
    assert all(b < a for a, b in zip(losses(history), losses(history)[1:]))


def test_fit_lowers_the_classification_loss_and_records_after_epoch_scores():
    images, labels = structured()
    net = classifier(new_autoencoder(), 10)
    calls = []

    def after_epoch(trained):
        calls.append(trained)
        return {"test_accuracy": 0.5}

    history = fit(net, images, labels, classification_loss, phase(lr=0.1), 0, "clf",
                  after_epoch=after_epoch)
    assert losses(history)[0] < 2.5  # starts near ln(10)
    assert losses(history)[-1] < 0.5 * losses(history)[0]
    assert len(calls) == 5 and all(c is net for c in calls)
    assert all(row["test_accuracy"] == 0.5 for row in history)


def test_same_seed_repeats_history_and_weights_and_the_seed_sets_the_order():
    images, _ = structured(n=60)
    start = new_autoencoder()
    runs = {}
    for name, seed in (("a", 7), ("b", 7), ("other", 8)):
        net = copy.deepcopy(start)
        runs[name] = (fit(net, images, None, reconstruction_loss, phase(epochs=2), seed, name),
                      net.state_dict())
    (history_a, weights_a), (history_b, weights_b) = runs["a"], runs["b"]
    assert history_a == history_b
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert losses(runs["other"][0]) != losses(history_a)  # a different batch order


def test_reported_loss_is_the_mean_of_batch_means_under_plain_sgd():
    """One epoch by hand: the seed's permutation, batch_size chunks (the last one short),
    p -= lr * grad after each batch, and the unweighted mean of the batch-mean losses."""
    n, batch_size, lr, seed = 50, 16, 0.5, 3
    images, _ = structured(n=n, dtype=torch.float64)
    net = new_autoencoder(dtype=torch.float64)
    by_hand = copy.deepcopy(net)
    history = fit(net, images, None, reconstruction_loss,
                  phase(epochs=1, batch_size=batch_size, lr=lr), seed, "one epoch")

    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    batch_losses, batch_sizes = [], []
    for index in order.split(batch_size):
        batch = images[index]
        loss = F.mse_loss(by_hand(batch), batch)
        grads = torch.autograd.grad(loss, list(by_hand.parameters()))
        with torch.no_grad():
            for p, g in zip(by_hand.parameters(), grads):
                p -= lr * g
        batch_losses.append(loss.item())
        batch_sizes.append(len(index))
    assert batch_sizes == [16, 16, 16, 2]
    mean_of_means = sum(batch_losses) / len(batch_losses)
    per_image_mean = sum(l * s for l, s in zip(batch_losses, batch_sizes)) / n
    assert abs(mean_of_means - per_image_mean) > 1e-6  # the two readings differ here
    assert history[0]["train_loss"] == pytest.approx(mean_of_means, rel=1e-12)
    for (key, ours), theirs in zip(net.state_dict().items(), by_hand.state_dict().values()):
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12, msg=key)


# ---------------------------------------------------------------- divergence


def test_exploding_loss_raises_training_diverged_naming_stage_epoch_and_remedy(capsys):
    # The lecture's sigmoid decoder bounds the MSE below 1, so it cannot explode; with an
    # identity decoder lr=1e6 overflows to NaN within a few epochs.
    images, _ = structured(n=60)
    net = new_autoencoder(decoder_activation="identity")
    with pytest.raises(TrainingDiverged) as caught:
        fit(net, images, None, reconstruction_loss, phase(epochs=10, lr=1e6), 0,
            "pretrain_layer1@mnist")
    finished = capsys.readouterr().out.count("pretrain_layer1@mnist: epoch ")
    message = str(caught.value)
    assert message.startswith("pretrain_layer1@mnist:")
    assert f"in epoch {finished + 1};" in message  # the epoch that went non-finite
    assert finished < 10
    assert "lower learning rate" in message and "lr=1000000.0" in message


def test_nan_in_the_inputs_raises_training_diverged_in_epoch_1():
    images, _ = structured(n=40)
    images[7, 300] = math.nan
    with pytest.raises(TrainingDiverged, match=r"^bad data: .* nan in epoch 1; try a lower"):
        fit(new_autoencoder(), images, None, reconstruction_loss, phase(epochs=3), 0,
            "bad data")


# ---------------------------------------------------------------- the stage


def run_pretrain_layer1(project, data):
    return run_stage("pretrain_layer1", "--recipe", "lecture", "--dataset", "mnist",
                     "--data", data, "--model", "m/layer1.pt", "--live", "h/l1",
                     cwd=project)


# Stages check that --data holds the dataset --dataset names, so they train on the real
# files, limited to a few images.
SMALL = {"common.device": "cpu", "common.train_limit": 40, "common.test_limit": 20,
         "tuned.split.validation": 10,  # fewer than train_limit keeps (params.py)
         "lecture.pretrain_layer1.epochs": 2, "lecture.pretrain_layer1.batch_size": 10}


def test_stage_writes_its_model_and_history_when_training_succeeds(in_project, real_data):
    data = real_data / "mnist"
    project = in_project(**SMALL)
    result = run_pretrain_layer1(project, data)
    assert result.returncode == 0, result.stderr
    assert (project / "m/layer1.pt").is_file()
    lines = (project / "h/l1/plots/metrics/train_loss.tsv").read_text().splitlines()
    assert lines[0] == "step\ttrain_loss" and [line.split("\t")[0] for line in lines[1:]] == ["1", "2"]
    assert json.loads((project / "h/l1/metrics.json").read_text())["step"] == 2


def test_stage_that_diverges_exits_1_with_the_message_and_writes_nothing(in_project, real_data):
    data = real_data / "mnist"
    project = in_project(**{**SMALL, "lecture.pretrain_layer1.epochs": 10, "lecture.pretrain_layer1.lr": 1e6,
                            "lecture.pretrain_layer1.decoder_activation": "identity"})
    result = run_pretrain_layer1(project, data)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "pretrain_layer1@lecture-mnist: the training loss became nan in epoch" in result.stderr
    assert "lower learning rate" in result.stderr
    assert not (project / "m").exists() and not (project / "h").exists()


def test_stage_with_an_lr_beyond_float32_exits_1_without_traceback(in_project, real_data):
    # params accept any finite lr > 0, but SGD cannot apply lr=1e39 to float32 weights
    data = real_data / "mnist"
    project = in_project(**{**SMALL, "lecture.pretrain_layer1.lr": 1e39})
    result = run_pretrain_layer1(project, data)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "pretrain_layer1" in result.stderr and "lr" in result.stderr
    assert not (project / "m").exists() and not (project / "h").exists()


# ---------------------------------------------------------------- evaluation


def test_confusion_matrix_rows_are_true_classes():
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    predicted = torch.tensor([0, 1, 1, 2, 0, 2])
    assert confusion_matrix(labels, predicted, 3).tolist() == [[1, 1, 0],
                                                               [0, 1, 0],
                                                               [1, 0, 2]]


def test_per_class_accuracy_divides_the_diagonal_by_row_totals_and_absent_is_0():
    matrix = confusion_matrix(torch.tensor([0, 0, 1, 2, 2, 2, 0, 0]),
                              torch.tensor([0, 1, 1, 2, 0, 2, 3, 0]), 4)
    assert per_class_accuracy(matrix) == pytest.approx([0.5, 1.0, 2 / 3, 0.0])


def test_classification_scores_are_mean_nll_and_accuracy():
    probs = torch.tensor([[0.7, 0.2, 0.1],
                          [0.1, 0.8, 0.1],
                          [0.5, 0.25, 0.25],
                          [0.2, 0.2, 0.6]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 2])
    scores = classification_scores(probs.log(), labels)
    expected_nll = -(math.log(0.7) + math.log(0.8) + math.log(0.25) + math.log(0.6)) / 4
    assert scores["test_loss"] == pytest.approx(expected_nll, rel=1e-12)
    assert scores["test_accuracy"] == pytest.approx(0.75)


def test_fused_mean_squared_error_matches_torch_value_and_gradient():
    """The loop's own MSE must be F.mse_loss exactly, only cheaper."""
    from sae.train import MeanSquaredError
    g = torch.Generator().manual_seed(0)
    output = torch.rand(7, 784, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.rand(7, 784, generator=g, dtype=torch.float64)
    ours = MeanSquaredError.apply(output, target)
    (ours_grad,) = torch.autograd.grad(ours, output)
    reference = F.mse_loss(output, target)
    (reference_grad,) = torch.autograd.grad(reference, output)
    assert torch.allclose(ours, reference, rtol=1e-12)
    assert torch.allclose(ours_grad, reference_grad, rtol=1e-12)
    assert torch.autograd.gradcheck(MeanSquaredError.apply, (output[:2, :5].detach()
                                    .requires_grad_(), target[:2, :5]))


@pytest.mark.parametrize("name, ours, reference", [
    ("sgd", lambda p: optim.SGD(p, 0.5), lambda p: torch.optim.SGD(p, 0.5)),
    ("momentum", lambda p: optim.SGD(p, 0.5, momentum=0.9),
     lambda p: torch.optim.SGD(p, 0.5, momentum=0.9)),
    ("adam", lambda p: optim.Adam(p, 0.01), lambda p: torch.optim.Adam(p, 0.01)),
    ("adamw", lambda p: optim.Adam(p, 0.01, weight_decay=0.1),
     lambda p: torch.optim.AdamW(p, 0.01, weight_decay=0.1)),
])
def test_optimizers_match_torch_optim(name, ours, reference):
    """The written-out optimisers take exactly torch.optim's steps."""
    def train(make_optimizer):
        g = torch.Generator().manual_seed(0)
        weight = torch.nn.Parameter(torch.randn(20, 7, generator=g, dtype=torch.float64))
        bias = torch.nn.Parameter(torch.randn(7, generator=g, dtype=torch.float64))
        x = torch.randn(50, 20, generator=g, dtype=torch.float64)
        optimizer = make_optimizer([weight, bias])
        for _ in range(5):
            loss = ((x @ weight + bias).tanh() ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return weight.detach(), bias.detach()

    for ours_tensor, reference_tensor in zip(train(ours), train(reference)):
        assert torch.allclose(ours_tensor, reference_tensor, rtol=1e-12, atol=0)
