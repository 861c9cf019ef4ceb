"""Test-set scores: classification accuracy and NLL, per-class accuracy, confusion matrix,
reconstruction MSE beside its reference points. All share train.predict, the one batched
forward pass; the tables DVC plots read are written here too."""
import csv
import io

import torch
import torch.nn.functional as F

from sae import pca
from sae.train import predict


def classification_scores(log_probs, labels, prefix="test"):
    """{"<prefix>_loss": mean NLL, "<prefix>_accuracy": fraction correct} of a classifier's
    output on one part of the data (prefix "test" or "val")."""
    # Reduced in float64: the sum's order then cannot move the rounded metric.
    return {f"{prefix}_loss": F.nll_loss(log_probs.double(), labels).item(),
            f"{prefix}_accuracy": (log_probs.argmax(1) == labels).double().mean().item()}


def reconstruction_mse(net, images, batch_size):
    return F.mse_loss(predict(net, images, batch_size).double(), images.double()).item()


def confusion_matrix(labels, predicted, n_classes):
    """Counts with rows = true class, columns = predicted class."""
    flat = labels.cpu() * n_classes + predicted.cpu()
    return torch.bincount(flat, minlength=n_classes ** 2).reshape(n_classes, n_classes)


def per_class_accuracy(matrix):
    """Fraction of each true class predicted right; 0 for a class absent from the split."""
    totals = matrix.sum(1).clamp(min=1)
    return (matrix.diag().double() / totals).tolist()


def code_size(net):
    return net.encoder[-1].linear.out_features


def reconstruction_report(nets, fitted_pca, images, batch_size):
    """Each autoencoder's test MSE beside PCA with the same code size and the mean image."""
    codes = {name: code_size(nets[name]) for name in ("layer1", "stacked")}
    pca_mse = pca.mse_by_code_size(fitted_pca, images, max(codes.values()))
    report = {"mean_image": pca_mse[0]}
    for name, k in codes.items():
        report[name] = reconstruction_mse(nets[name], images, batch_size)
        report[f"pca_{name}"] = pca_mse[k]
    return report


def metrics_report(scores, reconstruction):
    """The metrics JSON document: headline numbers only, rounded for readable diffs."""
    return {"test_accuracy": round(scores["test_accuracy"], 6),
            "test_nll": round(scores["test_loss"], 6),
            "reconstruction_mse": {k: round(v, 6) for k, v in sorted(reconstruction.items())}}


def _csv(header, rows):
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue()


def confusion_rows_csv(labels, predicted, class_names):
    """One row per test image, the shape DVC's confusion template reads."""
    return _csv(["actual", "predicted"], ((class_names[a], class_names[p])
                                          for a, p in zip(labels.tolist(), predicted.tolist())))


def per_class_csv(matrix, class_names):
    """Test accuracy per class, one row each, for DVC's bar plot and the reports."""
    return _csv(["class", "test_accuracy"],
                ((name, round(a, 6)) for name, a in zip(class_names, per_class_accuracy(matrix))))
