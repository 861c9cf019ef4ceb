"""The pipeline's stage scripts (`python -m stages.<name>`, as dvc.yaml runs them).

Python runs this file before any stage module, and so before torch is imported: the one
place where every stage process, under `dvc repro`, `dvc exp run` or a queue worker, gets
the OpenMP setting below. libgomp reads its variables once, when torch loads it; a value
set after `import torch` has no effect.

Why: each stage runs one OpenMP thread per core, and by default an idle pool thread spins
(300,000 rounds) while it waits for its siblings. When another process holds a core, the
spinning threads take its time slices: beside one busy process an epoch took 3-4x its time
alone, beside a second training 4.4-5.4x. With a short spin (GOMP_SPINCOUNT=1000) idle
threads soon sleep: 1.65-1.93x beside either, and alone within 2 % of the default.
Sleeping at once (OMP_WAIT_POLICY=PASSIVE) made the tuned recipe's fine-tuning 79 % slower
alone. Measured with `python -m benchmarks.contention` (benchmarks/README.md, "Sharing the
machine"). No thread setting changes a result (tests/test_threads.py), so none is a param.
A GOMP_SPINCOUNT or OMP_WAIT_POLICY of your own wins (GOMP_SPINCOUNT would override a
wait policy, so none is set beside one).
"""
import os

SPIN_BEFORE_SLEEP = "1000"  # GOMP_SPINCOUNT: rounds an idle OpenMP thread spins, then sleeps

if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", SPIN_BEFORE_SLEEP)
