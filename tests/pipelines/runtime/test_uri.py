"""mask_uri: no user information, query value or fragment of a URI reaches a message."""

from __future__ import annotations

import pytest

from pipelines.runtime.uri import mask_uri

SECRET = "s3cr3t"


@pytest.mark.parametrize(
    ("uri", "masked"),
    [
        (f"redis://:{SECRET}@redis.example:6379/0", "redis://***@redis.example:6379/0"),
        (f"rediss://worker:{SECRET}@redis.example/2", "rediss://***@redis.example/2"),
        (f"redis://redis.example/0?password={SECRET}&db=1", "redis://redis.example/0?password=***&db=***"),
        (f"unix:///run/redis.sock?password={SECRET}", "unix:///run/redis.sock?password=***"),
        (f"s3://AKIDEXAMPLE:{SECRET}@bucket/prefix", "s3://***@bucket/prefix"),
        (f"https://host/path?X-Amz-Signature={SECRET}#{SECRET}", "https://host/path?X-Amz-Signature=***#***"),
        (f"redis://host/0?{SECRET}", "redis://host/0?***"),
        (f"redis://host/0?={SECRET}", "redis://host/0?***"),
        (f"  redis://:{SECRET}@host/0", "  redis://***@host/0"),
    ],
)
def test_credentials_and_query_values_are_masked(uri: str, masked: str) -> None:
    assert mask_uri(uri) == masked


@pytest.mark.parametrize(
    "uri",
    [
        # a password holding an unencoded ?, # or /, and an @ inside the query: nothing of it shows
        f"redis://:{SECRET[:3]}?{SECRET[3:]}@host/0",
        f"redis://:{SECRET[:3]}#{SECRET[3:]}@host/0",
        f"redis://:{SECRET[:3]}/{SECRET[3:]}@host/0",
        f"redis://:{SECRET[:3]}@{SECRET[3:]}@host/0",
        f"redis://host/0?password={SECRET[:3]}@{SECRET[3:]}",
        f"redis://host/0?password={SECRET[:3]}&{SECRET[3:]}",
        f"redis://host/0?password={SECRET[:3]};{SECRET[3:]}",
        f"redis://user:{SECRET}@[::1",
    ],
)
def test_no_part_of_an_ambiguous_secret_shows(uri: str) -> None:
    masked = mask_uri(uri)
    assert SECRET[:3] not in masked and SECRET[3:] not in masked


@pytest.mark.parametrize(
    "uri", ["output", "/srv/archive", "file:///srv/archive", "s3://bucket/prefix", "redis://host:6379/0"]
)
def test_a_uri_without_secrets_is_unchanged(uri: str) -> None:
    assert mask_uri(uri) == uri
