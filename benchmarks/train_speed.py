"""Training speed: the project's loop against the lecture's loop and against this machine's
matrix-product rate, per training stage, at float32 and float64, on a full dataset; and the
fused MSE of sae.train against F.mse_loss in the autoencoder stages.

    python -m benchmarks.train_speed --data data/mnist

The lecture's loop is the notebook's: torchvision dataset, DataLoader with per-image
ToTensor (num_workers=4), hand-written SGD, batch 1000. "matmul share" is the time the
stage's matrix products alone take at the rate measured here for the same shapes, layouts
and precision, divided by the stage's epoch time: 100 % would mean nothing but matrix
products. The products alone are timed in turn with the stage's epochs (one of each per
repeat), so a change in the machine's load hits both; a share above 100 % can only come
from such a change, and the row says "refused" instead (the reason goes to stderr). The fused-MSE A/B times the same stage with each loss in turn, alternating, so
that a change in the machine's load hits both alike. All times are the best of several
repetitions, as the machine is shared and noisy.
"""
import argparse
import contextlib
import dataclasses
import io
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch.utils.data import DataLoader
from torchvision import transforms

from sae import model, params
from sae.datasets import load_split
from sae.evaluation import classification_scores
from sae.params import PHASES
from sae.train import DTYPES, classification_loss, fit, predict, reconstruction_loss

RECIPE = "lecture"  # the lecture's loop is the reference: same batch size and network


def unfused_mse(output, inputs, targets):
    """The reconstruction loss as plain PyTorch computes it: the A/B's other arm."""
    return F.mse_loss(output, inputs)


def build(phase_name, p):
    """The stage's network as the pipeline builds it (weights do not matter for speed)."""
    l1, l2, fc = p.pretrain_layer1, p.stack_layer2, p.finetune_classifier
    net = model.autoencoder(*l1.layers, l1.encoder_activation, l1.decoder_activation)
    if phase_name != "pretrain_layer1":
        net = model.stack(net, l2.layers[1], l2.encoder_activation, l2.decoder_activation)
    if phase_name == "finetune_classifier":
        net = model.classifier(net, fc.layers[1])
    return net


def linears(net):
    return [block.linear for block in [*net.encoder, *net.head]]


