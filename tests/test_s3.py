"""A real S3 store behind DVC (issue 23), SeaweedFS on 127.0.0.1 (tests/s3.py): data pushed
and pulled back through `python -m scripts.remote`; wrong credentials, no credentials, a
missing bucket, a server that is down and one that never answers each end in one line and
in bounded time; and the fast path of docs/sharing.md, a reproduced project pushed, a fresh
clone pulled, `dvc repro` with nothing to do and `git status` clean."""
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, command_env, copy_of, dvc, run
from tests.s3 import add_s3_remote, port_nobody_listens_on

BOUND_S = 120  # every failure below must be told well within this


def remote_command(path, env, *args, timeout=BOUND_S):
    """`python -m scripts.remote ARGS` in `path`: (exit status, stdout, stderr, seconds)."""
    start = time.monotonic()
    env = dict(env, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "scripts.remote", *args], cwd=path, env=env,
                          capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout, done.stderr, time.monotonic() - start


@pytest.fixture
def small_repo(tmp_path, s3_server, request):
    """A git and DVC repository with one tracked file, its S3 remote under a prefix of its own."""
    path = tmp_path / "repo"
    path.mkdir()
    run(["git", "init", "-q"], path)
    dvc("init", "-q", cwd=path)
    (path / "data.txt").write_text("a few bytes of data\n")
    dvc("add", "-q", "data.txt", cwd=path)
    add_s3_remote(path, s3_server, f"small/{request.node.name}")
    return path


def test_push_and_pull_through_the_remote(small_repo, s3_server):
    code, out, err, _ = remote_command(small_repo, s3_server.env(), "push")
    assert code == 0 and "1 file pushed" in out, out + err
    for cached in (small_repo / ".dvc" / "cache").rglob("*"):
        if cached.is_file():
            cached.unlink()
    (small_repo / "data.txt").unlink()
    code, out, err, _ = remote_command(small_repo, s3_server.env(), "pull")
    assert code == 0, out + err
    assert (small_repo / "data.txt").read_text() == "a few bytes of data\n"


def one_line_error(code, out, err, seconds):
    assert code == 1 and out == "", (code, out, err)
    assert "Traceback" not in err and err.startswith("error: ") and err.count("\n") == 1, err
    assert seconds < BOUND_S
    return err.strip()


