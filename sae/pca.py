"""The linear reference point for an autoencoder: PCA fitted on the training images.

PCA with k components is the best reconstruction any linear code of size k can give (in
mean squared error), so an autoencoder with a code of that size should come close to it
or beat it; the mean image (k = 0) is what a network that learned nothing predicts.
"""
import torch

from sae.datasets import IMAGE_SIZE
from sae.model import CheckpointError, read_saved, write_saved


def fit(images):
    """{"mean": (784,), "components": (784, 784) eigenvectors of the covariance, columns in
    order of decreasing variance}, computed in float64."""
    x = images.double()
    mean = x.mean(0)
    centred = x - mean
    covariance = centred.T @ centred  # MKL's strict mode: the same bits on any thread count
    # LAPACK's eigensolver is outside that mode: on 2 threads its last bits differed from
    # 1 thread's, and between two machines; on one thread LAPACK agreed across machines
    # (scripts/cpu_fingerprint.py, svd). 784 x 784 takes well under a second either way.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, vectors = torch.linalg.eigh(covariance)  # eigenvalues in ascending order
    finally:
        torch.set_num_threads(threads)
    return {"mean": mean, "components": vectors.flip(1).contiguous()}


def reconstruct(pca, images, k):
    """Each image projected onto the first k components, and back (k = 0: the mean image)."""
    basis = pca["components"][:, :k].to(images.device, torch.float64)
    centred = images.double() - pca["mean"].to(images.device)
    return centred @ basis @ basis.T + pca["mean"].to(images.device)


def mse_by_code_size(pca, images, largest=None):
    """The test MSE (over pixels and images) of the k-component reconstruction for every k
    from 0 (the mean image) to `largest` (default: every component), in one projection: the
    components are orthonormal, so the k-component reconstruction misses exactly the
    centred images' energy off the first k of them. (Reconstructing each k apart took
    evaluate 0.75 s a dataset; this takes 0.15 s: benchmarks/README.md.)"""
    components = pca["components"][:, :largest].to(images.device, torch.float64)
    centred = images.double() - pca["mean"].to(images.device)
    energy_per_component = (centred @ components).pow(2).mean(0)
    explained = torch.cat([torch.zeros(1, dtype=torch.float64, device=images.device),
                           energy_per_component.cumsum(0)])
    # Clamped: near k = 784 the difference is rounding error around 0, and may dip below it.
    return ((centred.pow(2).mean(0).sum() - explained) / images.shape[1]).clamp(min=0).tolist()


def save(fitted, path):
    """Write the fitted PCA atomically, as plain tensors (loading runs no pickled code)."""
    write_saved(fitted, path)


def load(path, largest_code=1):
    """The fitted PCA that save wrote, with at least `largest_code` components (the largest
    code it is compared with); CheckpointError naming the file for anything else."""
    fitted = read_saved(path)
    problem = _problem(fitted, largest_code)
    if problem:
        raise CheckpointError(f"{path} is not a PCA written by the reference stage ({problem}); "
                              f"re-create it with `dvc repro`")
    return fitted


def _problem(fitted, largest_code):
    """Why `fitted` is not a mean image and >= largest_code finite components, or None."""
    if not (isinstance(fitted, dict) and set(fitted) == {"mean", "components"}
            and all(isinstance(v, torch.Tensor) and v.is_floating_point()
                    for v in fitted.values())):
        return "not a dict of float tensors 'mean' and 'components'"
    mean, components = fitted["mean"], fitted["components"]
    if mean.shape != (IMAGE_SIZE,) or components.ndim != 2 or len(components) != IMAGE_SIZE:
        return (f"a mean of shape {tuple(mean.shape)} and components of shape "
                f"{tuple(components.shape)}; expected ({IMAGE_SIZE},) and ({IMAGE_SIZE}, k)")
    if not largest_code <= components.shape[1] <= IMAGE_SIZE:
        return (f"{components.shape[1]} components; expected {largest_code} to {IMAGE_SIZE}, "
                f"as many as the largest code it is compared with or more")
    if not (torch.isfinite(mean).all() and torch.isfinite(components).all()):
        return "NaN or infinite values"
    return None
