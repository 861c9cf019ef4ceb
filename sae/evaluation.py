"""Test-set scores: classification accuracy and NLL, per-class accuracy, confusion matrix,
reconstruction MSE. All share train.predict, the one batched forward pass."""
import torch
import torch.nn.functional as F

from sae.train import predict


def classification_scores(log_probs, labels):
    """{"test_loss": mean NLL, "test_accuracy": fraction correct} of a classifier's output."""
    # Reduced in float64: the sum's order then cannot move the rounded metric.
    return {"test_loss": F.nll_loss(log_probs.double(), labels).item(),
            "test_accuracy": (log_probs.argmax(1) == labels).double().mean().item()}


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


def metrics_report(scores, matrix, mse_layer1, mse_stacked):
    """The metrics JSON document: plain numbers only, rounded for readable diffs."""
    return {
        "test_accuracy": round(scores["test_accuracy"], 6),
        "test_nll": round(scores["test_loss"], 6),
        "per_class_accuracy": {str(c): round(a, 6)
                               for c, a in enumerate(per_class_accuracy(matrix))},
        "reconstruction_mse": {"layer1": round(mse_layer1, 6),
                               "stacked": round(mse_stacked, 6)},
        "confusion_matrix": matrix.tolist(),
    }
