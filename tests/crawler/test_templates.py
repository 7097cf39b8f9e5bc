"""Each outlet's template in the crawl (``crawler/templates.py``), through the CLI: the one it opened with,
what it learns for the next, and the same rows from one process and from two Redis workers."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from scrapy.statscollectors import StatsCollector
from scrapy.utils.test import get_crawler

import crawler.templates as crawler_templates
from benchmarks.bench_crawl import EVAL, Site, registry
from crawler.from_settings import page_pool
from crawler.mirror.server import MirrorServer
from crawler.pipelines import ExtractPipeline
from crawler.shared.state import RedisCrawl, redis_client
from crawler.templates import TemplateLearning
from pipelines.archive.index import read_index_file
from pipelines.archive.keys import INDEX, TEMPLATE_FOLDER, is_key, template_key
from pipelines.archive.storage import LocalStore, StoreError
from pipelines.archive.storage.s3 import S3Store
from pipelines.archive.templates import TEMPLATES_PER_OUTLET
from pipelines.article import Article
from pipelines.stages.extraction.extractor import extract
from pipelines.stages.extraction.template import SiteTemplate
from tests.conftest import FIXTURES, REPO, fetched_article, run_cli
from tests.crawler.test_from_settings import crawl_settings
from tests.faultproxy import FaultProxy
from tests.test_hostile import articles, key
from tests.test_incremental import OUTLET, crawl, mirror, rows
from tests.test_redis_crawl import HELD, total

__all__ = ["mirror"]  # the fixture

STRAP = (FIXTURES / "template" / "strap.html").read_text(encoding="utf-8")  # a block no rule knows
STRAP_TEXT = "本栏目每周六推出科技创新特别报道"
SITE_STRAP = "Weekend Edition brings you the stories"  # on every page of FIXTURES/template/site


@pytest.fixture
def strapped(mirror: MirrorServer) -> MirrorServer:
    """Every article page of OUTLET with the same block before its first paragraph."""
    for article in articles(mirror):
        page = mirror.mirror.pages[key(article.url)]
        body = page.body.replace(b"<p>", STRAP.encode(article.encoding) + b"<p>", 1)
        mirror.mirror.pages[key(article.url)] = dataclasses.replace(page, body=body)
    return mirror


def kept(archive, outlet_id: str = OUTLET) -> SiteTemplate:
    """The outlet's template in the archive: one file, the newest crawl's."""
    (path,) = (archive / TEMPLATE_FOLDER / outlet_id).iterdir()
    return SiteTemplate.from_json(path.read_bytes())


def texts(archive) -> list[str]:
    found = [row["text"] for row in rows(archive)]
    assert len(found) == 5
    return found


@pytest.mark.slow
def test_without_learning_the_block_stays(strapped, tmp_path):
    crawl(strapped, tmp_path / "a", "-s", "TEMPLATE_LEARNING=False")
    assert all(STRAP_TEXT in text for text in texts(tmp_path / "a"))
    assert not (tmp_path / "a" / "_templates").exists()


@pytest.mark.slow
def test_an_outlets_first_crawl_keeps_the_block_and_learns_it_for_the_next(strapped, tmp_path):
    """No template in the archive: every page as the rules leave it, whatever the crawl learns."""
    crawl(strapped, tmp_path / "a")
    assert all(STRAP_TEXT in text for text in texts(tmp_path / "a"))
    assert kept(tmp_path / "a").pages == 5 and kept(tmp_path / "a").template()


@pytest.mark.slow
def test_the_next_crawl_extracts_every_page_without_the_block(strapped, tmp_path):
    crawl(strapped, tmp_path / "a")
    shutil.copytree(tmp_path / "a" / TEMPLATE_FOLDER, tmp_path / "b" / TEMPLATE_FOLDER)
    crawl(strapped, tmp_path / "b")
    assert not any(STRAP_TEXT in text for text in texts(tmp_path / "b"))
    assert kept(tmp_path / "b").pages == 10  # the kept 5 and this crawl's 5: one file, the older one gone


@pytest.mark.slow
def test_a_damaged_kept_template_is_reported_and_replaced(strapped, tmp_path):
    damaged = tmp_path / "a" / template_key(OUTLET, "20200101T000000Z-000000")
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b'{"pages": "many"')
    run = run_cli("crawl", "--mirror-url", strapped.url, "--archive", str(tmp_path / "a"), "--outlet", OUTLET)
    assert run.returncode == 1, run.stdout + run.stderr  # reported: a damaged object was read around
    problem = f"PROBLEM {template_key(OUTLET, '20200101T000000Z-000000')}: not a site template"
    assert problem in run.stdout
    assert all(STRAP_TEXT in text for text in texts(tmp_path / "a"))  # no template: the first crawl's
    assert kept(tmp_path / "a").pages == 5  # the damaged one replaced by what this crawl learned


@pytest.mark.slow
@pytest.mark.parametrize("name", ["zzz.planted.json", "zzz planted.json", "zzz-00001.json.bak", "ZZZ/x.json"])
def test_a_key_under_templates_that_is_no_templates_name_is_named_never_read_nor_deleted(
    strapped, tmp_path, name
):
    """Sorted as the newest, it would be read as the outlet's template and deleted as an older one."""
    planted = tmp_path / "a" / TEMPLATE_FOLDER / OUTLET / name
    planted.parent.mkdir(parents=True)
    planted.write_bytes(b'{"pages": "many"')
    run = run_cli("crawl", "--mirror-url", strapped.url, "--archive", str(tmp_path / "a"), "--outlet", OUTLET)
    assert run.returncode == 1, run.stdout + run.stderr
    (problem,) = [line for line in run.stdout.splitlines() if line.startswith("PROBLEM")]
    assert f"{TEMPLATE_FOLDER}/{OUTLET}/{name}" in problem and "not a template's name" in problem
    assert planted.read_bytes() == b'{"pages": "many"'
    assert all(STRAP_TEXT in text for text in texts(tmp_path / "a"))


