"""The PCA file evaluate measures autoencoders against: one that does not fit the images or
the code sizes is refused, naming the file, before anything is computed from it."""
import pytest
import torch

from sae import pca
from sae.model import CheckpointError
from tests.conftest import run_stage


def fitted(n_pixels=784, n_components=784):
    torch.manual_seed(0)
    whole = pca.fit(torch.rand(30, n_pixels))
    return {"mean": whole["mean"], "components": whole["components"][:, :n_components]}


def test_a_pca_as_the_reference_stage_writes_it_loads(tmp_path):
    pca.save(fitted(), tmp_path / "pca.pt")
    loaded = pca.load(tmp_path / "pca.pt", 400)
    assert loaded["components"].shape == (784, 784)


@pytest.mark.parametrize("make, needed, problem", [
    (lambda: fitted(n_pixels=10), 1,
     "a mean of shape (10,) and components of shape (10, 10); expected (784,) and (784, k)"),
    (lambda: fitted(n_components=5), 256,
     "5 components; expected 256 to 784, as many as the largest code"),
    (lambda: {**fitted(), "mean": torch.full((784,), float("nan"), dtype=torch.float64)}, 1,
     "NaN or infinite values"),
    (lambda: {**fitted(), "components": torch.zeros(784, 785, dtype=torch.float64)}, 1,
     "785 components; expected 1 to 784"),
    (lambda: {"mean": torch.zeros(784, dtype=torch.int64), "components": torch.eye(784)}, 1,
     "not a dict of float tensors"),
], ids=["10 pixels", "5 components", "NaN mean", "too many components", "integer mean"])
def test_a_pca_that_does_not_fit_is_one_error_naming_the_file(tmp_path, make, needed, problem):
    path = tmp_path / "pca.pt"
    pca.save(make(), path)
    with pytest.raises(CheckpointError) as info:
        pca.load(path, needed)
    message = str(info.value)
    assert message.startswith(f"{path} is not a PCA written by the reference stage ({problem}")
    assert message.endswith("re-create it with `dvc repro`") and "\n" not in message


def test_the_reference_stage_writes_the_same_bits_on_any_thread_count(tmp_path, real_data,
                                                                      monkeypatch):
    """LAPACK's eigensolver is outside MKL's strict mode: on 2 threads its last bits differed
    from 1 thread's (and between two machines) until fit() ran it on one."""
    written = set()
    for threads in (1, 2):
        monkeypatch.setenv("OMP_NUM_THREADS", str(threads))
        out = tmp_path / f"threads{threads}"
        done = run_stage("reference", "--dataset", "mnist", "--data", real_data / "mnist",
                         "--out", out / "pca.pt", "--curve", out / "curve.csv", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        written.add(((out / "pca.pt").read_bytes(), (out / "curve.csv").read_text()))
    assert len(written) == 1
