"""The WARC writer: records warcio reads back with their digests, one range read per response,
rotation by size, CDXJ indexes, and files cut short by a kill finished whole or not at all."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import hashlib
import io
import json
import shutil
import tomllib
import tracemalloc
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cdxj_indexer.main import CDXJIndexer
from warcio.archiveiterator import ArchiveIterator

from benchmarks.bench_hostile import gzipped_zeros
from pipelines.archive.warc import (
    BODY_MAX_BYTES,
    OPEN_SUFFIX,
    WARC_FOLDER,
    Capture,
    Exchange,
    WarcError,
    WarcWriter,
    check,
    finish_open_files,
    read_body,
    read_capture,
)
from tests.conftest import FIXTURES

SPECS = tomllib.loads((FIXTURES / "warc" / "exchanges.toml").read_text(encoding="utf-8"))["exchange"]
FETCHED = datetime(2026, 11, 23, 4, 15, 30, tzinfo=UTC)


def _page(spec: dict) -> bytes:
    return (FIXTURES / spec["body"]).read_bytes() if spec["body"] else b""


def _exchange(spec: dict) -> Exchange:
    page = _page(spec)
    return Exchange(
        url=spec["url"],
        method="GET",
        request_headers=[("User-Agent", "newsarchive/0.1"), ("Accept-Encoding", "gzip, deflate")],
        request_body=b"",
        protocol=spec.get("protocol", "HTTP/1.1"),
        status=spec["status"],
        response_headers=[tuple(pair) for pair in spec["response_headers"]],
        body=gzip.compress(page, mtime=0) if spec.get("gzip") else page,
        ip_address=spec.get("ip_address"),
        fetched_at=FETCHED,
    )


def _written(root: Path, max_bytes: int = 1 << 30, index_every: int = 1 << 20) -> tuple[list[Capture], list]:
    info = {"software": "newsarchive test", "isPartOf": "run1"}
    writer = WarcWriter(root, "run1", max_bytes, info, index_every)
    captures, files = [], []
    for spec in SPECS:
        capture, full = writer.write(_exchange(spec))
        captures.append(capture)
        files += [full] if full else []
    last = writer.finish()
    return captures, files + ([last] if last else [])


def _sha1(data: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode()


def test_every_record_reads_back_with_its_digests(tmp_path):
    _, (warc,) = _written(tmp_path)
    assert warc.key == f"{WARC_FOLDER}/run1-00001.warc.gz" and warc.path == tmp_path / warc.key
    assert check(warc.path) == warc.records == 1 + 2 * len(SPECS)  # warcinfo, then response + request
    with warc.path.open("rb") as handle:
        records = list(ArchiveIterator(handle, check_digests="raise"))  # raises on a digest mismatch
    assert [r.rec_type for r in records] == ["warcinfo"] + ["response", "request"] * len(SPECS)
    assert b"isPartOf: run1" in check_content(warc.path, 0)
    for spec, index in zip(SPECS, range(1, len(records), 2), strict=True):
        response, request = records[index], records[index + 1]
        assert response.rec_headers.get_header("WARC-Target-URI") == spec["url"]
        assert response.rec_headers.get_header("WARC-Date") == "2026-11-23T04:15:30Z"
        assert request.rec_headers.get_header("WARC-Concurrent-To") == response.rec_headers.get_header(
            "WARC-Record-ID"
        )
        assert response.rec_headers.get_header("WARC-IP-Address") == spec.get("ip_address")
        assert response.http_headers.get_statuscode() == str(spec["status"])
        assert response.http_headers.protocol == spec.get("protocol", "HTTP/1.1")
        assert request.http_headers.protocol == "GET"  # warcio's name for the method
        assert request.http_headers.get_header("Host") == "news.example.cn"
    names = [name for name, _ in records[3].http_headers.headers]
    assert "Transfer-Encoding" not in names  # the body is stored de-chunked, as Twisted hands it over
    assert names.count("Set-Cookie") == 2 and "Content-Encoding" in names


def check_content(path: Path, index: int) -> bytes:
    with path.open("rb") as handle:
        for number, record in enumerate(ArchiveIterator(handle)):
            if number == index:
                return record.content_stream().read()
    raise AssertionError(f"no record {index}")


def test_a_range_read_at_a_capture_is_that_response_with_its_body_as_received(tmp_path):
    captures, (warc,) = _written(tmp_path)
    data = warc.path.read_bytes()
    for spec, capture in zip(SPECS, captures, strict=True):
        assert capture.file == warc.key
        record = read_capture(data[capture.offset : capture.offset + capture.length])
        assert record.rec_type == "response"
        assert record.rec_headers.get_header("WARC-Target-URI") == spec["url"]
        body = _exchange(spec).body
        assert record.rec_headers.get_header("WARC-Payload-Digest") == _sha1(body)  # the encoded bytes
        assert record.content_stream().read() == _page(spec)  # warcio decodes Content-Encoding


def test_files_rotate_by_size_each_with_its_warcinfo_and_cdxj(tmp_path):
    captures, files = _written(tmp_path, max_bytes=1000)
    assert len(files) >= 3
    assert [f.key for f in files] == [f"{WARC_FOLDER}/run1-{n:05d}.warc.gz" for n in range(1, len(files) + 1)]
    lines = []
    for warc in files:
        assert check(warc.path) == warc.records
        assert check_content(warc.path, 0).startswith(b"software: newsarchive test")
        text = warc.index.read_text(encoding="utf-8").splitlines()
        assert text == sorted(text)  # pywb needs a sorted index
        lines += [(warc.key, json.loads(line.split(" ", 2)[2])) for line in text]
    assert not list(tmp_path.rglob(f"*{OPEN_SUFFIX}"))
    indexed = {
        (Path(key).parent.as_posix() + "/" + e["filename"], int(e["offset"]), int(e["length"]))
        for key, e in lines
    }
    assert indexed == {(c.file, c.offset, c.length) for c in captures}
    assert {e["url"] for _, e in lines} == {spec["url"] for spec in SPECS}


@pytest.mark.parametrize("index_every", [1, 1000, 1 << 30])
def test_the_index_built_as_a_file_grows_is_cdxj_indexers_index_of_the_whole_file(tmp_path, index_every):
    """Indexed after every write, every few writes, or only at the end, each file's index is the
    one cdxj-indexer writes for it finished, byte for byte."""
    _, files = _written(tmp_path, max_bytes=3000, index_every=index_every)
    assert len(files) >= 2
    for warc in files:
        whole = io.StringIO()
        CDXJIndexer(output=whole, inputs=[str(warc.path)], sort=True, filename=warc.path.name).process_all()
        assert warc.index.read_text(encoding="utf-8") == whole.getvalue() != ""


@pytest.fixture(scope="module")
def complete(tmp_path_factory) -> tuple[bytes, list[int]]:
    """A finished WARC's bytes, and where each of its gzip members (records) ends."""
    root = tmp_path_factory.mktemp("complete")
    _, (warc,) = _written(root)
    data = warc.path.read_bytes()
    ends, offset = [], 0
    with io.BytesIO(data) as handle:
        iterator = ArchiveIterator(handle)
        for record in iterator:
            record.content_stream().read()
            offset = iterator.get_record_offset() + iterator.get_record_length()
            ends.append(offset)
    assert ends[-1] == len(data)
    return data, ends


