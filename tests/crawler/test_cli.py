from __future__ import annotations

from tests.conftest import run_cli


def test_unsupported_archive_is_a_clear_error_before_crawling():
    run = run_cli("crawl", "--mirror", "--archive", "s3://bucket/prefix")
    assert run.returncode == 2
    assert "s3:// back end is not implemented yet" in run.stderr
    assert "Traceback" not in run.stderr


def test_unknown_outlet_is_a_clear_error():
    run = run_cli("crawl", "--mirror", "--outlet", "no-such-outlet")
    assert run.returncode == 2
    assert "unknown outlet id(s): no-such-outlet" in run.stderr