@pytest.fixture
def undeletable(ceph_rgw, monkeypatch) -> S3Store:
    """A bucket whose policy denies every delete: Ceph RGW enforces it, as AWS does."""
    for name, value in ceph_rgw.env.items():
        monkeypatch.setenv(name, value)
    bucket = ceph_rgw.create_bucket()
    policy = (FIXTURES / "object-storage" / "deny-deletes.json").read_text(encoding="utf-8")
    ceph_rgw.client().put_bucket_policy(Bucket=bucket, Policy=policy.replace("BUCKET", bucket))
    return S3Store(f"s3://{bucket}/archive")


def learning(*outlets: str) -> TemplateLearning:
    """Templates that each learned a page this crawl, as a crawl leaves them to save."""
    learned = TemplateLearning(None)
    for outlet_id in outlets:
        learned.learn(outlet_id, [1, 2, 3], "https://example.cn/a.html")
    return learned


@pytest.mark.second_store
def test_a_store_that_refuses_deletes_keeps_a_bounded_number_of_templates(undeletable, tmp_path):
    """Each crawl writes its own key: where the older ones cannot go, an outlet stops at the bound,
    and one outlet's refused delete does not cost another its template."""
    for n in range(TEMPLATES_PER_OUTLET + 2):
        learning("aa-one", "bb-two").save(undeletable, tmp_path, f"20260101T00000{n}Z-000000")
    for outlet_id in ("aa-one", "bb-two"):
        kept = list(undeletable.object_keys(f"{TEMPLATE_FOLDER}/{outlet_id}/"))
        assert len(kept) == TEMPLATES_PER_OUTLET, kept
    with pytest.raises(StoreError):  # the policy holds: the bound is the crawl's doing
        undeletable.delete(kept[0])


def test_a_crawl_extracts_with_the_template_it_opened_with_whatever_it_learns(tmp_path):
    store = LocalStore(tmp_path / "archive")
    with_a_template(store, tmp_path / "spool")
    crawl = TemplateLearning(None)
    crawl.load(store, ["aa-one", "bb-two"])
    assert crawl.template("aa-one") == {1, 2} and crawl.template("bb-two") == frozenset()
    for article in ("d", "e", "f"):
        crawl.learn("aa-one", [3, 4], article)
        crawl.learn("bb-two", [5], article)
    assert crawl.template("aa-one") == {1, 2} and crawl.template("bb-two") == frozenset()


