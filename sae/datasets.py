"""The two datasets: their canonical IDX files, checksums, class names, and loading."""
import gzip
import hashlib
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SIDE = 28
IMAGE_SIZE = IMAGE_SIDE * IMAGE_SIDE
IDX_UBYTE = 0x08  # IDX element type code for unsigned bytes
TRAIN_IMAGES = 60000  # in the training set of either dataset (train-images: 16 + 60000 * 784 bytes)


@dataclass(frozen=True)
class IdxFile:
    """One canonical uncompressed IDX file, its size and SHA-256."""
    name: str
    size: int
    sha256: str


class DataError(ValueError):
    """A data folder or IDX file that is not what the stage was told it is."""


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    title: str
    files: tuple  # of IdxFile: train-images, train-labels, t10k-images, t10k-labels
    class_names: tuple


def _files(sha256s):
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    sizes = (47040016, 60008, 7840016, 10008)
    return tuple(IdxFile(n, s, h) for n, s, h in zip(names, sizes, sha256s))


DATASETS = {
    "mnist": DatasetInfo(
        "mnist", "MNIST",
        _files(("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2")),
        tuple(str(d) for d in range(10))),
    "fashion_mnist": DatasetInfo(
        "fashion_mnist", "Fashion-MNIST",
        _files(("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34")),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")),
}


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_maybe_gzipped(path: Path, limit: int) -> bytes:
    """Bytes of an IDX file, gunzipped when it is stored as .gz, read only up to `limit` (the
    size the file must have; sizes in DATASETS): DataError naming the file when it holds or
    expands to more, or is a bad .gz. Memory stays bounded by `limit` whatever the file
    holds: a .gz of a few megabytes may expand to gigabytes, and is never unpacked whole."""
    path = Path(path)
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
        f.seek(0)
        try:
            data = (gzip.GzipFile(fileobj=f, mode="rb") if gzipped else f).read(limit + 1)
        except (OSError, EOFError, zlib.error) as error:  # BadGzipFile is an OSError
            raise DataError(f"{path}: not a valid gzip file ({error})") from None
    if len(data) > limit:
        raise DataError(f"{path}: {'expands to' if gzipped else 'holds'} more than {limit} "
                        f"bytes (read no further; a .gz is never unpacked beyond the size "
                        f"its file must have)")
    return data


def encode_idx(array: np.ndarray) -> bytes:
    """IDX bytes of a uint8 array: magic (0, 0, type, ndim), big-endian dims, data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, IDX_UBYTE, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def decode_idx(data: bytes) -> np.ndarray:
    """The uint8 array held in IDX bytes; ValueError when they are not a ubyte IDX file."""
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != IDX_UBYTE:
        raise ValueError("not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise ValueError(f"IDX header promises {ndim} dimensions but the file ends within them")
    shape = struct.unpack_from(f">{ndim}I", data, 4)
    if len(data) - offset != math.prod(shape):  # Python ints: no overflow on hostile shapes
        raise ValueError(f"IDX header promises shape {shape} but holds {len(data) - offset} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def read_idx(path) -> np.ndarray:
    """The uint8 array of an IDX file; DataError naming the file when it is not one."""
    try:
        return decode_idx(Path(path).read_bytes())
    except ValueError as error:
        raise DataError(f"{path}: {error}") from None


def verify_data_dir(folder, dataset):
    """DataError unless `folder` holds the four files of `dataset`, by size and SHA-256.
    Hashing the 55 MB takes about 0.07 s (measured on a 2-core x86-64), little to any stage."""
    folder, info = Path(folder), DATASETS[dataset]
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise DataError(f"{folder} {what}; expected a folder with the four {info.title} IDX "
                        f"files ({', '.join(f.name for f in info.files)}), e.g. data/{dataset} "
                        f"as `dvc repro` writes it")
    for ref in info.files:
        problem = _file_problem(folder / ref.name, ref)
        if problem:
            raise DataError(f"{folder} does not hold {info.title} (dataset {dataset}): {problem}; "
                            f"re-create it with `dvc repro`, or give the folder of {info.title}")


def _file_problem(path: Path, ref: IdxFile):
    """What is wrong with one file of a data folder, or None when it is the reference file."""
    if not path.is_file():
        return f"no file {ref.name}"
    size = path.stat().st_size
    if size != ref.size:  # neither dataset's file then: no need to hash
        return f"{ref.name} has {size} bytes, expected {ref.size}"
    found = sha256_of(path.read_bytes())
    if found == ref.sha256:
        return None
    known = [info.title for info in DATASETS.values() if found in {f.sha256 for f in info.files}]
    if known:
        return f"its {ref.name} is the {known[0]} one"
    return f"{ref.name} has SHA-256 {found}, expected {ref.sha256}"


def load_split(data_dir, train: bool, limit: int = 0):
    """(images as float in [0, 1] of shape (N, 784), int64 labels), the first `limit` if > 0."""
    # Imported here, not at the top: sae.params and sae.stage import this module, and a
    # stage that only reads params (or downloads) should not pay torch's 1-2 s start-up.
    import torch

    prefix = "train" if train else "t10k"
    images = read_idx(Path(data_dir, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(Path(data_dir, f"{prefix}-labels-idx1-ubyte"))
    if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE) or labels.shape != images.shape[:1]:
        raise DataError(f"{data_dir}: {prefix} images of shape {images.shape} and labels of "
                        f"shape {labels.shape}; expected (N, {IMAGE_SIDE}, {IMAGE_SIDE}) and (N,)")
    if limit:
        images, labels = images[:limit], labels[:limit]
    # ToTensor's scaling: uint8 / 255.
    x = torch.from_numpy(images.reshape(len(images), IMAGE_SIZE).astype(np.float32)) / 255.0
    return x, torch.from_numpy(labels.astype(np.int64))
