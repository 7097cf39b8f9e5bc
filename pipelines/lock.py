"""One run at a time per archive: a file lock for a local archive, a lease for a bucket.

Two runs on one archive would each read the index, fetch the same new articles and archive
them twice. ``newsarchive crawl`` and ``flush`` hold the archive's lock while they run; a second
invocation exits at once (:data:`BUSY_EXIT`) or, with ``--wait``, waits for it.

A local archive is locked with ``flock`` on ``<archive>/.newsarchive.lock``: the kernel releases
it when the process dies, however it dies. A bucket is shared by machines, so it gets a lease:
``_lock/lease-<generation>.json`` objects, each created only if absent (the store's conditional
write), the newest one saying who holds the archive until when. A run takes the lease by
creating the next generation when the newest has expired or was released, renews it by
creating the next one again, and releases it with one that expired at once. Two runs racing
for a generation: the store lets one create it, the other sees :class:`KeyTaken`. A run killed
with ``kill -9`` holds the bucket until its lease expires (``ARCHIVE_LEASE_SECONDS``), except
for the next run on the same machine, which sees that the holder's process is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipelines.storage import KeyTaken, LocalStore, Store, StoreError

logger = logging.getLogger(__name__)

BUSY_EXIT = 75  # EX_TEMPFAIL (sysexits.h): try again later
LOCK_FILE = ".newsarchive.lock"
LEASES = "_lock"
_POLL = (1.0, 30.0)  # first and longest wait between looks at a busy lease, seconds
_JOIN_TRIES = 40  # 2 s for a shared group's member to let another join


class ArchiveBusy(Exception):
    """Another run holds the archive."""


def holder(run: str) -> dict:
    return {"run": run, "host": socket.gethostname(), "pid": os.getpid(), "since": _now().isoformat()}


@contextlib.contextmanager
def archive_lock(
    store: Store, run: str, wait: bool = False, lease_seconds: float = 900.0, shared: str | None = None
) -> Iterator[None]:
    """Hold the archive for the ``with`` block; :class:`ArchiveBusy` if another run holds it and
    ``wait`` is false (with ``wait``, log once and wait for it).

    ``shared`` names a group of runs that hold the archive together (the workers of one crawl in
    Redis): a shared flock, or a lease whose holder is the group, taken and renewed by any of
    them. A run of another group, or a lone run, is kept out as before. The group's lease is not
    released by one member (others may still run): it expires ``lease_seconds`` after the last.
    """
    if isinstance(store, LocalStore):
        lock: FileLock | Lease = FileLock(store.root, shared=shared is not None)
    else:
        lock = Lease(store, lease_seconds)
    me = holder(run) if shared is None else holder(run) | {"run": shared, "shared": True}
    try:
        lock.acquire(me, wait)
    except StoreError as exc:
        # the store is down: the run spools and the next one publishes (pipelines/publish.py);
        # refusing to crawl would lose what the outlets publish meanwhile
        logger.warning("archive lease not taken, running without it: %s", exc)
    try:
        yield
    finally:
        lock.release()


class FileLock:
    def __init__(self, root: Path, shared: bool = False):
        self.path = Path(root) / LOCK_FILE
        self.mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        self._fd = -1

    def acquire(self, me: dict, wait: bool) -> None:
        """Exclusive first (and the note of who holds it written); a member of a shared group
        then turns it into a shared lock, which the group's later members join."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                note = os.pread(fd, 4096, 0)
                if self.mode == fcntl.LOCK_SH and _same_group(_note(note), me) and _join_shared(fd):
                    self._fd = fd
                    return
                if not wait:
                    os.close(fd)
                    raise ArchiveBusy(_describe(note)) from None
                if not told:
                    logger.warning("waiting for the archive: %s", _describe(note))
                    told = True
                fcntl.flock(fd, fcntl.LOCK_EX)  # blocks until the holders leave
                break
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        if self.mode == fcntl.LOCK_SH:
            fcntl.flock(fd, fcntl.LOCK_SH)
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            if self.mode == fcntl.LOCK_EX:  # (a shared holder leaves the note to the others)
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = -1


