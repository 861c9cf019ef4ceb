"""Stage 2: train the 784-400-784 autoencoder on the training images."""
from sae import params, stage
from sae.live import AUTOENCODER, epoch_logger, written_by
from sae.model import autoencoder, save_checkpoint
from sae.train import TrainingDiverged, fit, load_data, reconstruction_loss, setup


def main(argv=None):
    args = stage.parse_args(__doc__, argv, "data", "model", "live",
                            folders={"live": written_by(AUTOENCODER)})
    p = params.load()
    recipe = p.recipe(args.recipe)
    phase = recipe.pretrain_layer1
    device = setup(p.common)
    images, _ = load_data(args.data, p.common, device, "train", recipe.split)
    net = autoencoder(*phase.layers, phase.encoder_activation, phase.decoder_activation)
    net = net.to(device, images.dtype)
    with epoch_logger(args.live) as log:
        fit(net, images, None, reconstruction_loss, phase, p.common.seed,
            f"pretrain_layer1@{args.recipe}-{args.dataset}", log=log)
        params.guard(p, "pretrain_layer1", args.recipe)  # a change: no output, no lock entry
    save_checkpoint(net, args.model, args.dataset, args.recipe)


if __name__ == "__main__":
    stage.run(main, TrainingDiverged)
