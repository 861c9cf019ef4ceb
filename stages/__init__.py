"""The pipeline's stage scripts (`python -m stages.<name>`, as dvc.yaml runs them).

Python runs this file before any stage module, and so before torch is imported: the one
place where every stage process, under `dvc repro`, `dvc exp run` or a queue worker, gets
the settings below. libgomp, ATen and MKL read their variables once, when torch loads them
or at their first call; a value set after `import torch` has no effect. Every stage lists
this file in its deps (dvc.yaml): the CPU paths decide the bits of what it writes.

OpenMP: each stage runs one thread per core, and by default an idle pool thread spins
(300,000 rounds) while it waits for its siblings. When another process holds a core, the
spinning threads take its time slices: beside one busy process an epoch took 3-4x its time
alone, beside a second training 4.4-5.4x. With a short spin (GOMP_SPINCOUNT=1000) idle
threads soon sleep: 1.65-1.93x beside either, and alone within 2 % of the default.
Sleeping at once (OMP_WAIT_POLICY=PASSIVE) made the tuned recipe's fine-tuning 79 % slower
alone. Measured with `python -m benchmarks.contention` (benchmarks/README.md, "Sharing the
machine"). No thread setting changes a result (tests/test_threads.py), so none is a param.
A GOMP_SPINCOUNT or OMP_WAIT_POLICY of your own wins (GOMP_SPINCOUNT would override a
wait policy, so none is set beside one).

CPU paths: PyTorch picks its element-wise kernels (tanh, log-softmax, sums) by the CPU it
finds, AVX-512 where there is one, and MKL picks its matrix-product code the same way, so
the last bits of every model and dvc.lock's hashes would depend on the machine. On any
x86-64 CPU with AVX2 and FMA both are pinned to their AVX2 code (ATEN_CPU_CAPABILITY=avx2,
MKL_CBWR=AVX2,STRICT): the same bits on every such machine, and a fresh clone's `make
pipeline` leaves `git status` clean. STRICT also fixes how MKL splits a product's sums over
threads, so the thread count changes no bit either. The cost, measured in
benchmarks/README.md ("Portable CPU paths"), is small enough to make it the default;
SAE_CPU_PATHS=native lets each library choose (faster on some AVX-512 machines; the bits
then differ from the committed ones in their last digits, within `make verify`'s
tolerance). CPUs without AVX2 (ARM, old x86) always run native: AVX2 code would not run
there. An ATEN_CPU_CAPABILITY or MKL_CBWR of your own wins.
"""
import os

SPIN_BEFORE_SLEEP = "1000"  # GOMP_SPINCOUNT: rounds an idle OpenMP thread spins, then sleeps
PORTABLE = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2,STRICT"}
NATIVE = {"MKL_CBWR": "AUTO,STRICT"}  # each library's best code; sums still thread-independent
CPU_PATHS = ("portable", "native")  # SAE_CPU_PATHS, default portable


def has_avx2(cpuinfo="/proc/cpuinfo"):
    """Whether the CPU runs AVX2 and FMA code, from Linux's flags (False where unknown)."""
    try:
        with open(cpuinfo) as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
    except OSError:
        return False
    return {"avx2", "fma"} <= set(flags)


def cpu_settings(environ, avx2):
    """The variables that pin the CPU paths, for SAE_CPU_PATHS in `environ`."""
    choice = environ.get("SAE_CPU_PATHS", "portable")
    if choice not in CPU_PATHS:
        raise SystemExit(f"error: SAE_CPU_PATHS = {choice!r} is not allowed; expected "
                         f"{' or '.join(CPU_PATHS)} (unset: portable)")
    return PORTABLE if choice == "portable" and avx2 else NATIVE


if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", SPIN_BEFORE_SLEEP)
for _name, _value in cpu_settings(os.environ, has_avx2()).items():
    os.environ.setdefault(_name, _value)