def test_a_file_cut_anywhere_by_a_kill_is_finished_up_to_its_last_whole_record(complete, tmp_path):
    data, ends = complete
    cuts = sorted(
        {*range(0, len(data), 499), *(e + d for e in ends for d in (-1, 0, 1) if 0 <= e + d <= len(data))}
    )
    for cut in cuts:
        root = tmp_path / str(cut)
        (root / WARC_FOLDER).mkdir(parents=True)
        (root / WARC_FOLDER / f"run1-00001.warc.gz{OPEN_SUFFIX}").write_bytes(data[:cut])
        finished = finish_open_files(root)
        whole = [end for end in ends if end <= cut]
        assert not list(root.rglob(f"*{OPEN_SUFFIX}")), cut
        if len(whole) <= 1:  # not even one record past the warcinfo: nothing to keep
            assert finished == [] and not list((root / WARC_FOLDER).iterdir()), cut
            continue
        (warc,) = finished
        assert warc.path.read_bytes() == data[: whole[-1]], cut
        assert check(warc.path) == warc.records == len(whole), cut
        assert warc.index.exists()
        shutil.rmtree(root)


@pytest.mark.parametrize("tail", ["garbage", "bad_digest"])
def test_whole_members_that_are_no_sound_record_are_cut_too(complete, tmp_path, tail):
    """A disk or a kill can leave a whole gzip member that is no record, or one whose bytes no
    longer match its digest: the file is cut before it."""
    data, ends = complete
    if tail == "garbage":
        extra = gzip.compress((FIXTURES / "pages" / "garbage.bin").read_bytes())
    else:
        record = bytearray(gzip.decompress(data[ends[0] : ends[1]]))
        record[-10] ^= 0x01  # a byte of the body: the block digest no longer matches
        extra = gzip.compress(bytes(record))
    (tmp_path / WARC_FOLDER).mkdir()
    (tmp_path / WARC_FOLDER / f"run1-00001.warc.gz{OPEN_SUFFIX}").write_bytes(
        data[: ends[3]] + extra + data[ends[3] :]
    )
    (warc,) = finish_open_files(tmp_path)
    assert warc.path.read_bytes() == data[: ends[3]] and warc.records == 4


