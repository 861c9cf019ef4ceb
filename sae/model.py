"""The network: fully connected blocks in an encoder and a head (decoder or classifier),
the two surgeries of the lecture (stacking, classifier), and checkpoints that carry their
own architecture so a later stage rebuilds the model from the file alone."""
import io
import pickle
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sae.atomic import write_bytes
from sae.params import PHASES

# torch.tanh etc. rather than nn.Tanh(): one name, one function, nothing to configure.
ACTIVATION_FUNCTIONS = {
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "identity": lambda x: x,
    "log_softmax": lambda x: torch.log_softmax(x, dim=1),
}


class Block(nn.Module):
    """A linear layer followed by an activation, e.g. Linear(784, 400) + tanh."""

    def __init__(self, n_in: int, n_out: int, activation: str):
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        self.activation = activation
        self.dropout = 0.0  # on the block's input, while training only; not saved

    def forward(self, x):
        if self.dropout and self.training:
            x = F.dropout(x, self.dropout)
        return ACTIVATION_FUNCTIONS[self.activation](self.linear(x))

    def spec(self):
        return [self.linear.in_features, self.linear.out_features, self.activation]


class StackedNet(nn.Module):
    """encoder blocks, then head blocks: a decoder (autoencoder) or a classifier."""

    def __init__(self, encoder, head):
        super().__init__()
        self.encoder = nn.Sequential(*encoder)
        self.head = nn.Sequential(*head)

    def forward(self, x):
        return self.head(self.encoder(x))

    def config(self):
        """The architecture as plain data: {"encoder": [[in, out, act]...], "head": [...]}."""
        return {"encoder": [b.spec() for b in self.encoder],
                "head": [b.spec() for b in self.head]}

    @classmethod
    def from_config(cls, config):
        """A network of this architecture with fresh (seeded by the caller) weights."""
        return cls([Block(*s) for s in config["encoder"]], [Block(*s) for s in config["head"]])

    def set_dropout(self, on_pixels, on_codes):
        """Dropout on the first block's input (the pixels) and on every later block's."""
        blocks = [*self.encoder, *self.head]
        for i, block in enumerate(blocks):
            block.dropout = on_codes if i else on_pixels
        return self


def autoencoder(n_in, n_hidden, encoder_activation, decoder_activation) -> StackedNet:
    """The lecture's first network: 784-400 encoder, 400-784 decoder."""
    return StackedNet([Block(n_in, n_hidden, encoder_activation)],
                      [Block(n_hidden, n_in, decoder_activation)])


def stack(net: StackedNet, n_hidden, encoder_activation, decoder_activation) -> StackedNet:
    """Grow the autoencoder one layer deeper, keeping its trained blocks (not copies):
    encoder + [n -> n_hidden], then [n_hidden -> n] + decoder."""
    n_code = net.encoder[-1].linear.out_features
    return StackedNet([*net.encoder, Block(n_code, n_hidden, encoder_activation)],
                      [Block(n_hidden, n_code, decoder_activation), *net.head])


def classifier(net: StackedNet, n_classes) -> StackedNet:
    """Drop the decoder and put a linear + log-softmax classifier on the code."""
    n_code = net.encoder[-1].linear.out_features
    return StackedNet([*net.encoder], [Block(n_code, n_classes, "log_softmax")])


def save_checkpoint(net: StackedNet, path, dataset, recipe):
    """Write config, float weights and what they were trained on (dataset and recipe, which
    later stages compare) atomically; loading them needs no pickled code."""
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    write_saved({"config": net.config(), "state": state,
                 "trained_on": {"dataset": dataset, "recipe": recipe}}, path)


def write_saved(tensors, path):
    """torch.save of plain data (tensors, lists, dicts), written atomically."""
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    write_bytes(path, buffer.getvalue())


class CheckpointError(ValueError):
    """A checkpoint file that this pipeline did not write, or one that does not fit params.yaml."""


FLOAT_DTYPES = (torch.float32, torch.float64)
PARTS = ("encoder", "head")