class Lease:
    """The lease on a bucket; renewed from a thread of its own while held."""

    def __init__(self, store: Store, seconds: float):
        self.store = store
        self.seconds = seconds
        self.generation = 0
        self.lost = False
        self._me: dict = {}
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def acquire(self, me: dict, wait: bool) -> None:
        pause, told = _POLL[0], False
        while True:
            generation, current = self.newest()
            if current is None or not _held(current) or _died_here(current) or _same_group(current, me):
                try:
                    self._write(generation + 1, me, self.seconds)
                    break
                except KeyTaken:  # another run took this generation first
                    continue
            busy = _describe(json.dumps(current).encode())
            if not wait:
                raise ArchiveBusy(busy)
            if not told:
                logger.warning("waiting for the archive: %s", busy)
                told = True
            time.sleep(pause)  # polling a remote lease: nothing to wait on but time
            pause = min(pause * 2, _POLL[1])
        self._me = me
        self._renewer = threading.Thread(target=self._renew, name="lease", daemon=True)
        self._renewer.start()

    def newest(self) -> tuple[int, dict | None]:
        """The newest generation and what it says (None when there is none, or it is unreadable)."""
        generations = sorted(
            _generation(k) for k in self.store.object_keys(f"{LEASES}/") if _generation(k) >= 0
        )
        if not generations:
            return 0, None
        try:
            return generations[-1], json.loads(self.store.read(_lease_key(generations[-1])))
        except ValueError:
            return generations[-1], None

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        if self.lost or self._me.get("shared"):
            return
        with contextlib.suppress(KeyTaken, StoreError):
            self._write(self.generation + 1, self._me, 0)
        for generation in range(max(self.generation - 8, 1), self.generation - 1):
            with contextlib.suppress(StoreError):  # tidying only: needs delete permission
                self.store.delete(_lease_key(generation))

    def _renew(self) -> None:
        while not self._stop.wait(self.seconds / 3) and self.renew():
            pass

    def renew(self) -> bool:
        """Extend the lease; False once it is lost (another run took it after it expired)."""
        try:
            generation, current = self.newest()
            if generation != self.generation:
                if current is None or not _same_group(current, self._me):
                    raise KeyTaken("a later lease exists")
                self.generation = generation  # renewed by another run of the group
            self._write(self.generation + 1, self._me, self.seconds)
        except KeyTaken:
            generation, current = self.newest()
            if current is not None and _same_group(current, self._me):  # renewed at the same moment
                self.generation = generation
                return True
            self.lost = True
            logger.error("lost the archive's lease: another run took it after it expired")
            return False
        except StoreError as exc:
            logger.warning("lease not renewed, trying again: %s", exc)
        return True

    def _write(self, generation: int, me: dict, seconds: float) -> None:
        lease = me | {"expires_at": (_now() + timedelta(seconds=seconds)).isoformat()}
        with tempfile.TemporaryDirectory(prefix="newsarchive-lease-") as folder:
            source = Path(folder) / "lease.json"
            source.write_text(json.dumps(lease), encoding="utf-8")
            self.store.publish(source, _lease_key(generation))
        self.generation = generation


def _held(lease: dict) -> bool:
    try:
        return datetime.fromisoformat(lease["expires_at"]) > _now()
    except (KeyError, TypeError, ValueError):
        return False


def _join_shared(fd: int) -> bool:
    """A shared lock beside the group's, given a moment for a member that is turning its
    exclusive lock into a shared one (flock has no timeout: a few short tries)."""
    for _ in range(_JOIN_TRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            time.sleep(0.05)
    return False


def _note(raw: bytes) -> dict:
    try:
        note = json.loads(raw)
    except ValueError:
        return {}
    return note if isinstance(note, dict) else {}


def _same_group(lease: dict, me: dict) -> bool:
    return bool(me.get("shared")) and lease.get("shared") is True and lease.get("run") == me.get("run")


def _died_here(lease: dict) -> bool:
    """The holder ran on this machine and its process is gone (``kill -9``, a crash): its lease
    need not be waited out. Hosts are told apart by name, as container hostnames are."""
    if lease.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(lease["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, TypeError, ValueError):
        return False
    return False


def _describe(raw: bytes) -> str:
    try:
        lease = json.loads(raw)
        text = f"run {lease['run']} on {lease['host']} (pid {lease['pid']}) since {lease['since']}"
        return text + (f", lease until {lease['expires_at']}" if "expires_at" in lease else "")
    except (ValueError, KeyError, TypeError):
        return "another run (no details)"


def _lease_key(generation: int) -> str:
    return f"{LEASES}/lease-{generation:012d}.json"


def _generation(key: str) -> int:
    name = Path(key).name
    if not (name.startswith("lease-") and name.endswith(".json")):
        return -1
    digits = name.removeprefix("lease-").removesuffix(".json")
    return int(digits) if digits.isdigit() else -1


def _now() -> datetime:
    return datetime.now(UTC)
