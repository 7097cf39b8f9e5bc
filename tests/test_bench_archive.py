"""``make bench-archive``'s synthetic archives are archives: they verify, list their runs, and
their index knows the crawl's URLs (so that a crawl of the mirror on them finds nothing new)."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

from benchmarks.bench_archive import Size, build_archive
from crawler.cli import main
from pipelines.archive.index import ArchiveIndex
from pipelines.archive.storage import store_for


@pytest.mark.slow  # the session's mirror crawl runs in a subprocess
def test_built_archive_verifies_and_lists_its_runs(mirror_crawl, mirror_rows, tmp_path, capsys):
    source = tmp_path / "source"
    shutil.copytree(mirror_crawl.archive, source)
    archive = tmp_path / "archive"
    build_archive(source, archive, Size.parse("1k/10"))

    assert main(["verify", str(archive)]) == 0, capsys.readouterr()
    capsys.readouterr()
    assert main(["ls", "--json", str(archive)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed["runs"]) == 10
    assert listed["files"] == 10 * len(list(source.glob("outlet=*/published=*/*.parquet")))

    index_files = sorted(path.name for path in (archive / "_index").iterdir())
    assert [name.split("-")[0] for name in index_files] == ["base"] + ["delta"] * 8
    assert sum(pq.read_metadata(archive / "_index" / name).num_rows for name in index_files) == 1000
    index = ArchiveIndex()
    index.refresh(store_for(str(archive)))
    assert index.damaged == []
    assert all(index.known_url(url) is not None for url in mirror_rows)
