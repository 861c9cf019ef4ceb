"""The bits of the CPU arithmetic the stages use, as short hashes, under the stages' own
settings (stages/__init__.py, imported before torch): run it on two machines and compare the
lines; equal lines mean equal bits for that operation.

    OMP_NUM_THREADS=1 python -m scripts.cpu_fingerprint
    SAE_CPU_PATHS=native OMP_NUM_THREADS=1 python -m scripts.cpu_fingerprint

tests/test_cpu_paths.py holds the lines of a 2-core AMD EPYC with AVX2 only: every x86-64
machine with AVX2 must print them.
"""
import hashlib
import os

import stages  # noqa: F401  the stages' CPU paths, before torch loads

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

SETTINGS = ("SAE_CPU_PATHS", "ATEN_CPU_CAPABILITY", "MKL_CBWR", "OMP_NUM_THREADS")


def short_hash(tensor):
    return hashlib.md5(tensor.detach().contiguous().numpy().tobytes()).hexdigest()[:10]


def seeded(make):
    torch.manual_seed(0)
    return make()


def fingerprint():
    """{operation: short hash} on fixed, seeded inputs of the layer-1 shape."""
    torch.manual_seed(0)
    x, w, b = torch.rand(1000, 784), torch.randn(400, 784) * 0.05, torch.randn(400) * 0.01
    linear = F.linear(x, w, b)
    centred = x[:500].double() - x[:500].double().mean(0)
    values = {
        "linear (addmm)": linear,
        "matmul backward (x.T @ g)": x.t() @ torch.tanh(linear),
        "tanh": torch.tanh(linear),
        "sigmoid": torch.sigmoid(linear),
        "relu": torch.relu(linear),
        "log_softmax": F.log_softmax(linear[:, :10], dim=1),
        "sum over rows": linear.sum(dim=0),
        "mean of all": linear.mean().reshape(1),
        "mse": F.mse_loss(torch.sigmoid(linear) @ w, x).reshape(1),
        "dropout mask (seeded)": seeded(lambda: F.dropout(torch.ones(1000, 400), 0.3)),
        "randperm (seeded)": seeded(lambda: torch.randperm(60000)),
        "svd (float64)": torch.linalg.svd(centred, full_matrices=False)[2][:32].abs(),
    }
    return {name: short_hash(value) for name, value in values.items()}


def main():
    print(f"torch {torch.__version__}, capability {torch.backends.cpu.get_cpu_capability()}, "
          + ", ".join(f"{k}={os.environ.get(k, '-')}" for k in SETTINGS))
    for name, value in fingerprint().items():
        print(f"{name:28s} {value}")


if __name__ == "__main__":
    main()
