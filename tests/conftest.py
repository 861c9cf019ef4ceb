"""Shared test helpers: the repository root and params.yaml files with overrides."""
import copy
import importlib.util
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def params_with(**overrides):
    """The default params as a dict, with dotted keys overridden: params_with(**{"a.b": 1})."""
    raw = copy.deepcopy(DEFAULT_PARAMS)
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        section = raw
        for key in parents:
            section = section[key]
        section[leaf] = value
    return raw


@pytest.fixture
def in_project(tmp_path, monkeypatch):
    """Run in an empty folder; returns write(**overrides), which writes its params.yaml."""
    monkeypatch.chdir(tmp_path)

    def write(**overrides):
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params_with(**overrides)))
        return tmp_path
    return write


def load_stage(name):
    """A stage script imported as a module, so a test can call its main(argv)."""
    spec = importlib.util.spec_from_file_location(f"stage_{name}", ROOT / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
