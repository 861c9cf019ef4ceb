"""Each stage in dvc.yaml lists as deps exactly the code it runs: stages/__init__.py (which
sets its CPU paths), its stage module and every sae module that module imports, directly or
through other sae modules. Then an edit to one
library file re-runs exactly the stages that use it, and never too few."""
import ast
import re

import pytest
import yaml

from tests.conftest import ROOT

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
CODE = re.compile(r"^(sae|stages)/\w+\.py$")


def imported_sae_files(path):
    """The sae/*.py files that the module at `path` imports, directly or transitively."""
    found, todo = set(), [path]
    while todo:
        for node in ast.walk(ast.parse((ROOT / todo.pop()).read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                # `from sae import x` imports the module sae.x when there is one.
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            for name in names:
                file = name.replace(".", "/") + ".py"
                if name.startswith("sae.") and (ROOT / file).is_file() and file not in found:
                    found.add(file)
                    todo.append(file)
    return found


def test_sae_package_init_runs_no_code():
    """Importing any sae module runs sae/__init__.py, which no stage lists: it must stay a
    docstring alone, or every stage would depend on it."""
    body = ast.parse((ROOT / "sae" / "__init__.py").read_text()).body
    assert all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
               for node in body)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_are_the_code_it_imports(name):
    stage = STAGES[name]
    module = re.search(r"python -m (stages\.\w+)", stage["cmd"])
    assert module, f"{name}: cmd does not run a stage module: {stage['cmd']}"
    stage_file = module.group(1).replace(".", "/") + ".py"
    listed = {dep for dep in stage["deps"] if isinstance(dep, str) and CODE.match(dep)}
    expected = {"stages/__init__.py", stage_file} | imported_sae_files(stage_file)
    assert listed == expected, (f"{name} in dvc.yaml: add {sorted(expected - listed)}, "
                                f"remove {sorted(listed - expected)}")


@pytest.mark.parametrize("name", ["dvc.yaml", "dvc.lock", "params.yaml"])
def test_dvc_reads_the_project_yaml_with_the_c_parser_and_the_same_result(name):
    """ruamel.yaml.clib (a dependency) gives DVC's safe loads the C parser; it must read every
    file DVC reads exactly as the pure-Python parser does."""
    from ruamel.yaml import YAML
    from ruamel.yaml.main import CParser

    fast, pure = YAML(typ="safe"), YAML(typ="safe", pure=True)
    assert CParser is not None and fast.Parser is CParser
    text = (ROOT / name).read_text()
    assert fast.load(text) == pure.load(text)
