"""Stage: the reference points for reconstruction, from the data alone: PCA fitted on all
training images (its mean image and components), and its test MSE at every code size.
evaluate measures every autoencoder's test MSE beside PCA at the same code size and beside
the mean image; the curve is the linear line of the code-size study
(scripts/reconstruction.py) and a DVC plot."""
import torch

from sae import pca, stage
from sae.atomic import write_text
from sae.datasets import load_split


def mse_by_code_size(fitted, images):
    """PCA's test MSE (over pixels and images) for every code size k from 0 (the mean image)
    to 784, in one pass: the components are orthonormal, so the k-component reconstruction
    misses exactly the centred images' energy off the first k of them."""
    centred = images.double() - fitted["mean"]
    energy_per_component = (centred @ fitted["components"]).pow(2).mean(0)
    explained = torch.cat([torch.zeros(1, dtype=torch.float64), energy_per_component.cumsum(0)])
    # Clamped: near k = 784 the difference is rounding error around 0, and may dip below it.
    return ((centred.pow(2).mean(0).sum() - explained) / images.shape[1]).clamp(min=0).tolist()


def curve_csv(values):
    return "code_size,test_mse\n" + "".join(f"{k},{mse:.6g}\n" for k, mse in enumerate(values))


def main(argv=None):
    args = stage.parse_args(__doc__, argv, "data", "out", "curve", recipe=False)
    images, _ = load_split(args.data, train=True)
    fitted = pca.fit(images)
    # Every test image: this stage reads no params, so common.test_limit does not apply.
    test_images, _ = load_split(args.data, train=False)
    pca.save(fitted, args.out)
    write_text(args.curve, curve_csv(mse_by_code_size(fitted, test_images)))
    print(f"reference@{args.dataset}: PCA of {len(images)} training images written to "
          f"{args.out}, its test MSE by code size to {args.curve}")


if __name__ == "__main__":
    stage.run(main)
