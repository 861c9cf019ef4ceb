# The two commands of the README:  make pipeline  and  make test.
# After make pipeline (or make tuned), make verify compares the metrics with the committed ones.
VENV ?= .venv
SYSTEM_PYTHON := $(shell command -v python3)
PYTHON := $(VENV)/bin/python
# Stage commands in dvc.yaml call `python`: put the venv's first on PATH.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup pipeline tuned ablation label-budget label-budget-fixed pretraining-grid \
	reconstruction compare verify test

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(SYSTEM_PYTHON) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet -e ".[test]"
	touch $@

# With a default DVC remote (docs/sharing.md), pull what it holds first: then nothing is
# trained that the remote has. `make pipeline PULL=` skips the pull.
PULL ?= $(PYTHON) -m scripts.remote pull --if-configured --allow-missing

# The lecture's recipe, both datasets (plain `dvc repro` runs every recipe).
pipeline: setup
	$(PULL)
	dvc repro --glob 'evaluate@lecture-*'
	dvc metrics show metrics  # the headline numbers (dvc metrics show adds the per-epoch DVCLive ones)

# The tuned recipe, both datasets (about 10 minutes on 2 cores).
tuned: setup
	dvc repro --glob 'evaluate@tuned-*'
	dvc metrics show metrics  # the headline numbers (dvc metrics show adds the per-epoch DVCLive ones)

# The pretraining ablation: 4 arms x every recipe, dataset and seed, as queued experiments.
ablation: setup
	$(PYTHON) -m scripts.ablation

# The label-budget study: the 4 arms of the tuned recipe at 100, 1,000, 10,000 and all labels,
# both datasets, 5 seeds, fine-tuning stopped early on validation. About 2 hours on 2 cores:
# --resume keeps the runs already in plots/label_budget, so it can be run a few seeds at a time.
label-budget: setup
	$(PYTHON) -m scripts.ablation --recipes tuned --labels 100 1000 10000 0 --early-stopping \
		--seeds 0 1 2 3 4 --resume --out plots/label_budget

# The label-budget study's small budgets (not all labels) under the realistic protocol: no
# epoch is chosen, as a user with N labels has none to spare for validation (scripts/ablation.py);
# then both protocols side by side (scripts/protocols.py). About 70 minutes on 2 cores, resumable.
label-budget-fixed: setup
	$(PYTHON) -m scripts.ablation --recipes tuned --labels 100 1000 10000 --fixed-length \
		--seeds 0 1 2 3 4 --resume --out plots/label_budget_fixed
	$(PYTHON) -m scripts.protocols plots/label_budget plots/label_budget_fixed

# The tuned recipe's pretraining chosen on validation (issue 25): masking noise 0.1, 0.25 or 0.4
# in both autoencoders x 10 or 20 epochs each, then past the edge the first grid picked (more
# noise, more epochs), the rest of the recipe as it is. It selected noise 0.4 and 30 epochs, now
# the recipe itself and so the baseline; 0.25:10 is the recipe it replaced. About 45 minutes on
# 2 cores, queued experiments (points run before are taken from the run cache);
# plots/pretraining_selection/summary.md marks the best validation accuracy (docs/sweeps.md).
PRETRAINING_POINTS := 0.1:10 0.1:20 0.25:10 0.25:20 0.4:10 0.4:20 0.5:20 0.6:20
# The points' baseline: HEAD when make starts (a commit meanwhile moves HEAD, not the points).
pretraining-grid: BASELINE := $(shell git rev-parse HEAD)
pretraining-grid: setup
	for point in $(PRETRAINING_POINTS); do noise=$${point%:*}; epochs=$${point#*:}; \
		dvc exp run --queue -n pre-noise$$noise-epochs$$epochs \
			-S tuned.pretrain_layer1.corruption=$$noise -S tuned.stack_layer2.corruption=$$noise \
			-S tuned.pretrain_layer1.epochs=$$epochs -S tuned.stack_layer2.epochs=$$epochs \
			evaluate@tuned-mnist evaluate@tuned-fashion_mnist || exit 1; done
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-$$(( $$(nproc) / 2 > 1 ? $$(nproc) / 2 : 1 ))} \
		$(PYTHON) -m scripts.run_queue -j 2
	$(PYTHON) -m scripts.sweep_summary --out plots/pretraining_selection --rev $(BASELINE)

# The code-size study: autoencoders against PCA at codes of 16 to 256 units, both datasets,
# 3 seeds, as queued experiments (needs the reference stage: run make pipeline first).
reconstruction: setup
	$(PYTHON) -m scripts.reconstruction

# The experiments side by side, as a Markdown table: the params that differ between them and
# the test accuracies that changed. Left out: data, model and code hashes, the per-epoch
# DVCLive metrics, NLL and reconstruction MSE (plain `dvc exp show` has them all).
COMPARE_DROP := ^(data|models|plots|sae|stages)/|^params\.yaml$$|.*:(test_nll|reconstruction_mse)
compare: setup
	dvc exp show --no-pager --only-changed --md --drop '$(COMPARE_DROP)'

# Workspace metrics against the committed ones, for the stages re-run here.
verify: setup
	$(PYTHON) -m scripts.verify

test: setup
	$(PYTHON) -m pytest -q --durations=15
