"""The workflows rehearsed from their own text (issue 23): each job's `run:` steps of
.github/workflows/sweep.yml and pr-report.yml run as written, with bash -e as a hosted runner
runs them, the GITHUB_* variables and files a runner gives them (GITHUB_OUTPUT, GITHUB_PATH,
GITHUB_ENV, GITHUB_STEP_SUMMARY) and the ${{ }} expressions they use, in fresh local clones:
the repository is a bare git origin, the DVC remote the session's SeaweedFS S3 server.

A step that is an action (`uses:`) cannot run here; each is named and replaced by its
documented effect:
- actions/checkout: git init, a fetch of the ref from the origin (--depth 1 unless
  fetch-depth is 0: then every branch), checked out as the runner would (the branch, or
  for a pull request the merge of its head into the base, detached); persist-credentials
  false: no token in the clone's config.
- actions/setup-python: the test's Python first on PATH.
- actions/cache: the DVC cache a run on the base branch saved (restore-keys), restored.
- actions/upload-artifact: its path must exist; nothing is uploaded.
And one run step does less than on a runner: `make setup` finds the project's .venv made
already (a view of the test's virtual environment, its .installed newer than
pyproject.toml), as pip's cache would make its install quick; pip has no index here
(PIP_NO_INDEX), so a `pip install` that would download anything fails.
The pull-request comment's post (gh api) is not rehearsed: there is no GitHub here.

The sweep is a study's (docs/sweeps.md, "A study on many machines"): a tiny label-budget
study's `--print-grid` is the grid, and `--collect-only` after the summary job's pull gives
the tables the same study gives run by the local queue, in a copy of the project.
"""
import concurrent.futures
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import (ROOT, command_env, dvc, mnist_only_copy, recipe_stages, run,
                            stages_run)
from tests.s3 import add_s3_remote

WORKFLOWS = ROOT / ".github" / "workflows"
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
STEP_TIMEOUT_S = 600
LR = "lecture.finetune_classifier.lr"
PR_LR = 0.3
# The label-budget study on the tiny project, cut to 2 points: greedy pretraining with 20
# labels (2 a class) and with all, seed 0 (the baseline's: each point re-trains only the
# tuned classifier). Two arms would double the runs and the test's time.
STUDY = ["--recipes", "tuned", "--labels", "20", "0", "--early-stopping", "--seeds", "0",
         "--arms", "greedy"]
TABLES = ("ablation.csv", "ablation_summary.csv")
SKIPPED = "Post or update the pull-request comment"  # talks to GitHub only

pytestmark = pytest.mark.skipif(shutil.which("jq") is None,
                                reason="jq (on every hosted runner) is not installed: "
                                       "apt-get install jq")


def workflow(name):
    return yaml.safe_load((WORKFLOWS / name).read_text())


def expand(text, context):
    """`text` with each ${{ expression }} replaced by its value in `context`; an expression
    the rehearsal has no value for fails the test (a new one must be given one here)."""
    def value(match):
        if match.group(1) not in context:
            pytest.fail(f"the rehearsal has no value for ${{{{ {match.group(1)} }}}}")
        return str(context[match.group(1)])
    return EXPRESSION.sub(value, text)


def venv_view(workspace):
    """The .venv that `make setup` makes, as a view of the test's environment: pyvenv.cfg,
    lib and each program of bin linked, .installed newer than pyproject.toml."""
    real = Path(sys.prefix)
    venv = workspace / ".venv"
    (venv / "bin").mkdir(parents=True)
    shutil.copy(real / "pyvenv.cfg", venv / "pyvenv.cfg")
    for name in ("lib", "lib64", "include"):
        if (real / name).exists():
            (venv / name).symlink_to((real / name).resolve(), target_is_directory=True)
    for program in (real / "bin").iterdir():
        (venv / "bin" / program.name).symlink_to(program)
    (venv / ".installed").touch()
    stamp = (venv / ".installed").stat().st_mtime
    os.utime(workspace / "pyproject.toml", (stamp - 10, stamp - 10))


