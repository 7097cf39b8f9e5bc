"""Real S3-compatible servers on 127.0.0.1 for the tests: SeaweedFS and a one-node Ceph RGW.

Both are started from scratch in a temporary folder on free ports and stopped by PID; see
``../shared/notes/object-storage.md`` for the flags that matter. ``make test`` installs them
(SeaweedFS from PyPI with the test extras, Ceph from Debian via ``tests/install-services.sh``).
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

ACCESS_KEY = "NEWSARCHIVETESTKEY"
SECRET_KEY = "tEsT-s3cr3t-f0r-NEWSARCHIVE-never-print-me"  # tests grep every output for it
STARTUP_TIMEOUT = 60.0
SEAWEEDFS_MASTER = Path(__file__).parent / "fixtures" / "seaweedfs" / "master.toml"

S3_STORES = ("seaweedfs", pytest.param("ceph_rgw", marks=pytest.mark.second_store))
"""The fixtures of the two stores, as a test's parameters: `make test-fast` runs SeaweedFS only."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(ready: Callable[[], bool], what: str, timeout: float = STARTUP_TIMEOUT) -> None:
    """Poll ``ready`` until it returns true: servers give no other sign that they are up."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout:.0f} s")
        time.sleep(0.1)


@dataclass
class ObjectStore:
    """A running server: its endpoint, credentials, and the way to stop and restart it."""

    name: str
    endpoint: str
    folder: Path
    processes: list[subprocess.Popen]

    @property
    def env(self) -> dict[str, str]:
        """boto3's own configuration chain, as an operator sets it."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_MAX_ATTEMPTS": "2",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        }

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
            # the tests' own setup and reads: a store's transient 500 under load (SeaweedFS's
            # InternalError on a PutObject) is retried, as any client would, not a failed setup
            config=Config(retries={"max_attempts": 3, "mode": "standard"}),
        )

    def create_bucket(self, name: str | None = None) -> str:
        name = name or f"test-{uuid.uuid4().hex[:10]}"
        self.client().create_bucket(Bucket=name)
        return name

    def responds(self) -> bool:
        try:
            self.client().list_buckets()
        except Exception:
            return False
        return True

    def stop(self, grace: float = 20) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds (a restart needs the data flushed; at the end
        of the session nothing is kept, and SeaweedFS's volume server can take all 20 s to stop)."""
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes = []


class SeaweedFS(ObjectStore):
    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        super().__init__("seaweedfs", f"http://127.0.0.1:{self.port}", folder, [])
        self.start()

    def start(self) -> None:
        config = self.folder / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "test",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        if not hasattr(self, "ports"):  # the same ports on restart: data and endpoint survive
            self.ports = {
                name: free_port()
                for name in (
                    "master.port",
                    "master.port.grpc",
                    "volume.port",
                    "volume.port.grpc",
                    "filer.port",
                    "filer.port.grpc",
                    "s3.port.grpc",
                    "admin.port",
                    "admin.port.grpc",
                    "debug.port",
                )
            }
        weed = Path(sys.executable).parent / "weed"
        (self.folder / "data").mkdir(exist_ok=True)
        shutil.copy(SEAWEEDFS_MASTER, self.folder / "master.toml")  # read from its working folder
        command = [
            str(weed),
            "mini",
            f"-dir={self.folder / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.port={self.port}",
            f"-s3.config={config}",
            "-s3.allowDeleteBucketNotEmpty=false",
            "-s3.autoCreateBucket=false",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            # volumes are sparse files: a count that does not depend on the disk's free space
            "-master.volumeSizeLimitMB=64",
            "-volume.max=600",
            *(f"-{name}={port}" for name, port in self.ports.items()),
        ]
        with (self.folder / "weed.log").open("ab") as log:
            self.processes = [
                subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, cwd=self.folder, start_new_session=True
                )
            ]
        wait_until(self._writable, "SeaweedFS")

    def _writable(self) -> bool:
        """The first write can fail for a second after the S3 port opens."""
        if self.processes[0].poll() is not None:
            raise RuntimeError(f"weed exited; see {self.folder / 'weed.log'}")
        client = self.client()
        try:
            if "ready" not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
                client.create_bucket(Bucket="ready")
            client.put_object(Bucket="ready", Key="probe", Body=b"x")
        except Exception:
            return False
        return True


CEPH_CONF = """[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{mon_port}
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
paxos propose interval = 0.05
paxos min wait = 0.001
ms bind ipv6 = false
run dir = {folder}/run
log file = {folder}/log/$name.log
admin socket = {folder}/run/$name.asok
mon data = {folder}/mon/$id
osd data = {folder}/osd/$id
osd objectstore = memstore
memstore device bytes = 1073741824

[client.rgw.test]
rgw frontends = beast endpoint=127.0.0.1:{rgw_port} tcp_nodelay=1
ms mon client mode = crc secure
rgw data = {folder}/rgw
"""


class CephRGW(ObjectStore):
    """1 monitor, 1 memstore OSD and 1 RADOS Gateway; everything dies with the folder."""

    def __init__(self, folder: Path):
        for sub in ("run", "log", "mon", "osd/0", "rgw"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        port = free_port()
        super().__init__("ceph-rgw", f"http://127.0.0.1:{port}", folder, [])
        self.conf = folder / "ceph.conf"
        fsid, mon = str(uuid.uuid4()), free_port()
        self.conf.write_text(CEPH_CONF.format(fsid=fsid, mon_port=mon, rgw_port=port, folder=folder))
        conf = ["-c", str(self.conf)]
        self._run(
            "monmaptool",
            "--create",
            "--add",
            "a",
            f"v2:127.0.0.1:{mon}",
            "--fsid",
            fsid,
            str(folder / "monmap"),
        )
        self._run("ceph-mon", *conf, "--mkfs", "-i", "a", "--monmap", str(folder / "monmap"))
        self._daemon("ceph-mon", *conf, "-i", "a", "-f")
        osd_id = self._run("ceph", *conf, "osd", "create").strip()
        self._run("ceph-osd", *conf, "-i", osd_id, "--mkfs")
        self._daemon("ceph-osd", *conf, "-i", osd_id, "-f")
        self._daemon("radosgw", *conf, "-n", "client.rgw.test", "-f")
        self._run(
            "radosgw-admin",
            *conf,
            "user",
            "create",
            "--uid=test",
            "--display-name=test",
            f"--access-key={ACCESS_KEY}",
            f"--secret={SECRET_KEY}",
        )
        wait_until(self.responds, "Ceph RGW")

    def _run(self, *command: str) -> str:
        done = subprocess.run(command, capture_output=True, text=True, timeout=STARTUP_TIMEOUT)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command[:2])} failed: {done.stderr[-2000:]}")
        return done.stdout

    def _daemon(self, *command: str) -> None:
        with (self.folder / "log" / f"{command[0]}.out").open("ab") as log:
            self.processes.append(
                subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            )
