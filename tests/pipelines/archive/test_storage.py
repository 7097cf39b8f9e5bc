"""Both back ends publish whole objects, once, never over another object; S3 ones on real servers."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from pipelines.archive.storage import (
    KeyRefused,
    KeyTaken,
    LocalStore,
    S3Store,
    StoreError,
    file_digests,
    store_for,
)
from tests.objectstores import SECRET_KEY

KEY = "outlet=x/published=2024-03/part-1.parquet"
# keys that name, or could name, a place outside the archive: refused by every back end
OUTSIDE = [
    "",
    "..",
    "../outside.txt",
    "outlet=x/../../outside.txt",
    "outlet=x/published=2024-03/../../../outside.txt",
    "/abs/outside.txt",
    "//outside.txt",
    "outlet=x\\..\\..\\outside.txt",
    "outlet=x/part\x00.parquet",
    "./outlet=x/part.parquet",
    "outlet=x//part.parquet",
    "outlet=x/./part.parquet",
    "outlet=x/part.parquet/",
]


def every_operation(store, source: Path, key: str) -> list:
    """Each thing a store does with a key, to be tried one by one."""
    return [
        lambda: store.publish(source, key),
        lambda: store.read(key),
        lambda: store.read_range(key, 0, 10),
        lambda: store.stream(key).__enter__(),
        lambda: store.delete(key),
        lambda: list(store.object_keys(key + "/")),
    ]


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "spooled.parquet"
    path.write_bytes(os.urandom(100_000))
    return path


@pytest.fixture
def s3(object_store, monkeypatch):
    for name, value in object_store.env.items():
        monkeypatch.setenv(name, value)
    return S3Store(f"s3://{object_store.create_bucket()}/archive")


def test_local_publish_is_whole_and_never_overwrites(tmp_path, source):
    store = LocalStore(tmp_path / "archive")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert store.publish(source, KEY) == digest
    assert store.publish(source, KEY) == digest  # the same bytes again: a repeated publication is fine
    assert store.read(KEY) == source.read_bytes()
    assert list(store.object_keys()) == [KEY]  # no temporary file left
    other = tmp_path / "other.parquet"
    other.write_bytes(b"other bytes")
    with pytest.raises(KeyTaken):
        store.publish(other, KEY)
    assert store.read(KEY) == source.read_bytes()


def test_local_publish_links_a_spooled_file_instead_of_copying_it(tmp_path, source):
    store = LocalStore(tmp_path / "archive")
    store.publish(source, KEY)
    assert (tmp_path / "archive" / KEY).stat().st_ino == source.stat().st_ino


def test_local_publish_copies_across_file_systems(tmp_path, source, monkeypatch):
    link = os.link

    def no_link_across_devices(src, dst, **kwargs):
        if Path(src) == source:
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
        return link(src, dst, **kwargs)

    monkeypatch.setattr(os, "link", no_link_across_devices)
    store = LocalStore(tmp_path / "archive")
    assert store.publish(source, KEY) == hashlib.sha256(source.read_bytes()).hexdigest()
    published = tmp_path / "archive" / KEY
    assert published.read_bytes() == source.read_bytes()
    assert published.stat().st_ino != source.stat().st_ino
    assert list(store.object_keys()) == [KEY]  # no temporary file left


def test_local_keys_skip_dot_folders(tmp_path, source):
    store = LocalStore(tmp_path / "archive")
    store.publish(source, KEY)
    (tmp_path / "archive" / ".spool" / "crawl").mkdir(parents=True)
    (tmp_path / "archive" / ".spool" / "crawl" / "part.parquet").write_bytes(b"pending")
    assert list(store.object_keys()) == [KEY]


@pytest.mark.parametrize("key", OUTSIDE)
def test_local_store_refuses_keys_that_could_lead_outside_for_every_operation(tmp_path, source, key):
    (tmp_path / "outside.txt").write_text("not the archive's")
    store = LocalStore(tmp_path / "archive" / "root")
    store.publish(source, KEY)
    before = files_under(tmp_path)
    for operation in every_operation(store, source, key):
        with pytest.raises(KeyRefused):
            operation()
    assert files_under(tmp_path) == before


def test_local_store_follows_no_link_out_of_its_root(tmp_path, source):
    """A folder or a file inside the root that links outside: nothing through it is read,
    written, deleted or listed (a link that stays inside is a path like any other)."""
    outside = tmp_path / "outside"
    (outside / "published=2024-03").mkdir(parents=True)
    (outside / "published=2024-03" / "part-1.parquet").write_bytes(b"not the archive's")
    (outside / "secret.txt").write_text("not the archive's")
    root = tmp_path / "archive"
    store = LocalStore(root)
    store.publish(source, KEY)
    (root / "outlet=linked").symlink_to(outside, target_is_directory=True)
    (root / "outlet=x" / "published=2024-03" / "part-2.parquet").symlink_to(outside / "secret.txt")
    (root / "outlet=x" / "inside").symlink_to(root / "outlet=x" / "published=2024-03")
    before = files_under(outside)
    for key in (
        "outlet=linked/published=2024-03/part-1.parquet",
        "outlet=linked/published=2024-03/part-new.parquet",
        "outlet=x/published=2024-03/part-2.parquet",
    ):
        for operation in every_operation(store, source, key)[:-1]:
            with pytest.raises(KeyRefused):
                operation()
    with pytest.raises(KeyRefused):
        list(store.object_keys("outlet=linked/"))
    assert list(store.object_keys()) == [KEY]
    assert store.read("outlet=x/inside/part-1.parquet") == source.read_bytes()
    assert files_under(outside) == before


@pytest.mark.parametrize("key", OUTSIDE)
def test_s3_refuses_the_same_keys_before_any_request(s3, source, key):
    """S3 would keep ``../outside.txt`` as a literal name; the store takes no such key, so that
    what it holds is what a folder archive could hold."""
    s3.publish(source, KEY)
    for operation in every_operation(s3, source, key)[:-1]:
        with pytest.raises(KeyRefused):
            operation()
    assert list(s3.object_keys()) == [KEY]


def test_s3_publish_verifies_and_never_overwrites(s3, source, tmp_path):
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert s3.publish(source, KEY) == digest
    assert s3.publish(source, KEY) == digest
    assert s3.read(KEY) == source.read_bytes()
    assert list(s3.object_keys()) == [KEY]
    head = s3.client.head_object(Bucket=s3.bucket, Key=f"archive/{KEY}")
    assert head["Metadata"]["sha256"] == digest
    other = tmp_path / "other.parquet"
    other.write_bytes(b"other bytes")
    with pytest.raises(KeyTaken):
        s3.publish(other, KEY)
    assert s3.read(KEY) == source.read_bytes()


def test_s3_conditional_put_refuses_to_replace(s3):
    """If-None-Match: * is on every PutObject we send: even past our own HEAD check."""
    s3.client.put_object(Bucket=s3.bucket, Key="archive/a", Body=b"first")
    with pytest.raises(Exception) as refused:
        s3.client.put_object(Bucket=s3.bucket, Key="archive/a", Body=b"second")
    assert "412" in str(refused.value) or "PreconditionFailed" in str(refused.value)
    assert s3.read("a") == b"first"


def test_s3_multipart_upload_is_verified(s3, tmp_path):
    """Over the threshold s3transfer uploads in parts; RGW's empty Complete ETag must not matter."""
    big = tmp_path / "big.parquet"
    big.write_bytes(os.urandom(11 * 1024 * 1024))
    store = S3Store(s3.uri, multipart_threshold=5 << 20, multipart_chunksize=5 << 20)
    store.publish(big, "big.parquet")
    head = store.client.head_object(Bucket=store.bucket, Key="archive/big.parquet")
    assert head["ETag"].strip('"') == file_digests(big, 5 << 20)[2]
    assert head["ETag"].endswith('-3"')
    assert store.read("big.parquet") == big.read_bytes()


