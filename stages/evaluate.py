"""Stage 5: score the fine-tuned classifier and both autoencoders on the test set, the
autoencoders beside PCA at the same code size and the mean image; write the headline
metrics, the per-class and confusion tables DVC plots, and the figures."""
from sae import evaluation, params, pca, plots, stage
from sae.atomic import atomic_dir, write_json, write_text
from sae.datasets import DATASETS
from sae.live import HistoryError, read_history
from sae.model import CheckpointError, check_architecture, load_checkpoint
from sae.params import PHASES
from sae.train import load_data, predict, setup


def history_columns(phase, held_out):
    """The columns the figures draw from a phase's history; fine-tuning scored `held_out`,
    "val" or "test", after every epoch."""
    if phase == "finetune_classifier":
        return ("epoch", "train_loss", f"{held_out}_loss", f"{held_out}_accuracy")
    return ("epoch", "train_loss")


def reconstruction_rows(nets, fitted_pca, shown, batch_size):
    """(label, images) rows of the reconstructions figure: each autoencoder, then PCA with
    the same code size, so that the linear reference is seen beside it."""
    rows = [("original", shown)]
    for name, title in (("layer1", "layer 1"), ("stacked", "stacked")):
        k = evaluation.code_size(nets[name])
        rows += [(f"{title}\n(code {k})", predict(nets[name], shown, batch_size)),
                 (f"PCA-{k}", pca.reconstruct(fitted_pca, shown, k))]
    return [(label, images.cpu().numpy()) for label, images in rows]


def write_figures(folder, settings, info, nets, fitted_pca, images, labels, predicted, matrix,
                  histories):
    """The six PNG figures of one dataset, named by what they show."""
    plots.training_curves(folder / "training_curves.png", histories, info.title)
    shown = images[:settings.examples]
    plots.reconstructions(folder / "reconstructions.png",
                          reconstruction_rows(nets, fitted_pca, shown, settings.batch_size),
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
    args = stage.parse_args(__doc__, argv, "data", "pca", "layer1", "stacked", "classifier",
                            *(f"live-{name}" for name in PHASES),
                            "metrics", "confusion", "per-class", "figures", folders=("figures",))
    p = params.load()
    held_out = "val" if p.recipe(args.recipe).split.validation else "test"
    info = DATASETS[args.dataset]
    batch = p.evaluate.batch_size
    device = setup(p.common)
    images, labels = load_data(args.data, p.common, device, "test")
    nets = {name: load_checkpoint(getattr(args, name), args.dataset, args.recipe)
            .to(device, images.dtype) for name in ("layer1", "stacked", "classifier")}
    for name, phase in zip(nets, PHASES):  # the phase that writes each
        check_architecture(nets[name], getattr(args, name), p, args.recipe, phase)
    fitted_pca = pca.load(args.pca, max(map(evaluation.code_size, nets.values())))

    log_probs = predict(nets["classifier"], images, batch)
    predicted = log_probs.argmax(1)
    scores = evaluation.classification_scores(log_probs, labels)
    matrix = evaluation.confusion_matrix(labels, predicted, len(info.class_names))
    reconstruction = evaluation.reconstruction_report(nets, fitted_pca, images, batch)
    histories = {name: read_history(getattr(args, f"live_{name}"),
                                    history_columns(name, held_out)) for name in PHASES}
    params.guard(p, "evaluate", args.recipe)  # a change while it ran: nothing written
    # The figures folder is one DVC output, written whole or not at all.
    with atomic_dir(args.figures) as figures:
        write_figures(figures, p.evaluate, info, nets, fitted_pca, images, labels, predicted,
                      matrix, histories)
    write_text(args.confusion, evaluation.confusion_rows_csv(labels, predicted, info.class_names))
    write_text(args.per_class, evaluation.per_class_csv(matrix, info.class_names))
    write_json(args.metrics, evaluation.metrics_report(scores, reconstruction))


if __name__ == "__main__":
    stage.run(main, CheckpointError, HistoryError)