def test_workers_saving_in_turn_leave_what_one_process_learning_all_pages_leaves(tmp_path):
    """Each merges its learning with what the archive holds when it saves; whichever crawl id
    sorts first, one file is left, and the next crawl reads every block seen on three articles."""
    pages = [([1, 2, 10 + n], f"article {n}") for n in range(6)]
    one, workers = TemplateLearning(None), [TemplateLearning(None), TemplateLearning(None)]
    for n, (fingerprints, article) in enumerate(pages):
        one.learn("aa-one", fingerprints, article)
        workers[n % 2].learn("aa-one", fingerprints, article)
    one.save(LocalStore(tmp_path / "one"), tmp_path / "spool", "20260101T000000Z-000000")
    shared = LocalStore(tmp_path / "shared")
    workers[0].save(shared, tmp_path / "spool", "20260101T000009Z-000000")
    workers[1].save(shared, tmp_path / "spool", "20260101T000001Z-000000")  # sorts before the first's
    one_kept, shared_kept = kept(tmp_path / "one", "aa-one"), kept(tmp_path / "shared", "aa-one")
    assert shared_kept.template() == one_kept.template() == {1, 2}
    assert shared_kept.seen_on.keys() == one_kept.seen_on.keys()  # those seen once too
    assert shared_kept.pages == one_kept.pages == 6


def test_saving_takes_each_outlets_lock_around_its_own_save(tmp_path):
    """One lock per outlet: a long save never outlives a lock's expiry."""
    taken: list[str] = []
    archive = tmp_path / "archive"

    @contextlib.contextmanager
    def lock(outlet_id: str) -> Iterator[bool]:
        taken.append(f"held {outlet_id}")
        yield True
        saved = sorted(path.parent.name for path in (archive / TEMPLATE_FOLDER).glob("*/*.json"))
        taken.append(f"released {outlet_id} with {' '.join(saved)} saved")

    learning("bb-two", "aa-one").save(
        LocalStore(archive), tmp_path / "spool", "20260101T000000Z-000000", lock
    )
    assert taken == [
        "held aa-one",
        "released aa-one with aa-one saved",
        "held bb-two",
        "released bb-two with aa-one bb-two saved",
    ]
    TemplateLearning(None).save(LocalStore(archive), tmp_path / "spool", "x", lock)
    assert len(taken) == 4  # nothing learned: nothing to save, no lock


def test_a_full_folder_is_merged_into_one_file_where_deletes_work(tmp_path):
    """An outlet's folder at the bound (workers of a shared crawl that each saved, its deletes
    refused for a while): the next save merges them all and leaves its own file alone."""
    store, spool = LocalStore(tmp_path / "archive"), tmp_path / "spool"
    for n in range(TEMPLATES_PER_OUTLET):
        put(store, spool, f"20260101T00000{n}Z-000000", {n: ("a", "b"), 100: (f"c{n}",)})
    crawl = TemplateLearning(None)
    crawl.learn("aa-one", [0, 100], "d")
    crawl.save(store, spool, "20260102T000000Z-000000")
    assert list(store.object_keys(f"{TEMPLATE_FOLDER}/aa-one/")) == [
        template_key("aa-one", "20260102T000000Z-000000")
    ]
    assert kept(tmp_path / "archive", "aa-one").template() == {0, 100}  # 0: the oldest's, merged


def test_templates_older_than_the_newest_are_deleted_unread(tmp_path, caplog):
    """No crawl reads them (each reads the newest): their deletes keep the folder bounded."""
    store, spool = LocalStore(tmp_path / "archive"), tmp_path / "spool"
    for n in range(TEMPLATES_PER_OUTLET + 2):
        put(store, spool, f"20260101T00000{n}Z-000000", {n: ("a", "b", "c")})
    crawl = TemplateLearning(None)
    crawl.learn("aa-one", [9], "d")
    crawl.save(store, spool, "20260102T000000Z-000000")
    assert len(list(store.object_keys(f"{TEMPLATE_FOLDER}/aa-one/"))) == 1
    assert kept(tmp_path / "archive", "aa-one").template() == {2, 3, 4, 5}  # the newest four's
    assert "2 older templates of aa-one not read (no crawl reads them): deleted" in caplog.text


def put(store: LocalStore, spool: Path, crawl_id: str, seen_on: dict[int, tuple[str, ...]]) -> None:
    """An earlier crawl's template of aa-one: each block seen on these articles."""
    earlier = TemplateLearning(None)
    for fingerprint, seen in seen_on.items():
        for article in seen:
            earlier.learn("aa-one", [fingerprint], article)
    spool.mkdir(parents=True, exist_ok=True)
    (spool / "put.json").write_bytes(earlier.learned["aa-one"].to_json())
    store.publish(spool / "put.json", template_key("aa-one", crawl_id))
    (spool / "put.json").unlink()


