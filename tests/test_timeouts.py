"""No subprocess without a bound (issue 21): every subprocess.run/call/check_call/
check_output in scripts/, tests/ and benchmarks/ names a timeout, a DVC read that times out
is tried again, a run that times out ends in one line, and the queue's poller takes a hung
`dvc queue status` for no news. subprocess is played back here: no real DVC."""
import ast
import os
import subprocess
import pytest

from scripts import run_queue
from tests.conftest import ROOT

CHECKED = ("scripts", "tests", "benchmarks")
BLOCKING = {"run", "call", "check_call", "check_output"}


def unbounded_calls(source):
    """Line numbers of subprocess.<run|call|check_call|check_output>(...) calls with neither
    a timeout keyword nor **kwargs (which may carry one)."""
    return [node.lineno for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "subprocess"
            and node.func.attr in BLOCKING
            and not any(k.arg in ("timeout", None) for k in node.keywords)]


def test_every_subprocess_call_has_a_timeout():
    found = [f"{path.relative_to(ROOT)}:{line}"
             for folder in CHECKED for path in sorted((ROOT / folder).rglob("*.py"))
             for line in unbounded_calls(path.read_text())]
    assert not found, f"subprocess calls without timeout=: {found}"


def test_the_scan_finds_a_call_without_a_timeout():
    assert unbounded_calls("import subprocess\nsubprocess.run(['true'])\n"
                           "subprocess.check_output(['true'], timeout=5)\n"
                           "subprocess.call(['true'], **options)\n") == [2]


def fake_dvc(monkeypatch, *answers):
    """subprocess.run answers `answers` in turn: an exception to raise, or (returncode,
    stdout). Returns the calls' (args, timeout)."""
    answers, calls = list(answers), []

    def fake_run(command, timeout=None, **kwargs):
        calls.append((command[3:], timeout))
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return subprocess.CompletedProcess(command, answer[0], answer[1], "boom\n")

    monkeypatch.setattr(run_queue.subprocess, "run", fake_run)
    monkeypatch.setattr(run_queue.time, "sleep", lambda seconds: None)
    return calls


HUNG = subprocess.TimeoutExpired(["dvc"], run_queue.READ_TIMEOUT_S)


def test_a_read_that_times_out_or_fails_is_tried_again(monkeypatch):
    calls = fake_dvc(monkeypatch, HUNG, (1, ""), (0, "[]"))
    assert run_queue.read("exp", "show", "--json") == "[]"
    assert calls == [(["exp", "show", "--json"], run_queue.READ_TIMEOUT_S)] * 3


def test_a_read_that_never_answers_ends_in_one_line(monkeypatch):
    fake_dvc(monkeypatch, HUNG, HUNG, HUNG)
    with pytest.raises(SystemExit, match=r"^error: `dvc exp list -A` gave no answer in 3 "
                       r"tries \(no answer in 60 s\); re-run the same command to resume$"):
        run_queue.read("exp", "list", "-A")


def test_a_run_that_times_out_is_not_repeated_and_says_what_to_do(monkeypatch):
    calls = fake_dvc(monkeypatch, subprocess.TimeoutExpired(["dvc"], 600))
    with pytest.raises(SystemExit, match=r"^error: `dvc exp run --queue -n a` did not finish "
                       r"in 600 s; see whether a is queued$"):
        run_queue.dvc("exp", "run", "--queue", "-n", "a", hint="see whether a is queued")
    assert len(calls) == 1


def test_the_poller_takes_a_hung_status_for_no_news_and_polls_again(monkeypatch):
    done = "Task  Name  Created  Status\nabc  a  01:01 PM  Success\n\n" \
           "Worker status: 0 active, 1 idle\n"
    calls = fake_dvc(monkeypatch, (0, ""), HUNG, (1, ""), HUNG, (0, done))
    monkeypatch.setattr(run_queue, "runs_alive", lambda: False)
    assert run_queue.run(1) == ["Success"]
    assert [args[:2] for args, _ in calls] == [["queue", "start"]] + [["queue", "status"]] * 4
    assert all(timeout for _, timeout in calls)


def test_no_process_is_alive_where_dvc_recorded_none(tmp_path, monkeypatch):
    """runs_alive reads DVC's record of each experiment process (pid, returncode)."""
    monkeypatch.chdir(tmp_path)
    records = tmp_path / ".dvc" / "tmp" / "exps" / "run"
    (records / "a").mkdir(parents=True)
    (records / "a" / "a.json").write_text('{"pid": 999999999, "returncode": null}')
    (records / "b").mkdir()
    (records / "b" / "b.json").write_text(f'{{"pid": {os.getpid()}, "returncode": 0}}')
    assert not run_queue.runs_alive()  # a dead pid, and one that ended
    (records / "b" / "b.json").write_text(f'{{"pid": {os.getpid()}, "returncode": null}}')
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")  # found from a subfolder of the repository too
    assert run_queue.runs_alive()


def test_workers_that_do_not_start_end_in_one_line(monkeypatch):
    fake_dvc(monkeypatch, subprocess.TimeoutExpired(["dvc"], run_queue.START_TIMEOUT_S))
    with pytest.raises(SystemExit, match=r"^error: `dvc queue start -j 1` failed or hung; "
                       r"run it yourself to see why, then re-run the same command"):
        run_queue.run(1)
