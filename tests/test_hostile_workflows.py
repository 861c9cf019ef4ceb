"""Workflow hardening (issue 22, cause 3): zizmor finds nothing high in .github/workflows,
every action is pinned by full commit SHA with its version beside it, the sweep's cloud
secrets live in a deployment environment, and no step that holds a token runs with the pull
request's own programs (.venv/bin) on PATH.
"""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
TOKEN = re.compile(r"github\.token|secrets\.|GITHUB_TOKEN|GH_TOKEN")


def zizmor():
    """The zizmor binary of this environment (the `test` extra installs it)."""
    beside = Path(sys.executable).parent / "zizmor"
    found = str(beside) if beside.is_file() else shutil.which("zizmor")
    if not found:
        pytest.fail("zizmor is not installed: run `pip install -e '.[test]'` (or `make "
                    "setup`), which installs it from the `test` extra")
    return found


def findings(*options):
    """zizmor's findings on .github/workflows, offline, as (severity, audit, file:line)."""
    done = subprocess.run([zizmor(), "--offline", "--format", "json", *options, str(WORKFLOWS)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.stdout.strip().startswith("["), f"zizmor failed:\n{done.stdout}{done.stderr}"
    return [(f["determinations"]["severity"], f["ident"],
             f"{loc['symbolic']['key']['Local']['verbatim_path']}:"
             f"{loc['concrete']['location']['start_point']['row'] + 1}")
            for f in json.loads(done.stdout) for loc in f["locations"][:1]]


def test_zizmor_finds_nothing_high():
    high = [f for f in findings() if f[0] == "High"]
    assert high == [], f"zizmor --offline: {len(high)} high findings: {high}"


def test_secrets_are_used_only_in_a_deployment_environment():
    found = [f for f in findings("--persona", "auditor") if f[1] == "secrets-outside-env"]
    assert found == [], found


def workflows():
    return {path.name: yaml.safe_load(path.read_text()) for path in WORKFLOWS.glob("*.yml")}


def test_every_action_is_pinned_by_full_commit_sha_with_its_version_beside_it():
    for path in WORKFLOWS.glob("*.yml"):
        for line in path.read_text().splitlines():
            if re.match(r"\s*(- )?uses:", line):
                assert re.fullmatch(r"\s*(- )?uses: [\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+(\.\d+)*",
                                    line), f"{path.name}: {line.strip()}"


def test_the_sweep_secrets_are_in_a_deployment_environment():
    jobs = workflows()["sweep.yml"]["jobs"]
    for name, job in jobs.items():
        if TOKEN.search(json.dumps(job)) and "secrets." in json.dumps(job):
            assert job.get("environment"), f"job {name} uses secrets without an environment"


def test_no_step_holding_a_token_runs_with_the_pull_requests_programs_on_path():
    for name, job in workflows()["pr-report.yml"]["jobs"].items():
        for step in job["steps"]:
            script = step.get("run", "")
            # nothing of the branch goes onto PATH for later steps ($GITHUB_PATH, $GITHUB_ENV)
            assert "GITHUB_PATH" not in script and ".venv/bin\" >>" not in script, step["name"]
            if TOKEN.search(json.dumps(step.get("env", {}))):
                assert script.lstrip().startswith("export PATH=/usr/bin:/bin"), step["name"]
                assert ".venv" not in script and "$PWD" not in script, step["name"]
