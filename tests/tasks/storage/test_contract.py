"""The object-store contract, run against both backends: a local folder and B2 (b2sdk simulator).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from b2sdk.v2 import exception as b2exc

from tasks.errors import ConfigError, StorageError
from tasks.settings import Settings
from tasks.storage import LocalStore, ObjectStore
from tasks.storage.b2 import B2Store
from tasks.storage.base import child_folders
from tests.support.b2 import make_b2_api, make_b2_store


@pytest.fixture(params=["local", "b2"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "local":
        yield LocalStore(tmp_path / "data")
    else:
        yield make_b2_store()[0]


# -- the contract, on both backends ------------------------------------------------------------


def test_put_get_overwrite_roundtrip(any_store: ObjectStore) -> None:
    any_store.put("a/b/c.bin", b"first")
    assert any_store.get("a/b/c.bin") == b"first"
    any_store.put("a/b/c.bin", b"second, longer")
    assert any_store.get("a/b/c.bin") == b"second, longer"
    any_store.put("empty", b"")
    assert any_store.get("empty") == b""


def test_get_missing_raises_keyerror_and_exists_says_false(any_store: ObjectStore) -> None:
    with pytest.raises(KeyError):
        any_store.get("no/such/key")
    assert not any_store.exists("no/such/key")
    any_store.put("no/such/key", b"x")
    assert any_store.exists("no/such/key")


def test_delete_removes_and_missing_delete_is_fine(any_store: ObjectStore) -> None:
    any_store.put("d/one", b"1")
    any_store.put("d/one", b"2")  # a second version on B2
    any_store.put("d/two", b"2")
    any_store.delete("d/one")
    any_store.delete("d/one")
    any_store.delete("never/was")
    assert not any_store.exists("d/one")
    with pytest.raises(KeyError):
        any_store.get("d/one")
    assert [o.key for o in any_store.list("d/")] == ["d/two"]


def test_list_by_prefix_is_sorted_and_exact(any_store: ObjectStore) -> None:
    keys = ["raw/day=02/b", "raw/day=01/z", "raw/day=01/a", "raw/day=10/a", "raw2/x", "other"]
    for key in keys:
        any_store.put(key, key.encode())
    assert [o.key for o in any_store.list("raw/")] == [
        "raw/day=01/a", "raw/day=01/z", "raw/day=02/b", "raw/day=10/a",
    ]
    # A prefix that ends mid-segment matches like a string prefix, as on S3/B2.
    assert [o.key for o in any_store.list("raw/day=0")] == [
        "raw/day=01/a", "raw/day=01/z", "raw/day=02/b",
    ]
    assert [o.key for o in any_store.list("raw")] == [
        "raw/day=01/a", "raw/day=01/z", "raw/day=02/b", "raw/day=10/a", "raw2/x",
    ]
    assert [o.key for o in any_store.list()] == sorted(keys)
    assert any_store.list("nothing/") == []
    info = any_store.list("raw/day=02/")[0]
    assert info.size == len(b"raw/day=02/b")
    assert info.modified.tzinfo is not None


def test_child_folders_lists_one_level(any_store: ObjectStore) -> None:
    for key in ["raw/year=2026/month=01/x", "raw/year=2026/month=02/y", "raw/year=2025/z",
                "raw/top.txt"]:
        any_store.put(key, b"1")
    assert child_folders(any_store, "raw/") == ["raw/year=2025/", "raw/year=2026/"]
    assert child_folders(any_store, "raw/year=2026/") == [
        "raw/year=2026/month=01/", "raw/year=2026/month=02/",
    ]
    assert child_folders(any_store, "raw/year=2025/") == []
    assert child_folders(any_store, "missing/") == []


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/../b", "./a", "a\\b", "a/\x00"])
def test_invalid_keys_are_refused(any_store: ObjectStore, key: str) -> None:
    with pytest.raises(ValueError, match="invalid object key"):
        any_store.put(key, b"x")


def test_concurrent_reader_never_sees_a_partial_object(any_store: ObjectStore) -> None:
    # Each version is one repeated byte: a torn read would mix bytes or be short. (The B2
    # simulator downloads at ~1.5 MB/s, so its objects are smaller.)
    size = 2 * 1024 * 1024 if isinstance(any_store, LocalStore) else 128 * 1024
    versions = [bytes([i]) * size for i in range(1, 9)]
    any_store.put("big/obj", versions[0])
    stop = threading.Event()
    bad: list[str] = []
    seen: set[int] = set()

    def reader() -> None:
        while not stop.is_set():
            data = any_store.get("big/obj")
            if len(data) != size or data.count(data[:1]) != size:
                bad.append(f"partial read: {len(data)} bytes")
            seen.add(data[0])
            if any(o.key != "big/obj" for o in any_store.list("big/")):
                bad.append("listing shows a temporary object")

    thread = threading.Thread(target=reader)
    thread.start()
    deadline = time.monotonic() + 10
    try:
        # Keep writing until the reader has observed several versions (threads share the GIL,
        # so how many interleave per write varies from run to run).
        i = 0
        while (len(seen) < 3 or i < len(versions)) and time.monotonic() < deadline:
            any_store.put("big/obj", versions[i % len(versions)])
            i += 1
    finally:
        stop.set()
        thread.join()
    assert bad == []
    assert len(seen) > 1  # the reader really ran alongside the writer


# -- local folder specifics ---------------------------------------------------------------------


def test_local_put_survives_concurrent_pruning_of_its_folder(tmp_path: Path) -> None:
    # `delete` removes empty partition folders; a `put` into the same folder at that moment
    # must retry rather than fail (this is compaction deleting while a submission arrives).
    store = LocalStore(tmp_path / "data")
    errors: list[BaseException] = []

    def churn(name: str) -> None:
        try:
            for i in range(300):
                store.put(f"p/q/r/{name}", str(i).encode())
                store.delete(f"p/q/r/{name}")
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(n,)) for n in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.list() == []


def test_local_store_skips_and_refuses_temp_names(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "data")
    store.put("x/a", b"1")
    (tmp_path / "data" / "x" / ".tmp-abandoned").write_bytes(b"half a file")
    assert [o.key for o in store.list()] == ["x/a"]
    with pytest.raises(ValueError, match="reserved"):
        store.put("x/.tmp-abandoned", b"x")


def test_local_store_error_names_the_key(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "blocker").write_bytes(b"a file where a folder should be")
    store = LocalStore(tmp_path / "data")
    with pytest.raises(StorageError, match=r"key: blocker/child"):
        store.put("blocker/child", b"x")


# -- B2 specifics: retries, errors, configuration -------------------------------------------------


def _service_errors(n: int) -> list[Exception]:
    return [b2exc.ServiceError("503 service_unavailable") for _ in range(n)]


def test_b2_upload_retries_after_sdk_gives_up() -> None:
    sleeps: list[float] = []
    store, sim = make_b2_store(sleeps)
    # b2sdk tries an upload 5 times itself; 7 failures make it give up once, then we retry.
    sim.set_upload_errors(_service_errors(7))
    store.put("raw/a.parquet", b"payload")
    assert store.get("raw/a.parquet") == b"payload"
    assert len(sleeps) == 1


@pytest.mark.parametrize(
    ("op", "call"),
    [
        ("list", lambda s: s.list("raw/")),
        ("download", lambda s: s.get("raw/a.parquet")),
        ("delete", lambda s: s.delete("raw/a.parquet")),
    ],
)
def test_b2_transient_errors_are_retried_with_backoff(
    op: str, call: Callable[[B2Store], object]
) -> None:
    sleeps: list[float] = []
    store, sim = make_b2_store(sleeps)
    store.put("raw/a.parquet", b"payload")
    sim.failures[op] = [b2exc.TooManyRequests(), *_service_errors(2)]
    result = call(store)
    assert len(sleeps) == 3
    assert sleeps[2] > sleeps[0]  # backoff grows (0.01, 0.02, 0.04 with +-50 % jitter)
    if op == "list":
        assert [o.key for o in result] == ["raw/a.parquet"]  # type: ignore[attr-defined]
    elif op == "download":
        assert result == b"payload"
    else:
        assert not store.exists("raw/a.parquet")


def test_b2_gives_up_after_max_attempts_naming_the_key() -> None:
    store, sim = make_b2_store()
    store.put("raw/a.parquet", b"payload")
    sim.failures["download"] = _service_errors(10)
    with pytest.raises(StorageError, match=r"after 4 attempts.*key: raw/a\.parquet"):
        store.get("raw/a.parquet")


def test_b2_permanent_error_is_not_retried() -> None:
    sleeps: list[float] = []
    store, sim = make_b2_store(sleeps)
    sim.set_upload_errors([b2exc.StorageCapExceeded()])
    with pytest.raises(StorageError, match=r"upload.*[Cc]ap.*key: raw/b\.parquet"):
        store.put("raw/b.parquet", b"x")
    assert sleeps == []


def test_b2_delete_removes_every_version() -> None:
    store, _ = make_b2_store()
    for i in range(3):
        store.put("user/data.parquet", f"v{i}".encode())
    assert len(list(store.bucket.list_file_versions("user/data.parquet"))) == 3
    store.delete("user/data.parquet")
    assert list(store.bucket.list_file_versions("user/data.parquet")) == []
    assert list(store.bucket.ls("", latest_only=False, recursive=True)) == []


def _b2_settings(key_id: str, key: str, bucket: str) -> Settings:
    return Settings(
        storage_backend="b2", b2_key_id=key_id, b2_application_key=key, b2_bucket_name=bucket,
        b2_max_attempts=3,
    )


def test_b2_from_settings_opens_a_private_bucket() -> None:
    api, _, key_id, key = make_b2_api()
    api.create_bucket("plumbline-raw", "allPrivate")
    store = B2Store.from_settings(_b2_settings(key_id, key, "plumbline-raw"), api=api)
    assert store.describe() == "B2 bucket plumbline-raw"
    assert store.max_attempts == 3
    store.put("k", b"v")
    assert store.get("k") == b"v"
    assert store.local_path("k") is None


def test_b2_from_settings_refuses_public_bucket_bad_key_and_missing_bucket() -> None:
    api, _, key_id, key = make_b2_api()
    api.create_bucket("public-one", "allPublic")
    with pytest.raises(ConfigError, match="public-one is allPublic"):
        B2Store.from_settings(_b2_settings(key_id, key, "public-one"), api=api)
    with pytest.raises(ConfigError, match="no such bucket"):
        B2Store.from_settings(_b2_settings(key_id, key, "nope"), api=api)
    with pytest.raises(ConfigError, match="refused the key"):
        B2Store.from_settings(_b2_settings(key_id, "wrong", "public-one"), api=api)


def test_open_store_builds_the_local_store_and_checks_its_folder(tmp_path: Path) -> None:
    from tasks.storage import open_store

    store = open_store(Settings(data_dir=tmp_path / "data"))
    assert isinstance(store, LocalStore) and store.root == (tmp_path / "data").resolve()
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ConfigError, match=r"PLUMBLINE_DATA_DIR=.*not a folder"):
        open_store(Settings(data_dir=tmp_path / "file"))
