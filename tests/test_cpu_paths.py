"""stages/__init__.py pins the CPU code paths of every stage process, so that any x86-64
machine with AVX2 computes the same bits: checked against the fingerprint of a 2-core AMD
EPYC with AVX2 only (no AVX-512), on which `make pipeline` wrote the committed models'
hashes bit for bit."""
import os
import subprocess
import sys

import pytest
import torch

import stages
from tests.conftest import ROOT

# `OMP_NUM_THREADS=1 python -m scripts.cpu_fingerprint` there, torch 2.14.1, AVX2 paths.
AMD_EPYC_AVX2 = {
    "linear (addmm)": "7834eba3ff", "matmul backward (x.T @ g)": "ac73880402",
    "tanh": "feb9804a6b", "sigmoid": "8a7985c20a", "relu": "7581ef55ba",
    "log_softmax": "49f392f2be", "sum over rows": "7e529dde07", "mean of all": "d92142b140",
    "mse": "da8ac60547", "dropout mask (seeded)": "6eb7ac2511",
    "randperm (seeded)": "3df09fa7b7", "svd (float64)": "12afa6b907",
}
TORCH_OF_THE_FINGERPRINT = "2.14.1"


def in_a_stage_process(code, **environ):
    """What `code` prints in a fresh Python that imports stages first, as a stage does."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("SAE_CPU_PATHS", "ATEN_CPU_CAPABILITY", "MKL_CBWR")} | environ
    done = subprocess.run([sys.executable, "-c", f"import stages\n{code}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def cpuinfo(tmp_path, flags):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 {flags}\n\nprocessor\t: 1\n")
    return path


def test_avx2_and_fma_are_read_from_the_cpu_flags(tmp_path):
    assert stages.has_avx2(cpuinfo(tmp_path, "avx avx2 fma avx512f"))
    assert not stages.has_avx2(cpuinfo(tmp_path, "avx fma"))  # AVX2 code would not run
    assert not stages.has_avx2(tmp_path / "absent")  # macOS, Windows: native paths


def test_portable_paths_are_the_default_where_avx2_runs_and_native_is_one_variable():
    assert stages.cpu_settings({}, avx2=True) == stages.PORTABLE
    assert stages.cpu_settings({}, avx2=False) == stages.NATIVE
    assert stages.cpu_settings({"SAE_CPU_PATHS": "native"}, avx2=True) == stages.NATIVE
    with pytest.raises(SystemExit, match="SAE_CPU_PATHS = 'fast' is not allowed; expected "
                                         "portable or native"):
        stages.cpu_settings({"SAE_CPU_PATHS": "fast"}, avx2=True)


needs_avx2 = pytest.mark.skipif(not stages.has_avx2(), reason="no AVX2 here: native paths")


@needs_avx2
def test_a_stage_process_runs_avx2_kernels_and_mkls_strict_avx2_branch():
    shown = "import os, torch; print(torch.backends.cpu.get_cpu_capability(), os.environ['MKL_CBWR'])"
    assert in_a_stage_process(shown).split() == ["AVX2", "AVX2,STRICT"]
    # A setting of your own wins.
    assert in_a_stage_process(shown, MKL_CBWR="COMPATIBLE").split() == ["AVX2", "COMPATIBLE"]


@needs_avx2
@pytest.mark.skipif(not torch.__version__.startswith(TORCH_OF_THE_FINGERPRINT),
                    reason=f"the fingerprint is of torch {TORCH_OF_THE_FINGERPRINT}")
def test_the_arithmetic_has_the_bits_of_an_avx2_only_amd_epyc():
    code = "from scripts.cpu_fingerprint import fingerprint; print(fingerprint())"
    assert in_a_stage_process(code, OMP_NUM_THREADS="1").strip() == str(AMD_EPYC_AVX2)