@pytest.fixture
def unreadable(ceph_rgw, monkeypatch, tmp_path) -> S3Store:
    """A bucket holding two templates of aa-one, the newest of which its policy lets no one read."""
    for name, value in ceph_rgw.env.items():
        monkeypatch.setenv(name, value)
    bucket = ceph_rgw.create_bucket()
    store = S3Store(f"s3://{bucket}/archive")
    with_a_template(store, tmp_path / "spool")
    readable = learning("aa-one")  # another block on three articles, in the newest file
    for article in ("b", "c"):
        readable.learn("aa-one", [7], article)
    readable.save(store, tmp_path / "spool", "20260101T000001Z-000000")
    policy = (FIXTURES / "object-storage" / "deny-reads.json").read_text(encoding="utf-8")
    denied = f"archive/{template_key('aa-one', '20260101T000001Z-000000')}"
    ceph_rgw.client().put_bucket_policy(
        Bucket=bucket, Policy=policy.replace("BUCKET", bucket).replace("KEY", denied)
    )
    return store


@pytest.mark.second_store
def test_a_template_that_cannot_be_read_is_a_problem_of_the_run(unreadable):
    """Its pages are extracted without it: their rows may differ from another run's."""
    crawl = TemplateLearning(stats())
    crawl.load(unreadable, ["aa-one"])
    (problem,) = crawl.stats.get_value("archive/damaged")
    assert problem.startswith(f"{template_key('aa-one', '20260101T000001Z-000000')}: not read (")


def test_every_page_is_extracted_with_the_template_the_crawl_opened_with(tmp_path):
    """Pages given to the pipeline one at a time, each learned from: from the fourth on, what the
    crawl learned would take the strap out; the stored template does not know it, and stays."""
    store = LocalStore(tmp_path / "archive")
    with_a_template(store, tmp_path / "spool")
    crawler = get_crawler()
    templates = TemplateLearning(crawler.stats)
    pipeline = ExtractPipeline(crawler, page_pool(crawl_settings(), 1), templates)
    site = FIXTURES / "template" / "site"
    items = [
        fetched_article(
            url=f"https://valley.example/{n}.html", outlet_id="aa-one", body=(site / f"{n}.html").read_bytes()
        )
        for n in (1, 2, 3, 4, 5)
    ]

    async def run() -> list[Article]:
        pipeline._started = asyncio.ensure_future(pipeline.pool.start())
        pipeline._templates_loaded = asyncio.ensure_future(
            asyncio.to_thread(templates.load, store, ["aa-one"])
        )
        try:
            return [await pipeline._analysed(item) for item in items]
        finally:
            await pipeline.pool.close()

    analysed = asyncio.run(run())
    assert [item.site_template for item in items] == [frozenset({1, 2})] * len(items)  # as given
    assert all(SITE_STRAP in item.text for item in analysed)
    assert (
        SITE_STRAP
        not in extract(items[-1].body, items[-1].url, template=templates.learned["aa-one"].template()).text
    )


# -- the same rows from one process and from two Redis workers, from the same stored templates --

EVAL_SITES = ("udn.com", "finance.ifeng.com")  # 9 pages each in ../shared/eval/daniel_zh
STORED = "20200101T000000Z-000000"  # an earlier crawl's id
ASCII_STRAP_TEXT = "Weekend Edition brings you the stories of the valley every Saturday."
ASCII_STRAP = f'<p class="strap">{ASCII_STRAP_TEXT}</p>'.encode()  # ASCII: the same in every charset


def store_templates(archive: Path, pages: dict[str, list[tuple[bytes, str]]]) -> None:
    """Each outlet's template learned with the stage's SiteTemplate over its pages (body, URL),
    kept as an earlier crawl keeps it."""
    for outlet_id, bodies in pages.items():
        template = SiteTemplate()
        for body, url in bodies:
            result = extract(body, url, learn=True)
            template.learn(result.fingerprints, result.metadata.title or url)
        assert template.template()
        path = archive / template_key(outlet_id, STORED)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(template.to_json())


