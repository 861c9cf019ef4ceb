"""scripts/run_queue.py: how it starts DVC's queue workers and when it returns. The real
queue runs under it in test_experiments, test_sweep and test_threads; here `dvc queue
status` is played back, to reach the cases a real run meets only now and then."""
import pytest

from scripts import run_queue

# What `dvc queue status` printed for a two-point sweep that had finished.
STATUS = """\
Task     Name        Created    Status
0acb3a6  chirk-fool  01:01 PM   Success
2a1e567  gluey-dirk  01:01 PM   Failed

Worker status: 1 active, 2 idle
"""


def test_status_reads_each_tasks_state_and_counts_the_workers(monkeypatch):
    monkeypatch.setattr(run_queue, "dvc", lambda *args, **kwargs: STATUS)
    assert run_queue.status() == (["Success", "Failed"], 3)


def play_back(monkeypatch, statuses):
    """status() answers `statuses` in turn; the worker counts start_workers was called with."""
    answers, started = iter(statuses), []
    monkeypatch.setattr(run_queue, "status", lambda: next(answers))
    monkeypatch.setattr(run_queue, "start_workers", lambda count, env=None: started.append(count))
    monkeypatch.setattr(run_queue.time, "sleep", lambda seconds: None)
    return started


def test_the_other_workers_start_once_the_first_answers(monkeypatch):
    started = play_back(monkeypatch, [
        (["Queued", "Queued"], 0),  # the first worker has not answered yet
        (["Running", "Queued"], 1),
        (["Running", "Running"], 2),
        (["Success", "Success"], 0)])
    assert run_queue.run(2) == ["Success", "Success"]
    assert started == [1, 2]


def test_tasks_queued_with_no_worker_start_the_workers_again(monkeypatch):
    """A worker that stopped early (its reply route lost) leaves tasks queued."""
    started = play_back(monkeypatch, [
        (["Running", "Queued", "Queued"], 1),
        (["Success", "Queued", "Queued"], 0),
        (["Success", "Queued", "Queued"], 0),  # the second poll in a row: start again
        (["Success", "Running", "Running"], 2),
        (["Success", "Success", "Failed"], 0)])
    assert run_queue.run(2) == ["Success", "Success", "Failed"]
    assert started == [1, 2, 2]


def test_a_running_task_with_no_worker_answering_is_waited_for(monkeypatch):
    """A worker that lost its route runs its task but never answers: no second copy."""
    started = play_back(monkeypatch, [
        (["Running"], 1),
        (["Running"], 0),
        (["Running"], 0),
        (["Running"], 0),
        (["Success"], 0)])
    assert run_queue.run(1) == ["Success"]
    assert started == [1]


def test_a_first_worker_that_never_answers_does_not_stop_the_others(monkeypatch):
    clock = iter(range(0, 1000, 30))
    monkeypatch.setattr(run_queue.time, "monotonic", lambda: next(clock))
    started = play_back(monkeypatch, [(["Queued", "Queued"], 0)] * 2 + [  # 60 s gone
        (["Running", "Running"], 2), (["Success", "Success"], 0)])
    assert run_queue.run(2, answer_timeout_s=60) == ["Success", "Success"]
    assert started == [1, 2]


def test_jobs_below_one_are_refused():
    with pytest.raises(SystemExit, match=r"^error: -j 0: the number of workers must be 1"):
        run_queue.main(["-j", "0"])
