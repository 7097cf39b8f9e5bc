"""A shared Redis may be written by others: what the crawl reads from it never runs, names no
key of another crawl, crosses no archive, and its password shows nowhere. Through the CLI,
against the mirrors and a real redis-server."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from pathlib import Path

import pytest
import redis

from crawler.registry import load_registry
from crawler.shared.extension import crawl_scope
from crawler.shared.state import PREFIX
from pipelines.archive.storage import LocalStore
from tests.conftest import run_cli
from tests.crawler.shared.test_queue_entries import malformed_entries, pickle_creating
from tests.faultproxy import FaultProxy
from tests.test_redis_crawl import HELD, archived, finished, holding_one_article, mirror, single_crawl, worker

pytestmark = pytest.mark.slow  # crawls in subprocesses against a real redis-server

__all__ = ["mirror", "single_crawl"]  # (fixtures)

OUTLET = "sxkjt"  # entries on its host, for it: only what is wrong with an entry makes it refused
PLANTED_CRAWL = f"{PREFIX}-0badc0de"
SECRET = "s3cr3t-Redis-pw"


def scope_of(archive: Path) -> str:
    return crawl_scope(LocalStore(archive), list(load_registry([])))


def dropped_counts(summary: str) -> Counter[str]:
    """The summary's count of Redis entries dropped, by reason."""
    line = next(line for line in summary.splitlines() if "of the Redis queue dropped" in line)
    counts = re.search(r"this crawl \(([^)]*)\)", line).group(1)
    return Counter({reason: int(n) for reason, n in (part.split(": ") for part in counts.split(", "))})


def test_entries_planted_in_every_key_the_crawl_reads_never_run_are_dropped_and_counted(
    mirror, redis_server, tmp_path, single_crawl
):
    archive, markers = tmp_path / "archive", [tmp_path / f"ran-{n}" for n in range(4)]
    client = redis.Redis.from_url(redis_server.url)
    client.set(f"{PREFIX}:current:{scope_of(archive)}", PLANTED_CRAWL)  # the crawl workers join

    def key(name: str) -> str:
        return f"{PREFIX}:{PLANTED_CRAWL}:{name}"

    planted = malformed_entries(load_registry([])[OUTLET], markers[0], 1024 * 1024)
    client.zadd(key("requests"), {entry: n for n, (_, entry) in enumerate(planted)})
    client.zadd(key("held:ghost"), {pickle_creating(markers[1]): 0})  # a dead worker's, given back
    client.sadd(key("workers"), "ghost")
    client.set(key("seeder"), pickle_creating(markers[2]))
    client.hset(key("texts"), mapping={r["text_hash"]: pickle_creating(markers[3]) for r in single_crawl})
    client.hset(key("found"), mapping={b"\xff": b"1", "sxkjt": pickle_creating(markers[3])})

    run = run_cli("crawl", "--mirror-url", mirror.url, "--archive", str(archive), "--redis", redis_server.url)

    assert not any(marker.exists() for marker in markers)
    assert "Traceback" not in run.stderr and "could not start" not in run.stderr
    assert run.returncode == 1, run.stdout + run.stderr  # a PROBLEM: something else writes to this Redis
    assert dropped_counts(run.stdout) == Counter(reason for reason, _ in planted) + Counter(not_json=1)
    rows = archived(archive)
    assert sorted((r["url"], r["text_hash"]) for r in rows) == sorted(
        (r["url"], r["text_hash"]) for r in single_crawl
    )
    assert "error(s) logged" not in run.stdout and "no article page found" not in run.stdout
    assert "our own code raised" not in run.stdout  # (a callback given arguments it does not take)


