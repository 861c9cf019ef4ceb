"""The network, the lecture's two surgeries (stack, classifier) and self-describing,
pickle-free checkpoints."""
import io
import os
import re

import pytest
import torch

from sae import params
from sae.model import (CheckpointError, autoencoder, check_architecture, classifier,
                       load_checkpoint, save_checkpoint, stack)
from tests.conftest import params_with

BATCH = 5


pytestmark = pytest.mark.usefixtures("float32_by_default")


def layer1():
    torch.manual_seed(0)
    return autoencoder(784, 400, "tanh", "sigmoid")


def stacked():
    return stack(layer1(), 256, "tanh", "tanh")


def images(dtype=torch.float32):
    return torch.rand(BATCH, 784, generator=torch.Generator().manual_seed(1), dtype=dtype)


# ---------------------------------------------------------------- shapes


def test_autoencoder_reconstructs_784_values_in_0_1():
    out = layer1()(images())
    assert out.shape == (BATCH, 784)
    assert ((out > 0) & (out < 1)).all()


def test_stacked_encoder_gives_a_256_code_and_the_net_a_reconstruction():
    net = stacked()
    code = net.encoder(images())
    assert code.shape == (BATCH, 256)
    assert ((code > -1) & (code < 1)).all()  # tanh code
    out = net(images())
    assert out.shape == (BATCH, 784) and ((out > 0) & (out < 1)).all()


def test_classifier_gives_10_log_probabilities_per_image():
    out = classifier(stacked(), 10)(images())
    assert out.shape == (BATCH, 10)
    assert (out <= 0).all()
    torch.testing.assert_close(out.exp().sum(1), torch.ones(BATCH))


# ---------------------------------------------------------------- the surgeries


def test_stack_keeps_layer1_trained_blocks_and_builds_the_lecture_architecture():
    first = layer1()
    with torch.no_grad():  # "train" layer 1 so its weights differ from any fresh init
        for p in first.parameters():
            p.add_(0.5)
    before = {k: v.clone() for k, v in first.state_dict().items()}
    net = stack(first, 256, "tanh", "tanh")
    assert net.config() == {"encoder": [[784, 400, "tanh"], [400, 256, "tanh"]],
                            "head": [[256, 400, "tanh"], [400, 784, "sigmoid"]]}
    # the same tensors (not copies), with the trained values
    assert net.encoder[0].linear.weight is first.encoder[0].linear.weight
    assert net.head[-1].linear.weight is first.head[0].linear.weight
    for ours, theirs in (("encoder.0", "encoder.0"), ("head.1", "head.0")):
        for part in ("weight", "bias"):
            assert torch.equal(net.state_dict()[f"{ours}.linear.{part}"],
                               before[f"{theirs}.linear.{part}"])


def test_classifier_drops_the_decoder_and_keeps_the_encoder():
    net = stacked()
    decoder = {id(p) for p in net.head.parameters()}
    encoder_before = {k: v.clone() for k, v in net.encoder.state_dict().items()}
    clf = classifier(net, 10)
    assert clf.config() == {"encoder": [[784, 400, "tanh"], [400, 256, "tanh"]],
                            "head": [[256, 10, "log_softmax"]]}
    assert not decoder & {id(p) for p in clf.parameters()}
    assert sum(p.numel() for p in clf.parameters()) == \
        784 * 400 + 400 + 400 * 256 + 256 + 256 * 10 + 10
    for k, v in encoder_before.items():
        assert torch.equal(clf.encoder.state_dict()[k], v)
    assert clf.encoder[0].linear.weight is net.encoder[0].linear.weight


# ---------------------------------------------------------------- checkpoints

NETS = {"layer1": layer1, "stacked": stacked, "classifier": lambda: classifier(stacked(), 10)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("kind", list(NETS))
def test_checkpoint_round_trip_rebuilds_an_equal_network(tmp_path, kind, dtype):
    net = NETS[kind]().to(dtype)
    with torch.no_grad():  # values that need the full precision of `dtype`
        for p in net.parameters():
            p.add_(torch.rand(p.shape, dtype=dtype) * 1e-3)
    path = tmp_path / "sub" / "net.pt"
    save_checkpoint(net, path, "mnist", "lecture")
    loaded = load_checkpoint(path)
    assert loaded.config() == net.config()
    assert all(p.dtype == dtype for p in loaded.parameters())
    assert loaded.state_dict().keys() == net.state_dict().keys()
    for key, value in net.state_dict().items():
        difference = (loaded.state_dict()[key] - value).abs().max().item()
        assert difference == 0, f"{key} changed by up to {difference:.3g} in the round trip"
    x = images(dtype)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))


