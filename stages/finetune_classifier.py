"""Stage 4: drop the decoders, add a 256-10 log-softmax classifier and fine-tune the whole
network with NLL loss, recording test accuracy after every epoch as the lecture prints it.
finetune_classifier.init = random starts from fresh weights (no pretraining); train = head
trains only the 256-10 layer on the frozen encoder (a linear probe)."""
from sae import params, stage
from sae.evaluation import classification_scores
from sae.model import (CheckpointError, StackedNet, check_architecture, classifier,
                       load_checkpoint, save_checkpoint)
from sae.train import TrainingDiverged, classification_loss, fit, load_data, predict, setup


def main(argv=None):
    args = stage.parse_args(__doc__, argv, "data", "stacked", "model", "history")
    p = params.load()
    phase = p.recipe(args.recipe).finetune_classifier
    device = setup(p.common)
    images, labels = load_data(args.data, p.common, device, train=True)
    test_images, test_labels = load_data(args.data, p.common, device, train=False)
    stacked = load_checkpoint(args.stacked, args.dataset, args.recipe)
    check_architecture(stacked, args.stacked, p, args.recipe, "stack_layer2")
    if phase.init == "random":
        stacked = StackedNet.from_config(stacked.config())
    net = classifier(stacked, phase.layers[1]).set_dropout(phase.input_dropout,
                                                             phase.dropout)
    net = net.to(device, images.dtype)
    if phase.train == "head":
        net.encoder.requires_grad_(False)  # frozen: no gradients, no updates, no decay

    def test_scores(net):
        return classification_scores(predict(net, test_images, phase.batch_size), test_labels)

    history = fit(net, images, labels, classification_loss, phase, p.common.seed,
                  f"finetune_classifier@{args.recipe}-{args.dataset}",
                  after_epoch=test_scores)
    save_checkpoint(net, args.model, args.dataset, args.recipe)
    stage.write_history(args.history, history)


if __name__ == "__main__":
    stage.run(main, TrainingDiverged, CheckpointError)
