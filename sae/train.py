"""The one training loop, and the one batched forward pass that evaluation shares; with
the set-up they need: seed, precision, device, and the data on it.

Speed by design: each dataset is one tensor on the device, batches are taken by index,
and the loss is summed on the device so the loop never waits for a Python float.
"""
import math
import os
import time

import torch
import torch.nn.functional as F

from sae import optim
from sae.datasets import load_split
from sae.params import N_CLASSES, PARAMS_FILE, Common, ParamsError, Split, Training

DTYPES = {"float32": torch.float32, "float64": torch.float64}


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def setup(common: Common) -> torch.device:
    """Seed every generator, fix the default dtype, pick the device and make its arithmetic
    repeatable: the same params give the same bits on any thread count."""
    # MKL's and ATen's code paths are pinned before torch loads, by stages/__init__.py:
    # strict reproducibility there fixes how a matrix product's sums are split over threads
    # (by default the classifier's weights changed with the thread count).
    torch.manual_seed(common.seed)
    torch.set_default_dtype(DTYPES[common.precision])
    if common.device == "cuda" and not torch.cuda.is_available():
        raise ParamsError("params.yaml: common.device = 'cuda' but this machine has no "
                          "CUDA device; use 'auto' or 'cpu'")
    if common.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(common.device)
    if device.type == "cuda":
        repeatable_cuda()
    return device


def repeatable_cuda():
    """Make CUDA runs repeat bit for bit, at some cost in speed."""
    # cuBLAS may take a different algorithm from run to run when its workspace is shared
    # between streams; a fixed workspace per stream makes its products repeatable, and
    # use_deterministic_algorithms refuses cuBLAS without it. cuBLAS reads the variable
    # when it creates its first handle, at the first product on the device: set it before.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)


PARTS = ("train", "validation", "test")


def load_data(data_dir, common, device, part: str, split: Split = Split(validation=0)):
    """(images, labels) of one part as tensors on `device` in the configured precision:
    "train", the training images less the last split.validation (held out); "validation",
    those last ones; "test", the test set. train_limit applies before the split."""
    if part == "test":
        images, labels = load_split(data_dir, False, common.test_limit)
    else:
        images, labels = load_split(data_dir, True, common.train_limit)
        held_out = split.validation
        if held_out >= len(images):
            raise ParamsError(f"{PARAMS_FILE}: split.validation = {held_out} holds out every "
                              f"one of the {len(images)} training images; expected fewer")
        keep = slice(len(images) - held_out, None) if part == "validation" else \
            slice(0, len(images) - held_out)
        images, labels = images[keep], labels[keep]
    return images.to(device, DTYPES[common.precision]), labels.to(device)


def labelled_subset(images, labels, count: int, seed: int, key="finetune_classifier.labels"):
    """`count` of the images with their labels, count / 10 from each class, drawn by `seed`
    (so every arm that shares the seed fine-tunes on the same images), in their original
    order; all of them when count is 0. Too large a count is a ParamsError naming `key` (the
    dotted key, with its recipe) and the bound its smallest class sets."""
    if count == 0:
        return images, labels
    per_class, draw, chosen = count // N_CLASSES, torch.Generator().manual_seed(seed), []
    counts = torch.bincount(labels.cpu(), minlength=N_CLASSES)[:N_CLASSES]
    smallest = int(counts.argmin())
    have = int(counts[smallest])
    if have < per_class:
        # The bound is set by the smallest class (MNIST's first 50,000 images: class 5), and
        # is itself accepted: a multiple of 10 that every class can give a tenth of.
        bound = (f"at most {N_CLASSES * have} ({N_CLASSES} times that class's {have})" if have
                 else "0 (all labels): no class-balanced subset lacks a class")
        found = (f"only {have} of class {smallest}, its smallest (of {len(labels)} images)"
                 if have else f"no image of class {smallest}")
        raise ParamsError(f"{PARAMS_FILE}: {key} = {count} needs {per_class} images of each "
                          f"class, but the training part has {found}; expected {bound}")
    for label in range(N_CLASSES):
        members = (labels.cpu() == label).nonzero().flatten()
        chosen.append(members[torch.randperm(len(members), generator=draw)[:per_class]])
    index = torch.cat(chosen).sort().values.to(labels.device)
    return images.index_select(0, index), labels.index_select(0, index)