@pytest.fixture(scope="module")
def bomb_warc(tmp_path_factory) -> tuple[Path, Capture]:
    """A WARC whose one response is a gzip body inflating to 256 MB."""
    spec = {**SPECS[0], "body": None, "gzip": False}
    exchange = dataclasses.replace(
        _exchange(spec),
        response_headers=[("Content-Type", "text/html"), ("Content-Encoding", "gzip")],
        body=gzipped_zeros(256 << 20),
    )
    writer = WarcWriter(tmp_path_factory.mktemp("bomb"), "run1", 1 << 30, {"software": "test"})
    capture, _ = writer.write(exchange)
    return writer.finish().path, capture


def test_digests_are_checked_without_decoding_a_body(bomb_warc):
    path, _ = bomb_warc
    tracemalloc.start()
    try:
        assert check(path) == 3  # warcinfo, response, request
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20  # the body's 256 MB never held; its 256 KB gzip not even twice


def test_a_changed_byte_of_a_body_still_fails_its_digest(bomb_warc, tmp_path):
    path, capture = bomb_warc
    data = bytearray(path.read_bytes())
    record = zlib.decompress(
        bytes(data[capture.offset : capture.offset + capture.length]), 16 + zlib.MAX_WBITS
    )
    changed = record[:-200] + bytes([record[-200] ^ 1]) + record[-199:]  # in the gzip body
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    data[capture.offset : capture.offset + capture.length] = compressor.compress(changed) + compressor.flush()
    (tmp_path / "changed.warc.gz").write_bytes(data)
    with pytest.raises(WarcError, match="digest"):
        check(tmp_path / "changed.warc.gz")


def test_a_body_is_decoded_up_to_its_cap_and_no_further(bomb_warc, tmp_path):
    path, capture = bomb_warc
    with path.open("rb") as handle:
        handle.seek(capture.offset)
        record = read_capture(handle.read(capture.length))
    tracemalloc.start()
    try:
        with pytest.raises(WarcError, match=f"over {BODY_MAX_BYTES} bytes"):
            read_body(record)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * BODY_MAX_BYTES
    captures, (warc,) = _written(tmp_path)
    data = warc.path.read_bytes()
    for spec, capture in zip(SPECS, captures, strict=True):  # within the cap: decoded whole
        assert read_body(read_capture(data[capture.offset : capture.offset + capture.length])) == _page(spec)
