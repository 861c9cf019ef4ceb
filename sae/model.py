"""The network: fully connected blocks in an encoder and a head (decoder or classifier),
the two surgeries of the lecture (stacking, classifier), and checkpoints that carry their
own architecture so a later stage rebuilds the model from the file alone."""
import io

import torch
import torch.nn.functional as F
from torch import nn

from sae.atomic import write_bytes

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

    def set_dropout(self, fraction):
        for block in [*self.encoder, *self.head]:
            block.dropout = fraction
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


def save_checkpoint(net: StackedNet, path):
    """Write config and float weights atomically; loading them needs no pickled code."""
    buffer = io.BytesIO()
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    torch.save({"config": net.config(), "state": state}, buffer)
    write_bytes(path, buffer.getvalue())


def load_checkpoint(path) -> StackedNet:
    """Rebuild the network from the file alone (weights_only: no code is unpickled)."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    # Built on the meta device: no weights are drawn, so loading a checkpoint leaves the
    # random stream as it was, and a later seeded init is the same as without the load.
    with torch.device("meta"):
        net = StackedNet.from_config(saved["config"])
    net.load_state_dict(saved["state"], assign=True)  # assign: keep the saved dtype exactly
    return net
