"""Capture stage: every HTTP exchange of a crawl, kept as received in WARC files (ISO 28500).

Each exchange is a ``response`` record and a ``request`` record (``WARC-Concurrent-To`` the
response), each its own gzip member, so one record is read back with one range read at the
offset and length a row keeps. A file starts with a ``warcinfo`` record and rotates at
``max_bytes``. Records are built and digested by warcio (WARC/1.0, sha1 block and payload
digests) and compressed here at gzip level 6 (warcio's 9 costs three times the CPU for 3 %).

A file is written as ``<name>.open``, flushed after every record. Its CDXJ index (cdxj-indexer,
sorted, for pywb) is built as it grows: every ``index_every`` bytes the records written since
are read back, while the page cache still holds them, and indexed. Finishing a file indexes
the last of them, fsyncs it, writes the index and renames the file to its final name: the
rename is the commit. (Read back whole when it was finished, a 1 GB file stalled the crawl's
captures for 16 s, at 63 MB/s.) A file a killed crawl left ``.open`` is cut after its last
complete gzip member, its digests checked, and then indexed whole and finished
(:func:`finish_open_files`), so a WARC is either complete or not published, never half a record.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from warcio.archiveiterator import ArchiveIterator
from warcio.recordloader import ArcWarcRecord
from warcio.statusandheaders import StatusAndHeaders
from warcio.timeutils import datetime_to_iso_date
from warcio.warcwriter import WARCWriter

from pipelines.archive.keys import WARC_FOLDER, cdxj_key, is_key, warc_key
from pipelines.archive.storage import write_atomically
from pipelines.runtime.imports import unimportable

OPEN_SUFFIX = ".open"
# bytes of WARC between two readings of its new records for the index: at the file's end, 16 ms
# of records are left to index, and each reading costs about 1 ms
INDEX_EVERY = 1 << 20
GZIP_LEVEL = 6
_GZIP_MEMBER = 16 + zlib.MAX_WBITS  # wbits of a gzip stream
# the most of a record's body, decoded, read into memory: the crawl's DOWNLOAD_MAXSIZE, past which
# Scrapy drops a response (decoded size included), so no archived row came from a bigger body
BODY_MAX_BYTES = 16 * 1024 * 1024
# the most one record takes in a WARC: its body as received (at most BODY_MAX_BYTES), gzipped with
# its WARC and HTTP headers (gzip adds under 0.1% to bytes it cannot compress); a row naming a
# longer range names no record this code wrote
RECORD_MAX_BYTES = BODY_MAX_BYTES + (1 << 20)
_CHUNK = 1 << 16
# Twisted removes the chunking before Scrapy sees a body: the header would misdescribe the block
_DROPPED_HEADERS = frozenset({"transfer-encoding"})


class WarcError(Exception):
    """A WARC file that cannot be read back as whole records with matching digests."""


@dataclass(frozen=True)
class Exchange:
    """One HTTP exchange as the crawl saw it; ``body`` as received (still content-encoded)."""

    url: str
    method: str
    request_headers: list[tuple[str, str]]
    request_body: bytes
    protocol: str  # "HTTP/1.1"
    status: int
    response_headers: list[tuple[str, str]]
    body: bytes
    ip_address: str | None
    fetched_at: datetime  # UTC


@dataclass(frozen=True)
class Capture:
    """Where an exchange's response record is: ``file`` is a key relative to the archive root."""

    file: str
    offset: int
    length: int


@dataclass(frozen=True)
class WarcFile:
    """A finished WARC in the spool, with its CDXJ index; ``key`` of each relative to the root."""

    path: Path
    key: str
    index: Path
    index_key: str
    records: int


