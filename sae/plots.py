"""Figures for the report: training curves, reconstructions, filters, confusion and errors.

Every function takes plain numpy arrays / lists / dicts, builds one matplotlib figure and
writes it atomically as a PNG whose bytes depend only on the inputs.

The figures are matplotlib Figure objects drawn by the Agg renderer that savefig picks for
a PNG, without pyplot: importing pyplot and its backend machinery took 0.6 s of evaluate's
start-up under a profiler, and adds nothing to a file (the PNGs are byte for byte the same).
"""
import math
import sys

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image  # Pillow is a dependency of matplotlib

from sae.atomic import atomic_path

SIDE = 28
DPI = 100
FILTER_LEVELS = 16  # grey levels of the filter tiles: enough for the eye, small PNGs


def save_png(fig, path, grayscale=False):
    """Write `fig` as a PNG to `path` atomically (no software/date metadata), then close it."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
            if grayscale:
                # Agg always writes RGBA; for an all-grey figure one 8-bit channel holds the
                # same pixels in about 60% of the bytes (R = G = B, so the conversion is exact).
                with Image.open(tmp) as image:
                    gray = image.convert("L")
                gray.save(tmp, format="png", optimize=True)
    finally:
        pyplot = sys.modules.get("matplotlib.pyplot")  # the scripts' figures are pyplot's
        if pyplot is not None:
            pyplot.close(fig)


def subplots(*grid, figsize, layout=None, **kwargs):
    """pyplot.subplots without pyplot: a Figure and its axes."""
    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(*grid, **kwargs)


def _images(array):
    """Reshape an (N, 784) array into (N, 28, 28), refusing any other shape."""
    array = np.asarray(array, dtype=float)
    if array.ndim != 2 or array.shape[1] != SIDE * SIDE:
        raise ValueError(f"expected images of shape (N, {SIDE * SIDE}), got {array.shape}")
    return array.reshape(-1, SIDE, SIDE)


def _column(rows, key):
    """The values of `key` across a list of row dicts, as a float array."""
    return np.array([float(row[key]) for row in rows])


def training_curves(path, histories, title_prefix):
    """Three panels: autoencoder reconstruction MSE, classifier NLL, and the classifier's
    accuracy on the images it was scored on after every epoch: validation ("val_*" columns)
    or test ("test_*")."""
    layer1, stack, clf = (histories[k] for k in
                          ("pretrain_layer1", "stack_layer2", "finetune_classifier"))
    prefix, part = (("val", "validation") if clf and held_out_accuracy(clf[0]) == "val_accuracy"
                    else ("test", "test"))
    fig, (ax_mse, ax_nll, ax_acc) = subplots(1, 3, figsize=(14, 4.2), layout="constrained")
    ax_mse.plot(_column(layer1, "epoch"), _column(layer1, "train_loss"), "o-",
                label="layer 1 (784-400-784)")
    ax_mse.plot(_column(stack, "epoch"), _column(stack, "train_loss"), "s-",
                label="stacked (784-400-256-400-784)")
    ax_mse.set(title="(a) autoencoder reconstruction", xlabel="epoch",
               ylabel="train reconstruction MSE")
    epochs = _column(clf, "epoch")
    ax_nll.plot(epochs, _column(clf, "train_loss"), "o-", label="train")
    ax_nll.plot(epochs, _column(clf, f"{prefix}_loss"), "s-", label=part)
    ax_nll.set(title="(b) classifier loss", xlabel="epoch", ylabel="negative log-likelihood")
    accuracy = 100.0 * _column(clf, f"{prefix}_accuracy")
    ax_acc.plot(epochs, accuracy, "o-", color="tab:green", label=f"{part} accuracy")
    if len(accuracy):
        ax_acc.annotate(f"{accuracy[-1]:.2f}%", (epochs[-1], accuracy[-1]),
                        xytext=(0, -18), textcoords="offset points", ha="right",
                        fontweight="bold")
        low = min(accuracy.min(), 100.0)
        ax_acc.set_ylim(max(0.0, low - 0.25 * (100.0 - low) - 1.0), 100.0)
    ax_acc.set(title=f"(c) classifier {part} accuracy", xlabel="epoch",
               ylabel=f"{part} accuracy (%)")
    for ax in (ax_mse, ax_nll, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{title_prefix}: training curves", fontsize=14)
    save_png(fig, path)


# Base-vs-head panels: (history, column, title, y label, scale of the values); the
# classifier's is the accuracy it was scored on after each epoch, validation or test.
COMPARED = (("pretrain_layer1", "train_loss", "layer 1 (784-400-784)",
             "train reconstruction MSE", 1),
            ("stack_layer2", "train_loss", "stacked (784-400-256-400-784)",
             "train reconstruction MSE", 1),
            ("finetune_classifier", "held_out_accuracy", "classifier",
             "held-out accuracy (%)", 100))


def held_out_accuracy(columns):
    """The accuracy column among a fine-tuning history's `columns`: validation where the
    recipe holds it out, else test (the lecture's protocol)."""
    return "val_accuracy" if "val_accuracy" in columns else "test_accuracy"


def curves_base_vs_head(path, base, head, title_prefix):
    """Two runs' training curves on shared axes, base dashed and head solid; `base` and `head`
    map a history name to its rows, and a history a run lacks is left out."""
    fig, axes = subplots(1, len(COMPARED), figsize=(14, 4.2), layout="constrained")
    for ax, (history, key, title, ylabel, scale) in zip(axes, COMPARED):
        for label, histories, style in (("base", base, "o--"), ("head", head, "o-")):
            rows = histories.get(history)
            if rows:
                column = held_out_accuracy(rows[0]) if key == "held_out_accuracy" else key
                ax.plot(_column(rows, "epoch"), scale * _column(rows, column), style, label=label,
                        color="tab:grey" if label == "base" else "tab:blue")
        ax.set(title=title, xlabel="epoch", ylabel=ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend()
    fig.suptitle(f"{title_prefix}: training curves, base (dashed) and head (solid)", fontsize=13)
    save_png(fig, path)


def class_xticks(ax, class_names):
    """Class names as x tick labels, slanted only when they are words (not digits)."""
    slant = max(len(name) for name in class_names) > 2
    ax.set_xticks(range(len(class_names)), class_names, rotation=35 if slant else 0,
                  ha="right" if slant else "center", rotation_mode="anchor")


def reconstructions(path, rows, title_prefix):
    """A grid with one row per (label, images): e.g. the originals, then reconstructions."""
    rows = [(label, _images(images)) for label, images in rows]
    n = rows[0][1].shape[0]
    if n == 0 or any(images.shape[0] != n for _, images in rows):
        raise ValueError("every row must hold the same, non-zero, number of images")
    # One image of all tiles, not 3 x n axes: the same picture, drawn several times faster.
    gap = 2
    canvas = _tile_grid(np.concatenate([images for _, images in rows]), n, gap)
    fig, ax = subplots(figsize=(1.1 * n + 1.8, 0.3 + 1.33 * len(rows)))
    ax.imshow(np.ma.masked_invalid(canvas), cmap=colormaps["gray"].with_extremes(bad="white"),
              vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([r * (SIDE + gap) + SIDE / 2 for r in range(len(rows))],
                  [label for label, _ in rows], fontsize=10)
    ax.tick_params(length=0)
    ax.spines[:].set_visible(False)
    fig.suptitle(f"{title_prefix}: test images and their reconstructions", fontsize=13)
    fig.tight_layout()
    save_png(fig, path)


def _tile_grid(tiles, cols, gap):
    """Lay (N, 28, 28) tiles out row by row on a NaN canvas, `gap` NaN pixels between them."""
    nrows = math.ceil(len(tiles) / cols)
    step = SIDE + gap
    canvas = np.full((nrows * step - gap, cols * step - gap), np.nan)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        canvas[r * step:r * step + SIDE, c * step:c * step + SIDE] = tile
    return canvas


def filters(path, weights, title_prefix):
    """The layer-1 encoder weights, one 28x28 tile per hidden unit, in a near-square grid."""
    tiles = _images(weights)
    if len(tiles) == 0:
        raise ValueError("no filters to draw")
    # Each tile gets its own min/max: the units' weight scales differ a lot, and one shared
    # scale would wash most filters out to flat grey; what matters is each unit's pattern.
    low = tiles.min(axis=(1, 2), keepdims=True)
    span = tiles.max(axis=(1, 2), keepdims=True) - low
    scaled = np.divide(tiles - low, span, out=np.full_like(tiles, 0.5), where=span > 0)
    canvas = _tile_grid(scaled, math.ceil(math.sqrt(len(tiles))), gap=1)
    # One image pixel per screen pixel (figimage, no resampling), so every tile and gap has
    # the same width; FILTER_LEVELS grey levels keep the PNG of noisy weights small.
    cmap = colormaps["gray"].resampled(FILTER_LEVELS).with_extremes(bad="white")
    height, width = canvas.shape
    margin, title_space = 10, 48
    fig_width = max(width + 2 * margin, 520)  # wide enough for the two-line title
    fig = Figure(figsize=(fig_width / DPI, (height + margin + title_space) / DPI), dpi=DPI)
    fig.figimage(np.ma.masked_invalid(canvas), xo=(fig_width - width) // 2, yo=margin,
                 cmap=cmap, vmin=0.0, vmax=1.0, origin="upper")
    fig.suptitle(f"{title_prefix}: layer-1 encoder filters\n({len(tiles)} units, "
                 "each tile scaled to its own min/max)", fontsize=11)
    save_png(fig, path, grayscale=True)


def confusion_heatmap(path, matrix, class_names, title_prefix):
    """A confusion-matrix heatmap (rows true, columns predicted) with every count written in."""
    matrix = np.asarray(matrix)
    k = len(class_names)
    if matrix.shape != (k, k):
        raise ValueError(f"expected a {k}x{k} matrix, got {matrix.shape}")
    fig, ax = subplots(figsize=(8.5, 7.5), layout="constrained")
    image = ax.imshow(matrix, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, label="test images")
    threshold = matrix.max() / 2.0
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, f"{int(count)}", ha="center", va="center", fontsize=9,
                color="white" if count > threshold else "black")
    class_xticks(ax, class_names)
    ax.set_yticks(range(k), class_names)
    ax.set(xlabel="predicted", ylabel="true")
    fig.suptitle(f"{title_prefix}: confusion matrix on the test set", fontsize=13)
    save_png(fig, path)


def per_class_accuracy(path, accuracies, class_names, title_prefix):
    """Test accuracy per class as labelled bars in percent, with the mean as a dashed line."""
    percent = 100.0 * np.asarray(accuracies, dtype=float)
    if percent.shape != (len(class_names),):
        raise ValueError(f"expected {len(class_names)} accuracies, got shape {percent.shape}")
    fig, ax = subplots(figsize=(9, 5), layout="constrained")
    ax.bar(range(len(percent)), percent, color="tab:blue")
    for x, p in enumerate(percent):
        # Labels sit in a row near the bar bases, clear of the mean line near the bar tops;
        # a bar too short to hold its label gets it just above instead.
        inside = p >= 12.0
        ax.text(x, 4.0 if inside else p + 1.0, f"{p:.1f}", ha="center", va="bottom", fontsize=9,
                color="white" if inside else "black", fontweight="bold")
    ax.axhline(percent.mean(), color="tab:red", linestyle="--",
               label=f"mean {percent.mean():.1f}%")
    class_xticks(ax, class_names)
    ax.set_ylim(0, 100)
    ax.set(xlabel="class", ylabel="test accuracy (%)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(f"{title_prefix}: per-class test accuracy", fontsize=13)
    save_png(fig, path)


def misclassified(path, images, true_labels, predicted_labels, class_names, title_prefix):
    """Misclassified test images, each titled with its true and predicted class."""
    images = _images(np.zeros((0, SIDE * SIDE)) if np.size(images) == 0 else images)
    n = images.shape[0]
    if len(true_labels) != n or len(predicted_labels) != n:
        raise ValueError("images, true_labels and predicted_labels must have the same length")
    title = f"{title_prefix}: misclassified test images"
    if n == 0:
        fig, ax = subplots(figsize=(6, 2), layout="constrained")
        ax.text(0.5, 0.5, "no misclassified test images", ha="center", va="center",
                fontsize=13)
        ax.set_axis_off()
    else:
        cols = min(n, 10)
        nrows = math.ceil(n / cols)
        fig, axes = subplots(nrows, cols, figsize=(1.3 * cols + 0.4, 1.75 * nrows + 0.45),
                                 squeeze=False)
        # Fixed margins: a layout engine over this many axes costs more than the drawing.
        fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.72 if nrows == 1 else 0.8,
                            wspace=0.15, hspace=0.6)
        for ax in axes.flat:
            ax.set_axis_off()
        for i in range(n):
            ax = axes.flat[i]
            ax.imshow(images[i], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_title(f"true: {class_names[int(true_labels[i])]}\n"
                         f"pred: {class_names[int(predicted_labels[i])]}", fontsize=8)
    fig.suptitle(title, fontsize=12)
    save_png(fig, path)