@pytest.mark.parametrize("command", ["push", "pull"])
@pytest.mark.parametrize("case, expected", [
    ("wrong secret", "refused the credentials: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
    ("unknown key", "refused the credentials: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
    ("no credentials", "found no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
    ("missing bucket", "has no bucket 'no-such-bucket': create it, or correct the remote's url "
                       "(dvc remote modify storage url s3://BUCKET/PATH)"),
    ("server down", "does not answer: is its server up, and its endpointurl right?"),
])
def test_a_remote_that_cannot_serve_ends_in_one_line(small_repo, s3_server, command, case,
                                                     expected):
    env = s3_server.env()
    if command == "pull":  # something to fetch: not in the cache, not in the workspace
        remote_command(small_repo, env, "push")
        for cached in (small_repo / ".dvc" / "cache").rglob("*"):
            if cached.is_file():
                cached.unlink()
        (small_repo / "data.txt").unlink()
    if case == "wrong secret":
        env = s3_server.env(AWS_SECRET_ACCESS_KEY="not-the-secret")
    elif case == "unknown key":
        env = s3_server.env(AWS_ACCESS_KEY_ID="nobody")
    elif case == "no credentials":  # and no instance metadata service to ask either
        env = s3_server.env(AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None,
                            AWS_EC2_METADATA_DISABLED="true")
    elif case == "missing bucket":
        add_s3_remote(small_repo, s3_server, "x", bucket="no-such-bucket")
    elif case == "server down":
        dvc("remote", "modify", "storage", "endpointurl",
            f"http://127.0.0.1:{port_nobody_listens_on()}", cwd=small_repo)
    line = one_line_error(*remote_command(small_repo, env, command))
    assert line.startswith(f"error: `dvc {command}`: the DVC remote 'storage' (s3://"), line
    assert line.endswith(expected), line


def test_files_missing_on_the_remote_are_counted(small_repo, s3_server):
    (small_repo / "data.txt").unlink()  # in the cache only: never pushed
    for cached in (small_repo / ".dvc" / "cache").rglob("*"):
        if cached.is_file():
            cached.unlink()
    line = one_line_error(*remote_command(small_repo, s3_server.env(), "pull"))
    assert line.endswith("lacks 1 of the files to pull: push them from a clone that has them "
                         "(dvc push), or pull with --allow-missing and reproduce the rest "
                         "(dvc repro)"), line
    code, out, err, _ = remote_command(small_repo, s3_server.env(), "pull", "--allow-missing")
    assert code == 0, out + err


def test_a_server_that_never_answers_ends_at_the_timeout(small_repo, s3_server):
    with socket.socket() as silent:  # accepts connections (the kernel does) and says nothing
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        dvc("remote", "modify", "storage", "endpointurl",
            f"http://127.0.0.1:{silent.getsockname()[1]}", cwd=small_repo)
        line = one_line_error(*remote_command(small_repo, s3_server.env(), "push",
                                             "--timeout", "8"))
    assert line.startswith("error: `dvc push` got no answer from the DVC remote 'storage' "
                           "(s3://dvc/"), line
    assert line.endswith("in 8 s: is its server up and reachable? (--timeout SECONDS for a "
                         "longer transfer)"), line


def test_without_a_remote_if_configured_pulls_nothing_and_succeeds(small_repo, s3_server):
    dvc("remote", "remove", "storage", cwd=small_repo)
    code, out, err, _ = remote_command(small_repo, s3_server.env(), "pull", "--if-configured",
                                       "--allow-missing")
    assert (code, out, err) == (0, "no default DVC remote: nothing to pull (dvc remote add -d "
                                   "NAME URL adds one)\n", "")
    line = one_line_error(*remote_command(small_repo, s3_server.env(), "pull"))
    assert line == "error: no default DVC remote to pull: add one (dvc remote add -d NAME URL) " \
                   "or name one with -r"


def test_dvc_itself_fails_fast_on_a_server_that_is_down(small_repo, s3_server):
    """What plain `dvc push` prints (no scripts.remote): one ERROR line, status 255, no hang."""
    dvc("remote", "modify", "storage", "endpointurl",
        f"http://127.0.0.1:{port_nobody_listens_on()}", cwd=small_repo)
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "dvc", "push"], cwd=small_repo,
                          env=s3_server.env(command_env()), capture_output=True, text=True,
                          timeout=BOUND_S)
    assert done.returncode != 0 and time.monotonic() - start < BOUND_S
    errors = [line for line in (done.stdout + done.stderr).splitlines()
              if line.startswith("ERROR:")]
    assert len(errors) == 1 and "Could not connect to the endpoint URL" in errors[0], errors


# ------------------------------------------------------------------ the fast path

def timed(command, cwd, env):
    start = time.monotonic()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr, time.monotonic() - start


def test_a_fresh_clone_pulls_the_results_and_has_nothing_to_reproduce(reproduced, s3_server,
                                                                       tmp_path):
    """docs/sharing.md's fast path: push once, then every clone pulls instead of training."""
    env = s3_server.env(command_env())
    project = copy_of(reproduced, tmp_path / "project")
    run(["git", "init", "-q", "--bare", str(tmp_path / "origin.git")], tmp_path)
    run(["git", "remote", "add", "origin", str(tmp_path / "origin.git")], project)
    add_s3_remote(project, s3_server, "fast-path")
    run(["git", "add", ".dvc/config"], project)
    run(["git", "commit", "-qm", "DVC remote: S3"], project)
    branch = run(["git", "branch", "--show-current"], project).strip()
    run(["git", "push", "-q", "origin", branch], project)
    pushed, push_s = timed([sys.executable, "-m", "dvc", "push"], project, env)
    assert "pushed" in pushed, pushed

    clone = tmp_path / "clone"
    start = time.monotonic()
    run(["git", "clone", "-q", "-b", branch, str(tmp_path / "origin.git"), str(clone)], tmp_path)
    pulled, pull_s = timed([sys.executable, "-m", "dvc", "pull"], clone, env)
    output, repro_s = timed([sys.executable, "-m", "dvc", "repro"], clone, env)
    total_s = time.monotonic() - start
    assert "Data and pipelines are up to date." in output, output
    assert "Running stage" not in output, output
    assert run(["git", "status", "--porcelain"], clone) == ""
    status = run([sys.executable, "-m", "dvc", "status"], clone)
    assert "Data and pipelines are up to date." in status, status
    print(f"\nfast path: dvc push {push_s:.1f} s; clone + dvc pull + dvc repro {total_s:.1f} s "
          f"(pull {pull_s:.1f} s, repro {repro_s:.1f} s)")
