"""One run at a time per archive: a file lock for a local archive, a lease for a bucket.

Two runs on one archive would each read the index, fetch the same new articles and archive
them twice. ``newsarchive crawl`` and ``flush`` hold the archive's lock while they run; a second
invocation exits at once (exit 75, the CLI's ``ExitCode.BUSY``) or, with ``--wait``, waits for it.

A local archive is locked with ``flock`` on ``<archive>/.newsarchive.lock``: the kernel releases
it when the process dies, however it dies. A bucket is shared by machines, so it gets a lease:
``_lock/lease-<generation>.json`` objects, each created only if absent (the store's conditional
write), the newest one saying who holds the archive until when. A run takes the lease by
creating the next generation when the newest has expired or was released, renews it by
creating the next one again, and releases it with one that expired at once. Two runs racing
for a generation: the store lets one create it, the other sees :class:`KeyTaken`. A run killed
with ``kill -9`` holds the bucket until its lease expires (``ARCHIVE_LEASE_SECONDS``), except
for the next run on the same machine, which sees that the holder's process is gone.

Nothing read here is trusted. The lock file is opened without following a link and used only
if it is a regular file of one name holding a note of ours (or nothing): a link or another file
planted at its name is never truncated. A lease keeps two runs apart only if the store refuses a
second conditional create, so each store is first asked to (:data:`PROBE_GENERATION`); one that
does not is refused unless the operator accepts the risk (``ARCHIVE_ACCEPT_UNCONDITIONAL_WRITES``).
Publication asks :func:`ensure_held` first: a run whose lease was lost, or a crawl that could not
take it (the store was down), only spools, and the next run publishes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipelines.archive.keys import LEASES, is_key, lease_key
from pipelines.archive.storage import KeyTaken, LocalStore, Store, StoreError, archive_identity
from pipelines.runtime.jsondata import is_count, loads_bounded

logger = logging.getLogger(__name__)

LOCK_FILE = ".newsarchive.lock"
_NOTE_BYTES = 4096  # a note of ours is far shorter; a longer lock file is none of ours
# created twice with If-None-Match: * to learn whether the store honours it; below every real
# generation, and an expired lease itself, so it never holds the archive
PROBE_GENERATION = 0
ACCEPT_SETTING = "ARCHIVE_ACCEPT_UNCONDITIONAL_WRITES"
ACCEPT_ENV = "NEWSARCHIVE_ACCEPT_UNCONDITIONAL_WRITES"
_POLL = (1.0, 30.0)  # first and longest wait between looks at a busy lease, seconds
_JOIN_TRIES = 40  # 2 s for a shared group's member to let another join
_PID_LIMIT = 2**31  # pid_t is a 32-bit signed int on every system newsarchive runs on


class ArchiveBusy(Exception):
    """Another run holds the archive."""


class LockUnavailable(Exception):
    """The store failed while the lock was being taken: the run did not start (exit 75)."""


class LockRefused(ValueError):
    """The lock cannot be trusted (a planted lock file, a store that ignores If-None-Match):
    the run did not start, and nothing was touched (a configuration error, exit 2)."""


class LeaseLost(StoreError):
    """This run does not hold the archive (any more): nothing more is published."""


def holder(run: str) -> dict:
    return {"run": run, "host": socket.gethostname(), "pid": os.getpid(), "since": _now().isoformat()}


@contextlib.contextmanager
def archive_lock(
    store: Store,
    run: str,
    wait: bool = False,
    lease_seconds: float = 900.0,
    shared: str | None = None,
    *,
    spool_only_without: bool = False,
    accept_unconditional_writes: bool = False,
) -> Iterator[FileLock | Lease | NotTaken]:
    """Hold the archive for the ``with`` block (which gets the lock); :class:`ArchiveBusy` if
    another run holds it and ``wait`` is false (with ``wait``, log once and wait for it).

    ``shared`` names a group of runs that hold the archive together (the workers of one crawl in
    Redis): a shared flock, or a lease whose holder is the group, taken and renewed by any of
    them. A run of another group, or a lone run, is kept out as before. The group's lease is not
    released by one member (others may still run): it expires ``lease_seconds`` after the last.

    A store error while taking the lock is :class:`LockUnavailable`, except for a run that may
    go on ``spool_only_without`` it (a crawl: refusing to crawl would miss what the outlets
    publish meanwhile), for which :func:`ensure_held` then refuses every publication. A lock that
    cannot be trusted is :class:`LockRefused`.
    """
    if isinstance(store, LocalStore):
        lock: FileLock | Lease | NotTaken = FileLock(store.root, shared=shared is not None)
    else:
        lock = Lease(store, lease_seconds, accept_unconditional_writes)
    me = holder(run) if shared is None else holder(run) | {"run": shared, "shared": True}
    try:
        lock.acquire(me, wait)
    except StoreError as exc:
        if not spool_only_without:
            raise LockUnavailable(f"the archive's lock could not be taken: {exc}") from None
        logger.warning("archive lease not taken, running without it (spooling only): %s", exc)
        lock = NotTaken(str(exc))
    holds = _HOLDS.setdefault(archive_identity(store), [])
    holds.append(lock)
    try:
        yield lock
    finally:
        holds.remove(lock)
        lock.release()


# what this process holds, by archive: publication asks it (ensure_held); the stages of a crawl
# build their own store objects, so the lock is found by the archive it is for
_HOLDS: dict[str, list[FileLock | Lease | NotTaken]] = {}


def ensure_held(store: Store) -> None:
    """:class:`LeaseLost` unless this process holds ``store``'s archive, or takes no lock on it
    at all (a library caller): asked before every publication."""
    holds = _HOLDS.get(archive_identity(store))
    if not holds or any(lock.held() for lock in holds):
        return
    raise LeaseLost(f"{store.uri}: {holds[-1].why_not()}; nothing more is published, the spool keeps it")


class NotTaken:
    """A crawl running without the lock: the store failed when it was taken."""

    def __init__(self, reason: str):
        self.reason = reason

    def held(self) -> bool:
        return False

    def why_not(self) -> str:
        return f"the archive's lock was not taken at the start ({self.reason})"

    def release(self) -> None:
        pass


class FileLock:
    def __init__(self, root: Path, shared: bool = False):
        self.path = Path(root) / LOCK_FILE
        self.mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        self._fd = -1

    def acquire(self, me: dict, wait: bool) -> None:
        """Exclusive first (and the note of who holds it written); a member of a shared group
        then turns it into a shared lock, which the group's later members join."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = self._open()
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                note = os.pread(fd, _NOTE_BYTES, 0)
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
        try:
            self._check_ours(fd)  # again, now that no other run writes it
        except LockRefused:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        if self.mode == fcntl.LOCK_SH:
            fcntl.flock(fd, fcntl.LOCK_SH)
        self._fd = fd

    def _open(self) -> int:
        """The lock file, created if absent, never through a link and never truncated here;
        :class:`LockRefused` if what is at its name is not a lock file of ours."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            why = "is a symbolic link" if exc.errno == errno.ELOOP else f"cannot be opened: {exc.strerror}"
            raise LockRefused(f"{self.path} {why}; not touched, not started") from None
        try:
            self._check_ours(fd)
        except LockRefused:
            os.close(fd)
            raise
        return fd

    def _check_ours(self, fd: int) -> None:
        """A regular file with one name, empty or holding a note of ours: nothing else is ever
        truncated (a hard link, another file planted at the lock's name)."""
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            why = "is not a regular file"
        elif info.st_nlink != 1:
            why = "has other names (hard links)"
        elif info.st_size > _NOTE_BYTES or (
            info.st_size and "run" not in _note(os.pread(fd, _NOTE_BYTES, 0))
        ):
            why = f"holds {info.st_size} bytes that are no lock note of newsarchive"
        else:
            return
        raise LockRefused(f"{self.path} {why}; not touched, not started (remove it if it is yours)")

    def held(self) -> bool:
        return self._fd >= 0

    def why_not(self) -> str:
        return "the archive's lock file was released"

    def release(self) -> None:
        if self._fd >= 0:
            if self.mode == fcntl.LOCK_EX:  # (a shared holder leaves the note to the others)
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = -1


class Lease:
    """The lease on a bucket; renewed from a thread of its own while held."""

    def __init__(self, store: Store, seconds: float, accept_unconditional_writes: bool = False):
        self.store = store
        self.seconds = seconds
        self.accept_unconditional_writes = accept_unconditional_writes
        self.generation = 0
        self.lost = False
        self._valid_until = 0.0  # time.monotonic() when the last lease we wrote expires
        self._me: dict = {}
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def acquire(self, me: dict, wait: bool) -> None:
        self._check_store()
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

    def _check_store(self) -> None:
        """:class:`LockRefused` if the store does not refuse a second conditional create of one
        key (then two runs could both think they took a generation), unless the operator accepts
        that; the store is asked once (see :meth:`S3Store.refuses_second_create`)."""
        probe = json.dumps({"run": "probe of If-None-Match", "expires_at": _now().isoformat()})
        if self.store.refuses_second_create(lease_key(PROBE_GENERATION), probe.encode()):
            return
        if not self.accept_unconditional_writes:
            raise LockRefused(
                f"{self.store.uri}: the store does not honour If-None-Match (it let "
                f"{lease_key(PROBE_GENERATION)} be created twice), so its lease cannot keep two runs apart; "
                "not started. To run anyway, "
                f"set {ACCEPT_ENV}=1 (or -s {ACCEPT_SETTING}=true) and make sure no two runs ever overlap"
            )
        logger.warning(
            "%s: the store does not honour If-None-Match; running anyway (%s): two overlapping runs "
            "are not kept apart",
            self.store.uri,
            ACCEPT_SETTING,
        )

    def newest(self) -> tuple[int, dict | None]:
        """The newest generation and what it says (None when there is none, or it is unreadable)."""
        generations = sorted(_generation(k) for k in self.store.object_keys(f"{LEASES}/"))
        if not generations or generations[-1] < 0:
            return 0, None
        try:
            key = lease_key(generations[-1])
            lease = loads_bounded(self.store.read_range(key, 0, _NOTE_BYTES), _NOTE_BYTES, key)
        except ValueError as exc:  # no lease of ours: nobody holds the archive by it
            logger.warning("%s; taken as no lease", exc)
            return generations[-1], None
        return generations[-1], lease if isinstance(lease, dict) else None

    def held(self) -> bool:
        """Ours, as far as this run knows: not taken by another, and not expired."""
        return not self.lost and time.monotonic() < self._valid_until

    def why_not(self) -> str:
        if self.lost:
            return "lost the archive's lease: another run took it after it expired"
        return "the archive's lease expired: it could not be renewed in time"

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
                self.store.delete(lease_key(generation))

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
                self._valid_until = time.monotonic() + _remaining(current)
                return True
            self.lost = True
            logger.error("lost the archive's lease: another run took it after it expired")
            return False
        except StoreError as exc:
            logger.warning("lease not renewed, trying again: %s", exc)
        return True

    def _write(self, generation: int, me: dict, seconds: float) -> None:
        valid_until = time.monotonic() + seconds  # counted from before the request: never late
        lease = me | {"expires_at": (_now() + timedelta(seconds=seconds)).isoformat()}
        with tempfile.TemporaryDirectory(prefix="newsarchive-lease-") as folder:
            source = Path(folder) / "lease.json"
            source.write_text(json.dumps(lease), encoding="utf-8")
            self.store.publish(source, lease_key(generation))
        self.generation = generation
        self._valid_until = valid_until


def _held(lease: dict) -> bool:
    return _remaining(lease) > 0


def _remaining(lease: dict) -> float:
    """Seconds until ``lease`` expires (0 if it names no valid time)."""
    try:
        return max((datetime.fromisoformat(lease["expires_at"]) - _now()).total_seconds(), 0.0)
    except (KeyError, TypeError, ValueError):
        return 0.0


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
        note = loads_bounded(raw, _NOTE_BYTES, LOCK_FILE)
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
    pid = lease.get("pid")
    if not is_count(pid, _PID_LIMIT) or pid == 0:
        return False  # no process of this machine: its lease is waited out
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _describe(raw: bytes) -> str:
    """Who holds the archive, as the lock file or lease says (read from the archive: each value
    escaped and cut short, so that no control character reaches a terminal or a log line)."""
    try:
        lease = {k: repr(str(v))[1:-1][:100] for k, v in loads_bounded(raw, _NOTE_BYTES, "a lease").items()}
        text = f"run {lease['run']} on {lease['host']} (pid {lease['pid']}) since {lease['since']}"
        return text + (f", lease until {lease['expires_at']}" if "expires_at" in lease else "")
    except (ValueError, KeyError, TypeError, AttributeError):
        return "another run (no details)"


def _generation(key: str) -> int:
    """The generation a lease key names; -1 for any other key under ``_lock/``."""
    return int(key.removeprefix(f"{LEASES}/lease-").removesuffix(".json")) if is_key(key, "lease") else -1


def _now() -> datetime:
    return datetime.now(UTC)
