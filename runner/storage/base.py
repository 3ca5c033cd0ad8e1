"""The KV storage interface. Scope is always (tenant, install): an install never sees
another install's keys, even of the same extension or tenant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class KVError(Exception):
    pass


class StorageMissingError(KVError):
    pass


class StorageConflictError(KVError):
    pass


@dataclass(frozen=True)
class KVEntry:
    namespace: str
    key: str
    value: bytes
    revision: int


class KVStore(Protocol):
    def get(self, tenant_id: str, install_id: str, namespace: str, key: str) -> KVEntry: ...

    def put(
        self,
        tenant_id: str,
        install_id: str,
        namespace: str,
        key: str,
        value: bytes,
        expected_revision: int | None,
    ) -> KVEntry:
        """Write; `expected_revision` None = unconditional, 0 = create only, N = must match."""
        ...

    def delete(self, tenant_id: str, install_id: str, namespace: str, key: str) -> None: ...

    def list(
        self, tenant_id: str, install_id: str, namespace: str, after: str | None, limit: int
    ) -> list[KVEntry]: ...
