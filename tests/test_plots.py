"""The figures: each is a real, deterministic PNG, and a failed call leaves nothing behind."""
import matplotlib.figure
import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pytest

from sae import plots
from sae.atomic import OutputError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DIGITS = tuple(str(d) for d in range(10))


def _rng():
    return np.random.default_rng(1234)


def _histories(epochs=5):
    rows = range(1, epochs + 1)
    return {
        "pretrain_layer1": [{"epoch": e, "train_loss": 0.05 / e} for e in rows],
        "stack_layer2": [{"epoch": e, "train_loss": 0.06 / e} for e in rows],
        "finetune_classifier": [{"epoch": e, "train_loss": 0.5 / e, "test_loss": 0.6 / e,
                                 "test_accuracy": 0.9 + 0.01 * e} for e in rows],
    }


def _filter_weights(n=400):
    """Smooth, blob-like patterns plus a little noise, like trained encoder weights."""
    rng = _rng()
    yy, xx = np.mgrid[0:28, 0:28]
    centres, widths = rng.uniform(6, 22, (n, 2, 1, 1)), rng.uniform(2, 6, (n, 1, 1))
    blobs = np.exp(-((xx - centres[:, 0]) ** 2 + (yy - centres[:, 1]) ** 2) / (2 * widths ** 2))
    stripes = np.sin(xx * rng.uniform(0.2, 0.8, (n, 1, 1)) + rng.uniform(0, 6, (n, 1, 1)))
    return (blobs * stripes).reshape(n, 784) + rng.normal(0, 0.02, (n, 784))


def _confusion():
    rng = _rng()
    off_diagonal = rng.integers(0, 30, (10, 10)) * (1 - np.eye(10, dtype=int))
    return np.diag(rng.integers(800, 1000, 10)) + off_diagonal


# name -> (function, the arguments after `path`)
def _cases():
    rng = _rng()
    images = rng.random((10, 784))
    return {
        "training_curves": (plots.training_curves, (_histories(), "MNIST")),
        "reconstructions": (plots.reconstructions,
                            ([("original", images), ("layer 1", np.clip(images + 0.1, 0, 1)),
                              ("PCA-400", images ** 2)], "MNIST")),
        "filters": (plots.filters, (_filter_weights(), "MNIST")),
        "confusion_heatmap": (plots.confusion_heatmap, (_confusion(), FASHION, "Fashion-MNIST")),
        "per_class_accuracy": (plots.per_class_accuracy,
                               (rng.uniform(0.05, 1.0, 10), FASHION, "Fashion-MNIST")),
        "misclassified": (plots.misclassified,
                          (images[:7], rng.integers(0, 10, 7), rng.integers(0, 10, 7),
                           FASHION, "Fashion-MNIST")),
        "misclassified_none": (plots.misclassified,
                               (np.zeros((0, 784)), [], [], DIGITS, "MNIST")),
    }


CASES = sorted(_cases())


def _check_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    return data, matplotlib.image.imread(path).shape


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("name", CASES)
def test_figure_is_a_deterministic_png(tmp_path, name):
    function, args = _cases()[name]
    first, second = tmp_path / "a" / f"{name}.png", tmp_path / f"{name}.png"
    function(first, *args)
    function(second, *_cases()[name][1])
    data, shape = _check_png(first)
    assert data == second.read_bytes(), "same inputs must give byte-identical files"
    height, width = shape[:2]
    assert len(shape) == 2 or shape[2] in (3, 4)  # grey, RGB or RGBA
    assert 150 <= height <= 1200 and 400 <= width <= 1600, shape
    assert len(data) < 200_000
    assert _leftovers(tmp_path) == [] and _leftovers(tmp_path / "a") == []
    assert plt.get_fignums() == [], "figures must be closed"


def test_filters_are_drawn_one_pixel_per_weight_in_grey(tmp_path):
    plots.filters(tmp_path / "f.png", _rng().normal(size=(400, 784)), "MNIST")
    _, (height, width) = _check_png(tmp_path / "f.png")
    grid = 20 * 28 + 19  # 20 tiles a side, 1-pixel gaps
    assert width == grid + 20 and height == grid + 10 + 48


def test_filters_handle_a_non_square_count_and_a_constant_tile(tmp_path):
    weights = _rng().normal(size=(10, 784))
    weights[3] = 0.25
    plots.filters(tmp_path / "f.png", weights, "MNIST")
    _check_png(tmp_path / "f.png")


def test_training_curves_with_a_single_epoch(tmp_path):
    plots.training_curves(tmp_path / "t.png", _histories(1), "MNIST")
    _check_png(tmp_path / "t.png")


def test_different_inputs_give_different_bytes(tmp_path):
    plots.confusion_heatmap(tmp_path / "a.png", _confusion(), DIGITS, "MNIST")
    plots.confusion_heatmap(tmp_path / "b.png", _confusion() + np.eye(10, dtype=int), DIGITS,
                            "MNIST")
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "b.png").read_bytes()


BAD_INPUTS = {
    "reconstructions_wrong_width": lambda p: plots.reconstructions(
        p, [("original", np.zeros((3, 100))), ("layer 1", np.zeros((3, 100)))], "MNIST"),
    "reconstructions_count_mismatch": lambda p: plots.reconstructions(
        p, [("original", np.zeros((3, 784))), ("layer 1", np.zeros((2, 784)))], "MNIST"),
    "filters_wrong_width": lambda p: plots.filters(p, np.zeros((400, 100)), "MNIST"),
    "confusion_not_square": lambda p: plots.confusion_heatmap(
        p, np.zeros((10, 9), dtype=int), DIGITS, "MNIST"),
    "accuracy_wrong_count": lambda p: plots.per_class_accuracy(p, np.ones(9), DIGITS, "MNIST"),
    "misclassified_label_mismatch": lambda p: plots.misclassified(
        p, np.zeros((3, 784)), [1, 2], [3, 4, 5], DIGITS, "MNIST"),
    "training_curves_missing_phase": lambda p: plots.training_curves(
        p, {"pretrain_layer1": []}, "MNIST"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_inputs_raise_and_leave_no_file(tmp_path, name):
    with pytest.raises((ValueError, KeyError)):
        BAD_INPUTS[name](tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []
    assert plt.get_fignums() == []


def test_failed_save_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "c.png"
    target.write_bytes(b"old")

    def broken_savefig(self, fname, **kwargs):
        with open(fname, "wb") as f:
            f.write(PNG_SIGNATURE)  # a half-written file
        raise OSError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken_savefig)
    with pytest.raises(OutputError, match=r"cannot write .*c\.png: disk full"):
        plots.confusion_heatmap(target, _confusion(), DIGITS, "MNIST")
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []
    assert plt.get_fignums() == []
