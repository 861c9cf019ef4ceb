"""The network, the lecture's two surgeries (stack, classifier) and self-describing,
pickle-free checkpoints."""
import pytest
import torch

from sae.model import autoencoder, classifier, load_checkpoint, save_checkpoint, stack

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
    save_checkpoint(net, path)
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
    save_checkpoint(net, tmp_path / "net.pt")
    saved = torch.load(tmp_path / "net.pt", weights_only=True)
    assert saved["config"] == net.config()
    assert set(saved["state"]) == set(net.state_dict())


class Payload:
    """An arbitrary object; unpickling its __reduce__ would run code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


class Opaque:
    def __init__(self):
        self.value = 1


def test_checkpoint_holding_pickled_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pt"
    net = layer1()
    torch.save({"config": net.config(), "state": net.state_dict(), "x": Payload(marker)}, path)
    with pytest.raises(Exception):
        load_checkpoint(path)
    assert not marker.exists()


def test_checkpoint_holding_a_custom_object_is_refused(tmp_path):
    path = tmp_path / "custom.pt"
    net = layer1()
    torch.save({"config": net.config(), "state": net.state_dict(), "extra": Opaque()}, path)
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        load_checkpoint(path)


def test_two_saves_of_the_same_network_are_byte_identical(tmp_path):
    net = stacked()
    save_checkpoint(net, tmp_path / "a.pt")
    save_checkpoint(net, tmp_path / "b.pt")
    save_checkpoint(net, tmp_path / "a.pt")  # overwriting leaves no temporary file behind
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "b.pt"]