def test_checkpoint_is_plain_data_that_loads_with_weights_only(tmp_path):
    net = stacked()
    save_checkpoint(net, tmp_path / "net.pt", "mnist", "lecture")
    saved = torch.load(tmp_path / "net.pt", weights_only=True)
    assert saved["config"] == net.config()
    assert set(saved["state"]) == set(net.state_dict())


class Payload:
    """An arbitrary object; unpickling its __reduce__ would run code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


class SystemCall:
    """Unpickling it would call os.system; torch blocks the whole module."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_calling_a_blocked_module_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pt"
    net = layer1()
    torch.save({"config": net.config(), "state": net.state_dict(), "x": SystemCall(marker)},
               path)
    with pytest.raises(CheckpointError, match=r"holds pickled code or objects \(\w+\.system\)"):
        load_checkpoint(path)
    assert not marker.exists()


class Opaque:
    def __init__(self):
        self.value = 1


def test_checkpoint_holding_pickled_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pt"
    net = layer1()
    torch.save({"config": net.config(), "state": net.state_dict(), "x": Payload(marker)}, path)
    with pytest.raises(CheckpointError, match=r"holds pickled code or objects \(exec\)"):
        load_checkpoint(path)
    assert not marker.exists()


def test_checkpoint_holding_a_custom_object_is_refused(tmp_path):
    path = tmp_path / "custom.pt"
    net = layer1()
    torch.save({"config": net.config(), "state": net.state_dict(), "extra": Opaque()}, path)
    with pytest.raises(CheckpointError, match=r"pickled code or objects \(.*Opaque\)"):
        load_checkpoint(path)


def test_two_saves_of_the_same_network_are_byte_identical(tmp_path):
    net = stacked()
    save_checkpoint(net, tmp_path / "a.pt", "mnist", "lecture")
    save_checkpoint(net, tmp_path / "b.pt", "mnist", "lecture")
    save_checkpoint(net, tmp_path / "a.pt", "mnist", "lecture")  # overwriting: no temporary left
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "b.pt"]


# ---------------------------------------------------------------- files this pipeline did not write


