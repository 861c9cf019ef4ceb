"""Issue 22, cause 5: a gzip bomb in download.source_dir. A small .gz that expands far beyond
the size its file must have is read only up to that size (known per file in
sae/datasets.py), then refused with one line naming the file, the size and what was found;
it is never decompressed whole, so memory stays bounded whatever the .gz expands to."""
import builtins
import gzip
import tracemalloc
import zlib

import pytest

from sae import datasets, download
from sae.datasets import DataError, read_maybe_gzipped

MEMBER = 16 * 2**20  # bytes of zeros in one gzip member
MEMBERS = 32         # a 512 MiB expansion from about half a megabyte of gzip


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    """A .gz of MEMBERS members of MEMBER zeros each: about 0.5 MB that expands to 512 MiB.
    (A gzip file may hold several members, and gunzip concatenates them.)"""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip member
    member = compressor.compress(bytes(MEMBER)) + compressor.flush()
    path = tmp_path_factory.mktemp("bomb") / "train-images-idx3-ubyte.gz"
    path.write_bytes(member * MEMBERS)
    return path


@pytest.fixture
def bytes_read(monkeypatch):
    """Counts the bytes sae.datasets reads from the files it opens."""
    count = [0]

    class Counting:
        def __init__(self, f):
            self.f = f

        def read(self, *size):
            data = self.f.read(*size)
            count[0] += len(data)
            return data

        def readinto(self, buffer):
            n = self.f.readinto(buffer)
            count[0] += n or 0
            return n

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(datasets, "open", lambda *a, **k: Counting(builtins.open(*a, **k)),
                        raising=False)
    return count


def test_a_gzip_bomb_is_read_only_up_to_the_expected_size(bomb, bytes_read):
    limit = 47040016  # train-images-idx3-ubyte
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as info:
            read_maybe_gzipped(bomb, limit)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(info.value) == (f"{bomb}: expands to more than {limit} bytes (read no further; "
                               f"a .gz is never unpacked beyond the size its file must have)")
    # It stopped early: what unpacks to one limit (a tenth of the gzip, 47 of its 512 MiB)
    # was read, and the memory it took is about that of one file of the expected size.
    assert 0 < bytes_read[0] < bomb.stat().st_size / 5, bytes_read[0]
    assert peak < 3 * limit, peak


def test_the_download_stage_names_the_bomb_and_the_size_it_should_have(tmp_path, bomb):
    """Through download.source_dir, as the issue's hostile user did; other sources fail."""
    ref = datasets.DATASETS["mnist"].files[0]
    source = download.folder_source(bomb.parent, [ref])
    with pytest.raises(download.DownloadError) as info:
        download.fetch("mnist", tmp_path / "out", sources=[source], expected=[ref])
    message = str(info.value)
    assert "\n" not in message
    assert (f"{bomb}: expands to more than {ref.size} bytes (read no further; a .gz is never "
            f"unpacked beyond the size its file must have); expected the uncompressed file to "
            f"have SHA-256 {ref.sha256} and {ref.size} bytes") in message, message
    assert not (tmp_path / "out").exists()


def test_a_plain_file_larger_than_expected_is_not_read_whole(tmp_path, bytes_read):
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(bytes(10 * 2**20))
    with pytest.raises(DataError, match=rf"^{path}: holds more than 10008 bytes \(read no "
                                        rf"further"):
        read_maybe_gzipped(path, 10008)
    assert bytes_read[0] <= 2 + 10009  # the gzip magic number, then one byte too many


@pytest.mark.parametrize("gzipped", [False, True])
def test_a_file_of_the_expected_size_or_smaller_is_read_whole(tmp_path, gzipped):
    data = bytes(range(256)) * 40
    path = tmp_path / ("f.gz" if gzipped else "f")
    path.write_bytes(gzip.compress(data) if gzipped else data)
    assert read_maybe_gzipped(path, len(data)) == data
    assert read_maybe_gzipped(path, len(data) + 1) == data  # smaller: verify names its size
