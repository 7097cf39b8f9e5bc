"""The worker pool, with real worker processes: results, and tasks that hang, crash or raise."""

from __future__ import annotations

import asyncio
import logging
import os
import platform
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from pipelines.runtime.pool import (
    NICENESS,
    TASK_RECORDS,
    StartedWorker,
    TaskFailed,
    WorkerPool,
    release_free_memory,
    start_workers,
)

TARGET = "tests.pipelines.runtime.pool_targets:Behaviour"
HANG_WAITED_OUT = pytest.param(("hang", None), "timeout", marks=pytest.mark.slow)  # the task timeout runs out


def with_pool(
    use: Callable[[WorkerPool], Awaitable[Any]],
    workers: int = 2,
    timeout: float = 30,
    started: list[StartedWorker] | None = None,
) -> Any:
    async def run() -> Any:
        async with WorkerPool(TARGET, {"greeting": "hi"}, workers, timeout, started=started or ()) as pool:
            return await use(pool)

    return asyncio.run(run())


def test_results_come_back_in_parallel_from_the_options_given():
    async def use(pool: WorkerPool) -> list[str]:
        return await asyncio.gather(*(pool.run(("echo", n)) for n in range(10)))

    assert with_pool(use) == [f"hi {n}" for n in range(10)]


def test_printing_to_stdout_does_not_garble_the_results():
    async def use(pool: WorkerPool) -> list[Any]:
        return [await pool.run(("print", "noise")), await pool.run(("echo", 1))]

    assert with_pool(use) == ["noise", "hi 1"]


@pytest.mark.parametrize("ahead", [False, True], ids=["spawned", "started-ahead"])
@pytest.mark.parametrize(("task", "reason"), [HANG_WAITED_OUT, (("exit", 9), "crashed")])
def test_a_task_that_hangs_or_kills_its_worker_fails_and_the_worker_is_replaced(task, reason, ahead):
    started = start_workers(TARGET, 1) if ahead else []

    async def use(pool: WorkerPool) -> tuple[TaskFailed, list[str], int, int]:
        first = await pool.run(("pid", None))
        with pytest.raises(TaskFailed) as failed:
            await pool.run(task)
        after = await asyncio.gather(*(pool.run(("echo", n)) for n in range(4)))
        return first, failed.value, after, len(pool._workers)

    first, failure, after, workers = with_pool(use, workers=1, timeout=2, started=started)
    assert failure.reason == reason
    assert ("exited with code 9" in failure.detail) == (reason == "crashed")
    assert after == [f"hi {n}" for n in range(4)] and workers == 1
    assert (first in {worker.pid for worker in started}) == ahead


def test_a_pool_takes_over_the_workers_started_ahead_and_closes_those_it_has_no_use_for():
    started = start_workers(TARGET, 3)

    async def use(pool: WorkerPool) -> tuple[set[int], set[int]]:
        answered = await asyncio.gather(*(pool.run(("pid", n)) for n in range(8)))
        return set(answered), {worker.process.pid for worker in pool._workers}

    answered, workers = with_pool(use, workers=2, started=started)
    assert workers == {started[0].pid, started[1].pid} and answered <= workers
    with pytest.raises(ChildProcessError):  # the third was closed, and reaped by the pool
        os.waitpid(started[2].pid, os.WNOHANG)


def test_a_worker_started_ahead_that_no_pool_takes_over_exits_when_its_input_ends():
    (started,) = start_workers(TARGET, 1)
    os.close(started.to_worker)
    _, status = os.waitpid(started.pid, 0)
    os.close(started.from_worker)
    os.close(started.pidfd)
    assert os.waitstatus_to_exitcode(status) == 0


def test_workers_run_at_a_lower_priority_than_the_process_they_serve():
    assert with_pool(lambda pool: pool.run(("nice", None))) == min(os.nice(0) + NICENESS, 19)


def test_the_pipe_to_every_worker_holds_a_large_page():
    """A page written ahead that did not fit Linux's default 64 KiB was finished only when the
    crawl process's loop ran again, and the worker waited for it; started ahead or spawned by the
    pool, every worker's input holds 1 MiB."""

    async def use(pool: WorkerPool) -> list[int]:
        return await asyncio.gather(*(pool.run(("input pipe", None)) for _ in range(8)))

    assert with_pool(use, workers=2, started=start_workers(TARGET, 1)) == [1 << 20] * 8


@pytest.mark.parametrize(("task", "reason"), [HANG_WAITED_OUT, (("exit", 9), "crashed")])
def test_tasks_written_behind_one_that_hangs_or_kills_its_worker_are_run_by_its_replacement(task, reason):
    """A worker gets its next task before it is done with the one before: when that one takes the
    worker down, the next was never started, and does not fail with it."""

    async def use(pool: WorkerPool) -> list[Any]:
        return await asyncio.gather(
            pool.run(task), *(pool.run(("echo", n)) for n in range(3)), return_exceptions=True
        )

    failure, *after = with_pool(use, workers=1, timeout=2)
    assert isinstance(failure, TaskFailed) and failure.reason == reason
    assert after == [f"hi {n}" for n in range(3)]


def test_an_exception_is_a_failure_with_its_message_and_traceback():
    async def use(pool: WorkerPool) -> TaskFailed:
        with pytest.raises(TaskFailed) as failed:
            await pool.run(("raise", "x"))
        return failed.value

    failure = with_pool(use)
    assert (failure.reason, failure.detail) == ("error", "ValueError: no such task: x")
    assert "pool_targets.py" in failure.traceback


def test_warnings_logged_in_a_worker_reach_our_log_at_info_as_the_tasks_outcome(caplog):
    caplog.set_level(logging.INFO)
    assert with_pool(lambda pool: pool.run(("warn", "odd page"))) == "odd page"
    assert [(r.name, r.levelno) for r in caplog.records] == [("pipelines.runtime.pool", logging.INFO)]
    assert caplog.records[0].getMessage().endswith("tests.pool_targets WARNING: careful: odd page")
    assert getattr(caplog.records[0], TASK_RECORDS) == 1


def test_a_worker_imports_only_what_its_target_needs():
    modules = with_pool(lambda pool: pool.run(("modules", ["scrapy", "twisted", "pipelines"])))
    assert modules == ["pipelines", "pipelines.runtime"]  # it runs pipelines.runtime.pool as __main__


def test_a_target_that_cannot_be_built_fails_the_start_clearly():
    async def run() -> None:
        await WorkerPool("tests.pipelines.runtime.pool_targets:Missing", {}, 1, 5).start()

    with pytest.raises(RuntimeError, match=r"did not start: worker process .* exited with code 1"):
        asyncio.run(run())


def test_a_task_past_its_cpu_limit_is_stopped_by_its_worker_which_goes_on():
    async def run() -> tuple[int, TaskFailed, int, str]:
        async with WorkerPool(TARGET, {"greeting": "hi"}, 1, timeout=120, cpu_limit=1) as pool:
            before = await pool.run(("pid", None))
            with pytest.raises(TaskFailed) as failed:
                await pool.run(("spin", None))
            return before, failed.value, await pool.run(("pid", None)), await pool.run(("echo", 1))

    before, failure, after, echo = asyncio.run(run())
    assert failure.reason == "timeout" and "used its 1 s of CPU" in failure.detail
    assert after == before and echo == "hi 1"  # the same worker, not killed


def test_workers_give_free_heap_pages_back_where_the_c_library_is_glibc():
    assert release_free_memory() == (platform.libc_ver()[0] == "glibc")
