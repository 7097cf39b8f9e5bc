"""The key grammars: every key the naming functions make passes, and nothing that could name a
path outside the archive, another kind of object, or another partition does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from fnmatch import fnmatch

import pytest

from pipelines.archive.keys import (
    FORMER_INDEX_SUFFIX,
    BadKey,
    base_key,
    cdxj_key,
    checked,
    checked_outlet,
    compacted_key,
    delta_key,
    delta_keys,
    former_index_name,
    index_crawl,
    is_key,
    lease_key,
    manifest_key,
    month_of,
    part_key,
    part_of,
    partition_key,
    template_key,
    warc_key,
)

CRAWL = "20261123T041500Z-1a2b3c"
PARTITION = partition_key("gmw-cq", "2024-03")

NAMED = {
    "part": [part_key(PARTITION, CRAWL, 1), part_key(partition_key("x1", "unknown"), "c1", 123456)],
    "warc": [warc_key(CRAWL, 1)],
    "cdxj": [cdxj_key(warc_key(CRAWL, 1))],
    "manifest": [manifest_key(CRAWL)],
    "delta": [delta_key(CRAWL)],
    "base": [base_key(CRAWL)],
    "template": [template_key("gmw-cq", CRAWL)],
    "lease": [lease_key(7)],
}
NAMED["part"].append(compacted_key(PARTITION, CRAWL, 3))

# each of these spelled the ways an attacker would: dots, slashes, encodings, look-alikes
HOSTILE = [
    "",
    "../x",
    "../../etc/passwd",
    "/etc/passwd",
    "//host/share",
    "outlet=gmw-cq/published=2024-03/../../../x.parquet",
    "outlet=gmw-cq/published=2024-03/part-..-00001.parquet",
    "outlet=../published=2024-03/part-c1-00001.parquet",
    "outlet=gmw-cq/published=../part-c1-00001.parquet",
    "outlet=gmw-cq/published=2024-03/part-c1-00001.parquet/../../x",
    "outlet=gmw-cq/published=2024-03\\..\\..\\part-c1-00001.parquet",
    "outlet=gmw-cq/published=2024-03/part-c1\x00-00001.parquet",
    "outlet=gmw-cq/published=2024-03/part-c1-00001.parquet\n",
    "outlet=gmw-cq/published=2024-03/part-c1-00001.parquet\x00.txt",
    "outlet=gmw-cq/published=2024-03//part-c1-00001.parquet",
    "./outlet=gmw-cq/published=2024-03/part-c1-00001.parquet",
    "outlet=GMW-CQ/published=2024-03/part-c1-00001.parquet",
    "outlet=gmw-cq/published=2024-13/part-c1-00001.parquet",
    "outlet=gmw-cq/published=２０２４-03/part-c1-00001.parquet",  # full-width digits
    "outlet=gmw-cq/published=2024-03/part-c1-０００01.parquet",
    "outlet=gmw-cq/published=2024-03/part-c1%2F..%2F-00001.parquet",
    "outlet=gmw-cq/published=2024-03/part-c1-00001.parquet.tmp",
    "_warc/../../x.warc.gz",
    "_warc/c1-00001.warc.gz/../../../x",
    "_warc/sub/c1-00001.warc.gz",
    "_manifests/../x.json",
    "_manifests/.json",
    "_index/delta-../../x.parquet",
    "_index/delta-c1.parquet-index/../../x",
    "_index/delta-c1.parquet-index.tmp",
    "_index/delta-c1.parquet-indexx",
    "_index/base-c1.index",
    "_templates/gmw-cq/../../x.json",
    "C:\\archive\\x",
    "file:///etc/passwd",
    "s3://other-bucket/x",
]


@pytest.mark.parametrize("kind", NAMED)
def test_every_key_the_naming_functions_make_is_in_its_grammar_and_no_other(kind):
    for key in NAMED[kind]:
        assert checked(key, kind) == key
        assert [other for other in NAMED if is_key(key, other)] == [kind]


@pytest.mark.parametrize("kind", NAMED)
def test_only_parts_end_in_parquet_so_the_data_glob_reads_articles_alone(kind):
    """``read_parquet('ARCHIVE/**/*.parquet')`` matches by the name's end, in every folder."""
    for key in NAMED[kind]:
        assert fnmatch(key, "*.parquet") == (kind == "part"), key


def test_index_files_of_the_former_name_are_still_index_files_of_their_crawl():
    former, current = delta_key(CRAWL, FORMER_INDEX_SUFFIX), delta_key(CRAWL)
    assert delta_keys(CRAWL) == (current, former)
    assert former == f"_index/delta-{CRAWL}.parquet" and current == f"_index/delta-{CRAWL}.parquet-index"
    old_base = base_key(CRAWL).removesuffix("-index")
    assert [is_key(key, "delta") for key in (former, current, old_base)] == [True, True, False]
    assert is_key(old_base, "base")
    assert [index_crawl(key) for key in (former, current, old_base, base_key(CRAWL))] == [CRAWL] * 4
    assert [former_index_name(key) for key in (former, current, old_base, base_key(CRAWL))] == [
        True,
        False,
        True,
        False,
    ]
    assert not former_index_name(part_key(PARTITION, CRAWL, 1))  # ends in .parquet, but a part
    with pytest.raises(BadKey):
        index_crawl(manifest_key(CRAWL))


@pytest.mark.parametrize("key", HOSTILE)
def test_no_path_outside_its_folder_is_a_key_of_any_kind(key):
    assert not is_key(key, *NAMED)
    assert part_of(key) is None
    with pytest.raises(BadKey) as refused:
        checked(key, *NAMED)
    assert "\x00" not in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("value", [None, 5, ["a"], {"key": "x"}, b"outlet=x"])
def test_what_is_no_string_is_no_key(value):
    assert not is_key(value, *NAMED)
    with pytest.raises(BadKey):
        checked(value, "part")


def test_a_part_key_tells_its_partition_run_and_whether_a_compaction_wrote_it():
    written = part_of(part_key(PARTITION, "20250101T000100Z-hourly", 1))
    assert (written.outlet, written.month, written.crawl_id, written.compacted) == (
        "gmw-cq",
        "2024-03",
        "20250101T000100Z-hourly",
        False,
    )
    compacted = part_of(compacted_key(PARTITION, CRAWL, 12))
    assert (compacted.partition, compacted.crawl_id, compacted.compacted) == (PARTITION, CRAWL, True)


@pytest.mark.parametrize("outlet", ["gmw-cq", "sxkjt", "a1"])
def test_outlet_ids_of_the_registry_pass(outlet):
    assert checked_outlet(outlet) == outlet


@pytest.mark.parametrize("outlet", ["", "../x", "a/b", "-a", "A", "gmw_cq", "x" * 64, "a\x00b", "ａｂ", 5])
def test_other_outlet_ids_are_refused(outlet):
    with pytest.raises(BadKey):
        checked_outlet(outlet)


def test_a_month_is_the_utc_month_zero_padded():
    east = timezone(timedelta(hours=8))
    assert month_of(datetime(2024, 3, 1, 2, tzinfo=east)) == "2024-02"
    assert month_of(datetime(99, 3, 1, tzinfo=UTC)) == "0099-03"
    assert month_of(None) == "unknown"
    assert is_key(part_key(partition_key("ab", month_of(datetime(99, 3, 1, tzinfo=UTC))), "c", 1), "part")


def test_a_long_key_is_shown_cut_short():
    with pytest.raises(BadKey) as refused:
        checked("../" * 1000, "part")
    assert len(str(refused.value)) < 200