def saved_bytes(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def good():
    net = layer1()
    return {"config": net.config(), "state": dict(net.state_dict())}


def edited(change):
    saved = good()
    change(saved)
    return saved_bytes(saved)


def good_bytes():
    return saved_bytes(good())


BAD_FILES = {
    "random bytes": (lambda: os.urandom(4096), "not a zip archive"),
    "empty": (lambda: b"", "an empty file"),
    "truncated": (lambda: good_bytes()[:len(good_bytes()) // 2], "not a zip archive"),
    "bare state_dict": (lambda: saved_bytes(layer1().state_dict()),
                        r"it holds keys \[encoder.0.linear.bias, encoder.0.linear.weight, "
                        r"head.0.linear.bias, head.0.linear.weight\], not exactly 'config' and "
                        r"'state' \(a bare state_dict\?\)"),
    "a list": (lambda: saved_bytes([1, 2]), "it holds a list, not a dict of 'config' and 'state'"),
    "mixed dtypes": (lambda: edited(lambda s: s["state"].__setitem__(
        "head.0.linear.bias", s["state"]["head.0.linear.bias"].double())),
        "not all float32 or all float64"),
    "config without head": (lambda: edited(lambda s: s["config"].pop("head")),
                            "its config is not"),
    "unknown activation": (lambda: edited(lambda s: s["config"]["head"][0].__setitem__(2, "exec")),
                           r"its config head.0 = \[400, 784, 'exec'\] is not"),
    "layers that do not chain": (
        lambda: edited(lambda s: s["config"]["head"][0].__setitem__(0, 300)),
        "its config head.0 takes 300 inputs but the layer before gives 400"),
    "wrong shapes": (lambda: edited(lambda s: s["state"].__setitem__(
        "encoder.0.linear.weight", torch.zeros(300, 784))),
        r"encoder.0.linear.weight has shape \(300, 784\), its config says \(400, 784\)"),
    "a weight missing": (lambda: edited(lambda s: s["state"].pop("head.0.linear.bias")),
                         r"its weights \[encoder.0.linear.bias, .*\] are not its config.s"),
    "integer weights": (lambda: edited(lambda s: s["state"].update(
        {k: v.to(torch.int32) for k, v in s["state"].items()})), "not all float32 or all float64"),
    "NaN weights": (lambda: edited(lambda s: s["state"]["head.0.linear.bias"].fill_(float("nan"))),
                    "head.0.linear.bias holds NaN or infinite values"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_a_file_this_pipeline_did_not_write_is_one_clear_error_naming_it(tmp_path, kind):
    write, reason = BAD_FILES[kind]
    path = tmp_path / "layer1.pt"
    path.write_bytes(write())
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path} is not a checkpoint written by this pipeline (")
    assert re.search(reason, message), message
    assert f"dvc checkout {path}" in message and "dvc repro" in message
    assert "\n" not in message and "weights_only" not in message


@pytest.mark.parametrize("make, reason", [(lambda p: None, "No such file or directory"),
                                          (lambda p: p.mkdir(), "a folder")])
def test_a_missing_checkpoint_or_a_folder_is_named(tmp_path, make, reason):
    path = tmp_path / "layer1.pt"
    make(path)
    with pytest.raises(CheckpointError, match=f"^{re.escape(str(path))} .*\\({reason}\\)"):
        load_checkpoint(path)


# ---------------------------------------------------------------- checkpoints against params


DEFAULTS = params.parse(params_with())


def test_checkpoints_built_as_params_say_pass_the_architecture_check(tmp_path):
    for phase, net in (("pretrain_layer1", layer1()), ("stack_layer2", stacked()),
                       ("finetune_classifier", classifier(stacked(), 10))):
        check_architecture(net, tmp_path / "net.pt", DEFAULTS, "lecture", phase)


def test_a_layer1_of_other_size_than_params_say_is_refused_naming_both():
    net = autoencoder(784, 300, "tanh", "sigmoid")
    with pytest.raises(CheckpointError) as info:
        check_architecture(net, "models/lecture/mnist/layer1.pt", DEFAULTS, "lecture",
                           "pretrain_layer1")
    assert str(info.value) == (
        "models/lecture/mnist/layer1.pt has layers 784-300-784 (tanh, sigmoid) but params.yaml "
        "(lecture.pretrain_layer1) says 784-400-784 (tanh, sigmoid); re-create it with "
        "`dvc repro`")


def test_a_stacked_net_with_other_activations_than_params_say_is_refused():
    p = params.parse(params_with(**{"tuned.stack_layer2.decoder_activation": "sigmoid"}))
    with pytest.raises(CheckpointError, match=r"\(tuned.pretrain_layer1, tuned.stack_layer2\) "
                                              r"says 784-400-256-400-784 "
                                              r"\(relu, relu, sigmoid, sigmoid\)"):
        check_architecture(stacked(), "stacked.pt", p, "tuned", "stack_layer2")
    check_architecture(stacked(), "stacked.pt", p, "lecture", "stack_layer2")


def test_the_architecture_check_leaves_the_global_rng_alone():
    """Stages draw new layers' initial weights after the check: it must not move the RNG."""
    net = classifier(stacked(), 10)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    check_architecture(net, "x.pt", DEFAULTS, "lecture", "finetune_classifier")
    assert torch.equal(torch.rand(3), expected)


# ---------------------------------------------------------------- what a checkpoint was trained on


def test_a_checkpoint_records_its_dataset_and_recipe_and_loads_for_them(tmp_path):
    save_checkpoint(layer1(), tmp_path / "layer1.pt", "fashion_mnist", "tuned")
    saved = torch.load(tmp_path / "layer1.pt", weights_only=True)
    assert saved["trained_on"] == {"dataset": "fashion_mnist", "recipe": "tuned"}
    load_checkpoint(tmp_path / "layer1.pt", "fashion_mnist", "tuned")


@pytest.mark.parametrize("dataset, recipe", [("mnist", "tuned"), ("fashion_mnist", "lecture")])
def test_a_checkpoint_of_another_dataset_or_recipe_is_refused_naming_both(tmp_path, dataset,
                                                                         recipe):
    path = tmp_path / "layer1.pt"
    save_checkpoint(layer1(), path, "fashion_mnist", "tuned")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, dataset, recipe)
    assert str(info.value) == (
        f"{path} was trained on fashion_mnist with recipe tuned, but this stage runs {dataset} "
        f"with recipe {recipe}; give it the checkpoint of {dataset} ({recipe}), or re-create it "
        f"with `dvc repro`")


def test_a_checkpoint_from_before_they_recorded_their_dataset_asks_for_dvc_repro(tmp_path):
    path = tmp_path / "layer1.pt"
    path.write_bytes(good_bytes())  # config and state only, as older versions wrote them
    load_checkpoint(path)  # still a checkpoint of this pipeline
    with pytest.raises(CheckpointError, match=r"does not record the dataset and recipe it was "
                                              r"trained on .*; re-create it with `dvc repro`$"):
        load_checkpoint(path, "mnist", "lecture")
