"""Run DVC's experiment queue to the end with J workers, and return when no task is left:

    python -m scripts.run_queue -j 2

What `dvc exp run --run-all -j J` would do, without its hang. DVC's workers talk through
files (kombu's filesystem broker). The file that routes broadcast messages to the workers
is created by whichever worker finds it missing, and the check and the creation are two
steps: two workers that start together can both create it, the second erasing the first's
route. That worker runs tasks but never hears the shutdown that ends it, so `--run-all`,
which waits for its workers to exit, never returns. It hung this project's test suite: a
sweep's two experiments had succeeded at once, and a quarter of an hour later one worker
still waited. A worker whose own question goes unanswered the same way stops early, with
tasks still queued (DVC users report workers that stop early; not seen here).

So: start one worker, and the others once it answers (the file then exists, and later
writers lock it); wait for the tasks, not the workers, polling `dvc queue status`; start
workers again when tasks are queued and none answers. `dvc queue start` is run with its
output to /dev/null: a worker inherits it, and a caller that captured it would wait for
the worker to exit.
"""
import argparse
import re
import subprocess
import sys
import time

POLL_S = 3
ANSWER_TIMEOUT_S = 60  # for the first worker to answer
IDLE_POLLS_BEFORE_RESTART = 2  # tasks queued and no worker, this many polls in a row
STATES = ("Queued", "Running", "Failed", "Success")
TASK_STATE = re.compile(rf"\b({'|'.join(STATES)})\s*$", re.MULTILINE)
WORKERS = re.compile(r"^Worker status: (\d+) active, (\d+) idle", re.MULTILINE)


def dvc(*args, env=None):
    """What a dvc command printed; a failed one stops the script with its output."""
    done = subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True,
                          text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"error: dvc {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def start_workers(count, env=None):
    """Workers numbered 1 to `count` that are not running; they inherit `env`."""
    subprocess.run([sys.executable, "-m", "dvc", "queue", "start", "-j", str(count)],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env=env, check=True)


def status():
    """(task states, number of workers that answered) from `dvc queue status`."""
    text = dvc("queue", "status")
    workers = WORKERS.search(text)
    return TASK_STATE.findall(text), sum(map(int, workers.groups())) if workers else 0


def pending(states):
    return any(state in ("Queued", "Running") for state in states)


def summary(states, workers):
    """'2 queued, 1 running; 1 answering' (workers), the line printed when it changes."""
    counts = ", ".join(f"{states.count(state)} {state.lower()}" for state in STATES
                       if state in states)
    return f"{counts or 'no tasks'}; {workers} answering"


def run(jobs, env=None, poll_s=POLL_S, answer_timeout_s=ANSWER_TIMEOUT_S):
    """Run every queued task, `jobs` at a time, in workers with environment `env` (None:
    this process's); the task states at the end."""
    began, last = time.monotonic(), None

    def look():
        nonlocal last
        states, workers = status()
        if (line := summary(states, workers)) != last:
            last = line
            print(f"queue: {time.monotonic() - began:4.0f} s  {last}", flush=True)
        return states, workers

    start_workers(1, env)
    deadline = time.monotonic() + answer_timeout_s
    states, workers = look()
    while pending(states) and not workers and time.monotonic() < deadline:
        time.sleep(1)
        states, workers = look()
    if jobs > 1 and pending(states):
        start_workers(jobs, env)
    idle_polls = 0
    while pending(states):
        time.sleep(poll_s)
        states, workers = look()
        idle_polls = idle_polls + 1 if "Queued" in states and not workers else 0
        if idle_polls >= IDLE_POLLS_BEFORE_RESTART:
            start_workers(jobs, env)
            idle_polls = 0
    return states


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-j", "--jobs", type=int, default=1, help="workers (default 1)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        sys.exit(f"error: -j {args.jobs}: the number of workers must be 1 or more")
    states = run(args.jobs)
    print(f"queue: {states.count('Success')} succeeded, {states.count('Failed')} failed")


if __name__ == "__main__":
    main()
