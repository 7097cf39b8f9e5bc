"""The shared crawl's state in a real Redis: taking, giving back, claims, the end."""

from __future__ import annotations

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
