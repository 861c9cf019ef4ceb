"""Stage 1: put the four verified IDX files of one dataset into a folder, from the first
source that serves them (download.source_dir, Debian, torchvision, offline packages)."""
import logging
import sys

from sae import download, params, stage


def main(argv=None):
    args = stage.parse_args(__doc__, argv, "out", recipe=False, folders=("out",))
    source_dir = params.load().download.source_dir
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    source = download.fetch(args.dataset, args.out, source_dir=source_dir)
    print(f"download@{args.dataset}: {args.out} written from {source}")


if __name__ == "__main__":
    stage.run(main, download.DownloadError)
