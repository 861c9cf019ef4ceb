"""Stage: the reference points for reconstruction, from the data alone: PCA fitted on all
training images (its mean image and components), and its test MSE at every code size.
evaluate measures every autoencoder's test MSE beside PCA at the same code size and beside
the mean image; the curve is the linear line of the code-size study
(scripts/reconstruction.py) and a DVC plot."""
from sae import pca, stage
from sae.atomic import write_text
from sae.datasets import load_split


def curve_csv(values):
    return "code_size,test_mse\n" + "".join(f"{k},{mse:.6g}\n" for k, mse in enumerate(values))


def main(argv=None):
    args = stage.parse_args(__doc__, argv, "data", "out", "curve", recipe=False)
    images, _ = load_split(args.data, train=True)
    fitted = pca.fit(images)
    # Every test image: this stage reads no params, so common.test_limit does not apply.
    test_images, _ = load_split(args.data, train=False)
    pca.save(fitted, args.out)
    write_text(args.curve, curve_csv(pca.mse_by_code_size(fitted, test_images)))
    print(f"reference@{args.dataset}: PCA of {len(images)} training images written to "
          f"{args.out}, its test MSE by code size to {args.curve}")


if __name__ == "__main__":
    stage.run(main)