def batch_rows(n, batch):
    """{rows: how many batches have that many rows} for n examples in batches of `batch`:
    the last batch is smaller when batch does not divide n."""
    sizes = {batch: n // batch} if n >= batch else {}
    if n % batch:
        sizes[n % batch] = 1
    return sizes


def epoch_matmuls(net, n_train, n_test, batch, evaluates):
    """(A, B, count): every matrix product of one epoch, with the operand layouts autograd
    uses for y = x W^T: forward x @ W.t(), weight gradient g.t() @ x, input gradient g @ W
    (not for the first layer: the images need no gradient), and the test forward pass."""
    products = []
    for i, layer in enumerate(linears(net)):
        w = layer.weight.detach()
        for rows, count in batch_rows(n_train, batch).items():
            x, g = torch.rand(rows, w.shape[1]), torch.rand(rows, w.shape[0])
            products += [(x, w.t(), count), (g.t(), x, count)]
            if i > 0:
                products.append((g, w, count))
        if evaluates:
            for rows, count in batch_rows(n_test, batch).items():
                products.append((torch.rand(rows, w.shape[1]), w.t(), count))
    return products


def synchronize(device):
    """Wait for queued GPU work, so that a clock reading means it is done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_epoch(products, device):
    """Seconds the epoch's matrix products take alone, each as often as an epoch runs it."""
    synchronize(device)
    start = time.perf_counter()
    for a, b, count in products:
        for _ in range(count):
            a @ b
    synchronize(device)
    return time.perf_counter() - start


class ImpossibleShare(ValueError):
    """A matmul share above 100 %: the two timings saw different machines (load changed)."""


def matmul_share(matmul_seconds, epoch_seconds):
    """The fraction of an epoch its matrix products alone would take; ImpossibleShare when
    that exceeds the whole epoch, which only a change in the machine's load between the two
    timings can produce."""
    share = matmul_seconds / epoch_seconds
    if share > 1:
        raise ImpossibleShare(
            f"matmul share {100 * share:.0f} % (products alone {matmul_seconds:.3f} s, epoch "
            f"{epoch_seconds:.3f} s) is impossible, so the two timings do not compare (most "
            f"likely the machine's load changed); no share printed, re-run on a quiet machine")
    return share


def stage_trainer(phase_name, p, images, labels, test_images, test_labels, loss=None):
    """A function that trains one epoch of sae.train.fit as the stage does and returns its
    seconds; its first epoch, a warm-up, is run here. `loss` replaces the stage's own loss."""
    phase = dataclasses.replace(getattr(p, phase_name), epochs=1)
    classify = phase_name == "finetune_classifier"
    net = build(phase_name, p).to(images.device, images.dtype)
    loss = loss or (classification_loss if classify else reconstruction_loss)
    targets = labels if classify else None
    after = ((lambda n: classification_scores(predict(n, test_images, phase.batch_size),
                                              test_labels)) if classify else None)

    def epoch(name="timed"):
        with contextlib.redirect_stdout(io.StringIO()):  # fit's epoch lines are not the table
            start = time.perf_counter()
            fit(net, images, targets, loss, phase, 0, name, after)
            return time.perf_counter() - start
    epoch("warm-up")
    return epoch


def project_epoch(phase_name, p, images, labels, test_images, test_labels, epochs=3,
                  loss=None):
    """Seconds per epoch of sae.train.fit: the best of `epochs` after a warm-up epoch."""
    epoch = stage_trainer(phase_name, p, images, labels, test_images, test_labels, loss)
    return min(epoch() for _ in range(epochs))


def mse_ab(phase_name, p, data, repeats):
    """Seconds per epoch of an autoencoder stage with the fused MSE and with F.mse_loss, each
    the best of `repeats` rounds that alternate the two."""
    best = {reconstruction_loss: float("inf"), unfused_mse: float("inf")}
    for _ in range(repeats):
        for loss in best:
            best[loss] = min(best[loss], project_epoch(phase_name, p, *data, epochs=1, loss=loss))
    return best[reconstruction_loss], best[unfused_mse]


def lecture_epoch(phase_name, p, root, dataset_class, dtype, device):
    """Seconds for one epoch of the notebook's loop (and its test pass for the classifier);
    like the notebook, it moves each batch to the GPU when there is one."""
    phase = getattr(p, phase_name)
    to_tensor = transforms.Compose([transforms.ToTensor()])
    train = dataset_class(root=root, train=True, download=False, transform=to_tensor)
    loader = DataLoader(train, batch_size=phase.batch_size, shuffle=True, num_workers=4)
    classify = phase_name == "finetune_classifier"
    net = build(phase_name, p).to(device, dtype)
    start = time.perf_counter()
    for inputs, labels in loader:
        inputs, labels = inputs.view(-1, 28 * 28).to(device, dtype), labels.to(device)
        net.zero_grad()
        outputs = net(inputs)
        loss = (torch.nn.functional.nll_loss(outputs, labels) if classify
                else torch.nn.functional.mse_loss(outputs, inputs))
        loss.backward()
        for f in net.parameters():
            f.data.sub_(f.grad.data * phase.lr)
    if classify:
        test = dataset_class(root=root, train=False, download=False, transform=to_tensor)
        with torch.no_grad():
            for inputs, labels in DataLoader(test, batch_size=phase.batch_size, num_workers=4):
                net(inputs.view(-1, 28 * 28).to(device, dtype)).argmax(1).eq(
                    labels.to(device)).sum().item()
    synchronize(device)
    return time.perf_counter() - start


def torchvision_root(data_dir, dataset_class):
    """A temporary torchvision root whose <Class>/raw holds links to the IDX files."""
    root = Path(tempfile.mkdtemp(prefix="sae-bench-"))
    raw = root / dataset_class.__name__ / "raw"
    raw.mkdir(parents=True)
    for path in Path(data_dir).iterdir():
        (raw / path.name).symlink_to(path.resolve())
    return str(root)


def speed_row(name, precision, p, data, root, dataset_class, device, repeats):
    """One row of the speed table: ours against the lecture's loop and the matmul floor. The
    stage's epochs and its products alone take turns, so that both see the same load."""
    products = [(a.to(device), b.to(device), count) for a, b, count in epoch_matmuls(
        build(name, p), len(data[0]), len(data[2]), getattr(p, name).batch_size,
        name == "finetune_classifier")]
    epoch, ours, floor = stage_trainer(name, p, *data), [], []
    matmul_epoch([(a, b, 1) for a, b, _ in products], device)  # warm-up
    for _ in range(repeats):
        ours.append(epoch())
        floor.append(matmul_epoch(products, device))
    ours, floor = min(ours), min(floor)
    theirs = lecture_epoch(name, p, root, dataset_class, DTYPES[precision], device)
    flops = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] * count for a, b, count in products)
    try:
        share = f"{100 * matmul_share(floor, ours):.0f} %"
    except ImpossibleShare as refused:
        print(f"{name} {precision}: {refused}", file=sys.stderr)
        share = "refused"
    return (f"| {name} | {precision} | {ours:.2f} | {theirs:.2f} | {theirs / ours:.1f}x "
            f"| {flops / 1e9:.0f} | {flops / ours / 1e9:.0f} | {floor:.2f} | {share} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/mnist", help="folder with the MNIST IDX files")
    parser.add_argument("--precisions", nargs="+", default=["float32", "float64"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per measurement")
    parser.add_argument("--ab-only", action="store_true", help="only the fused-MSE A/B")
    args = parser.parse_args()
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    p = params.load().recipe(RECIPE)
    dataset_class = torchvision.datasets.MNIST
    root = torchvision_root(args.data, dataset_class)
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"python {platform.python_version()}, device {where}")
    if not args.ab_only:
        print("| stage | precision | project s/epoch | lecture s/epoch | speed-up | GFLOP/epoch "
              "| project GFLOP/s | matmul-only s/epoch | matmul share |")
        print("|---|---|---|---|---|---|---|---|---|")
    ab_rows = []
    for precision in args.precisions:
        dtype = DTYPES[precision]
        torch.set_default_dtype(dtype)
        data = [t.to(device, dtype) if t.is_floating_point() else t.to(device)
                for t in (*load_split(args.data, train=True), *load_split(args.data, train=False))]
        for name in PHASES:
            if not args.ab_only:
                print(speed_row(name, precision, p, data, root, dataset_class, device,
                                args.repeats), flush=True)
            if name != "finetune_classifier":
                fused, unfused = mse_ab(name, p, data, args.repeats)
                ab_rows.append(f"| {name} | {precision} | {fused:.3f} | {unfused:.3f} "
                               f"| {unfused / fused:.3f} |")
    print("\n| stage | precision | fused MSE s/epoch | F.mse_loss s/epoch | F.mse_loss / fused |")
    print("|---|---|---|---|---|")
    print("\n".join(ab_rows))

if __name__ == "__main__":
    main()
