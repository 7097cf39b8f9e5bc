"""Each outlet's template learned in the crawl (``crawler/templates.py``), through the CLI."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from crawler.mirror.server import MirrorServer
from crawler.templates import TEMPLATES_PER_OUTLET, TemplateLearning
from pipelines.archive.keys import TEMPLATE_FOLDER, template_key
from pipelines.archive.storage import StoreError
from pipelines.archive.storage.s3 import S3Store
from pipelines.stages.extraction.template import SiteTemplate
from tests.conftest import FIXTURES, run_cli
from tests.test_hostile import articles, key, stat
from tests.test_incremental import OUTLET, crawl, mirror, rows

__all__ = ["mirror"]  # the fixture

STRAP = (FIXTURES / "template" / "strap.html").read_text(encoding="utf-8")  # a block no rule knows
STRAP_TEXT = "本栏目每周六推出科技创新特别报道"


@pytest.fixture
def strapped(mirror: MirrorServer) -> MirrorServer:
    """Every article page of OUTLET with the same block before its first paragraph."""
    for article in articles(mirror):
        page = mirror.mirror.pages[key(article.url)]
        body = page.body.replace(b"<p>", STRAP.encode(article.encoding) + b"<p>", 1)
        mirror.mirror.pages[key(article.url)] = dataclasses.replace(page, body=body)
    return mirror


def kept(archive) -> SiteTemplate:
    """The outlet's template in the archive: one file, the newest crawl's."""
    (path,) = (archive / TEMPLATE_FOLDER / OUTLET).iterdir()
    return SiteTemplate.from_json(path.read_bytes())


def texts(archive) -> list[str]:
    found = [row["text"] for row in rows(archive)]
    assert len(found) == 5
    return found


def test_without_learning_the_block_stays(strapped, tmp_path):
    crawl(strapped, tmp_path / "a", "-s", "TEMPLATE_LEARNING=False")
    assert all(STRAP_TEXT in text for text in texts(tmp_path / "a"))
    assert not (tmp_path / "a" / "_templates").exists()


def test_an_outlets_first_pages_wait_for_its_template_and_all_lose_the_block(strapped, tmp_path):
    """Five pages, fewer than TEMPLATE_WARMUP_PAGES: held until nothing else is left."""
    run = crawl(strapped, tmp_path / "a", "--log-level", "INFO")
    assert not any(STRAP_TEXT in text for text in texts(tmp_path / "a"))
    assert stat(run.stderr, "template/held") == stat(run.stderr, "template/released/idle") == 5
    assert kept(tmp_path / "a").pages == 5 and kept(tmp_path / "a").template()


def test_released_once_enough_pages_are_learned(strapped, tmp_path):
    run = crawl(strapped, tmp_path / "a", "--log-level", "INFO", "-s", "TEMPLATE_WARMUP_PAGES=3")
    assert not any(STRAP_TEXT in text for text in texts(tmp_path / "a"))
    assert stat(run.stderr, "template/released/pages") == stat(run.stderr, "template/held") >= 2


def test_the_next_crawl_starts_from_the_kept_template(strapped, tmp_path):
    crawl(strapped, tmp_path / "a")
    shutil.copytree(tmp_path / "a" / TEMPLATE_FOLDER, tmp_path / "b" / TEMPLATE_FOLDER)
    run = crawl(strapped, tmp_path / "b", "--log-level", "INFO", "-s", "TEMPLATE_WARMUP_PAGES=5")
    assert stat(run.stderr, "template/held") == 0  # learned already: no page waits
    assert not any(STRAP_TEXT in text for text in texts(tmp_path / "b"))
    assert kept(tmp_path / "b").pages == 10  # the kept 5 and this crawl's 5: one file, the older one gone


def test_held_pages_past_the_byte_budget_go_on(strapped, tmp_path):
    """The crawl never waits on its own held pages: each is let go at once here."""
    run = crawl(strapped, tmp_path / "a", "--log-level", "INFO", "-s", "TEMPLATE_WARMUP_BYTES=1")
    assert stat(run.stderr, "template/released/memory") == 5
    texts(tmp_path / "a")


def test_a_damaged_kept_template_is_learned_again(strapped, tmp_path):
    damaged = tmp_path / "a" / template_key(OUTLET, "20200101T000000Z-000000")
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b'{"pages": "many"')
    run = run_cli("crawl", "--mirror-url", strapped.url, "--archive", str(tmp_path / "a"), "--outlet", OUTLET)
    assert run.returncode == 1, run.stdout + run.stderr  # reported: a damaged object was read around
    problem = f"PROBLEM {template_key(OUTLET, '20200101T000000Z-000000')}: not a site template"
    assert problem in run.stdout
    assert not any(STRAP_TEXT in text for text in texts(tmp_path / "a"))
    assert kept(tmp_path / "a").pages == 5


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
    assert not any(STRAP_TEXT in text for text in texts(tmp_path / "a"))


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
    learned = TemplateLearning(None, 5, 1 << 20, 1.0, lambda held: False)
    for outlet_id in outlets:
        learned.templates[outlet_id].learn([1, 2, 3], "https://example.cn/a.html")
        learned.learned.add(outlet_id)
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