def load_checkpoint(path, dataset=None, recipe=None) -> StackedNet:
    """Rebuild the network from the file alone: torch.load(weights_only=True) reads it (no
    code is unpickled), a strict load_state_dict fits the weights to the saved config.
    CheckpointError, naming the file, for anything save_checkpoint did not write; given a
    dataset and recipe, also unless the file was trained on them."""
    saved = read_saved(path)
    problem = _layout_problem(saved) or _config_problem(saved["config"])
    if problem:
        raise _not_ours(path, problem)
    # Built on the meta device: no weights are drawn, so loading a checkpoint leaves the
    # random stream as it was, and a later seeded init is the same as without the load.
    with torch.device("meta"):
        net = StackedNet.from_config(saved["config"])
    expected = net.state_dict()
    try:  # assign: keep the saved dtype exactly
        net.load_state_dict(saved["state"], strict=True, assign=True)
    except (RuntimeError, TypeError):
        raise _not_ours(path, _mismatch(saved["state"], expected)) from None
    problem = _weights_problem(net.state_dict())
    if problem:
        raise _not_ours(path, problem)
    if dataset is not None:
        _check_trained_on(path, saved.get("trained_on"), dataset, recipe)
    return net


def read_saved(path):
    """What torch.load(weights_only=True) finds in a file write_saved wrote, or
    CheckpointError naming the file and saying why it cannot."""
    try:
        problem = _file_problem(Path(path))
        if problem is None:
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # The globals the safe loader refused, found by torch's own scan of the pickle.
        names = [name.removeprefix("builtins.")
                 for name in torch.serialization.get_unsafe_globals_in_checkpoint(path)]
        problem = f"it holds pickled code or objects ({', '.join(names)}), which are never loaded"
    except (OSError, RuntimeError, EOFError, ValueError) as error:
        reason = getattr(error, "strerror", None) or str(error).split(". ")[0]
        problem = " ".join(reason.split()) or type(error).__name__
    raise _not_ours(path, problem)


def _file_problem(path: Path):
    """Why the file cannot be a torch checkpoint at all, or None."""
    if path.is_dir():
        return "a folder"
    if path.stat().st_size == 0:
        return "an empty file"
    # torch.save writes a zip archive; anything else would go to torch's legacy unpickler.
    if not zipfile.is_zipfile(path):
        return "not a zip archive: truncated, or not written by torch.save"
    return None


def _not_ours(path, problem) -> CheckpointError:
    return CheckpointError(
        f"{path} is not a checkpoint written by this pipeline ({problem}); expected a file "
        f"of the stage that writes it (its config and float weights); restore it with "
        f"`dvc checkout {path}` or re-create it with `dvc repro`")


def _layout_problem(saved):
    """Why `saved` is not the dict save_checkpoint writes, or None. (Checkpoints written
    before they recorded `trained_on` still load; the stages that compare refuse them.)"""
    if not isinstance(saved, dict):
        return f"it holds a {type(saved).__name__}, not a dict of 'config' and 'state'"
    if not {"config", "state"} <= set(saved):
        return (f"it holds keys {_keys(saved)}, not exactly 'config' and 'state' "
                "(a bare state_dict?)")
    if not set(saved) <= {"config", "state", "trained_on"}:
        return f"it holds keys {_keys(saved)}; expected config, state and trained_on"
    trained_on = saved.get("trained_on")
    if trained_on is not None and not (
            isinstance(trained_on, dict) and set(trained_on) == {"dataset", "recipe"}
            and all(isinstance(v, str) for v in trained_on.values())):
        return f"its trained_on = {trained_on!r} is not {{'dataset': ..., 'recipe': ...}}"
    return None


def _config_problem(config):
    """Why the config is not blocks [in, out, activation] that chain, or None."""
    if (not isinstance(config, dict) or set(config) != set(PARTS)
            or not all(isinstance(config[part], list) and config[part] for part in PARTS)):
        return "its config is not {'encoder': [...], 'head': [...]}, both non-empty"
    width = None
    for part in PARTS:
        for i, spec in enumerate(config[part]):
            if not _is_spec(spec):
                return f"its config {part}.{i} = {spec!r} is not [in, out, activation]"
            if width is not None and spec[0] != width:
                return (f"its config {part}.{i} takes {spec[0]} inputs but the layer before "
                        f"gives {width}")
            width = spec[1]
    return None


