"""Worker processes for the CPU-bound stages: one task at a time each, the next written ahead,
under a deadline.

A worker is ``python -m pipelines.runtime.pool TARGET``: it builds ``TARGET`` (``module:callable``)
with the options it is sent, says it is ready, then applies it to one task after another.
Tasks and results travel pickled over the worker's stdin and stdout in length-prefixed frames;
the worker first moves its stdout to stderr, so nothing a library prints can garble a frame.
Warnings and errors logged in a worker travel back with the result and are logged here, in
the caller's log, at INFO, as one record per task marked with :data:`TASK_RECORDS`: what a
library (trafilatura, htmldate, ...) says about one page is that page's outcome, counted by the
caller, not an error of the run that calls the pool.

Each worker is served by a runner that keeps its next task written ahead of the one it works on,
while there is a task for every worker: a worker that waited for the crawl process to read its
result and answer lost 2-3 ms a page, a tenth of a page's extraction. The pipe to a worker
holds 1 MiB (:data:`_PIPE_BYTES`), so that a task written ahead is there whole. A task's
deadline starts when the result before it is read, as the worker takes it up then.

A task that outlives its deadline gets its worker killed; a worker that dies (a crash in a C
library, the kernel's OOM killer) fails its task; either way the task fails with a reason and a
new worker takes the old one's place. A task may also use at most ``cpu_limit`` seconds of CPU:
the worker stops it itself (a profiling timer) and goes on with the next, the task failing as
``timeout`` too; the deadline, in wall-clock time, stays as the backstop for a task stuck in C
code or asleep. Workers are new interpreters, not forks, so they import
only what their target needs: Scrapy and its reactor stay in the crawl process.

A program can start its workers before it imports anything heavy (:func:`start_workers`) and
hand them to its pool later: they import their target meanwhile, on the cores the program's
own start leaves idle. Workers run at a lower priority (:data:`NICENESS`), so that they take
what CPU the process feeding them leaves, not its share: while they import, its start keeps a
core of its own, and while they extract, the pages they need are fetched without delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import importlib
import logging
import os
import pickle
import signal
import struct
import sys
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

logger = logging.getLogger(__name__)

_FRAME = struct.Struct("!Q")  # the length of the pickle that follows
_CLOSE_TIMEOUT = 10.0
# tasks between two returns of the C heap's free pages: after every task, the next one faulted
# them back in (1.3 ms a page of CPU, 6 %); every 16th, a worker holds 2-4 MB more
_TRIM_EVERY = 16
# tasks written to a worker ahead of the one it works on: it starts its next page without waiting
# for the crawl process to read its result and answer (1.5-3 ms a page while that process is busy
# or waits for a core, a tenth of a page's extraction)
_AHEAD = 1
# added to a worker's nice value: started early beside a crawl's own start (Python, Scrapy, its
# settings and spider: 0.6 s on one core), workers at the same priority took a third of its core
# and the crawl gained nothing; niced, the N crawl of make bench went +2.0, +2.4, +2.0 and -0.4 %
# in four interleaved A/Bs of 8-14 rounds (docs/benchmarks.md, Throughput and memory)
NICENESS = 5
# the pipe to a worker holds this much (Linux; Linux's default is 64 KiB): a task written ahead
# that did not fit (most news pages are larger) was finished only when the crawl process's loop
# ran again, and the worker waited for it, 0.4 ms a page at the median and 5.7 ms at the 90th
# percentile; 1 MiB is what Linux lets an unprivileged process ask (fs.pipe-max-size)
_PIPE_BYTES = 1 << 20
# the attribute of the log record that carries what a worker logged on one task: how many records
TASK_RECORDS = "task_records"


class TaskFailed(Exception):
    """A task that did not complete; ``reason`` is ``timeout``, ``crashed`` or ``error``."""

    def __init__(self, reason: str, detail: str, traceback: str = ""):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail  # one line
        self.traceback = traceback  # the worker's, for an error


class _WorkerDied(Exception):
    pass


class _CpuLimit(Exception):
    """Raised in a worker when its task has used its CPU time."""


@dataclass(frozen=True)
class StartedWorker:
    """A worker process started ahead of its pool by :func:`start_workers`: our ends of its
    pipes, and a pidfd to wait for it and signal it (never a recycled pid)."""

    target: str
    pid: int
    pidfd: int
    to_worker: int
    from_worker: int


def start_workers(target: str, count: int) -> list[StartedWorker]:
    """``count`` workers for ``target``, importing it at once, for a :class:`WorkerPool` of the
    same target to take over (its ``started``); none where pidfds are missing (not Linux).

    Workers no pool takes over exit when their input ends: when the pool closes the surplus, or
    when this process exits."""
    if not hasattr(os, "pidfd_open"):
        return []
    started = []
    for _ in range(count):
        task_read, task_write = os.pipe()  # ours are not inherited by the other processes we start
        result_read, result_write = os.pipe()
        try:
            pid = os.posix_spawn(
                sys.executable,
                [sys.executable, "-m", "pipelines.runtime.pool", target],
                _worker_environment(),
                file_actions=[(os.POSIX_SPAWN_DUP2, task_read, 0), (os.POSIX_SPAWN_DUP2, result_write, 1)],
            )
        finally:
            os.close(task_read)
            os.close(result_write)
        started.append(StartedWorker(target, pid, os.pidfd_open(pid), task_write, result_read))
    return started


def _worker_environment() -> dict[str, str]:
    return os.environ | {"OPENBLAS_NUM_THREADS": "1"}


class _StartedProcess:
    """A :class:`StartedWorker` behind the interface of asyncio's subprocesses that
    :class:`_Worker` uses: its pipes as streams, its exit as seen through its pidfd."""

    def __init__(self, started: StartedWorker, stdout: asyncio.StreamReader, stdin: asyncio.WriteTransport):
        self.pid = started.pid
        self.stdin = stdin
        self.stdout = stdout
        self.returncode: int | None = None
        self._pidfd = started.pidfd
        loop = asyncio.get_running_loop()
        self._exited = loop.create_future()
        loop.add_reader(self._pidfd, self._reap, loop)

    @classmethod
    async def take_over(cls, started: StartedWorker) -> _StartedProcess:
        loop = asyncio.get_running_loop()
        stdout = asyncio.StreamReader()
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stdout), os.fdopen(started.from_worker, "rb", buffering=0)
        )
        to_worker = os.fdopen(started.to_worker, "wb", buffering=0)
        stdin, _ = await loop.connect_write_pipe(asyncio.Protocol, to_worker)
        return cls(started, stdout, stdin)

    def _reap(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.remove_reader(self._pidfd)
        _, status = os.waitpid(self.pid, 0)  # the pidfd is readable: it has exited, this returns now
        self.returncode = os.waitstatus_to_exitcode(status)
        os.close(self._pidfd)
        self._exited.set_result(self.returncode)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def kill(self) -> None:
        if self.returncode is None:
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)


class _Worker:
    """One worker process, as seen from the pool."""

    def __init__(self, process: asyncio.subprocess.Process | _StartedProcess):
        self.process = process

    @classmethod
    async def start(
        cls,
        target: str,
        options: dict[str, Any],
        timeout: float,
        cpu_limit: float,
        started: StartedWorker | None = None,
    ) -> _Worker:
        if started is not None:
            process: asyncio.subprocess.Process | _StartedProcess = await _StartedProcess.take_over(started)
        else:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "pipelines.runtime.pool",
                target,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=_worker_environment(),
            )
        worker = cls(process)
        _enlarge(process.stdin)
        try:
            worker.send({"options": options, "cpu_limit": cpu_limit})
            async with asyncio.timeout(timeout):
                await worker.receive()
        except (_WorkerDied, TimeoutError) as exc:
            worker.kill()
            await process.wait()
            raise RuntimeError(
                f"worker process for {target} did not start: {exc or f'not ready after {timeout:g} s'}"
            ) from None
        return worker

    def send(self, message: Any) -> None:
        """Write ``message`` without waiting: the transport writes what the pipe cannot take yet
        as the worker reads, and a worker is sent at most :data:`_AHEAD` tasks beyond its own."""
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self.process.stdin.write(_FRAME.pack(len(payload)) + payload)

    async def receive(self) -> Any:
        try:
            (size,) = _FRAME.unpack(await self.process.stdout.readexactly(_FRAME.size))
            return pickle.loads(await self.process.stdout.readexactly(size))
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            code = await self.process.wait()
            raise _WorkerDied(f"worker process {self.process.pid} exited with code {code}") from exc

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()

    async def close(self) -> None:
        """Ask the worker to stop (end of its input); kill it if it does not."""
        self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), _CLOSE_TIMEOUT)
        except TimeoutError:
            self.kill()
            await self.process.wait()


def _enlarge(pipe: asyncio.WriteTransport | asyncio.StreamWriter) -> None:
    """The pipe to a worker holding :data:`_PIPE_BYTES`, where the system lets us ask."""
    if not hasattr(fcntl, "F_SETPIPE_SZ"):  # not Linux
        return
    with contextlib.suppress(OSError):  # over the user's pipe allowance: the default size
        fcntl.fcntl(pipe.get_extra_info("pipe").fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)


@dataclass
class _Job:
    task: Any
    answer: asyncio.Future[tuple[str, Any, list[tuple[int, str, str]]]]


class WorkerPool:
    """``workers`` processes running ``target`` (``module:callable``, built with ``options``).

    :meth:`run` queues its task; each worker works on one at a time and holds at most
    :data:`_AHEAD` more; callers bound how many wait. Workers ``started`` ahead
    (:func:`start_workers`) are taken over first; those it has no use for are closed.
    """

    def __init__(
        self,
        target: str,
        options: dict[str, Any],
        workers: int,
        timeout: float,
        start_timeout: float = 120.0,
        cpu_limit: float = 0.0,
        started: Sequence[StartedWorker] = (),
    ):
        self.target = target
        self.options = options
        self.size = workers
        self.timeout = timeout
        self.cpu_limit = cpu_limit  # seconds of CPU a task may use; 0: no limit but the deadline
        self.start_timeout = start_timeout
        self._jobs: asyncio.Queue[_Job] = asyncio.Queue()
        self._workers: set[_Worker] = set()
        self._runners: set[asyncio.Task[None]] = set()
        self._broken = ""  # why no worker could be started in a lost one's place
        self._started = list(started)
        self._closing: list[asyncio.Future[None]] = []  # the started workers it had no use for

    async def start(self) -> None:
        taken = [started for started in self._started if started.target == self.target][: self.size]
        unused = [started for started in self._started if started not in taken]
        self._started = []
        # not awaited here, where every page waits (a surplus worker exits only after its
        # imports): close waits for them
        self._closing = [asyncio.ensure_future(self._close_unused(started)) for started in unused]
        spawning = [self._spawn(started) for started in taken]
        spawning += [self._spawn() for _ in range(self.size - len(taken))]
        for worker in await asyncio.gather(*spawning):
            self._serve_with(worker)
        if taken or unused:
            logger.debug("took over %d worker(s) started ahead, closed %d", len(taken), len(unused))

    async def run(self, task: Any) -> Any:
        """The target's result for ``task``; :class:`TaskFailed` when it raised, hung or crashed."""
        if self._broken:
            raise TaskFailed("crashed", self._broken)
        job = _Job(task, asyncio.get_running_loop().create_future())
        self._jobs.put_nowait(job)
        status, value, records = await job.answer  # cancelled: the runner skips or drops it
        if records:  # a library's words about this one task: part of its outcome, not the run's errors
            logger.info(
                "a worker's libraries logged, on one task: %s",
                "; ".join(f"{name} {logging.getLevelName(level)}: {text}" for level, name, text in records),
                extra={TASK_RECORDS: len(records)},
            )
        if status == "error":
            raise TaskFailed("error", *value)
        if status == "cpu_limit":
            raise TaskFailed("timeout", f"used its {self.cpu_limit:g} s of CPU; stopped, the worker goes on")
        return value

    async def close(self) -> None:
        for runner in list(self._runners):
            runner.cancel()
        await asyncio.gather(*self._runners, return_exceptions=True)
        workers, self._workers = list(self._workers), set()
        await asyncio.gather(*(worker.close() for worker in workers))
        await asyncio.gather(*self._closing)

    async def __aenter__(self) -> WorkerPool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @staticmethod
    async def _close_unused(started: StartedWorker) -> None:
        """Its input ends: it exits once it has imported its target (or is killed, as any worker)."""
        await _Worker(await _StartedProcess.take_over(started)).close()

    async def _spawn(self, started: StartedWorker | None = None) -> _Worker:
        worker = await _Worker.start(self.target, self.options, self.start_timeout, self.cpu_limit, started)
        self._workers.add(worker)
        return worker

    def _serve_with(self, worker: _Worker) -> None:
        runner = asyncio.ensure_future(self._serve(worker))
        self._runners.add(runner)
        runner.add_done_callback(self._runners.discard)

    async def _serve(self, worker: _Worker) -> None:
        """Keep ``worker`` supplied with queued tasks, :data:`_AHEAD` of them written ahead of the
        one it works on, until it is lost or the pool closes."""
        sent: deque[_Job] = deque()  # in the order the worker takes them
        while True:
            # ahead only while there are tasks for every worker: at the end of a crawl, a task
            # written behind a long one would wait for it while another worker idles
            while len(sent) <= _AHEAD and not (sent and self._jobs.qsize() < self.size):
                job = await self._jobs.get()  # suspends only when the worker has nothing to do
                if job.answer.cancelled():  # its caller stopped waiting before it was sent
                    continue
                try:
                    worker.send(job.task)
                except Exception as exc:  # a task that cannot be pickled: its caller's error
                    job.answer.set_exception(exc)
                    continue
                sent.append(job)
            job = sent.popleft()  # the worker's task now: its deadline starts here
            try:
                async with asyncio.timeout(self.timeout):
                    answer = await worker.receive()
            except TimeoutError:
                failure = TaskFailed("timeout", f"no result within {self.timeout:g} s; worker killed")
            except _WorkerDied as exc:
                failure = TaskFailed("crashed", str(exc))
            except asyncio.CancelledError:  # the pool closes mid-task: the worker's state is unknown
                for unanswered in (job, *sent):
                    unanswered.answer.cancel()
                worker.kill()
                raise
            else:
                if not job.answer.cancelled():
                    job.answer.set_result(answer)
                continue
            if not job.answer.cancelled():
                job.answer.set_exception(failure)
            for waiting in sent:  # never started: the next worker takes them
                self._jobs.put_nowait(waiting)
            await self._replace(worker)
            return

    async def _replace(self, worker: _Worker) -> None:
        worker.kill()
        await worker.process.wait()
        self._workers.discard(worker)
        try:
            self._serve_with(await self._spawn())
        except RuntimeError as exc:  # every task, waiting or to come, fails: none would be run
            logger.error("%s", exc)
            self._broken = "no worker process could be started"
            while not self._jobs.empty():
                job = self._jobs.get_nowait()
                if not job.answer.cancelled():
                    job.answer.set_exception(TaskFailed("crashed", self._broken))


