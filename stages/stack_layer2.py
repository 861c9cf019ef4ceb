"""Stage 3: stack a 400-256 encoder and a 256-400 decoder layer on the trained layer-1
autoencoder and train the whole 784-400-256-400-784 network, as the lecture does.
With stack_layer2.init = random the same network starts from fresh weights instead: the
deep autoencoder trained end to end, the lecture's other way to stack."""
from sae import params, stage
from sae.live import AUTOENCODER, epoch_logger, written_by
from sae.model import (CheckpointError, StackedNet, check_architecture, load_checkpoint,
                       save_checkpoint, stack)
from sae.train import TrainingDiverged, fit, load_data, reconstruction_loss, setup


def main(argv=None):
    args = stage.parse_args(__doc__, argv, "data", "layer1", "model", "live",
                            folders={"live": written_by(AUTOENCODER)})
    p = params.load()
    recipe = p.recipe(args.recipe)
    phase = recipe.stack_layer2
    device = setup(p.common)
    images, _ = load_data(args.data, p.common, device, "train", recipe.split)
    layer1 = load_checkpoint(args.layer1, args.dataset, args.recipe)
    check_architecture(layer1, args.layer1, p, args.recipe, "pretrain_layer1")
    if phase.init == "random":
        layer1 = StackedNet.from_config(layer1.config())
    net = stack(layer1, phase.layers[1], phase.encoder_activation, phase.decoder_activation)
    net = net.to(device, images.dtype)
    with epoch_logger(args.live) as log:
        fit(net, images, None, reconstruction_loss, phase, p.common.seed,
            f"stack_layer2@{args.recipe}-{args.dataset}", log=log)
        params.guard(p, "stack_layer2", args.recipe)  # a change: no output, no lock entry
    save_checkpoint(net, args.model, args.dataset, args.recipe)


if __name__ == "__main__":
    stage.run(main, TrainingDiverged, CheckpointError)