def outcomes(archive: Path, base: str = "") -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """What the crawl made of each page: the rows (URL without ``base``, text), and the pages
    without a row (URL, why) from the archive's index."""
    store, verdicts = LocalStore(archive), set()
    for index_key in store.object_keys(f"{INDEX}/"):
        if is_key(index_key, "delta", "base"):
            entries = read_index_file(store, index_key).entries.select(["url", "outcome"]).to_pylist()
            verdicts |= {(e["url"].removeprefix(base), e["outcome"]) for e in entries if e["outcome"]}
    texts = sorted((row["url"].removeprefix(base), row["text"]) for row in rows(archive))
    return texts, sorted(verdicts)


def learned_for_the_next_crawl(archive: Path) -> dict[str, tuple[frozenset[int], frozenset[int], int]]:
    """Each outlet's template in the archive (one file): its template, every block it keeps, pages."""
    found = {}
    for folder in (archive / TEMPLATE_FOLDER).iterdir():
        template = kept(archive, folder.name)
        found[folder.name] = (template.template(), frozenset(template.seen_on), template.pages)
    return found


def two_workers(
    archive: Path,
    redis_url: str,
    upstream: str,
    is_article: Callable[[str], bool],
    args: Callable[[str], list[str]],
) -> str:
    """Two ``newsarchive crawl --redis`` workers through a proxy in front of ``upstream``
    (``args``: their arguments, given the proxy's URL). The first fetches one page at a time and
    is held on its first article page until the second fetches one, so both take part. The
    proxy's URL; each worker must exit 0."""
    second_at_work = threading.Event()

    def rule(method: str, path: str) -> str:
        if not is_article(path):
            return "pass"
        if not proxy.held.is_set():
            return "hold"  # the first worker's: it fetches nothing else meanwhile
        second_at_work.set()
        return "pass"

    with FaultProxy(upstream, rule) as proxy:
        command = [sys.executable, "-m", "crawler", "crawl", *args(proxy.url), "--archive", str(archive)]
        command += ["--redis", redis_url]

        def start(*extra: str) -> subprocess.Popen[str]:
            return subprocess.Popen(
                [*command, *extra], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )

        first = start("-s", "CONCURRENT_REQUESTS=1")
        assert proxy.held.wait(120)
        second = start()
        assert second_at_work.wait(120)
        proxy.release.set()
        done = [process.communicate(timeout=300) for process in (first, second)]
    assert (first.returncode, second.returncode) == (0, 0), done
    assert all(total(out, "archived") > 0 for out, _ in done)  # both took part
    return proxy.url


@pytest.mark.slow
def test_two_workers_on_the_mirrors_make_the_rows_and_learn_the_template_one_process_does(
    strapped, redis_server, tmp_path
):
    """The stored templates learned from the pages as they were, the crawls of the pages with a
    second strap (every article page of every outlet): one that extracted with what it learns
    meanwhile would take it out of an outlet's pages after its third."""
    pages: dict[str, list[tuple[bytes, str]]] = {}
    for article in strapped.mirror.articles:
        if (page := strapped.mirror.pages.get(key(article.url))) is not None:
            pages.setdefault(article.outlet_id, []).append((page.body, article.url))
            if article.expect == "archived":
                body = page.body.replace(b"<p>", ASCII_STRAP + b"<p>", 1)
                strapped.mirror.pages[key(article.url)] = dataclasses.replace(page, body=body)
    store_templates(tmp_path / "seed", pages)
    for name in ("single", "shared"):
        shutil.copytree(tmp_path / "seed", tmp_path / name)
    single = run_cli("crawl", "--mirror-url", strapped.url, "--archive", str(tmp_path / "single"))
    assert single.returncode == 0, single.stdout + single.stderr

    def article(path: str) -> bool:
        return path.startswith(HELD) and path.endswith(".shtml") and "index" not in path

    two_workers(
        tmp_path / "shared", redis_server.url, strapped.url, article, lambda url: ["--mirror-url", url]
    )
    (texts, verdicts), shared = outcomes(tmp_path / "single"), outcomes(tmp_path / "shared")
    assert len(texts) == 30 and verdicts  # the mirrors' pages without an article too
    assert shared == (texts, verdicts)
    assert not any(STRAP_TEXT in text for _, text in texts)  # the stored template took it out
    # the stored templates do not know the second strap: an outlet's pages keep it all, or none
    outlet_of = {article.url: article.outlet_id for article in strapped.mirror.articles}
    kept_by_outlet: dict[str, set[bool]] = {}
    for url, text in texts:
        kept_by_outlet.setdefault(outlet_of[url], set()).add(ASCII_STRAP_TEXT in text)
    assert all(len(kept) == 1 for kept in kept_by_outlet.values()), kept_by_outlet
    assert sum(ASCII_STRAP_TEXT in text for _, text in texts) >= 20
    assert learned_for_the_next_crawl(tmp_path / "shared") == learned_for_the_next_crawl(tmp_path / "single")