class _Records(logging.Handler):
    """Collects a worker's warnings and errors, to be sent back with each result."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[tuple[int, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
        self.records.append((record.levelno, record.name, message))

    def take(self) -> list[tuple[int, str, str]]:
        records, self.records = self.records, []
        return records


def _read(stream: BinaryIO) -> Any:
    header = stream.read(_FRAME.size)
    if len(header) < _FRAME.size:
        return None  # the pool closed our input: time to go
    (size,) = _FRAME.unpack(header)
    return pickle.loads(stream.read(size))


def _write(stream: BinaryIO, message: Any) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_FRAME.pack(len(payload)) + payload)
    stream.flush()


def _load(target: str) -> Callable[..., Callable[[Any], Any]]:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def serve(target: str) -> None:
    """A worker's life: build the target, then one task after another until the input ends."""
    inbox, outbox = sys.stdin.buffer, os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    records = _Records()
    logging.basicConfig(level=logging.WARNING, handlers=[records])
    logging.captureWarnings(True)
    os.nice(NICENESS)
    build = _load(target)  # first: a worker started ahead imports while its pool is not there yet
    start = _read(inbox)
    if start is None:  # no pool took it over
        os._exit(0)
    handler = build(**start["options"])
    cpu_limit = start["cpu_limit"]
    signal.signal(signal.SIGPROF, _cpu_limit_reached)
    _write(outbox, ("ready", os.getpid(), records.take()))
    done = 0
    while (task := _read(inbox)) is not None:
        try:
            signal.setitimer(signal.ITIMER_PROF, cpu_limit)  # 0: off
            answer = ("ok", handler(task))
        except _CpuLimit:
            answer = ("cpu_limit", None)
        except Exception as exc:  # reported to the pool, which counts the task as failed
            answer = ("error", (f"{type(exc).__name__}: {exc}", "".join(traceback.format_exception(exc))))
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
        _write(outbox, (*answer, records.take()))
        done += 1
        if done % _TRIM_EVERY == 0:
            release_free_memory()
    # the input ended: gone at once, not after finalising every object of the interpreter (0.1 s
    # in which the crawl's close, writing its last parts, would hold both memories together)
    sys.stderr.flush()
    os._exit(0)


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc's
    except (OSError, AttributeError):  # another C library: its own ways
        return None


_TRIM = _malloc_trim()


def release_free_memory() -> bool:
    """Give the free pages of the C heap back to the system; False where that cannot be asked.

    A page's parse leaves the heap with free holes that glibc keeps: without this a worker grows
    by 5-10 MB over its first few hundred pages and stays there (0.05 ms a call, and the pages
    given back are faulted in again by the next allocations).
    """
    if _TRIM is None:
        return False
    _TRIM(0)
    return True


def _cpu_limit_reached(signum: int, frame: object) -> None:
    raise _CpuLimit


if __name__ == "__main__":
    serve(sys.argv[1])
