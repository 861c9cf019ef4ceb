"""Run DVC's experiment queue to the end with J workers, and return when no task is left:

    python -m scripts.run_queue -j 2 [--timeout SECONDS]

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

Nothing here waits without end (issue 21). Every dvc command has a timeout; a read that
fails or hangs is tried again (`dvc exp show` has hung for good on a blob of an
experiment's temporary repository that DVC removed meanwhile), and a `queue status` that
does not answer is one poll without news. The run gives up, with one line saying what to
do, when tasks wait with no experiment process behind them (a task Running whose worker
was killed, which DVC never marks done; tasks Queued that no worker starts), when `queue
status` stops answering, or past --timeout.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

POLL_S = 3
ANSWER_TIMEOUT_S = 60  # for the first worker to answer
IDLE_POLLS_BEFORE_RESTART = 2  # tasks queued and no worker, this many polls in a row
# Tasks Queued or Running with no experiment process alive this long are stalled: a
# Running one lost its worker, Queued ones have no worker that can start. A worker sets up
# a run's temporary copy before its process starts and collects the results after it
# ends: seconds each here, so minutes are a wide margin.
STALL_S = 300
SILENT_S = 600  # `queue status` failing or hanging this long: give up
READ_TIMEOUT_S = 60  # queue status, exp list: a second or two; exp show -A busy: 5-10 s
READ_TRIES = 3
RETRY_PAUSE_S = 5  # before a read's next try: time for DVC to finish removing a temp copy
WRITE_TIMEOUT_S = 600  # exp run --queue (the workspace into a stash commit), exp remove
START_TIMEOUT_S = 120  # `dvc queue start` spawns the workers and returns
STATES = ("Queued", "Running", "Failed", "Success")
RUNS = Path(".dvc", "tmp", "exps", "run")  # DVC's record of each run's process, in the repo
RESUME = "re-run the same command to resume"


def call(args, timeout_s, env=None, cwd=None):
    """`python -m dvc ARGS` run to its end; raises subprocess.TimeoutExpired past timeout_s
    (the command is then killed)."""
    return subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=timeout_s)


def dvc(*args, env=None, timeout_s=WRITE_TIMEOUT_S, hint=RESUME):
    """What a dvc command printed; one that fails or times out stops the script with what
    it printed, or one line with `hint` (what to do)."""
    try:
        done = call(args, timeout_s, env)
    except subprocess.TimeoutExpired:
        sys.exit(f"error: `dvc {' '.join(args)}` did not finish in {timeout_s} s; {hint}")
    if done.returncode != 0:
        sys.exit(f"error: dvc {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def ask(*args, timeout_s=READ_TIMEOUT_S, cwd=None):
    """(what a dvc read printed, None) or (None, why it gave no answer)."""
    try:
        done = call(args, timeout_s, cwd=cwd)
    except subprocess.TimeoutExpired:
        return None, f"no answer in {timeout_s} s"
    if done.returncode != 0:
        return None, (done.stderr.strip().splitlines() or ["failed"])[-1]
    return done.stdout, None


def read(*args, timeout_s=READ_TIMEOUT_S, tries=READ_TRIES, cwd=None):
    """What a dvc read printed, tried up to `tries` times: a read is safe to repeat, and
    DVC's can fail or hang while an experiment's temporary copy is being removed."""
    for attempt in range(1, tries + 1):
        text, why = ask(*args, timeout_s=timeout_s, cwd=cwd)
        if text is not None:
            return text
        print(f"dvc {args[0]} {args[1]}: {why} (try {attempt} of {tries})", file=sys.stderr)
        if attempt < tries:
            time.sleep(RETRY_PAUSE_S)
    sys.exit(f"error: `dvc {' '.join(args)}` gave no answer in {tries} tries ({why}); "
             f"{RESUME}")


def start_workers(count, env=None):
    """Workers numbered 1 to `count` that are not running; they inherit `env`."""
    command = [sys.executable, "-m", "dvc", "queue", "start", "-j", str(count)]
    try:
        started = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, env=env, timeout=START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        started = None
    if started is None or started.returncode != 0:
        sys.exit(f"error: `dvc queue start -j {count}` failed or hung; run it yourself to "
                 f"see why, then {RESUME}")


def parse_status(text):
    """([(name, state)] of each task, number of workers that answered) from what
    `dvc queue status` printed."""
    tasks, workers = [], 0
    for line in text.splitlines():
        words = line.split()
        if line.startswith("Worker status:"):  # "Worker status: 1 active, 2 idle"
            workers = int(words[2]) + int(words[4])
        elif len(words) >= 3 and words[-1] in STATES:
            tasks.append((words[1], words[-1]))
    return tasks, workers


def status():
    """parse_status of `dvc queue status`, or None when it failed or hung: no news."""
    text, _ = ask("queue", "status")
    return None if text is None else parse_status(text)


def pending(states):
    return any(state in ("Queued", "Running") for state in states)


def summary(states, workers):
    """'2 queued, 1 running; 1 answering' (workers), the line printed when it changes."""
    counts = ", ".join(f"{states.count(state)} {state.lower()}" for state in STATES
                       if state in states)
    return f"{counts or 'no tasks'}; {workers} answering"


def unfinished_runs():
    """{task id (DVC's stash rev): whether its process is alive} of each experiment process
    that DVC started and recorded no return code for."""
    cwd = Path.cwd()
    root = next((d for d in (cwd, *cwd.parents) if (d / ".dvc").is_dir()), cwd)
    found = {}
    for record in (root / RUNS).glob("*/*.json"):
        try:
            info = json.loads(record.read_text())
        except (OSError, ValueError):  # gone meanwhile, half-written
            continue
        if isinstance(info, dict) and info.get("returncode") is None:
            found[record.parent.name] = pid_alive(info.get("pid"))
    return found


def pid_alive(pid):
    """Whether process `pid` exists and is not a zombie: a killed worker's children are
    reparented, and an init that does not reap (a container's) leaves them as zombies."""
    try:
        os.kill(pid, 0)
    except (OSError, OverflowError, TypeError):  # gone, not ours, or no pid recorded
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc (macOS): kill's answer stands
        return True


def runs_alive():
    """Whether any experiment process that DVC started is still alive (its record has no
    return code, and its pid exists). A worker that lost its route runs its task without
    answering; a killed worker leaves its task Running with no process at all."""
    return any(unfinished_runs().values())


def orphans(text):
    """Names of the tasks that `dvc queue status` (its text) shows Running whose experiment
    process died with no return code recorded. The worker that would record it died with it
    (killed, or its machine stopped), so DVC shows the task Running for good."""
    dead = [rev for rev, alive in unfinished_runs().items() if not alive]
    return {words[1] for words in map(str.split, text.splitlines())
            if len(words) >= 3 and words[-1] == "Running"
            and any(rev.startswith(words[0]) for rev in dead)}


def give_up(message):
    sys.exit(f"error: queue: {message}")


class Watch:
    """What the queue last said, printed when it changes, and how long it has said it."""

    def __init__(self, budget_s):
        self.began = time.monotonic()
        self.deadline = None if budget_s is None else self.began + budget_s
        self.tasks, self.workers, self.line = [], 0, None
        self.silent_since = self.stalled_since = None

    @property
    def states(self):
        return [state for _, state in self.tasks]

    def look(self):
        """Poll once; False when `queue status` gave no answer (keep polling)."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            give_up(f"not done within --timeout {self.deadline - self.began:.0f} s "
                    f"({self.line or 'no answer yet'}); the workers go on: {RESUME} and "
                    "wait for the rest, or stop them with `dvc queue stop --kill`")
        answer, now = status(), time.monotonic()
        if answer is None:
            if self.silent_since is None:
                self.silent_since = now
            if now - self.silent_since >= SILENT_S:
                give_up(f"`dvc queue status` gave no answer for {SILENT_S} s; run it "
                        f"yourself to see why, then {RESUME}")
            return False
        self.silent_since = None
        self.tasks, self.workers = answer
        if (line := summary(self.states, self.workers)) != self.line:
            self.line = line
            print(f"queue: {time.monotonic() - self.began:4.0f} s  {line}", flush=True)
        return True

    def check_stall(self, stall_s):
        """Give up when tasks have waited stall_s with no experiment process alive."""
        if not pending(self.states) or runs_alive():
            self.stalled_since = None
            return
        now = time.monotonic()
        if self.stalled_since is None:
            self.stalled_since = now
        if now - self.stalled_since < stall_s:
            return
        running = " ".join(name for name, state in self.tasks if state == "Running")
        if running:
            give_up(f"{running}: Running with no process for {stall_s:.0f} s (its worker "
                    f"was stopped or killed); run `dvc queue kill {running}` (it is then "
                    f"Failed) or `dvc queue remove --all`, then {RESUME}")
        give_up(f"{self.states.count('Queued')} tasks Queued and none started in "
                f"{stall_s:.0f} s (workers need `dvc` on their PATH: activate the venv; "
                "their logs: .dvc/tmp/exps/celery/*.out); `dvc queue remove --queued` drops "
                f"them; {RESUME}")


def run(jobs, env=None, poll_s=POLL_S, answer_timeout_s=ANSWER_TIMEOUT_S, budget_s=None,
        stall_s=STALL_S):
    """Run every queued task, `jobs` at a time, in workers with environment `env` (None:
    this process's), for at most budget_s seconds (None: no limit); the task states at
    the end."""
    watch = Watch(budget_s)
    start_workers(1, env)
    deadline = time.monotonic() + answer_timeout_s
    while (not watch.look() or pending(watch.states) and not watch.workers) \
            and time.monotonic() < deadline:
        time.sleep(1)
    if jobs > 1 and (watch.line is None or pending(watch.states)):
        start_workers(jobs, env)
    idle_polls = 0
    while watch.line is None or pending(watch.states):
        time.sleep(poll_s)
        if not watch.look():
            continue
        idle = "Queued" in watch.states and not watch.workers
        idle_polls = idle_polls + 1 if idle else 0
        if idle_polls >= IDLE_POLLS_BEFORE_RESTART:
            start_workers(jobs, env)
            idle_polls = 0
        watch.check_stall(stall_s)
    return watch.states


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-j", "--jobs", type=int, default=1, help="workers (default 1)")
    parser.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="give up after this long (default: no limit)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        sys.exit(f"error: -j {args.jobs}: the number of workers must be 1 or more")
    states = run(args.jobs, budget_s=args.timeout)
    print(f"queue: {states.count('Success')} succeeded, {states.count('Failed')} failed")


if __name__ == "__main__":
    main()
