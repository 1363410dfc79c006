"""Leftovers of interrupted writes (local ``.tmp-*`` files, unfinished B2 large files) are found
and removed by ``purge_temporaries``; error texts and public names hold no server path."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest

from tasks.errors import StorageError
from tasks.storage.b2 import B2Store
from tasks.storage.base import public_name, purge_temporaries
from tasks.storage.local import TMP_PREFIX, LocalStore
from tests.support.b2 import FastSimulator, make_b2_store
from tests.support.helpers import DelegatingStore

ALICE = "raw/year=2026/month=11/day=20/user=0123456789abcdef/"
BOB = "raw/year=2026/month=11/day=20/user=fedcba9876543210/"


def _leftover(root: Path, folder: str, data: bytes = b"half a parquet file", *,
              age: timedelta = timedelta(0)) -> Path:
    """A temp file exactly as ``LocalStore.put`` names it, as if its process died mid-write."""
    (root / folder).mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=TMP_PREFIX, dir=root / folder)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    then = time.time() - age.total_seconds()
    os.utime(name, (then, then))
    return Path(name)


def test_local_purge_removes_leftovers_below_the_prefix_only(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "data")
    store.put(BOB + "kept.parquet", b"bob's rows")
    alice_only = _leftover(store.root, ALICE)  # a killed first write: the folder holds nothing else
    bob_tmp = _leftover(store.root, BOB)
    assert store.list("raw/") == [store.list(BOB)[0]]  # listings never show leftovers
    assert purge_temporaries(store, ALICE) == 1
    assert not alice_only.exists()
    # Its now-empty folders are pruned: the user's id does not live on as a folder name.
    assert not (store.root / ALICE).exists()
    assert bob_tmp.exists() and store.get(BOB + "kept.parquet") == b"bob's rows"
    assert purge_temporaries(store, "raw/year=2026/month=12/") == 0  # nothing there: fine


def test_local_purge_spares_young_leftovers_when_asked(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "data")
    old = _leftover(store.root, ALICE, age=timedelta(hours=2))
    young = _leftover(store.root, ALICE)  # may be a write still under way
    elsewhere = _leftover(store.root, "summaries/latest/", age=timedelta(days=3))
    assert purge_temporaries(store, "", older_than=timedelta(hours=1)) == 2
    assert not old.exists() and not elsewhere.exists() and young.exists()
    assert purge_temporaries(store, "") == 1  # older_than=None: every leftover
    assert not young.exists()


def test_local_purge_refuses_a_prefix_that_leaves_the_root(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid object key"):
        LocalStore(tmp_path / "data").purge_temporaries("../elsewhere/")


def test_local_store_errors_name_the_key_but_no_server_path(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "blocker").write_bytes(b"a file where a folder should be")
    store = LocalStore(tmp_path / "data")
    with pytest.raises(StorageError) as err:
        store.put("blocker/child", b"x")
    assert "key: blocker/child" in str(err.value)
    assert str(tmp_path) not in str(err.value)
    assert str(tmp_path) in str(err.value.__cause__)  # the chain keeps it for the server's log


def _start_unfinished(store: B2Store, name: str, data: bytes) -> str:
    """A large-file upload that died after its first part: the part holds data, no listing
    shows it."""
    api = store.bucket.api
    unfinished = api.services.large_file.start_large_file(store.bucket.id_, name, "b2/x-auto", {})
    api.session.upload_part(unfinished.file_id, 1, len(data), hashlib.sha1(data).hexdigest(),
                            io.BytesIO(data))
    return str(unfinished.file_id)


def _unfinished_names(store: B2Store) -> list[str]:
    return sorted(f.file_name for f in store.bucket.list_unfinished_large_files())


def test_b2_purge_cancels_unfinished_large_files_below_the_prefix(tmp_path: Path) -> None:
    store, _ = make_b2_store()
    _start_unfinished(store, ALICE + "community_x.parquet", b"0123456789abcdef" * 100)
    _start_unfinished(store, BOB + "community_y.parquet", b"bob" * 100)
    assert store.list("raw/") == []  # invisible to listings
    assert purge_temporaries(store, ALICE) == 1
    assert _unfinished_names(store) == [BOB + "community_y.parquet"]


def test_b2_purge_spares_young_unfinished_uploads_when_asked() -> None:
    store, sim = make_b2_store()
    old_id = _start_unfinished(store, ALICE + "old.parquet", b"x" * 100)
    young_id = _start_unfinished(store, ALICE + "young.parquet", b"y" * 100)
    assert isinstance(sim, FastSimulator)
    files = sim.bucket_id_to_bucket[store.bucket.id_].file_id_to_file
    # The simulator's clock starts in 1970; give the young upload a real, recent start.
    files[young_id].upload_timestamp = int(time.time() * 1000)
    assert old_id in files
    assert purge_temporaries(store, "", older_than=timedelta(hours=1)) == 1
    assert _unfinished_names(store) == [ALICE + "young.parquet"]


def test_public_names_hold_no_path(tmp_path: Path) -> None:
    local = LocalStore(tmp_path / "data")
    assert public_name(local) == "local"
    assert str(tmp_path) in local.describe()  # describe() is for the operator's log
    assert public_name(make_b2_store()[0]) == "b2:plumbline-test"
    assert public_name(DelegatingStore(local)) == "DelegatingStore"
    assert purge_temporaries(DelegatingStore(local), "") == 0  # no native purge: nothing to do
