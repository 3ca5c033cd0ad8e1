"""Content-addressed bundle store shared by publisher (gateway) and runner.

Layout under the root: `sha256/<hex>/archive` (the stored archive, whose SHA-256 is the
content hash) and `sha256/<hex>/main.wasm` (the component extracted from it). Writes go
to a temporary file and are renamed into place, so readers never see a partial file.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

CONTENT_HASH_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


class BundleNotFoundError(LookupError):
    pass


def content_hash_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_content_hash(content_hash: str) -> str:
    if not CONTENT_HASH_RE.fullmatch(content_hash):
        raise ValueError("content hash must look like sha256:<64 lowercase hex>")
    return content_hash


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class LocalBundleStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _dir(self, content_hash: str) -> Path:
        check_content_hash(content_hash)
        return self.root / "sha256" / content_hash.removeprefix("sha256:")

    def put(self, archive: bytes, component: bytes) -> str:
        """Store an archive and its component; returns the content hash. Idempotent."""
        content_hash = content_hash_of(archive)
        target = self._dir(content_hash)
        if not (target / "main.wasm").exists():
            _atomic_write(target / "archive", archive)
            _atomic_write(target / "main.wasm", component)
        return content_hash

    def has(self, content_hash: str) -> bool:
        return (self._dir(content_hash) / "main.wasm").is_file()

    def component_path(self, content_hash: str) -> Path:
        path = self._dir(content_hash) / "main.wasm"
        if not path.is_file():
            raise BundleNotFoundError(content_hash)
        return path

    def archive_path(self, content_hash: str) -> Path:
        path = self._dir(content_hash) / "archive"
        if not path.is_file():
            raise BundleNotFoundError(content_hash)
        return path