class WarcWriter:
    """Writes one crawl's exchanges under ``root/_warc/``; not thread-safe (one thread writes).

    ``info`` goes into each file's ``warcinfo`` record (software, crawl, robots policy...).
    """

    def __init__(
        self, root: Path, prefix: str, max_bytes: int, info: dict[str, str], index_every: int = INDEX_EVERY
    ):
        self.root = root
        self.prefix = prefix
        self.max_bytes = max_bytes
        self.info = info
        self.index_every = index_every
        self._records = WARCWriter(io.BytesIO(), gzip=False)  # builds and digests; we compress
        self._serial = 0
        self._key: str | None = None
        self._file: BinaryIO | None = None
        self._count = 0
        self._index: list[str] = []  # the file's CDXJ lines so far, unsorted
        self._indexed_to = 0  # the bytes of the file its lines cover

    def write(self, exchange: Exchange) -> tuple[Capture, WarcFile | None]:
        """Append the exchange; its response record's place, and the file this write filled
        (finished, ready to publish), if it did."""
        if self._file is None:
            self._start()
        response = self._response(exchange)
        request = self._request(exchange, response.rec_headers.get_header("WARC-Record-ID"))
        offset = self._file.tell()
        self._append(response)
        capture = Capture(self._key, offset, self._file.tell() - offset)
        self._append(request)
        self._file.flush()  # a killed process loses nothing it wrote
        if self._file.tell() >= self.max_bytes:
            return capture, self.finish()
        if self._file.tell() - self._indexed_to >= self.index_every:
            self._index_new_records()
        return capture, None

    def finish(self) -> WarcFile | None:
        """Finish the file being written, if any (the crawl is over, or the file is full)."""
        if self._file is None:
            return None
        self._file.flush()
        self._index_new_records()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        return _finish(self.root, self._key, self._count, sorted(self._index))

    def _start(self) -> None:
        self._serial += 1
        self._key = warc_key(self.prefix, self._serial)
        path = self.root / (self._key + OPEN_SUFFIX)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("xb")
        self._count = 0
        self._index, self._indexed_to = [], 0
        self._append(self._records.create_warcinfo_record(Path(self._key).name, self.info))

    def _index_new_records(self) -> None:
        """Index the records written since the last call (whole records only: every write ends
        with one, flushed)."""
        end = self._file.tell()
        with (self.root / (self._key + OPEN_SUFFIX)).open("rb") as written:
            written.seek(self._indexed_to)
            self._index.extend(_cdxj_lines(written, Path(self._key).name))
        self._indexed_to = end

    def _append(self, record: ArcWarcRecord) -> None:
        raw = self._records.out
        raw.seek(0)
        raw.truncate()
        self._records.write_record(record)
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, _GZIP_MEMBER)
        self._file.write(compressor.compress(raw.getvalue()) + compressor.flush())
        self._count += 1

    def _response(self, exchange: Exchange) -> ArcWarcRecord:
        try:
            reason = HTTPStatus(exchange.status).phrase
        except ValueError:
            reason = ""
        headers = [(n, v) for n, v in exchange.response_headers if n.lower() not in _DROPPED_HEADERS]
        http = StatusAndHeaders(f"{exchange.status} {reason}".strip(), headers, protocol=exchange.protocol)
        fields = {"WARC-Date": datetime_to_iso_date(exchange.fetched_at.replace(tzinfo=None))}
        if exchange.ip_address:
            fields["WARC-IP-Address"] = exchange.ip_address
        return self._records.create_warc_record(
            exchange.url,
            "response",
            payload=io.BytesIO(exchange.body),
            length=len(exchange.body),
            http_headers=http,
            warc_headers_dict=fields,
        )

    def _request(self, exchange: Exchange, response_id: str) -> ArcWarcRecord:
        parts = urlsplit(exchange.url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = list(exchange.request_headers)
        if not any(name.lower() == "host" for name, _ in headers):
            headers.insert(0, ("Host", parts.netloc))
        # Scrapy's HTTP/1.x client asks in HTTP/1.1 whatever version the server answers in
        protocol = "HTTP/1.1" if exchange.protocol.startswith("HTTP/1") else exchange.protocol
        http = StatusAndHeaders(f"{exchange.method} {target} {protocol}", headers, is_http_request=True)
        fields = {
            "WARC-Date": datetime_to_iso_date(exchange.fetched_at.replace(tzinfo=None)),
            "WARC-Concurrent-To": response_id,
        }
        return self._records.create_warc_record(
            exchange.url,
            "request",
            payload=io.BytesIO(exchange.request_body),
            length=len(exchange.request_body),
            http_headers=http,
            warc_headers_dict=fields,
        )


def _cdxj_lines(records: BinaryIO, filename: str) -> list[str]:
    """The CDXJ lines of the records from where ``records`` stands to its end, as cdxj-indexer
    writes them (the offsets are the file's: warcio starts counting where the file stands)."""
    # imported here, as a crawl without WARCs has no use for it (21 MB and 0.13 s), and without
    # pkg_resources, which py3AMF (through cdxj-indexer) asks only for the folder of its own
    # adapters and, without it, finds from its __file__: 14 MB and 0.08 s
    with unimportable("pkg_resources"):
        from cdxj_indexer.main import CDXJIndexer

    lines = io.StringIO()
    CDXJIndexer(output=lines, inputs=[records], filename=filename).process_all()
    return lines.getvalue().splitlines(keepends=True)


def _finish(root: Path, key: str, records: int, index_lines: list[str] | None = None) -> WarcFile:
    """Give a complete ``.open`` file its sorted CDXJ index (``index_lines``, or read from the
    whole file), then its final name."""
    open_path = root / (key + OPEN_SUFFIX)
    if index_lines is None:
        with os.fdopen(open_regular(open_path), "rb") as written:
            index_lines = sorted(_cdxj_lines(written, Path(key).name))
    index = root / cdxj_key(key)
    write_atomically(index, lambda handle: handle.write("".join(index_lines).encode("utf-8")))
    os.replace(open_path, root / key)
    return WarcFile(root / key, key, index, cdxj_key(key), records)


def open_regular(path: Path, flags: int = os.O_RDONLY, single_name: bool = False) -> int:
    """A descriptor of ``path`` if it is a regular file (with no other name, if ``single_name``),
    opened without following a link or waiting on a FIFO; else OSError. A spool is a folder others
    may write to: a link planted at a name this code truncates or publishes would reach elsewhere."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    info = os.fstat(fd)
    if stat.S_ISREG(info.st_mode) and (info.st_nlink == 1 or not single_name):
        return fd
    os.close(fd)
    what = "not a regular file" if not stat.S_ISREG(info.st_mode) else "a file with other names (hard links)"
    raise OSError(errno.EPERM, f"{what}; not used", str(path))


def _spooled_warcs(root: Path, suffix: str) -> list[tuple[Path, str]]:
    """The files under ``root/_warc`` named ``<WARC key><suffix>``, with their WARC keys: none
    through a link, none whose name is no WARC key (:func:`pipelines.archive.publish` sets those aside)."""
    folder = root / WARC_FOLDER
    if folder.is_symlink() or not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob(f"*{suffix}")):
        key = f"{WARC_FOLDER}/{path.name.removesuffix(suffix)}"
        if is_key(key, "warc") and not path.is_symlink() and path.is_file():
            found.append((path, key))
    return found


def finish_open_files(root: Path) -> list[WarcFile]:
    """Finish the files a killed crawl left open under ``root``: each is cut after its last
    whole record that reads back with its digests; one with no record past its ``warcinfo``
    is removed. Only regular files with one name are cut (:func:`open_regular`)."""
    finished = []
    for open_path, key in _spooled_warcs(root, OPEN_SUFFIX):
        try:
            fd = open_regular(open_path, os.O_RDWR, single_name=True)
        except OSError:
            continue  # a link, a FIFO, a hard link: never cut
        with os.fdopen(fd, "r+b") as handle:
            end, records = _valid_prefix(handle)
            handle.truncate(end)
            handle.flush()
            os.fsync(handle.fileno())
        if records <= 1:
            open_path.unlink()
            continue
        finished.append(_finish(root, key, records))
    return finished


def _valid_prefix(handle: BinaryIO) -> tuple[int, int]:
    """Bytes and records up to the last record, among whole gzip members, that warcio reads
    to its end with matching digests."""
    handle.truncate(_complete_length(handle))
    handle.seek(0)
    end = count = 0
    iterator = ArchiveIterator(handle, check_digests="raise")
    try:
        for _ in _read_through(iterator):
            end, count = iterator.get_record_offset() + iterator.get_record_length(), count + 1
    except Exception:  # warcio raises many kinds on bytes that are no record: cut there
        pass
    return end, count


def finished_files(root: Path) -> list[WarcFile]:
    """The finished WARCs under ``root`` (record counts not known: 0)."""
    return [
        WarcFile(path, key, root / cdxj_key(key), cdxj_key(key), 0) for path, key in _spooled_warcs(root, "")
    ]


def _complete_length(handle: BinaryIO) -> int:
    """Bytes up to the end of the last gzip member that ends with its trailer (CRC and size
    checked by zlib): what a kill during a write leaves intact."""
    handle.seek(0)
    complete = position = 0
    member = zlib.decompressobj(_GZIP_MEMBER)
    chunk = handle.read(1 << 20)
    while chunk:
        try:
            member.decompress(chunk, 1 << 24)
            while member.unconsumed_tail and not member.eof:
                member.decompress(member.unconsumed_tail, 1 << 24)
        except zlib.error:
            return complete
        if member.eof:
            position += len(chunk) - len(member.unused_data)
            complete = position
            chunk = member.unused_data
            member = zlib.decompressobj(_GZIP_MEMBER)
            if not chunk:
                chunk = handle.read(1 << 20)
        else:
            position += len(chunk)
            chunk = handle.read(1 << 20)
    return complete


def check(path: Path) -> int:
    """The number of records in a WARC, each read to its end and its digests checked."""
    try:
        with path.open("rb") as handle:
            return sum(1 for _ in records(handle))
    except OSError as exc:
        raise WarcError(f"{path.name}: {exc.strerror or exc}") from None
    except Exception as exc:  # warcio raises many kinds on bytes that are no record
        raise WarcError(f"{path.name}: not a whole WARC ({type(exc).__name__}: {exc})") from None


def records(handle: BinaryIO) -> Iterator[ArcWarcRecord]:
    """Every record of a WARC stream, each read to its end with its digests checked."""
    return _read_through(ArchiveIterator(handle, check_digests="raise"))


def _read_through(iterator: ArchiveIterator) -> Iterator[ArcWarcRecord]:
    """Each record once its raw bytes are read through, a chunk at a time: warcio checks the
    digests as they pass, and a body is never decoded (a gzip body may inflate a thousandfold)."""
    for record in iterator:
        iterator.read_to_end(record)
        yield record


def read_body(record: ArcWarcRecord, limit: int = BODY_MAX_BYTES) -> bytes:
    """The record's body decoded (``Content-Encoding``, chunking); :class:`WarcError` past
    ``limit`` bytes, read no further."""
    stream, body = record.content_stream(), bytearray()
    while True:
        try:
            chunk = stream.read(_CHUNK)
        except Exception as exc:  # warcio and zlib raise many kinds on bytes that are no body
            raise WarcError(f"a record body that does not decode ({type(exc).__name__}: {exc})") from None
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > limit:
            raise WarcError(f"a record body over {limit} bytes decoded; not read further")


def read_capture(data: bytes) -> ArcWarcRecord:
    """The one record a range read at a row's ``warc_offset`` and ``warc_length`` returned, its
    body not yet read (:func:`read_body` reads it decoded)."""
    try:
        return next(ArchiveIterator(io.BytesIO(data)))
    except Exception as exc:  # warcio raises many kinds on bytes that are no record
        raise WarcError(f"not a WARC record ({type(exc).__name__}: {exc})") from None
