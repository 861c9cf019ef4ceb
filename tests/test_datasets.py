"""Data folders and IDX files: every bad one is a DataError naming it, and a folder must hold
the dataset a stage was told, by size and SHA-256."""
import gzip
import os

import pytest

from sae.datasets import DATASETS, DataError, load_split, read_maybe_gzipped, verify_data_dir
from tests.conftest import write_tiny_idx


def test_truncated_idx_file_is_named(tmp_path):
    data = write_tiny_idx(tmp_path / "tiny")
    images = data / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(DataError, match=f"^{images}: IDX header promises shape \\(40, 28, 28\\)"):
        load_split(data, train=True)


@pytest.mark.parametrize("content, reason", [
    (b"\0\0\x08\x03\0\0", "promises 3 dimensions but the file ends within them"),
    (b"PK\x03\x04", "bad magic number"),
])
def test_idx_file_that_is_not_one_is_named(tmp_path, content, reason):
    data = write_tiny_idx(tmp_path / "tiny")
    (data / "t10k-labels-idx1-ubyte").write_bytes(content)
    with pytest.raises(DataError, match=f"t10k-labels-idx1-ubyte: .*{reason}"):
        load_split(data, train=False)


def test_labels_and_images_of_other_counts_are_refused(tmp_path):
    data = write_tiny_idx(tmp_path / "tiny")
    os.replace(data / "t10k-labels-idx1-ubyte", data / "train-labels-idx1-ubyte")
    with pytest.raises(DataError, match=r"train images of shape \(40, 28, 28\) and labels of "
                                        r"shape \(20,\)"):
        load_split(data, train=True)


def test_corrupt_gz_is_named(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(b"x" * 1000)[:-8] + bytes(8))
    with pytest.raises(DataError, match=f"^{path}: not a valid gzip file \\(CRC check failed"):
        read_maybe_gzipped(path, 1000)


@pytest.mark.parametrize("make, what", [(lambda p: None, "does not exist"),
                                        (lambda p: p.write_text("x"), "is not a folder")])
def test_data_path_that_is_not_a_folder_is_one_line(tmp_path, make, what):
    path = tmp_path / "mnist"
    make(path)
    with pytest.raises(DataError) as info:
        verify_data_dir(path, "mnist")
    assert str(info.value).startswith(f"{path} {what}; expected a folder with the four MNIST")


def linked_copy(source, folder):
    """A data folder of symbolic links to the real files, so one can be replaced cheaply."""
    folder.mkdir()
    for ref in DATASETS["mnist"].files:
        (folder / ref.name).symlink_to(source / ref.name)
    return folder


def test_the_real_folder_passes_for_its_own_dataset(real_data):
    for dataset in DATASETS:
        verify_data_dir(real_data / dataset, dataset)


def test_a_folder_of_the_other_dataset_is_refused_naming_folder_dataset_and_content(real_data):
    folder = real_data / "mnist"
    with pytest.raises(DataError) as info:
        verify_data_dir(folder, "fashion_mnist")
    assert str(info.value) == (
        f"{folder} does not hold Fashion-MNIST (dataset fashion_mnist): its "
        f"train-images-idx3-ubyte is the MNIST one; re-create it with `dvc repro`, or give the "
        f"folder of Fashion-MNIST")


def test_a_changed_byte_is_found_by_the_checksum(real_data, tmp_path):
    folder = linked_copy(real_data / "mnist", tmp_path / "mnist")
    labels = folder / "t10k-labels-idx1-ubyte"
    data = bytearray(labels.read_bytes())
    data[-1] = (data[-1] + 1) % 10
    labels.unlink()
    labels.write_bytes(bytes(data))
    ref = DATASETS["mnist"].files[3]
    with pytest.raises(DataError, match=f"t10k-labels-idx1-ubyte has SHA-256 [0-9a-f]{{64}}, "
                                        f"expected {ref.sha256}"):
        verify_data_dir(folder, "mnist")


def test_a_missing_or_truncated_file_is_named(real_data, tmp_path):
    folder = linked_copy(real_data / "mnist", tmp_path / "mnist")
    (folder / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DataError, match="MNIST \\(dataset mnist\\): no file t10k-images-idx3"):
        verify_data_dir(folder, "mnist")
    (folder / "t10k-images-idx3-ubyte").write_bytes(b"\0" * 100)
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte has 100 bytes, expected 7840016"):
        verify_data_dir(folder, "mnist")