@pytest.fixture
def eval_site(tmp_path) -> Iterator[Site]:
    """Pages of two sites of ../shared/eval/daniel_zh on loopback (``python -m http.server``)."""
    folder = tmp_path / "site"
    (folder / "pages").mkdir(parents=True)
    for site in EVAL_SITES:
        for page in sorted(EVAL.glob(f"daniel_zh/*_{site}_*.html")):
            shutil.copy(page, folder / "pages" / page.name)
    (folder / "sitemap.xml").write_text("", encoding="utf-8")  # written for each crawl: serve()
    site = Site(folder)
    yield site
    site.stop()


@pytest.mark.slow
def test_two_workers_on_eval_pages_make_the_rows_and_learn_the_template_one_process_does(
    eval_site, redis_server, tmp_path
):
    """The stored template learned from the pages as they were, the crawls of the pages with a
    strap before their first paragraph: one that extracted with what it learns meanwhile would
    take the strap out of the pages after its third."""
    folder = tmp_path / "site"
    names = sorted(path.name for path in (folder / "pages").iterdir())
    assert len(names) == 18

    def page(name: str) -> tuple[bytes, str]:
        return (folder / "pages" / name).read_bytes(), f"{eval_site.base}/pages/{name}"

    store_templates(tmp_path / "seed", {"bench": [page(n) for n in names]})
    stored = kept(tmp_path / "seed", "bench").template()
    # the template the crawls start from takes something out
    assert any(extract(*page(n), template=stored).text != extract(*page(n)).text for n in names)
    for name in names:
        body = (folder / "pages" / name).read_bytes()
        (folder / "pages" / name).write_bytes(body.replace(b"<p>", ASCII_STRAP + b"<p>", 1))
    for name in ("single", "shared"):
        shutil.copytree(tmp_path / "seed", tmp_path / name)

    def serve(base: str) -> list[str]:
        """The sitemap and the outlet at ``base``: the site's, or a proxy's in front of it."""
        (folder / "sitemap.xml").write_text(
            '<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
            + "".join(f"<url><loc>{base}/pages/{n}</loc></url>\n" for n in names)
            + "</urlset>\n",
            encoding="utf-8",
        )
        return ["--outlets-file", str(registry(SimpleNamespace(base=base), tmp_path)), "--outlet", "bench"]

    single = run_cli("crawl", *serve(eval_site.base), "--archive", str(tmp_path / "single"))
    assert single.returncode == 0, single.stdout + single.stderr
    proxy = two_workers(
        tmp_path / "shared", redis_server.url, eval_site.base, lambda path: path.startswith("/pages/"), serve
    )
    (texts, verdicts), shared = (
        outcomes(tmp_path / "single", eval_site.base),
        outcomes(tmp_path / "shared", proxy),
    )
    assert len(texts) >= 12  # most are articles
    assert shared == (texts, verdicts)
    # each as the stage extracts it with the stored template: nothing the crawl learned
    assert texts == sorted(
        (url, extract(*page(url.removeprefix("/pages/")), template=stored).text) for url, _ in texts
    )
    single_learned, shared_learned = (learned_for_the_next_crawl(tmp_path / n) for n in ("single", "shared"))
    assert shared_learned == single_learned and single_learned["bench"][2] == 36  # stored 18, learned 18
    assert (
        sum(ASCII_STRAP_TEXT in text for _, text in texts) >= 5
    )  # kept: the stored template does not know it


def with_a_template(store: LocalStore, spool: Path) -> None:
    """An earlier crawl's template of aa-one: blocks 1 and 2 on three articles."""
    stored = learning("aa-one")
    for article in ("b", "c"):
        stored.learn("aa-one", [1, 2], article)
    stored.save(store, spool, "20260101T000000Z-000000")