def make_optimizer(params, phase: Training):
    if phase.optimizer == "adam":
        return optim.Adam(params, lr=phase.lr, weight_decay=phase.weight_decay)
    # Plain SGD when momentum is 0: the lecture's p -= lr * grad.
    return optim.SGD(params, lr=phase.lr, momentum=phase.momentum,
                     weight_decay=phase.weight_decay)


def learning_rate(phase: Training, step: int, total_steps: int) -> float:
    """The phase's lr at `step`: constant, or cosine decay from lr towards 0."""
    if phase.schedule == "cosine":
        return phase.lr * 0.5 * (1 + math.cos(math.pi * step / total_steps))
    return phase.lr


def corrupt(batch, fraction, generator):
    """Masking noise (Vincent et al. 2010): each pixel set to 0 with probability `fraction`."""
    if not fraction:
        return batch
    keep = torch.rand(batch.shape, generator=generator, device=batch.device) >= fraction
    return batch * keep


class MeanSquaredError(torch.autograd.Function):
    """F.mse_loss's value and gradient in fewer passes over memory: the difference is
    computed once and scaled into the gradient."""

    @staticmethod
    def forward(ctx, output, target):
        difference = output - target
        ctx.save_for_backward(difference)
        # Summed per pixel over the batch, then over the pixels: torch reduces each sum in
        # one fixed order for any thread count. (A BLAS dot product split its sum over the
        # threads, so the logged loss changed with OMP_NUM_THREADS.)
        return difference.square().sum(0).sum() / difference.numel()

    @staticmethod
    def backward(ctx, grad):
        (difference,) = ctx.saved_tensors
        return difference * (2 * grad / difference.numel()), None


def reconstruction_loss(output, inputs, targets):
    return MeanSquaredError.apply(output, inputs)


def classification_loss(output, inputs, targets):
    return F.nll_loss(output, targets)


def fit(net, inputs, targets, loss_fn, phase: Training, seed: int, name: str,
        after_epoch=None, log=None):
    """Train `net` in place for phase.epochs epochs of shuffled mini-batches.

    `targets` is None for an autoencoder, whose targets are its (uncorrupted) inputs.
    Only parameters that require gradients are trained (a frozen encoder stays as it is).
    Returns one dict per epoch: epoch, train_loss (the mean of batch-mean losses, as the
    lecture prints it) and whatever `after_epoch(net)` adds, e.g. test accuracy; each row
    also goes to `log(row)` (sae.live.epoch_logger) as soon as its epoch ends.
    Raises TrainingDiverged, naming `name` and the epoch, when the loss is not finite.
    """
    optimizer = make_optimizer([p for p in net.parameters() if p.requires_grad], phase)
    order = torch.Generator().manual_seed(seed)  # on the CPU: same batches on every device
    noise = torch.Generator(device=inputs.device).manual_seed(seed)
    n = len(inputs)
    total_steps, step = phase.epochs * math.ceil(n / phase.batch_size), 0
    history = []
    for epoch in range(1, phase.epochs + 1):
        start = time.perf_counter()
        net.train()
        total = torch.zeros((), dtype=inputs.dtype, device=inputs.device)
        permutation = torch.randperm(n, generator=order).to(inputs.device)
        batches = permutation.split(phase.batch_size)
        for index in batches:
            batch = inputs.index_select(0, index)  # a faster gather than inputs[index]
            target = None if targets is None else targets.index_select(0, index)
            optimizer.lr = learning_rate(phase, step, total_steps)
            step += 1
            loss = loss_fn(net(corrupt(batch, phase.corruption, noise)), batch, target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.detach()
        train_loss = total.item() / len(batches)
        if not math.isfinite(train_loss):
            raise TrainingDiverged(
                f"{name}: the training loss became {train_loss} in epoch {epoch}; "
                f"try a lower learning rate than lr={phase.lr} (or check the input data)")
        row = {"epoch": epoch, "train_loss": train_loss}
        if after_epoch is not None:
            row.update(after_epoch(net))
        history.append(row)
        if log is not None:
            log(row)
        extras = "".join(f"  {k} {v:.4f}" for k, v in list(row.items())[2:])  # after_epoch's
        print(f"{name}: epoch {epoch}/{phase.epochs}  loss {train_loss:.4f}{extras}"
              f"  {time.perf_counter() - start:.1f} s", flush=True)
    return history


@torch.no_grad()
def predict(net, inputs, batch_size):
    """The network's outputs for all `inputs`, computed batch by batch in eval mode."""
    net.eval()
    return torch.cat([net(batch) for batch in inputs.split(batch_size)])
