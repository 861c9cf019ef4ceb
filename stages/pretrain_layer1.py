"""Stage 2: train the 784-400-784 autoencoder on the training images."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from the repo root

from sae import params, stage  # noqa: E402
from sae.model import autoencoder, save_checkpoint  # noqa: E402
from sae.train import TrainingDiverged, fit, load_data, reconstruction_loss, setup  # noqa: E402


def main(argv=None):
    args = stage.parse_args(__doc__, argv, "data", "model", "history")
    p = params.load()
    phase = p.pretrain_layer1
    device = setup(p.common)
    images, _ = load_data(args.data, p.common, device, train=True)
    net = autoencoder(*phase.layers, phase.encoder_activation, phase.decoder_activation)
    net = net.to(device, images.dtype)
    history = fit(net, images, None, reconstruction_loss, phase, p.common.seed,
                  f"pretrain_layer1@{args.dataset}")
    save_checkpoint(net, args.model)
    stage.write_history(args.history, history)


if __name__ == "__main__":
    stage.run(main, TrainingDiverged)
