"""The pipeline's stage scripts (`python -m stages.<name>`, as dvc.yaml runs them).

Python runs this file before any stage module, and so before torch is imported: the one
place where every stage process, under `dvc repro`, `dvc exp run` or a queue worker, gets
the OpenMP settings below. libgomp reads its variables once, when torch loads it; a value
set after `import torch` has no effect. A variable already in the environment wins.

Why: each stage runs one OpenMP thread per core, and by default an idle pool thread spins
while it waits for its siblings. When another process holds a core, the spinning threads
take its time slices and a stage's epoch was up to 10x slower (issue 17). PASSIVE makes
idle threads sleep instead. The choice comes from issue 17's first probe and is to be
confirmed by `python -m benchmarks.contention` (benchmarks/README.md, "Sharing the
machine"): beside one busy process at most 2x the epoch alone, alone within 5 % of the
default wait policy. No setting here changes a result (tests/test_threads.py), so none
of them is a param or a dvc.yaml dependency.
"""
import os

OPENMP_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}

for name, value in OPENMP_DEFAULTS.items():
    os.environ.setdefault(name, value)
