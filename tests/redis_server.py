"""A real ``redis-server`` (Debian's, installed by tests/install-services.sh) on 127.0.0.1."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from pathlib import Path


class RedisServer:
    """Started on a free port with AOF persistence in ``folder``; stopped (saving its data, as
    a clean shutdown does) and started again on the same port and data by the tests."""

    def __init__(self, folder: Path):
        if shutil.which("redis-server") is None:
            raise RuntimeError("no redis-server: `make test` installs it (tests/install-services.sh)")
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process: subprocess.Popen[str] | None = None
        self._drain: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)),
                *("--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for line in self.process.stdout:  # it says when it listens
            if "Ready to accept connections" in line:
                # the rest of its log is read away, so that it never waits on a full pipe
                self._drain = threading.Thread(target=self.process.stdout.read, daemon=True)
                self._drain.start()
                return self
        raise RuntimeError(f"redis-server did not start (exit {self.process.wait()})")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()  # SIGTERM: a clean shutdown
            self.process.wait()
            self._drain.join()
            self.process.stdout.close()
            self.process = None
