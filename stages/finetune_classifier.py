"""Stage 4: drop the decoders, add a 256-10 log-softmax classifier and fine-tune the whole
network with NLL loss. After every epoch it scores the held-out images: the validation part
when the recipe has one (the test set is then read only by evaluate), else the test set, as
the lecture prints it. finetune_classifier.init = random starts from fresh weights (no
pretraining); train = head trains only the 256-10 layer on the frozen encoder (a linear
probe); labels = N fine-tunes on N labelled images, N / 10 of each class; keep = best keeps
the weights of the epoch with the best validation accuracy (early stopping), not the last."""
from sae import params, stage
from sae.evaluation import classification_scores
from sae.live import CLASSIFIER, epoch_logger, written_by
from sae.model import (CheckpointError, StackedNet, check_architecture, classifier,
                       load_checkpoint, save_checkpoint)
from sae.train import (TrainingDiverged, classification_loss, fit, labelled_subset, load_data,
                       predict, setup)


def main(argv=None):
    args = stage.parse_args(__doc__, argv, "data", "stacked", "model", "live",
                            folders={"live": written_by(CLASSIFIER)})
    p = params.load()
    recipe = p.recipe(args.recipe)
    phase = recipe.finetune_classifier
    device = setup(p.common)
    images, labels = labelled_subset(
        *load_data(args.data, p.common, device, "train", recipe.split), phase.labels,
        p.common.seed, key=f"{args.recipe}.finetune_classifier.labels")
    held_out = "validation" if recipe.split.validation else "test"
    scored_images, scored_labels = load_data(args.data, p.common, device, held_out, recipe.split)
    prefix = {"validation": "val", "test": "test"}[held_out]  # the logged columns' prefix
    stacked = load_checkpoint(args.stacked, args.dataset, args.recipe)
    check_architecture(stacked, args.stacked, p, args.recipe, "stack_layer2")
    if phase.init == "random":
        stacked = StackedNet.from_config(stacked.config())
    net = classifier(stacked, phase.layers[1]).set_dropout(phase.input_dropout,
                                                             phase.dropout)
    net = net.to(device, images.dtype)
    if phase.train == "head":
        net.encoder.requires_grad_(False)  # frozen: no gradients, no updates, no decay

    best = BestEpoch()

    def held_out_scores(net):
        scores = classification_scores(predict(net, scored_images, phase.batch_size),
                                       scored_labels, prefix)
        if phase.keep == "best":  # params.py allows it only with a validation part
            best.offer(net, scores[f"{prefix}_accuracy"])
        return scores

    with epoch_logger(args.live) as log:
        fit(net, images, labels, classification_loss, phase, p.common.seed,
            f"finetune_classifier@{args.recipe}-{args.dataset}",
            after_epoch=held_out_scores, log=log)
        if phase.keep == "best":
            best.restore(net)
        log.note("kept_epoch", best.epoch if phase.keep == "best" else phase.epochs)
        params.guard(p, "finetune_classifier", args.recipe)  # a change: no output, no lock entry
    save_checkpoint(net, args.model, args.dataset, args.recipe)


class BestEpoch:
    """Early stopping that trains on: remembers the weights after the epoch with the highest
    validation accuracy (the earliest of equals), to put back when training ends."""

    def __init__(self):
        self.epoch, self.accuracy, self.state, self.epochs_seen = 0, -1.0, None, 0

    def offer(self, net, accuracy):
        self.epochs_seen += 1
        if accuracy > self.accuracy:
            self.epoch, self.accuracy = self.epochs_seen, accuracy
            self.state = {k: v.detach().clone() for k, v in net.state_dict().items()}

    def restore(self, net):
        net.load_state_dict(self.state)


if __name__ == "__main__":
    stage.run(main, TrainingDiverged, CheckpointError)
