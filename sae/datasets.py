"""The two datasets: their canonical IDX files, checksums, class names, and loading."""
import gzip
import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

IMAGE_SIDE = 28
IMAGE_SIZE = IMAGE_SIDE * IMAGE_SIDE
IDX_UBYTE = 0x08  # IDX element type code for unsigned bytes


@dataclass(frozen=True)
class IdxFile:
    """One canonical uncompressed IDX file and the checksums it must have."""
    name: str
    size: int
    md5: str
    sha256: str


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    title: str
    files: tuple  # of IdxFile: train-images, train-labels, t10k-images, t10k-labels
    class_names: tuple


def _files(md5s, sha256s):
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    sizes = (47040016, 60008, 7840016, 10008)
    return tuple(IdxFile(n, s, m, h) for n, s, m, h in zip(names, sizes, md5s, sha256s))


DATASETS = {
    "mnist": DatasetInfo(
        "mnist", "MNIST",
        _files(("6bbc9ace898e44ae57da46a324031adb", "a25bea736e30d166cdddb491f175f624",
                "2646ac647ad5339dbf082846283269ea", "27ae3e4e09519cfbb04c329615203637"),
               ("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2")),
        tuple(str(d) for d in range(10))),
    "fashion_mnist": DatasetInfo(
        "fashion_mnist", "Fashion-MNIST",
        _files(("f4a8712d7a061bf5bd6d2ca38dc4d50a", "9018921c3c673c538a1fc5bad174d6f9",
                "8181f5470baa50b63fa0f6fddb340f0a", "15d484375f8d13e6eb1aabb0c3f46965"),
               ("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34")),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")),
}


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_maybe_gzipped(path: Path) -> bytes:
    """Bytes of an IDX file, gunzipped when it is stored as .gz."""
    data = Path(path).read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


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
    shape = struct.unpack_from(f">{ndim}I", data, 4)
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(shape)):
        raise ValueError(f"IDX header promises shape {shape} but holds {len(data) - offset} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def load_split(data_dir, train: bool, limit: int = 0):
    """(images as float in [0, 1] of shape (N, 784), int64 labels), the first `limit` if > 0."""
    prefix = "train" if train else "t10k"
    images = decode_idx(Path(data_dir, f"{prefix}-images-idx3-ubyte").read_bytes())
    labels = decode_idx(Path(data_dir, f"{prefix}-labels-idx1-ubyte").read_bytes())
    if limit:
        images, labels = images[:limit], labels[:limit]
    # ToTensor's scaling: uint8 / 255.
    x = torch.from_numpy(images.reshape(len(images), IMAGE_SIZE).astype(np.float32)) / 255.0
    return x, torch.from_numpy(labels.astype(np.int64))
