"""Hostile grids (issue 22, cause 1): no sweep writes a YAML file outside the repository.

DVC's `-S` takes a `file:` prefix and writes the file it names, `../` included, so
scripts/sweep_keys.py lets through only params of params.yaml. It must see every assignment
that DVC will see: an abbreviated option (`--set-p`, which DVC's argparse expands to
`--set-param`), and a grid value that the sweep workflow's run step would split in two (a
newline).
"""
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scripts import sweep_keys
from tests.conftest import ROOT

LR = "lecture.finetune_classifier.lr"
OUTSIDE = "../outside.yaml:foo=1"
# Every spelling that DVC's parser reads as --set-param (argparse expands a unique prefix).
ABBREVIATIONS = ["--set-p", "--set-pa", "--set-par", "--set-para", "--set", "--se"]
# Characters that end a line, or that the workflow's shell would drop or split on.
SPLITTERS = ["\n", "\r", "\r\n", "\x00", "\x85", "\u2028", "\u2029", "\x0b", "\x0c", "\t"]


@pytest.mark.parametrize("option", ABBREVIATIONS)
def test_an_abbreviated_set_param_is_checked_like_the_full_option(option, monkeypatch):
    monkeypatch.chdir(ROOT)
    for options in ([option, OUTSIDE], [f"{option}={OUTSIDE}"], ["-n", "x", option, OUTSIDE]):
        with pytest.raises(SystemExit, match="^error: .*'../outside.yaml:foo'"):
            sweep_keys.main(["--", *options])
    sweep_keys.main(["--", option, f"{LR}=0.2"])  # a param of params.yaml still passes


def test_options_dvc_would_refuse_are_refused_before_anything_is_queued(monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit, match="^error: "):
        sweep_keys.main(["--", "--no-such-option", "-S", f"{LR}=0.2"])


def fake_tools(folder):
    """A `dvc` that records its arguments (one JSON list a line) in folder/dvc-calls."""
    bin_ = folder / "bin"
    bin_.mkdir()
    script = bin_ / "dvc"
    script.write_text(f"#!{sys.executable}\nimport json, sys\n"
                      f"open({str(folder / 'dvc-calls')!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bin_


def dvc_calls(folder):
    calls = folder / "dvc-calls"
    return [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []


def project(tmp_path):
    """A project folder inside tmp_path (params.yaml and scripts/), with a recording dvc."""
    path = tmp_path / "project"
    path.mkdir()
    shutil.copy(ROOT / "params.yaml", path)
    shutil.copytree(ROOT / "scripts", path / "scripts",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, PATH=os.pathsep.join(
        [str(fake_tools(tmp_path)), str(Path(sys.executable).parent), os.environ["PATH"]]))
    return path, env


@pytest.mark.parametrize("options", [["--set-p", OUTSIDE], [f"--set-pa={OUTSIDE}"],
                                     ["-S", f"{LR}=0.2", "--se", OUTSIDE]])
def test_sweep_sh_never_hands_dvc_an_abbreviated_outside_write(tmp_path, options):
    path, env = project(tmp_path)
    done = subprocess.run(["bash", "scripts/sweep.sh", "-j", "1", *options], cwd=path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.startswith("error: "), done.stderr
    assert dvc_calls(tmp_path) == [] and not (tmp_path / "outside.yaml").exists()


@pytest.mark.parametrize("splitter", SPLITTERS)
def test_a_grid_value_that_a_line_reader_would_split_is_refused(splitter, monkeypatch):
    monkeypatch.chdir(ROOT)
    for grid in ([f"{LR}=0.1{splitter}{OUTSIDE}"], [[f"{LR}=0.1", f"common.seed=1{splitter}"]],
                 [f"{LR}=0.1", f"{LR}{splitter}=0.2"]):
        with pytest.raises(SystemExit, match="^error: .*one line of printable text"):
            sweep_keys.main(["--grid", json.dumps(grid)])


def run_step(name):
    """The shell script of the sweep workflow's step `name`, in the run job."""
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "sweep.yml").read_text())
    return next(s["run"] for s in workflow["jobs"]["run"]["steps"] if s.get("name") == name)


def run_experiment_step(tmp_path, point):
    """The run job's "Run the experiment" step as GitHub runs it (bash -eo pipefail), in a
    git repository holding the project, with matrix.point = `point`; (exit code, dvc calls)."""
    path, env = project(tmp_path)
    subprocess.run(["git", "init", "-q"], cwd=path, check=True, timeout=60)
    script = tmp_path / "step.sh"
    script.write_text(run_step("Run the experiment"))
    env["POINT"] = json.dumps(point, indent=2)  # toJSON() writes it over several lines
    done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                          cwd=path, env=env, capture_output=True, text=True, timeout=120)
    return done.returncode, dvc_calls(tmp_path)


@pytest.mark.parametrize("splitter", ["\n", "\r\n", "\u2028"])
def test_the_run_step_never_splits_a_point_into_an_unchecked_assignment(tmp_path, splitter):
    code, calls = run_experiment_step(tmp_path, [f"{LR}=0.1{splitter}{OUTSIDE}"])
    assert code != 0 and calls == [], calls  # checked again where it is read
    assert not (tmp_path / "outside.yaml").exists()


def test_the_run_step_hands_dvc_each_assignment_whole(tmp_path):
    point = [f"{LR}=0.1", "download.source_dir='a b  $(x) `y` \\n' \"c\""]
    code, calls = run_experiment_step(tmp_path, point)
    assert code == 0 and calls == [["exp", "run", "--pull", "-S", point[0], "-S", point[1]]]