class Runner:
    """One job on a fresh hosted runner: a home, a workspace and the runner's files."""

    def __init__(self, root, origin, context, secrets_env):
        root.mkdir(parents=True)
        self.root, self.origin, self.context = root, origin, dict(context)
        self.workspace = root / "work" / "sae"
        self.home = root / "home"
        self.home.mkdir()
        self.files = {name: root / name.lower() for name in
                      ("GITHUB_OUTPUT", "GITHUB_PATH", "GITHUB_ENV", "GITHUB_STEP_SUMMARY")}
        for path in self.files.values():
            path.write_text("")
        self.secrets_env = secrets_env
        self.replaced, self.outputs, self.ran = [], {}, set()

    def env(self, step_env):
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("GIT_", "AWS_", "GITHUB_", "DVC_", "VIRTUAL_ENV"))}
        added = [line for line in self.files["GITHUB_PATH"].read_text().splitlines() if line]
        path = [*reversed(added), str(Path(sys.executable).parent), env["PATH"]]
        env.update(self.secrets_env)
        env.update({key: value for key, value in
                    (line.split("=", 1) for line in
                     self.files["GITHUB_ENV"].read_text().splitlines() if "=" in line)})
        env.update(HOME=str(self.home), PATH=os.pathsep.join(path), CI="true",
                   GITHUB_ACTIONS="true", GITHUB_WORKSPACE=str(self.workspace),
                   GITHUB_REPOSITORY="example/stacked-autoencoders",
                   GITHUB_SERVER_URL="https://github.com", GITHUB_RUN_ID="4242",
                   RUNNER_TEMP=str(self.root), PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
                   OMP_NUM_THREADS="1",  # three runners share this machine's cores
                   **{name: str(path) for name, path in self.files.items()})
        env.update({key: expand(str(value), self.context) for key, value in step_env.items()})
        return env

    # ---- the actions' documented effects
    def checkout(self, step, ref, merge_into=None):
        depth = int((step.get("with") or {}).get("fetch-depth", 1))
        self.workspace.mkdir(parents=True)
        git = ["git", "-C", str(self.workspace)]
        url = f"file://{self.origin}"
        run([*git, "init", "-q"], self.root)
        run([*git, "remote", "add", "origin", url], self.root)
        if depth == 0:
            run([*git, "fetch", "-q", "--prune", "origin", "+refs/heads/*:refs/remotes/origin/*"],
                self.root)
        else:
            run([*git, "fetch", "-q", "--no-tags", f"--depth={depth}", "origin",
                 f"+refs/heads/{ref}:refs/remotes/origin/{ref}"], self.root)
        if merge_into:  # refs/pull/N/merge: GitHub's merge commit of the head into the base
            run([*git, "checkout", "-q", "--detach", f"origin/{merge_into}"], self.root)
            run([*git, "-c", "user.name=GitHub", "-c", "user.email=noreply@github.com", "merge",
                 "-q", "--no-ff", f"origin/{ref}", "-m", f"Merge {ref} into {merge_into}"],
                self.root)
        else:
            run([*git, "checkout", "-q", "-B", ref, f"refs/remotes/origin/{ref}"], self.root)
        venv_view(self.workspace)

    def run_job(self, job, effects):
        """Each step of `job`: an action by its effect in `effects` (or a failure), a run
        step as written. Returns the outputs of the steps with an id."""
        for step in job["steps"]:
            name = step["name"]
            if "uses" in step:
                action = step["uses"].split("@")[0]
                assert action in effects, f"no effect for the action {action} ({name})"
                self.replaced.append(f"{name} ({action})")
                effects[action](step)
                continue
            if name == SKIPPED:
                self.replaced.append(f"{name} (not rehearsed: GitHub's API)")
                continue
            script = self.root / "step.sh"
            script.write_text(expand(step["run"], self.context))
            self.files["GITHUB_OUTPUT"].write_text("")
            # A hosted runner's default shell: bash -e {0}
            done = subprocess.run(["bash", "-e", str(script)], cwd=self.workspace,
                                  env=self.env(step.get("env") or {}), capture_output=True,
                                  text=True, timeout=STEP_TIMEOUT_S)
            assert done.returncode == 0, (f"step '{name}' failed ({done.returncode}):\n"
                                          f"{done.stdout}\n{done.stderr}")
            self.ran |= stages_run(done.stdout + done.stderr)
            if "id" in step:
                self.outputs[step["id"]] = dict(
                    line.split("=", 1) for line in
                    self.files["GITHUB_OUTPUT"].read_text().splitlines() if "=" in line)
        return self.outputs