def _is_spec(spec) -> bool:
    return (isinstance(spec, list) and len(spec) == 3
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in spec[:2])
            and spec[2] in ACTIVATION_FUNCTIONS)


def _mismatch(state, expected) -> str:
    """Why strict load_state_dict refused `state` for a network whose own is `expected`."""
    if not isinstance(state, dict):
        return f"its weights are a {type(state).__name__}, not a dict of tensors"
    if set(state) != set(expected):
        return f"its weights {_keys(state)} are not its config's {_keys(expected)}"
    for key, tensor in expected.items():
        shape = tuple(getattr(state[key], "shape", ()))
        if shape != tuple(tensor.shape):
            return f"its weight {key} has shape {shape}, its config says {tuple(tensor.shape)}"
    return _weights_problem(state) or "its weights do not fit its config"


def _weights_problem(state):
    """Why loaded weights are not all float32 or all float64 and finite, or None."""
    dtypes = {getattr(t, "dtype", None) for t in state.values()}
    if len(dtypes) != 1 or not dtypes <= set(FLOAT_DTYPES):
        return "its weights are not all float32 or all float64 tensors"
    for key, tensor in state.items():
        if not torch.isfinite(tensor).all():
            return f"its weight {key} holds NaN or infinite values"
    return None


def _check_trained_on(path, trained_on, dataset, recipe):
    """CheckpointError unless the checkpoint records training on `dataset` with `recipe`."""
    if trained_on is None:
        raise CheckpointError(
            f"{path} does not record the dataset and recipe it was trained on (written by an "
            f"older version of this pipeline); re-create it with `dvc repro`")
    if trained_on != {"dataset": dataset, "recipe": recipe}:
        raise CheckpointError(
            f"{path} was trained on {trained_on['dataset']} with recipe "
            f"{trained_on['recipe']}, but this stage runs {dataset} with recipe {recipe}; "
            f"give it the checkpoint of {dataset} ({recipe}), or re-create it with `dvc repro`")


def _keys(mapping) -> str:
    """A mapping's keys, sorted, at most four shown."""
    keys = sorted(map(str, mapping))
    return "[" + ", ".join(keys[:4]) + (", ...]" if len(keys) > 4 else "]")


def planned_config(recipe, phase) -> dict:
    """The config of the network that a recipe's phases up to `phase` build."""
    a, b, c = recipe.pretrain_layer1, recipe.stack_layer2, recipe.finetune_classifier
    # On the meta device: the same surgeries, no memory and no draws from the global RNG.
    with torch.device("meta"):
        net = autoencoder(*a.layers, a.encoder_activation, a.decoder_activation)
        if phase != PHASES[0]:
            net = stack(net, b.layers[1], b.encoder_activation, b.decoder_activation)
        if phase == PHASES[2]:
            net = classifier(net, c.layers[1])
    return net.config()


def check_architecture(net: StackedNet, path, p, recipe, phase):
    """CheckpointError unless `net`, loaded from `path`, is what params `p` make the phase
    `phase` of `recipe` write."""
    planned = planned_config(p.recipe(recipe), phase)
    if net.config() != planned:
        sections = ", ".join(f"{recipe}.{name}" for name in PHASES[:PHASES.index(phase) + 1])
        raise CheckpointError(
            f"{path} has layers {describe(net.config())} but params.yaml ({sections}) says "
            f"{describe(planned)}; re-create it with `dvc repro`")


def describe(config) -> str:
    """A config as sizes and activations, e.g. '784-400-784 (tanh, sigmoid)'."""
    blocks = config["encoder"] + config["head"]
    sizes = "-".join(str(n) for n in [blocks[0][0], *(b[1] for b in blocks)])
    return f"{sizes} ({', '.join(b[2] for b in blocks)})"
