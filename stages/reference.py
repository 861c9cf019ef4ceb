"""Stage: the reference points for reconstruction, from the data alone: PCA fitted on all
training images (its mean image and components). evaluate measures every autoencoder's test
MSE beside PCA at the same code size and beside the mean image."""
from sae import pca, stage
from sae.datasets import load_split


def main(argv=None):
    args = stage.parse_args(__doc__, argv, "data", "out", recipe=False)
    images, _ = load_split(args.data, train=True)
    fitted = pca.fit(images)
    pca.save(fitted, args.out)
    print(f"reference@{args.dataset}: PCA of {len(images)} training images written to {args.out}")


if __name__ == "__main__":
    stage.run(main)