def effects_for(runner, ref, cache_from=None, merge_into=None):
    def upload(step):
        assert (runner.workspace / step["with"]["path"]).exists(), step["with"]["path"]

    def restore_cache(step):
        assert step["with"]["path"] == ".dvc/cache"
        if cache_from is not None:
            shutil.copytree(cache_from, runner.workspace / ".dvc" / "cache", symlinks=True)

    return {"actions/checkout": lambda step: runner.checkout(step, ref, merge_into),
            "actions/setup-python": lambda step: None,  # the test's Python is first on PATH
            "actions/cache": restore_cache,
            "actions/upload-artifact": upload}


@pytest.fixture(scope="module")
def origin(tmp_path_factory, reproduced, s3_server):
    """The reproduced tiny project, on MNIST alone (half the stages for each point to run),
    pushed to a bare origin, its data and models to S3 with the S3 remote committed as the
    default, as sweep.yml expects."""
    root = tmp_path_factory.mktemp("rehearsal")
    project = mnist_only_copy(reproduced, root / "project")
    bare = root / "origin.git"
    run(["git", "init", "-q", "--bare", str(bare)], root)
    run(["git", "remote", "add", "origin", str(bare)], project)
    add_s3_remote(project, s3_server, "rehearsal")
    run(["git", "add", ".dvc/config"], project)
    run(["git", "commit", "-qm", "DVC remote: S3"], project)
    branch = run(["git", "branch", "--show-current"], project).strip()
    run(["git", "push", "-q", "origin", branch], project)
    done = subprocess.run([sys.executable, "-m", "dvc", "push"], cwd=project,
                          env=s3_server.env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return project, bare, branch


def study(cwd, *options):
    """What `python -m scripts.ablation` with the tiny study's options printed on stdout."""
    done = subprocess.run([sys.executable, "-m", "scripts.ablation", *STUDY, *options], cwd=cwd,
                          env=command_env(), capture_output=True, text=True,
                          timeout=STEP_TIMEOUT_S)
    assert done.returncode == 0, f"scripts.ablation {options} failed:\n{done.stdout}{done.stderr}"
    return done.stdout


def test_sweep_workflow_fans_out_a_label_budget_study_and_collects_its_tables(
        origin, s3_server, tmp_path):
    project, bare, branch = origin
    jobs = workflow("sweep.yml")["jobs"]
    grid_input = study(project, "--print-grid")
    secrets = {"secrets.AWS_ACCESS_KEY_ID": s3_server.access_key,
               "secrets.AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
               "github.token": "ghs_not-a-token", "inputs.grid": grid_input}
    no_aws = s3_server.env({})  # only the isolation from ~/.aws: the keys come from secrets
    isolation = {k: v for k, v in no_aws.items() if k in ("AWS_CONFIG_FILE",
                                                          "AWS_SHARED_CREDENTIALS_FILE")}
    started = time.monotonic()

    grid = Runner(tmp_path / "grid", bare, secrets, isolation)
    points = json.loads(grid.run_job(jobs["grid"], effects_for(grid, branch))["points"]
                        ["points"])
    assert points == json.loads(grid_input) and len(points) == 2
    grid_s = time.monotonic() - started

    def run_point(i, point):
        runner = Runner(tmp_path / f"run{i}", bare,
                        secrets | {"toJSON(matrix.point)": json.dumps(point, indent=2)},
                        isolation)
        runner.run_job(jobs["run"], effects_for(runner, branch))
        return runner
    # The same study by the local queue, in a copy of the project, beside the runners.
    local = shutil.copytree(project, tmp_path / "local", symlinks=True)
    with concurrent.futures.ThreadPoolExecutor(len(points) + 1) as pool:
        local_study = pool.submit(study, local, "--out", "study")
        runners = list(pool.map(run_point, range(len(points)), points))
        local_study.result()
    run_s = time.monotonic() - started - grid_s

    for runner in runners:  # the stages the point changes; the rest pulled from S3
        assert runner.ran == {"check_params"} | recipe_stages(
            ("finetune_classifier", "evaluate"), recipes=["tuned"], datasets=["mnist"]), \
            runner.ran
    refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps/"], bare).split()
    assert len(refs) == len(points), refs

    summary = Runner(tmp_path / "summary", bare, secrets | {"needs.run.result": "success"},
                     isolation)
    summary.run_job(jobs["summary"], effects_for(summary, branch))
    table = (summary.workspace / "sweep-summary" / "summary.csv").read_text()
    published = summary.files["GITHUB_STEP_SUMMARY"].read_text()
    experiments = {row["experiment"] for row in csv.DictReader(io.StringIO(table))}
    assert len(experiments) == len(points) + 1, table  # and the baseline
    for name in experiments:
        assert name in published, (name, published)
    assert "Some grid points failed" not in published
    summary_s = time.monotonic() - started - grid_s - run_s

    # The study's tables from the pulled experiments (DVC's random names) equal the local
    # queue's (the study's names, one dataset a run): every run once, the same numbers.
    study(summary.workspace, "--collect-only", "--out", "study")
    for name in TABLES:
        assert (summary.workspace / "study" / name).read_text() \
            == (local / "study" / name).read_text(), name
    rows = list(csv.DictReader((local / "study" / "ablation.csv").open()))
    assert len(rows) == len(points) and all(float(row["test_accuracy"]) > 0 for row in rows)
    print(f"\nsweep rehearsal: grid {grid_s:.0f} s, {len(points)} points in parallel and the "
          f"local study {run_s:.0f} s, summary {summary_s:.0f} s, collect "
          f"{time.monotonic() - started - grid_s - run_s - summary_s:.0f} s; replaced: "
          f"{sorted(set(grid.replaced + runners[0].replaced + summary.replaced))}")


def test_pr_report_workflow_reports_a_branch_that_changes_one_lr(origin, tmp_path):
    project, bare, branch = origin
    work = tmp_path / "author"
    run(["git", "clone", "-q", "-b", branch, str(bare), str(work)], tmp_path)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["lecture"]["finetune_classifier"]["lr"] = PR_LR
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "checkout", "-q", "-b", "lr"], work)
    run(["git", "commit", "-qam", f"lecture classifier lr {PR_LR}"], work)
    run(["git", "push", "-q", "origin", "lr"], work)

    job = workflow("pr-report.yml")["jobs"]["report"]
    context = {"github.token": "ghs_not-a-token", "github.base_ref": branch,
               "github.server_url": "https://github.com",
               "github.repository": "example/stacked-autoencoders", "github.run_id": "4242",
               "github.event.pull_request.number": "7", "runner.os": "Linux",
               "hashFiles('dvc.lock')": "0" * 64}
    runner = Runner(tmp_path / "report", bare, context, {})
    runner.run_job(job, effects_for(runner, "lr", cache_from=project / ".dvc" / "cache",
                                    merge_into=branch))
    assert f"{SKIPPED} (not rehearsed: GitHub's API)" in runner.replaced
    report = (runner.workspace / "report" / "report.md").read_text()
    assert report.startswith("<!-- stacked-autoencoders report -->"), report[:200]
    assert f"| `{LR}` | `0.1` | `{PR_LR}` |" in report, report
    assert "## MNIST, lecture" in report and "- **MNIST, lecture**: test accuracy" in report
    assert "Fashion-MNIST" not in report  # the branch runs on MNIST alone, as its base