@pytest.mark.slow
def test_s3_keys_pages_through_long_listings(s3, source):
    keys = [f"outlet=x/published=2024-{m:02d}/part-{i}.parquet" for m in range(1, 3) for i in range(501)]
    for key in keys[:3]:
        s3.publish(source, key)
    for key in keys[3:]:  # direct puts: quicker than 1,200 verified publications
        s3.client.put_object(Bucket=s3.bucket, Key=f"archive/{key}", Body=b"x")
    assert sorted(s3.object_keys()) == sorted(keys)
    assert list(s3.object_keys("outlet=x/published=2024-02/")) == sorted(k for k in keys if "2024-02" in k)


MANIFESTS = ["_manifests/c1.json", "_manifests/c1.json.bak", "_manifests/c2.json", "_manifests/c10.json"]


def listed_after(store) -> list[list[str]]:
    """What ``store`` lists of a folder from its start, after a key it holds, after one it does
    not, and after its last."""
    return [
        list(store.object_keys("_manifests/", start_after=after))
        for after in (None, "_manifests/c1.json", "_manifests/c11.json", "_manifests/c2.json")
    ]


# by their bytes ("c10" before "c2"), strictly after the key
EXPECTED_AFTER = [
    ["_manifests/c1.json", "_manifests/c1.json.bak", "_manifests/c10.json", "_manifests/c2.json"],
    ["_manifests/c1.json.bak", "_manifests/c10.json", "_manifests/c2.json"],
    ["_manifests/c2.json"],
    [],
]


