"""Install-scoped key-value storage behind the `alga:extension/storage` interface."""

from runner.storage.base import (
    KVEntry,
    KVError,
    KVStore,
    StorageConflictError,
    StorageMissingError,
)
from runner.storage.sql import SqlKVStore, metadata

__all__ = [
    "KVEntry",
    "KVError",
    "KVStore",
    "SqlKVStore",
    "StorageConflictError",
    "StorageMissingError",
    "metadata",
]
