"""Checkpoint export directory: signed checkpoints kept outside the database.

Each checkpoint is written once as `checkpoint-<size, 20 digits>.txt` (C2SP note text),
through a temporary file hard-linked into place, fsynced, and made read-only. Existing
files are never overwritten. Point `EXTGATE_AUDIT_CHECKPOINT_DIR` at storage the database
administrator cannot write (another host, a WORM/S3 Object Lock sync, a tenant's copy):
the files are what `verify` uses to detect a truncated or rewritten log.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from audit.note import NoteError, ParsedNote, parse_checkpoint

log = logging.getLogger("extgate.audit")

PREFIX = "checkpoint-"
SUFFIX = ".txt"


@dataclass(frozen=True)
class ExportResult:
    path: Path
    created: bool  # False: an identical file was already there
    conflict: bool = False  # a different note for the same size exists (split view!)


def checkpoint_filename(size: int) -> str:
    return f"{PREFIX}{size:020d}{SUFFIX}"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def export_checkpoint(directory: Path, size: int, note: str) -> ExportResult:
    """Write `note` as the checkpoint file for `size` unless it exists (never overwrite)."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / checkpoint_filename(size)
    if target.exists():
        same = target.read_text(encoding="utf-8") == note
        if not same:
            log.error("audit checkpoint %s exists with different content; not overwritten", target)
        return ExportResult(target, created=False, conflict=not same)
    tmp = directory / f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(note)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o444)
        try:
            os.link(tmp, target)
        except FileExistsError:
            same = target.read_text(encoding="utf-8") == note
            return ExportResult(target, created=False, conflict=not same)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(directory)
    return ExportResult(target, created=True)


@dataclass(frozen=True)
class LoadedCheckpoint:
    source: str
    note: ParsedNote | None
    error: str | None = None


def load_checkpoint_file(path: Path) -> LoadedCheckpoint:
    try:
        return LoadedCheckpoint(str(path), parse_checkpoint(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, NoteError) as exc:
        return LoadedCheckpoint(str(path), None, str(exc))


def load_checkpoints(path: Path) -> list[LoadedCheckpoint]:
    """All checkpoints in a directory (or the single file `path`)."""
    if path.is_file():
        return [load_checkpoint_file(path)]
    if not path.is_dir():
        return []
    files = sorted(p for p in path.iterdir() if p.name.startswith(PREFIX) and p.name.endswith(SUFFIX))
    return [load_checkpoint_file(p) for p in files]
