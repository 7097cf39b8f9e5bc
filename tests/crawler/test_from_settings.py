"""crawler/from_settings.py: the archivist commands read, without Scrapy, the settings a crawl reads."""

from __future__ import annotations

import os

import pytest
from scrapy.settings import BaseSettings, Settings

from crawler import common_settings
from crawler.from_settings import PlainSettings, extract_workers, page_pool, store_from_settings

NAMES = sorted(name for name in dir(common_settings) if name.isupper())


def crawl_settings() -> Settings:
    settings = Settings()
    settings.setmodule("crawler.settings", priority="project")
    return settings


def test_the_plain_settings_are_the_crawls():
    """Every archive and page-worker setting, its value and as each getter reads it."""
    crawl, plain = crawl_settings(), PlainSettings.of()
    read = {"ARCHIVE_LEASE_SECONDS", "ARCHIVE_ACCEPT_UNCONDITIONAL_WRITES", "EXTRACT_TIMEOUT"}
    assert read <= set(NAMES)
    for name in NAMES:
        assert plain.get(name) == crawl.get(name), name
        for getter in ("getbool", "getint", "getfloat", "getlist"):
            try:
                expected = getattr(crawl, getter)(name)
            except (TypeError, ValueError) as refused:
                with pytest.raises(type(refused)):
                    getattr(plain, getter)(name)
            else:
                assert getattr(plain, getter)(name) == expected, (name, getter)


@pytest.mark.parametrize("value", [True, False, 0, 1, "0", "1", "true", "False", "", None, "a,b", ["x"], 2.5])
def test_the_getters_read_values_as_scrapys_do(value):
    scrapy, plain = BaseSettings({"NAME": value}), PlainSettings({"NAME": value})
    for getter in ("get", "getbool", "getint", "getfloat", "getlist"):
        try:
            expected = getattr(scrapy, getter)("NAME")
        except (TypeError, ValueError) as refused:
            with pytest.raises(type(refused)):
                getattr(plain, getter)("NAME")
        else:
            assert getattr(plain, getter)("NAME") == expected, getter


def test_an_override_wins(tmp_path):
    crawl = crawl_settings()
    crawl.set("ARCHIVE_URI", str(tmp_path), priority="cmdline")
    plain = PlainSettings.of(ARCHIVE_URI=str(tmp_path))
    assert store_from_settings(plain).uri == store_from_settings(crawl).uri
    assert store_from_settings(PlainSettings.of()).uri == store_from_settings(crawl_settings()).uri


def test_the_page_pool_is_sized_alike():
    """As the crawl's ExtractPipeline sizes it and ``reextract`` and ``extract`` do."""
    crawl, plain = page_pool(crawl_settings()), page_pool(PlainSettings.of())
    for attribute in ("target", "options", "size", "timeout", "cpu_limit", "start_timeout", "_started"):
        assert getattr(plain, attribute) == getattr(crawl, attribute), attribute


@pytest.mark.parametrize(("jobs", "setting", "count"), [(None, 0, os.cpu_count()), (3, 0, 3), (None, 2, 2)])
def test_the_page_workers_are_jobs_else_the_setting_else_every_core(jobs, setting, count):
    assert extract_workers(PlainSettings.of(EXTRACT_WORKERS=setting), jobs) == count


@pytest.mark.parametrize(("jobs", "setting"), [(0, 0), (-3, 0), (None, -1)])
def test_fewer_than_one_page_worker_is_refused_not_a_pool_that_waits_for_ever(jobs, setting):
    with pytest.raises(ValueError, match=r"page workers .*: give 1 or more"):
        extract_workers(PlainSettings.of(EXTRACT_WORKERS=setting), jobs)
