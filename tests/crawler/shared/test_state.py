"""The shared crawl's state in a real Redis: taking, giving back, claims, the end."""

from __future__ import annotations

import pytest

from crawler.shared.state import PREFIX, RedisCrawl


def join(client, scope: str = "s") -> tuple[RedisCrawl, bool]:
    return RedisCrawl.join(client, scope, timeout=30)


def test_workers_of_one_scope_join_one_crawl_and_a_done_crawl_is_not_joined(client):
    (first, started), (second, joined) = join(client), join(client)
    assert started and not joined and first.crawl_id == second.crawl_id != join(client, "other")[0].crawl_id
    assert first.should_seed() and not second.should_seed()
    first.seeded()
    for worker in (first, second):
        worker.idle()
    assert first.finished() and second.finished()
    assert first.leave(sealed=True, scope="s", found={"a": 2}) is None  # the other is still there
    assert second.leave(sealed=True, scope="s", found={"a": 1}) == {"a": 3}  # the last: the totals
    assert not list(client.scan_iter(match=f"{PREFIX}:{first.crawl_id}:*"))  # its keys are gone
    assert join(client)[0].crawl_id != first.crawl_id


def test_a_request_is_queued_once_taken_by_one_worker_and_given_back_with_its_claims(client):
    (first, _), (second, _) = join(client), join(client)
    assert first.queue_new("fp1", 0, b"request-1") and not second.queue_new("fp1", 0, b"request-1")
    assert first.queue_new(None, 0, b"request-2")  # dont_filter: no fingerprint
    assert first.claim("article-a") and not second.claim("article-a") and first.claim("article-a")
    taken = {first.take(), first.take()}
    assert taken == {b"request-1", b"request-2"} and second.take() is None
    assert not first.finished()  # not seeded, and first took work: not idle
    assert second.give_back(first.worker) == 2  # as for a dead worker: both queued again,
    assert second.claim("article-a")  # and its claims released
    assert {second.take(), second.take()} == taken


def test_a_sealed_workers_claims_stay_when_it_gives_back_what_it_held(client):
    (first, _), (second, _) = join(client), join(client)
    first.queue_new("fp", 0, b"request")
    first.claim("article-a")
    first.take()
    first.leave(sealed=True, scope="s", found={})  # stopped early, its manifest holds article-a
    assert second.take() == b"request" and not second.claim("article-a")


def test_a_copy_names_the_first_article_with_its_text(client):
    (first, _), (second, _) = join(client), join(client)
    article_a, article_b = "a" * 64, "b" * 64
    assert first.first_with_text("text-1", article_a) == article_a
    assert second.first_with_text("text-1", article_b) == article_a


def test_a_worker_whose_heart_stopped_has_its_requests_put_back(client):
    (dead, _), (alive, _) = join(client), join(client)
    dead.queue_new("fp", 0, b"request")
    dead.take()
    assert alive.reclaim_dead() == 0  # its heart still beats
    client.delete(dead.key(f"alive:{dead.worker}"))  # as when it stops for REDIS_WORKER_TIMEOUT
    assert alive.reclaim_dead() == 1 and alive.take() == b"request"
    dead.beat()  # it was only slow: it counts again among the workers (the end waits for it)
    assert client.sismember(dead.key("workers"), dead.worker)


def test_a_planted_crawl_id_is_not_joined_and_a_crawl_removes_only_its_own_keys(client):
    victims = {f"{PREFIX}:newsarchive-0badc0de:requests": "other crawl", "unrelated": "data"}
    for id_ in ("*", f"{PREFIX}-*", "newsarchive-0badc0de:requests", "x" * 100):
        client.mset(victims)
        client.set(f"{PREFIX}:current:s", id_)
        crawl, started = join(client)
        assert started and crawl.crawl_id not in (id_, "newsarchive-0badc0de")
        crawl.seeded()
        crawl.idle()
        assert crawl.finished()
        crawl.leave(sealed=True, scope="s", found={})
        assert client.mget(list(victims)) == [v.encode() for v in victims.values()]


def test_names_and_numbers_read_back_from_redis_are_checked(client):
    (crawl, _), (other, _) = join(client), join(client)
    client.sadd(crawl.key("workers"), b"\x80\xff not utf-8")
    client.set(crawl.key("seeder"), b"\x80\xff not utf-8")
    assert other.should_seed()  # a seeder named so has no heartbeat: it is dead
    crawl.reclaim_dead()
    assert client.smembers(crawl.key("workers")) == {crawl.worker.encode(), other.worker.encode()}
    client.hset(crawl.key("texts"), "text-1", b"../../victim")
    assert crawl.first_with_text("text-1", "a" * 64) == "a" * 64
    client.hset(crawl.key("found"), mapping={b"\xff": b"1", b"sxkjt": b"many", b"gmw-cq": b"9" * 5000})
    crawl.seeded()
    crawl.idle()
    other.idle()
    assert crawl.finished()
    other.leave(sealed=True, scope="s", found={})
    assert crawl.leave(sealed=True, scope="s", found={"jzyinliu": 2}) == {"jzyinliu": 2}


def test_a_lock_is_held_by_one_worker_expires_with_a_dead_one_and_is_released_only_by_its_holder(client):
    first, _ = join(client)
    dying = RedisCrawl(client, first.crawl_id, "dying", timeout=0.05)  # its lock expires at once
    impatient = RedisCrawl(client, first.crawl_id, "impatient", timeout=0.05)
    with first.lock("templates") as held:
        assert held
        with impatient.lock("templates") as waited_out:  # waits twice its timeout, then goes on
            assert not waited_out
    dead = dying.lock("templates")
    assert dead.__enter__()  # and never leaves: killed holding it
    with first.lock("templates") as held:  # waits until it expires
        assert held
        dead.__exit__(None, None, None)  # a holder whose lock expired removes nothing
        assert client.exists(first.key("lock:templates"))
    assert not client.exists(first.key("lock:templates"))  # released by its holder


def test_what_the_first_worker_put_is_what_every_worker_reads(client):
    (first, _), (second, _) = join(client), join(client)
    assert first.agree("templates", b"first", 5) == b"first" == second.agree("templates", b"second", 5)
    client.delete(first.key("templates"))  # as the crawl's last worker leaves it: none put it back
    assert second.agree("templates", b"second", 6) == b"second"


def test_what_the_first_worker_put_is_not_read_when_it_is_over_the_bound(client):
    (first, _), (second, _) = join(client), join(client)
    first.agree("templates", b"x" * 100, 100)
    with pytest.raises(ValueError, match="100 bytes in Redis, over 99"):
        second.agree("templates", b"small", 99)
