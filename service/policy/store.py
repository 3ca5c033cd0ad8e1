"""Where activated bundles and the active pointer live, shared by every process.

On disk (`<data_dir>/policy/`): `bundles/<hex>.json` (the files of each activated
bundle; never pruned, so any recorded decision's revision can be loaded), `state.json`
(active revision, history, last error, last directory revision) and a lock file.
Writers take an exclusive `flock`; files are replaced atomically. Every replica and the
CLI see the same state; replicas adopt a new active revision by polling `state.json`
(see `PolicyService.sync`). Without a directory the store lives in memory (tests, one-off CLI checks).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from service.policy.source import BundleSource


@dataclass
class HistoryEntry:
    revision: str
    activated_at: float
    via: str  # "bootstrap" | "reload" | "rollback" (older stores: "startup")
    actor: str | None = None


@dataclass
class StoreState:
    active: str | None = None
    activated_at: float | None = None
    history: list[HistoryEntry] = field(default_factory=list)  # newest first
    last_error: dict[str, Any] | None = None
    dir_revision: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> StoreState:
        data = json.loads(text)
        data["history"] = [HistoryEntry(**h) for h in data.get("history", [])]
        return cls(**data)


class RevisionNotFound(LookupError):
    pass


class StoreBusy(RuntimeError):
    """Another writer (thread or process) holds the store's lock."""


class BundleStore:
    def __init__(self, root: Path | None, *, keep: int = 10) -> None:
        self.root = root
        self.keep = max(1, keep)
        self._mem_bundles: dict[str, str] = {}
        self._mem_state = StoreState()
        self._thread_lock = threading.RLock()
        if root is not None:
            (root / "bundles").mkdir(parents=True, exist_ok=True)

    # -- locking & state -------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with self._thread_lock:
            if self.root is None:
                yield
                return
            with open(self.root / ".lock", "a+") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def try_locked(self) -> Iterator[None]:
        """Like `locked`, but raise StoreBusy instead of waiting for another writer."""
        if not self._thread_lock.acquire(blocking=False):
            raise StoreBusy("the policy store is locked by another activation")
        try:
            if self.root is None:
                yield
                return
            with open(self.root / ".lock", "a+") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise StoreBusy("the policy store is locked by another process") from None
                try:
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def state_stamp(self) -> float | None:
        """Cheap change detector for replicas (mtime of state.json)."""
        if self.root is None:
            return self._mem_state.activated_at
        try:
            return (self.root / "state.json").stat().st_mtime_ns / 1e9
        except FileNotFoundError:
            return None

    def read_state(self) -> StoreState:
        if self.root is None:
            return StoreState.from_json(self._mem_state.to_json())
        try:
            return StoreState.from_json((self.root / "state.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return StoreState()

    def write_state(self, state: StoreState) -> None:
        if self.root is None:
            self._mem_state = StoreState.from_json(state.to_json())
            return
        _atomic_write(self.root / "state.json", state.to_json())

    # -- bundles ---------------------------------------------------------------------
    def save(self, source: BundleSource) -> None:
        key = source.revision.removeprefix("sha256:")
        if self.root is None:
            self._mem_bundles[key] = source.to_json()
        else:
            _atomic_write(self.root / "bundles" / f"{key}.json", source.to_json())

    def load(self, revision: str) -> BundleSource:
        key = self.resolve(revision).removeprefix("sha256:")
        text = self._mem_bundles.get(key) if self.root is None else (self.root / "bundles" / f"{key}.json").read_text()
        if text is None:
            raise RevisionNotFound(revision)
        return BundleSource.from_json(text)

    def revisions(self) -> list[str]:
        if self.root is None:
            keys = list(self._mem_bundles)
        else:
            keys = [p.stem for p in (self.root / "bundles").glob("*.json")]
        return sorted(f"sha256:{k}" for k in keys)

    def resolve(self, prefix: str) -> str:
        """Full revision from a unique prefix (with or without "sha256:")."""
        want = prefix.strip().removeprefix("sha256:").lower()
        if not want:
            raise RevisionNotFound("empty revision")
        matches = [r for r in self.revisions() if r.removeprefix("sha256:").startswith(want)]
        if len(matches) != 1:
            detail = "ambiguous" if matches else "unknown"
            raise RevisionNotFound(f"{detail} revision {prefix!r}")
        return matches[0]

    def record_activation(self, state: StoreState, revision: str, via: str, actor: str | None) -> None:
        now = time.time()
        state.active, state.activated_at = revision, now
        state.history.insert(0, HistoryEntry(revision, now, via, actor))
        kept: list[str] = []
        for entry in state.history:
            if entry.revision not in kept:
                kept.append(entry.revision)
        keep = set(kept[: self.keep + 1])  # the active one plus N previous
        state.history = [h for h in state.history if h.revision in keep][: 10 * (self.keep + 1)]
        # Bundle files are never deleted: every activated revision stays loadable, because
        # audit records name the revision each decision was made with and
        # `extgate policy explain --request-id` re-evaluates with exactly that revision.
        # They are small text files, created only by audited activations. `keep` bounds
        # the history in state.json, not the files.

    def _delete(self, revision: str) -> None:
        key = revision.removeprefix("sha256:")
        if self.root is None:
            self._mem_bundles.pop(key, None)
        else:
            with contextlib.suppress(FileNotFoundError):
                (self.root / "bundles" / f"{key}.json").unlink()


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
