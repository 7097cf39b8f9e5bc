from __future__ import annotations

import pytest

from crawler.registry import DEFAULT_REGISTRY, RegistryError, load_registry
from tests.conftest import FIXTURES, run_cli

REGISTRY = FIXTURES / "registry"
SEED_OUTLETS = {"gmw-cq", "tianyan-gzdaily", "sxkjt", "hangzhou-net", "breakinglatest", "jzyinliu"}


def test_shipped_registry_covers_the_seed_outlets():
    registry = load_registry()
    assert set(registry) == SEED_OUTLETS
    for outlet in registry.values():
        assert outlet.sitemaps or outlet.feeds or outlet.listings
        assert outlet.zone.key == outlet.timezone


def test_outlet_for_article_matches_pattern_and_domain():
    registry = load_registry()
    url = "https://difang.gmw.cn/cq/2024-03/11/content_37197155.htm"
    assert registry.outlet_for_article(url).id == "gmw-cq"
    assert registry.outlet_for_article("https://difang.gmw.cn/cq/") is None
    assert registry.outlet_for_article("https://evil.example/cq/2024-03/11/content_1.htm") is None


@pytest.mark.parametrize("scheme", ["file", "FILE", "s3", "ftp", "gopher", "data"])
def test_a_url_on_an_outlets_host_is_not_its_own_unless_http_or_https(scheme):
    """``file://difang.gmw.cn/proc/self/environ`` names the outlet's host, not its site."""
    outlet = load_registry()["gmw-cq"]
    assert outlet.owns("https://difang.gmw.cn/cq/") and outlet.owns("HTTP://difang.gmw.cn/cq/")
    assert not outlet.owns(f"{scheme}://difang.gmw.cn/proc/self/environ")
    assert not outlet.owns(f"{scheme}://difang.gmw.cn/cq/2024-03/11/content_37197155.htm")


@pytest.mark.parametrize(
    ("file", "outlet", "field", "problem"),
    [
        ("bad_timezone.toml", "bad-zone", "timezone", "unknown IANA time zone"),
        ("bad_pattern.toml", "bad-pattern", "article_patterns", "invalid regular expression"),
        ("offsite_start.toml", "offsite", "start.sitemaps", "outside allowed_domains"),
        ("typo_key.toml", "typo", "article_pattern", "unknown key"),
        ("no_start.toml", "nostart", "start", "at least one of"),
        ("bad_language.toml", "badlang", "languages", "ISO 639-1"),
        ("bad_id.toml", "bad-id\n", "id", "lower-case letters, digits and dashes"),
        ("bad_selector.toml", "badcss", "extraction.drop", "invalid CSS selector"),
        ("bad_licence.toml", "badlicence", "licence", "must be a non-empty string"),
    ],
)
def test_bad_entry_is_one_clear_error(file, outlet, field, problem):
    path = REGISTRY / file
    with pytest.raises(RegistryError) as error:
        load_registry([path])
    message = str(error.value)
    assert message.startswith(str(path))
    assert f"outlet {outlet!r}" in message
    assert f"field {field!r}" in message
    assert problem in message


def test_missing_file_is_named(tmp_path):
    with pytest.raises(RegistryError, match=r"missing\.toml: file not found"):
        load_registry([tmp_path / "missing.toml"])


def test_outlets_file_replaces_and_adds():
    registry = load_registry([REGISTRY / "replace_gmw.toml"])
    assert registry["gmw-cq"].name == "光明网·重庆 (replaced)"
    assert registry["example-daily"].languages == ("zh", "en")
    assert set(registry) == SEED_OUTLETS | {"example-daily"}
    assert list(load_registry(base=DEFAULT_REGISTRY)) == list(load_registry())


def test_an_outlets_licence_and_crawl_policy_are_what_its_entry_states_or_none():
    registry = load_registry([REGISTRY / "stated_terms.toml"])
    stated = registry["example-daily"]
    assert stated.licence == "CC BY 4.0 (example.cn/about, read 2026-11-01)"
    assert stated.crawl_policy == "robots.txt allows /news/; terms of use silent on crawling"
    assert all(registry[o].licence is None and registry[o].crawl_policy is None for o in SEED_OUTLETS)


def test_cli_reports_registry_errors_before_crawling(tmp_path):
    run = run_cli("crawl", "--outlets-file", str(REGISTRY / "bad_timezone.toml"), "--archive", str(tmp_path))
    assert run.returncode == 2
    assert "field 'timezone'" in run.stderr
    assert not list(tmp_path.iterdir())


def test_cli_lists_outlets_with_extra_file():
    run = run_cli("outlets", "--outlets-file", str(REGISTRY / "replace_gmw.toml"))
    assert run.returncode == 0
    assert "example-daily" in run.stdout and "(replaced)" in run.stdout
