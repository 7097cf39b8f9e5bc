"""Storage stage: where archive files live. A local folder is the default (and, for now, only)
back end; object stores come with the S3 issue and will plug in behind the same two methods.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq


class LocalStorage:
    """An archive root on the local file system. Files appear atomically: each is written under
    a temporary name in its final directory, flushed, then renamed into place."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def write_parquet(self, relative_path: str, table: pa.Table) -> int:
        """Write ``table`` to ``relative_path``; return the file's size in bytes."""
        target = self.root / relative_path
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                pq.write_table(table, handle, compression="zstd")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return target.stat().st_size

    def read_column(self, column: str) -> pa.ChunkedArray | None:
        """One column of every archived row, or None when nothing is archived yet."""
        files = [str(p) for p in self.root.rglob("*.parquet")]
        if not files:
            return None
        return ds.dataset(files, format="parquet").to_table(columns=[column]).column(column)


def storage_for(uri: str) -> LocalStorage:
    """The back end for an ``--archive`` value: a path or a file:// URI."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return LocalStorage(parsed.path if parsed.scheme == "file" else uri)
    if len(parsed.scheme) == 1:  # a Windows drive letter
        return LocalStorage(uri)
    raise ValueError(f"archive {uri!r}: the {parsed.scheme}:// back end is not implemented yet "
                     "(object storage is tracked as its own issue); use a local folder")