def test_a_planted_crawl_id_names_no_key_of_another_crawl(mirror, redis_server, tmp_path, single_crawl):
    archive = tmp_path / "archive"
    client = redis.Redis.from_url(redis_server.url)
    others = {f"{PREFIX}:{PREFIX}-0badc0de:requests": "another crawl's", "unrelated": "data"}
    client.mset(others)
    client.set(f"{PREFIX}:current:{scope_of(archive)}", "*")  # its keys, then, all of them

    run = run_cli("crawl", "--mirror-url", mirror.url, "--archive", str(archive), "--redis", redis_server.url)

    assert run.returncode == 0, run.stdout + run.stderr
    assert client.mget(list(others)) == [value.encode() for value in others.values()]
    assert {r["url"] for r in archived(archive)} == {r["url"] for r in single_crawl}


def test_two_hosts_default_archives_with_the_same_outlets_and_redis_each_get_every_row(
    mirror, redis_server, tmp_path, single_crawl
):
    """Two machines each crawling into their own ``output``: here two working folders, the
    same relative ``--archive``, crawling at the same time through one Redis."""
    places, second_at_work = [tmp_path / "host-a", tmp_path / "host-b"], threading.Event()
    for place in places:
        place.mkdir()

    def passing(method: str, path: str) -> str:
        if path.startswith(HELD) and "index" not in path:
            second_at_work.set()
        return "pass"

    with holding_one_article(mirror) as first_proxy, FaultProxy(mirror.url, passing) as second_proxy:
        # (one request at a time, as in test_redis_crawl: a second worker of one crawl gets work)
        first = worker(first_proxy, "output", redis_server.url, "-s", "CONCURRENT_REQUESTS=1", cwd=places[0])
        assert first_proxy.held.wait(120)  # the first is inside its crawl
        second = worker(second_proxy, "output", redis_server.url, cwd=places[1])
        assert second_at_work.wait(120)
        first_proxy.release.set()
        results = [finished(first), finished(second)]
    for (code, out, err), place in zip(results, places, strict=True):
        assert code == 0, out + err
        assert sorted(r["url"] for r in archived(place / "output")) == sorted(r["url"] for r in single_crawl)


@pytest.mark.parametrize(
    ("form", "given_as"),
    [
        ("redis://:{secret}@127.0.0.1:{port}/0", "--redis"),
        ("redis://worker:{secret}@127.0.0.1:{port}/0", "--redis"),
        ("redis://127.0.0.1:{port}/0?password={secret}", "--redis"),
        ("redis://worker@127.0.0.1:{port}/0?password={secret}&health_check_interval=15", "--redis"),
        ("redis://127.0.0.1:{port}/0?password={secret}", "-s"),
        ("redis://worker:{secret}@127.0.0.1:{port}/0?password={secret}", "environment"),
    ],
)
def test_a_redis_password_shows_in_no_output_log_or_archive(mirror, redis_server, tmp_path, form, given_as):
    client = redis.Redis.from_url(redis_server.url)
    client.acl_setuser(  # the README's user: newsarchive's keys and the commands it needs, no more
        "worker",
        enabled=True,
        passwords=[f"+{SECRET}"],
        keys=[f"{PREFIX}:*"],
        reset_channels=True,
        categories=["-@all", "+@read", "+@write", "+@keyspace", "+@scripting", "+@connection", "-@dangerous"],
    )
    client.config_set("requirepass", SECRET)  # (the default user too)
    url = form.format(secret=SECRET, port=redis_server.port)
    archive, summary = tmp_path / "archive", tmp_path / "summary.json"
    common = ("crawl", "--mirror-url", mirror.url, "--archive", str(archive), "--log-level", "DEBUG")
    common += ("--summary-json", str(summary))
    if given_as == "environment":
        run = run_cli(*common, env={"NEWSARCHIVE_REDIS_URL": url})
    else:
        run = run_cli(*common, *((given_as, url) if given_as == "--redis" else ("-s", f"REDIS_URL={url}")))

    assert run.returncode == 0, run.stdout + run.stderr
    assert "joined crawl" in run.stderr  # through Redis, with the password
    assert SECRET not in run.stdout + run.stderr
    assert SECRET not in summary.read_text() and json.loads(summary.read_text())
    for file in archive.rglob("*"):
        assert not file.is_file() or SECRET.encode() not in file.read_bytes(), file
