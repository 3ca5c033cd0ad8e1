"""SqlKVStore semantics on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from runner.storage import SqlKVStore, StorageConflictError, StorageMissingError


def test_kv_semantics(database_url: str) -> None:
    kv = SqlKVStore(database_url, create_tables=True)
    with pytest.raises(StorageMissingError):
        kv.get("t", "i", "ns", "k")
    assert kv.put("t", "i", "ns", "k", b"v1", None).revision == 1
    assert kv.put("t", "i", "ns", "k", b"v2", None).revision == 2
    with pytest.raises(StorageConflictError):
        kv.put("t", "i", "ns", "k", b"x", 1)
    with pytest.raises(StorageConflictError):
        kv.put("t", "i", "ns", "k", b"x", 0)  # create-only on an existing key
    assert kv.put("t", "i", "ns", "k", b"v3", 2).revision == 3
    assert kv.get("t", "i", "ns", "k").value == b"v3"
    with pytest.raises(StorageConflictError):
        kv.put("t", "i", "ns", "new", b"x", 5)  # revision for a key that does not exist
    assert kv.put("t", "i", "ns", "new", b"x", 0).revision == 1
    # scope: other install / other tenant see nothing
    with pytest.raises(StorageMissingError):
        kv.get("t", "i2", "ns", "k")
    with pytest.raises(StorageMissingError):
        kv.get("t2", "i", "ns", "k")
    for n in range(5):
        kv.put("t", "i", "page", f"k{n}", b"v", None)
    first = kv.list("t", "i", "page", None, 3)
    assert [e.key for e in first] == ["k0", "k1", "k2"]
    assert [e.key for e in kv.list("t", "i", "page", first[-1].key, 3)] == ["k3", "k4"]
    kv.delete("t", "i", "ns", "k")
    with pytest.raises(StorageMissingError):
        kv.delete("t", "i", "ns", "k")