def test_a_local_listing_starts_after_a_key_as_s3_does(tmp_path, source):
    store = LocalStore(tmp_path / "archive")
    for key in [*MANIFESTS, "a/x", "a-b/x", "_index/base-c1.parquet-index"]:
        store.publish(source, key)
    assert listed_after(store) == EXPECTED_AFTER
    # the whole store in the order AWS S3 gives: "a-b/x" before "a/x", not folder by folder
    listed = list(store.object_keys())
    assert listed == sorted(listed) and listed[-2:] == ["a-b/x", "a/x"]
    assert list(store.object_keys(start_after="a-b/x")) == ["a/x"]


def test_a_local_listing_reads_a_folder_only_when_its_keys_are_wanted(tmp_path, source, monkeypatch):
    """Keys come as the folders are read, and a folder whose keys all sort before the key a
    listing starts after is not read: at 10,000 runs, the first key or the manifests after a
    checkpoint cost one folder, not the archive."""
    store = LocalStore(tmp_path / "archive")
    for key in ["a/x", "a0", "b/c/x", "b/x", "c/x", "_manifests/c1.json"]:
        store.publish(source, key)
    read: list[str] = []
    scandir = os.scandir

    def reading(path):
        read.append(Path(path).relative_to(store.root).as_posix())
        return scandir(path)

    monkeypatch.setattr(os, "scandir", reading)
    assert next(store.object_keys()) == "_manifests/c1.json" and read == [".", "_manifests"]
    read.clear()
    assert list(store.object_keys(start_after="b/c/x")) == ["b/x", "c/x"] and read == [".", "b", "b/c", "c"]
    read.clear()
    assert list(store.object_keys(start_after="a/")) == ["a/x", "a0", "b/c/x", "b/x", "c/x"]
    read.clear()
    assert list(store.object_keys(start_after="a0")) == ["b/c/x", "b/x", "c/x"] and read == [
        ".",
        "b",
        "b/c",
        "c",
    ]


def test_an_s3_listing_starts_after_a_key(s3, source):
    for key in [*MANIFESTS, "_index/base-c1.parquet-index", "a/x"]:
        s3.client.put_object(Bucket=s3.bucket, Key=f"archive/{key}", Body=b"x")
    s3.client.put_object(Bucket=s3.bucket, Key="archive-2/_manifests/c3.json", Body=b"x")  # another prefix
    assert listed_after(s3) == EXPECTED_AFTER


def tags_follow_the_bytes(store, source: Path, replace) -> None:
    """A store's tags: the keys it lists, each tag changed when the object's bytes are."""
    for key in ["_index/base-c1.parquet-index", "_index/delta-c2.parquet-index", "_manifests/c1.json"]:
        store.publish(source, key)
    tags = store.object_tags("_index/")
    assert list(tags) == list(store.object_keys("_index/")) == sorted(tags)
    assert store.object_tags("_index/") == tags  # read twice, the same
    replace("_index/base-c1.parquet-index", b"other bytes")
    again = store.object_tags("_index/")
    changed = [key for key in tags if again[key] != tags[key]]
    assert changed == ["_index/base-c1.parquet-index"]


def test_local_tags_change_with_an_objects_bytes(tmp_path, source):
    store = LocalStore(tmp_path / "archive")

    def replace(key: str, data: bytes) -> None:
        path = tmp_path / "archive" / key
        path.unlink()
        path.write_bytes(data)

    tags_follow_the_bytes(store, source, replace)


def test_s3_tags_change_with_an_objects_bytes(s3, source):
    def replace(key: str, data: bytes) -> None:  # the store's client puts only if absent
        s3.client.delete_object(Bucket=s3.bucket, Key=f"archive/{key}")
        s3.client.put_object(Bucket=s3.bucket, Key=f"archive/{key}", Body=data)

    tags_follow_the_bytes(s3, source, replace)


def test_s3_errors_carry_no_secret(object_store, monkeypatch, source):
    for name, value in object_store.env.items():
        monkeypatch.setenv(name, value)
    bucket = object_store.create_bucket()
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "WRONG" + SECRET_KEY)
    with pytest.raises(StoreError) as refused:
        S3Store(f"s3://{bucket}/archive").publish(source, KEY)
    assert "SignatureDoesNotMatch" in str(refused.value) or "403" in str(refused.value)
    assert SECRET_KEY not in repr(refused.value) and refused.value.__cause__ is None


def test_s3_down_is_a_store_error(monkeypatch, source):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(StoreError, match="EndpointConnectionError"):
        S3Store("s3://bucket/archive").publish(source, KEY)


@pytest.mark.parametrize("uri", ["s3://AKIA:secret@bucket/x", "s3://key@bucket"])
def test_credentials_in_the_uri_are_refused_without_echo(uri):
    with pytest.raises(ValueError, match="environment") as refused:
        store_for(uri)
    assert "secret" not in str(refused.value) and "key@" not in str(refused.value)


def test_unknown_schemes_are_refused():
    with pytest.raises(ValueError, match="unsupported scheme gs://"):
        store_for("gs://bucket/prefix")
    assert isinstance(store_for("file:///tmp/x"), LocalStore)
