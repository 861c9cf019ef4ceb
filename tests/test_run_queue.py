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


def test_status_reads_each_tasks_name_and_state_and_counts_the_workers(monkeypatch):
    monkeypatch.setattr(run_queue, "ask", lambda *args, **kwargs: (STATUS, None))
    assert run_queue.status() == ([("chirk-fool", "Success"), ("gluey-dirk", "Failed")], 3)


def test_a_status_that_fails_or_hangs_is_no_answer(monkeypatch):
    monkeypatch.setattr(run_queue, "ask", lambda *args, **kwargs: (None, "no answer in 60 s"))
    assert run_queue.status() is None


class Clock:
    """time.monotonic and time.sleep for a test: sleeping moves the clock, nothing waits."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def play_back(monkeypatch, statuses, alive=False):
    """status() answers `statuses` in turn, the last one again and again (each a pair of
    task states, named t0, t1, ..., and answering workers, or None: no answer); a run
    process is alive when `alive`. The worker counts start_workers was called with."""
    answers, started, clock = list(statuses), [], Clock()

    def status():
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if answer is None:
            return None
        states, workers = answer
        return [(f"t{i}", state) for i, state in enumerate(states)], workers

    monkeypatch.setattr(run_queue, "status", status)
    monkeypatch.setattr(run_queue, "start_workers", lambda count, env=None: started.append(count))
    monkeypatch.setattr(run_queue, "runs_alive", lambda: alive)
    monkeypatch.setattr(run_queue.time, "monotonic", clock.monotonic)
    monkeypatch.setattr(run_queue.time, "sleep", clock.sleep)
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


def test_a_running_task_with_no_worker_answering_is_waited_for_while_its_process_lives(
        monkeypatch):
    """A worker that lost its route runs its task but never answers: no second copy, and
    no giving up, however long the run takes."""
    started = play_back(monkeypatch, [(["Running"], 1)] + [(["Running"], 0)] * 500
                        + [(["Success"], 0)], alive=True)
    assert run_queue.run(1) == ["Success"]
    assert started == [1]


def test_a_running_task_with_no_process_left_ends_in_one_line_saying_what_to_do(monkeypatch):
    """Its worker was killed: DVC never marks the task done, so waiting would never end."""
    started = play_back(monkeypatch, [(["Success", "Running"], 1), (["Success", "Running"], 0)])
    with pytest.raises(SystemExit) as stopped:
        run_queue.run(1, stall_s=300)
    assert str(stopped.value) == (
        "error: queue: t1: Running with no process for 300 s (its worker was stopped or "
        "killed); run `dvc queue kill t1` (it is then Failed) or `dvc queue remove --all`, "
        "then re-run the same command to resume")
    assert started == [1]
    assert run_queue.time.monotonic() < 400  # about stall_s after the last process was seen


def test_tasks_queued_that_no_worker_starts_end_in_one_line(monkeypatch):
    """Workers that cannot start (no `dvc` on their PATH) are started again, then given up."""
    started = play_back(monkeypatch, [(["Queued"], 0)])
    with pytest.raises(SystemExit, match=r"^error: queue: 1 tasks Queued and none started in "
                       r"300 s \(workers need `dvc` on their PATH"):
        run_queue.run(1, stall_s=300)
    assert len(started) > 2 and set(started) == {1}


def test_a_status_that_gives_no_answer_is_polled_again_not_a_failure(monkeypatch):
    started = play_back(monkeypatch, [None, (["Running"], 1), None, None, (["Success"], 0)],
                        alive=True)
    assert run_queue.run(1) == ["Success"]
    assert started == [1]


def test_a_status_that_never_answers_ends_in_one_line(monkeypatch):
    play_back(monkeypatch, [(["Running"], 1), None], alive=True)
    with pytest.raises(SystemExit, match=r"^error: queue: `dvc queue status` gave no answer "
                       rf"for {run_queue.SILENT_S} s; run it yourself"):
        run_queue.run(1)


def test_the_run_ends_at_its_budget_with_the_queue_left_to_a_re_run(monkeypatch):
    play_back(monkeypatch, [(["Running", "Queued"], 1)], alive=True)
    with pytest.raises(SystemExit, match=r"^error: queue: not done within --timeout 100 s "
                       r"\(1 queued, 1 running; 1 answering\); the workers go on: re-run"):
        run_queue.run(1, budget_s=100)
    assert run_queue.time.monotonic() < 100 + run_queue.POLL_S + 1


def test_a_first_worker_that_never_answers_does_not_stop_the_others(monkeypatch):
    started = play_back(monkeypatch, [(["Queued", "Queued"], 0)] * 61 + [
        (["Running", "Running"], 2), (["Success", "Success"], 0)])
    assert run_queue.run(2, answer_timeout_s=60) == ["Success", "Success"]
    assert started[:2] == [1, 2]


def test_jobs_below_one_are_refused():
    with pytest.raises(SystemExit, match=r"^error: -j 0: the number of workers must be 1"):
        run_queue.main(["-j", "0"])
