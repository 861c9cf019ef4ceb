# The two commands of the README:  make pipeline  and  make test.
VENV ?= .venv
SYSTEM_PYTHON := $(shell command -v python3)
PYTHON := $(VENV)/bin/python
# Stage commands in dvc.yaml call `python`: put the venv's first on PATH.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup pipeline test benchmark

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(SYSTEM_PYTHON) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet -e ".[test]"
	touch $@

pipeline: setup
	dvc repro
	dvc metrics show

test: setup
	$(PYTHON) -m pytest -q
