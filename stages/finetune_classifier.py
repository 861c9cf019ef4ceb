"""Stage 4: drop the decoders, add a 256-10 log-softmax classifier and fine-tune the whole
network with NLL loss, recording test accuracy after every epoch as the lecture prints it."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from the repo root

from sae import params, stage  # noqa: E402
from sae.evaluation import classification_scores  # noqa: E402
from sae.model import classifier, load_checkpoint, save_checkpoint  # noqa: E402
from sae.train import (TrainingDiverged, classification_loss, fit, load_data,  # noqa: E402
                       predict, setup)


def main(argv=None):
    args = stage.parse_args(__doc__, argv, "data", "stacked", "model", "history")
    p = params.load()
    phase = p.finetune_classifier
    device = setup(p.common)
    images, labels = load_data(args.data, p.common, device, train=True)
    test_images, test_labels = load_data(args.data, p.common, device, train=False)
    net = classifier(load_checkpoint(args.stacked), phase.layers[1]).to(device, images.dtype)

    def test_scores(net):
        return classification_scores(predict(net, test_images, phase.batch_size), test_labels)

    history = fit(net, images, labels, classification_loss, phase, p.common.seed,
                  f"finetune_classifier@{args.dataset}", after_epoch=test_scores)
    save_checkpoint(net, args.model)
    stage.write_history(args.history, history)


if __name__ == "__main__":
    stage.run(main, TrainingDiverged)
