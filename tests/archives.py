"""Archives for the archivist tools' tests, made from the mirror crawl's: what a year of hourly
runs leaves, in small."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.archive.manifest import languages_of
from pipelines.archive.storage import Store


def hourly_runs(source: Path, target: Path) -> Path:
    """The archive at ``source`` as if each of its rows had come in a run of its own: one file per
    row, each run with its manifest (the index stays as it was: it points at the same articles)."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".*", "_manifests"))
    (target / "_manifests").mkdir()
    (original,) = (source / "_manifests").glob("*.json")
    manifest = json.loads(original.read_text(encoding="utf-8"))
    hour = 0
    for entry in manifest["files"]:
        table = pq.read_table(source / entry["key"])
        (target / entry["key"]).unlink()
        for row in range(table.num_rows):
            hour += 1
            run = f"20250101T{hour // 60:02d}{hour % 60:02d}00Z-hourly"
            piece = table.slice(row, 1)
            key = str(Path(entry["key"]).with_name(f"part-{run}-00001.parquet").as_posix())
            sink = io.BytesIO()
            pq.write_table(piece, sink, compression="zstd")
            data = sink.getvalue()
            (target / key).write_bytes(data)
            file = {
                "key": key,
                "rows": 1,
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "languages": languages_of(piece),
                "article_ids": piece.column("article_id").to_pylist(),
            }
            runs = {**manifest, "crawl_id": run, "files": [file], "rows": 1, "bytes": len(data)}
            (target / "_manifests" / f"{run}.json").write_text(json.dumps(runs), encoding="utf-8")
    return target


def copied_runs(source: Path, target: Path, runs: int) -> Path:
    """The archive at ``source`` and ``runs`` later runs, each listing a hard-linked copy of every
    part of its only run under its own crawl id (as ``make bench-archive`` builds its archives):
    files of the same bytes under other keys."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".*"))
    (original,) = (target / "_manifests").glob("*.json")
    manifest = json.loads(original.read_text(encoding="utf-8"))
    for hour in range(1, runs + 1):
        run = f"20250101T{hour:02d}0000Z-copied"
        files = []
        for entry in manifest["files"]:
            key = str(Path(entry["key"]).with_name(f"part-{run}-00001.parquet").as_posix())
            (target / key).hardlink_to(target / entry["key"])
            files.append({**entry, "key": key})
        copy = {**manifest, "crawl_id": run, "files": files, "warcs": []}
        (target / "_manifests" / f"{run}.json").write_text(json.dumps(copy), encoding="utf-8")
    return target


class Killed(Exception):
    pass


class DiesAfter:
    """The archive's real store, whose process dies after ``steps`` changes to it."""

    def __init__(self, store: Store, steps: int):
        self.store = store
        self.steps = steps
        self.uri = store.uri

    def _step(self) -> None:
        if self.steps == 0:
            raise Killed
        self.steps -= 1

    def publish(self, source: Path, key: str) -> str:
        self._step()
        return self.store.publish(source, key)

    def delete(self, key: str) -> None:
        self._step()
        self.store.delete(key)

    def object_keys(self, prefix: str = "") -> object:
        return self.store.object_keys(prefix)

    def read(self, key: str) -> bytes:
        return self.store.read(key)

    def stream(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        return self.store.stream(key)


def row_keys(table: pa.Table) -> list[tuple]:
    """The rows as sorted (article_id, text_hash, url): what two readings must agree on, repeats kept."""
    return sorted(
        zip(*(table.column(c).to_pylist() for c in ("article_id", "text_hash", "url")), strict=True)
    )
