"""`dvc push` and `dvc pull` against the DVC remote, bounded, each failure in one line:

    python -m scripts.remote pull [--if-configured] [--timeout SECONDS] [DVC PULL OPTIONS]
    python -m scripts.remote push [--timeout SECONDS] [DVC PUSH OPTIONS]

DVC prints a remote's failures as an S3 client's message after "unexpected error" (and a
line of support links), exits 255, and can wait minutes on a server that accepts
connections and never answers (botocore's 60 s read timeout, tried again). Here the command
runs under --timeout, and wrong or missing credentials, a missing bucket, a server that is
down or silent and a missing plugin each end in one line that names the remote, its URL and
what to do. --if-configured: without a default remote (and no -r), say so and exit 0, so that
a pipeline command can try a pull first and train what is missing (`--allow-missing`).
"""
import argparse
import subprocess
import sys

DEFAULT_TIMEOUT_S = 3600  # a whole project's data and models on a slow link; a hang ends here
PROBE_TIMEOUT_S = 60  # one request: does the bucket exist?
MISSING = "Missing cache files:"  # DVC's warning, one `md5: ...` line per file after it
# Whether the bucket of the remote named argv[1] exists, through DVC's own filesystem of it
# (its credentials and endpoint): DVC reports a missing bucket on pull as missing files.
PROBE = """import sys
from dvc.repo import Repo
remote = Repo().cloud.get_remote(sys.argv[1])
print(remote.fs.exists(remote.path.split("/", 1)[0]))
"""

# (what DVC or the S3 client prints, what it means); the first that matches is said.
CAUSES = (
    (("Unable to locate credentials", "NoCredentialsError"),
     "found no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
    (("SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied", "Forbidden", "(403)",
      "InvalidToken", "ExpiredToken"),
     "refused the credentials: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
    (("NoSuchBucket", "bucket does not exist"),
     "has no bucket {bucket}: create it, or correct the remote's url "
     "(dvc remote modify {name} url s3://BUCKET/PATH)"),
    (("Could not connect to the endpoint", "Connect timeout", "Read timeout",
      "ConnectionRefused", "Connection refused", "EndpointConnectionError",
      "Name or service not known", "nodename nor servname"),
     "does not answer: is its server up, and its endpointurl right?"),
    (("is supported, but requires",),
     "needs DVC's plugin for its URL scheme: pip install 'dvc[{scheme}]'"),
)


def remote_of(name=None):
    """(name, url, endpoint) of the remote `name`, or of the default one; name None when
    there is none. DVC's own config reader: .dvc/config, config.local, global, system."""
    from dvc.config import Config  # here: `python -m scripts.remote -h` needs no DVC
    config = Config.from_cwd()
    name = name or config["core"].get("remote")
    if not name:
        return None, None, None
    remote = config["remote"].get(name)
    if remote is None:
        sys.exit(f"error: there is no DVC remote {name!r} (dvc remote list shows those there "
                 "are)")
    return name, remote.get("url", ""), remote.get("endpointurl")


def cause(output, name, url):
    """The one-line reason for DVC's failure `output`, or None when none is known."""
    bucket = url.split("://", 1)[-1].split("/", 1)[0]
    scheme = url.split("://", 1)[0] if "://" in url else "s3"
    for marks, reason in CAUSES:
        if any(mark in output for mark in marks):
            return reason.format(bucket=repr(bucket), name=name, scheme=scheme)
    return None


def bucket_exists(name, url):
    """True or False where a bucket-based remote (s3://, gs://, azure://) answers, else None."""
    if url.split("://", 1)[0] not in ("s3", "gs", "gcs", "azure", "az"):
        return None
    try:
        done = subprocess.run([sys.executable, "-c", PROBE, name], capture_output=True,
                              text=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None
    answer = done.stdout.strip().splitlines()[-1:] if done.returncode == 0 else []
    return {"True": True, "False": False}.get(answer[0]) if answer else None


def missing_files(output, name, url):
    """The one-line reason when DVC found files neither in the cache nor on the remote."""
    if MISSING not in output:
        return None
    count = sum(line.strip().startswith("md5:")
                for line in output.split(MISSING, 1)[1].splitlines())
    if bucket_exists(name, url) is False:
        return cause("NoSuchBucket", name, url)
    return (f"lacks {count} of the files to pull: push them from a clone that has them "
            "(dvc push), or pull with --allow-missing and reproduce the rest (dvc repro)")


def first_error(output):
    """DVC's first ERROR line, without its prefix; else its last non-empty line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("ERROR:"):
            return line[len("ERROR:"):].strip()
    return lines[-1] if lines else "no output"


def run(command, options, timeout_s, if_configured=False):
    """Run `dvc COMMAND OPTIONS` against the remote; exit with one line on failure."""
    chosen = None
    for i, option in enumerate(options):
        if option in ("-r", "--remote") and i + 1 < len(options):
            chosen = options[i + 1]
        elif option.startswith("--remote="):
            chosen = option.split("=", 1)[1]
    name, url, endpoint = remote_of(chosen)
    if name is None:
        if if_configured:
            print(f"no default DVC remote: nothing to {command} (dvc remote add -d NAME URL "
                  "adds one)")
            return
        sys.exit(f"error: no default DVC remote to {command}: add one (dvc remote add -d NAME "
                 "URL) or name one with -r")
    where = f"the DVC remote {name!r} ({url}" + (f" at {endpoint})" if endpoint else ")")
    args = [sys.executable, "-m", "dvc", command, *options]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        sys.exit(f"error: `dvc {command}` got no answer from {where} in {timeout_s} s: is its "
                 "server up and reachable? (--timeout SECONDS for a longer transfer)")
    output = done.stdout + done.stderr
    if done.returncode != 0:
        reason = cause(output, name, url) or missing_files(output, name, url)
        if reason:
            sys.exit(f"error: `dvc {command}`: {where} {reason}")
        sys.exit(f"error: `dvc {command}` to {where} failed: {first_error(output)}")
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m scripts.remote", description=__doc__.split("\n\n")[0],
        epilog="Other options go to dvc push or dvc pull as they are (e.g. --allow-missing, "
               "-r NAME, targets).")
    parser.add_argument("command", choices=("push", "pull"))
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds the whole transfer may take (default {DEFAULT_TIMEOUT_S})")
    parser.add_argument("--if-configured", action="store_true",
                        help="without a default remote, say so and exit 0")
    args, options = parser.parse_known_args(argv)
    timeout = int(args.timeout) if args.timeout == int(args.timeout) else args.timeout
    run(args.command, options, timeout, args.if_configured)


if __name__ == "__main__":
    main()
