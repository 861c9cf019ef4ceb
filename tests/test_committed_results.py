"""Every committed result has a writer: each file under plots/ and metrics/ is a stage output
that dvc.yaml declares or a table or figure of a committed study script, and each dvc.lock
entry a stage of dvc.yaml. A moved or renamed output then cannot leave its old copy behind,
where a reader would take it for a current result."""
import re
import subprocess

import yaml
from pathlib import Path, PurePosixPath

from tests.conftest import ROOT

RESULTS = ("plots", "metrics")
# Where a study's output folder is named: its script's default --out, or the command that
# made it (Makefile, a script's docstring, the docs).
COMMANDS = ("Makefile", "scripts/*.py", "docs/*.md")


def committed_results():
    listed = subprocess.run(["git", "ls-files", *RESULTS], cwd=ROOT, capture_output=True,
                            text=True, check=True, timeout=60).stdout
    return [PurePosixPath(name) for name in listed.splitlines()]


def stages():
    """The stages of dvc.yaml, as DVC reads them (matrix stages expanded)."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        return list(repo.index.stages)


def declared_outputs():
    """Every output path of every stage in dvc.yaml (outs, metrics, plots)."""
    return {PurePosixPath(Path(str(out)).as_posix()) for stage in stages() for out in stage.outs}


def study_folders():
    """Folders named as a study's --out (or default=) in the commands that make them."""
    text = "\n".join(path.read_text() for pattern in COMMANDS for path in ROOT.glob(pattern))
    return {PurePosixPath(folder) for folder in
            re.findall(r'(?:--out[ =]|default=")(plots/[\w/]+)', text)}


def study_file_names():
    """File names that a study script writes (string literals in scripts/*.py)."""
    text = "\n".join(path.read_text() for path in (ROOT / "scripts").glob("*.py"))
    return set(re.findall(r'"(?:[^"/]*/)?([\w.-]+\.(?:csv|png|md|json))"', text))


def test_every_committed_result_is_a_declared_output_or_a_study_table():
    outputs, folders, names = declared_outputs(), study_folders(), study_file_names()
    orphans = [str(path) for path in committed_results()
               if not (path in outputs or set(path.parents) & outputs)
               and not (path.parent in folders and path.name in names)]
    assert not orphans, ("committed under plots/ or metrics/, but nothing writes them any "
                         f"more: git rm them, or declare their writer: {orphans}")


def test_the_check_knows_the_studies_and_the_stage_outputs():
    """The test above would pass vacuously if it found no writers."""
    assert {PurePosixPath("plots/label_budget"), PurePosixPath("plots/selection"),
            PurePosixPath("plots/reconstruction/epochs30")} <= study_folders()
    assert {"ablation_summary.csv", "gain_summary.csv", "summary.md"} <= study_file_names()
    assert PurePosixPath("metrics/lecture/mnist.json") in declared_outputs()


def test_dvc_lock_records_only_stages_that_dvc_yaml_defines():
    """DVC keeps a removed or renamed stage's entry in dvc.lock: results of another pipeline,
    which `dvc status` never checks again."""
    locked = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]
    assert set(locked) == {stage.addressing for stage in stages()}
