"""Stage 5: score the fine-tuned classifier and both autoencoders on the test set; write
metrics/<dataset>.json, the confusion-matrix data and the figures."""
import csv
import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from the repo root

from sae import evaluation, params, plots, stage  # noqa: E402
from sae.atomic import atomic_dir, write_json, write_text  # noqa: E402
from sae.datasets import DATASETS  # noqa: E402
from sae.model import load_checkpoint  # noqa: E402
from sae.train import load_data, predict, setup  # noqa: E402

HISTORIES = ("pretrain_layer1", "stack_layer2", "finetune_classifier")


def read_history(path):
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def confusion_rows_csv(labels, predicted, class_names):
    """One row per test image, the shape DVC's confusion template reads."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["actual", "predicted"])
    writer.writerows((class_names[a], class_names[p])
                     for a, p in zip(labels.tolist(), predicted.tolist()))
    return text.getvalue()


def write_figures(folder, settings, info, nets, images, labels, predicted, matrix, histories):
    """The six PNG figures of one dataset, named by what they show."""
    plots.training_curves(folder / "training_curves.png", histories, info.title)
    shown = images[:settings.examples]
    plots.reconstructions(folder / "reconstructions.png", shown.cpu().numpy(),
                          predict(nets["layer1"], shown, settings.batch_size).cpu().numpy(),
                          predict(nets["stacked"], shown, settings.batch_size).cpu().numpy(),
                          info.title)
    plots.filters(folder / "filters.png",
                  nets["layer1"].encoder[0].linear.weight.detach().cpu().numpy(), info.title)
    plots.confusion_heatmap(folder / "confusion_matrix.png", matrix.numpy(),
                            info.class_names, info.title)
    plots.per_class_accuracy(folder / "per_class_accuracy.png",
                             evaluation.per_class_accuracy(matrix), info.class_names, info.title)
    wrong = (predicted != labels).nonzero().flatten()[:settings.examples]
    plots.misclassified(folder / "misclassified.png", images[wrong].cpu().numpy(),
                        labels[wrong].tolist(), predicted[wrong].tolist(),
                        info.class_names, info.title)


def main(argv=None):
    args = stage.parse_args(__doc__, argv, "data", "layer1", "stacked", "classifier",
                            *(f"history-{name}" for name in HISTORIES),
                            "metrics", "confusion", "figures")
    p = params.load()
    info = DATASETS[args.dataset]
    batch = p.evaluate.batch_size
    device = setup(p.common)
    images, labels = load_data(args.data, p.common, device, train=False)
    nets = {name: load_checkpoint(getattr(args, name)).to(device, images.dtype)
            for name in ("layer1", "stacked", "classifier")}

    log_probs = predict(nets["classifier"], images, batch)
    predicted = log_probs.argmax(1)
    scores = evaluation.classification_scores(log_probs, labels)
    matrix = evaluation.confusion_matrix(labels, predicted, len(info.class_names))
    mse = {name: evaluation.reconstruction_mse(nets[name], images, batch)
           for name in ("layer1", "stacked")}
    histories = {name: read_history(getattr(args, f"history_{name}")) for name in HISTORIES}
    # The figures folder is one DVC output, written whole or not at all.
    with atomic_dir(args.figures) as figures:
        write_figures(figures, p.evaluate, info, nets, images, labels, predicted, matrix,
                      histories)
    write_text(args.confusion, confusion_rows_csv(labels, predicted, info.class_names))
    write_json(args.metrics, evaluation.metrics_report(scores, matrix, mse["layer1"],
                                                       mse["stacked"]))

if __name__ == "__main__":
    stage.run(main)