def test_a_worker_joining_a_shared_crawl_later_extracts_with_what_its_first_worker_read(
    redis_server, tmp_path
):
    """A worker stopped early saves what it learned, as any: one that joins after extracts with
    the template the crawl opened with, not with the archive's now; the last one leaves one file."""
    store, spool = LocalStore(tmp_path / "archive"), tmp_path / "spool"
    with_a_template(store, spool)
    crawl, _ = RedisCrawl.join(redis_client(redis_server.url), "scope")
    workers = [TemplateLearning(stats()) for _ in range(3)]
    workers[0].load(store, ["aa-one"], crawl)
    for article in ("d", "e", "f"):
        workers[0].learn("aa-one", [4], article)
    workers[0].save(store, spool, "20260101T000001Z-000000")  # stopped before the end
    assert kept(tmp_path / "archive", "aa-one").template() == {1, 2, 4}
    for worker in workers[1:]:
        worker.load(store, ["aa-one"], crawl)
        assert worker.template("aa-one") == workers[0].template("aa-one") == {1, 2}
        assert not worker.stats.get_value("archive/damaged")
    workers[2].learn("aa-one", [5], "g")
    workers[2].save(store, spool, "20260101T000002Z-000000")
    assert kept(tmp_path / "archive", "aa-one").template() == {1, 2, 4}  # all of it: one file


def stats() -> StatsCollector:
    return get_crawler().stats


@pytest.mark.parametrize(
    "planted",
    [
        b"{",
        b"[1]",
        b'{"zz-other": ""}',  # an outlet of another crawl
        b'{"aa-one": "000000000000000g"}',
        b'{"aa-one": "0000000000000001 "}',
        b'{"aa-one": ["0000000000000001"]}',
        b'{"aa-one": "' + b"0" * 16 * 101 + b'"}',  # more than a template holds (made small below)
        b'{"aa-one": "' + b"0" * 16 * 300 + b'"}',  # more than the bytes read (made small below)
        b"\xff",
    ],
)
def test_the_crawls_templates_in_redis_that_are_none_of_ours_give_this_workers_own_and_a_problem(
    redis_server, tmp_path, planted, monkeypatch
):
    monkeypatch.setattr(crawler_templates, "SHARED_MAX_BYTES", 4096)
    monkeypatch.setattr(crawler_templates, "MAX_TEMPLATE", 100)
    store = LocalStore(tmp_path / "archive")
    with_a_template(store, tmp_path / "spool")
    crawl, _ = RedisCrawl.join(redis_client(redis_server.url), "scope")
    crawl.client.set(crawl.key("templates"), planted)
    worker = TemplateLearning(stats())
    worker.load(store, ["aa-one", "bb-two"], crawl)
    assert worker.template("aa-one") == {1, 2}  # its own
    (problem,) = worker.stats.get_value("archive/damaged")
    assert problem.startswith("the crawl's templates in Redis not used (the crawl's templates")


def test_a_redis_that_refuses_the_crawls_templates_gives_this_workers_own_and_a_problem(
    redis_server, tmp_path
):
    """A key of another type (or a command the ACL refuses, a Redis out of memory): no traceback."""
    store = LocalStore(tmp_path / "archive")
    with_a_template(store, tmp_path / "spool")
    crawl, _ = RedisCrawl.join(redis_client(redis_server.url), "scope")
    crawl.client.hset(crawl.key("templates"), "x", "y")
    worker = TemplateLearning(stats())
    worker.load(store, ["aa-one"], crawl)
    assert worker.template("aa-one") == {1, 2}
    (problem,) = worker.stats.get_value("archive/damaged")
    assert "Redis refused them (ResponseError: WRONGTYPE" in problem


def test_the_crawls_templates_in_redis_are_what_its_first_worker_read(redis_server, tmp_path):
    crawl, _ = RedisCrawl.join(redis_client(redis_server.url), "scope")
    first_store, later_store = LocalStore(tmp_path / "first"), LocalStore(tmp_path / "later")
    with_a_template(first_store, tmp_path / "spool")  # what the first read; the later's archive has none
    first, later = TemplateLearning(stats()), TemplateLearning(stats())
    first.load(first_store, ["aa-one", "bb-two"], crawl)
    later.load(later_store, ["aa-one", "bb-two"], crawl)
    assert later.template("aa-one") == first.template("aa-one") == {1, 2}
    assert later.template("bb-two") == frozenset()
    assert crawl.client.get(crawl.key("templates")) == b'{"aa-one":"00000000000000010000000000000002"}'
