"""Extension bundles: load, check and hash a directory or a `.tar.zst`/`.tar.gz` archive.

A bundle holds `manifest.json`, the component `dist/main.wasm`, optionally `ui/**`, and
the files its manifest references (`sbom`, `precompiled` targets, `assets` patterns).
Nothing is ever extracted to disk: archives are decompressed as a stream whose output is
capped, every tar header is checked (name, type, size) *before* its data is read, and
member data is kept in memory. A directory is packed into a deterministic `.tar.zst`
(sorted members, mtime 0, uid/gid 0, fixed modes, fixed zstd level) which then goes
through exactly the same checks as an uploaded archive.

The content hash is the SHA-256 of the stored archive bytes (`sha256:<hex>`).
"""

from __future__ import annotations

import gzip
import io
import os
import re
import stat
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

import zstandard

from runner.contract.bundle_store import content_hash_of
from service.registry.manifest import (
    MAX_MANIFEST_BYTES,
    FieldError,
    Manifest,
    ManifestError,
    parse_manifest,
)

MANIFEST_MEMBER: Final = "manifest.json"
COMPONENT_MEMBER: Final = "dist/main.wasm"
UI_PREFIX: Final = "ui/"

ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC: Final = b"\x1f\x8b"
WASM_MAGIC: Final = b"\x00asm"
COMPONENT_HEADER: Final = WASM_MAGIC + b"\x0d\x00\x01\x00"  # version 0x0d, layer 1 (component)
CORE_MODULE_HEADER: Final = WASM_MAGIC + b"\x01\x00\x00\x00"  # version 1, layer 0 (core module)

#: zstd level used for directory bundles. Changing it changes every directory's content
#: hash, so it is part of the format.
ZSTD_LEVEL: Final = 10
FILE_MODE: Final = 0o644
MAX_ZSTD_WINDOW: Final = 1 << 27  # 128 MiB, libzstd's own default limit
_HEADER_ALLOWANCE_PER_MEMBER: Final = 2048  # tar header + pax header + padding
_MAX_LISTED: Final = 20

MiB: Final = 1024 * 1024

# Error codes (BundleError.code)
BUNDLE_NOT_FOUND: Final = "bundle_not_found"
BUNDLE_INVALID: Final = "bundle_invalid"
BUNDLE_TOO_LARGE: Final = "bundle_too_large"
UNSAFE_ARCHIVE_MEMBER: Final = "unsafe_archive_member"
UNEXPECTED_MEMBER: Final = "unexpected_member"
MANIFEST_MISSING: Final = "manifest_missing"
MANIFEST_INVALID: Final = "manifest_invalid"
COMPONENT_MISSING: Final = "component_missing"
COMPONENT_INVALID: Final = "component_invalid"


class BundleError(ValueError):
    """A bundle was refused. `code` is stable (see docs/manifest.md), `message` is for people.

    `member` names the offending archive member when there is one; `errors` carries the
    manifest's field errors for `manifest_invalid`.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        member: str | None = None,
        errors: Iterable[FieldError] = (),
    ) -> None:
        self.code = code
        self.message = message
        self.member = member
        self.errors: list[FieldError] = list(errors)
        super().__init__(f"{code}: {message}")

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"error": self.code, "detail": self.message}
        if self.member is not None:
            out["member"] = self.member
        if self.errors:
            out["errors"] = [{"path": e.path, "reason": e.reason} for e in self.errors]
        return out


@dataclass(frozen=True)
class BundleLimits:
    max_archive_bytes: int = 64 * MiB
    max_member_bytes: int = 32 * MiB
    max_total_bytes: int = 128 * MiB
    max_members: int = 10_000

    @property
    def max_stream_bytes(self) -> int:
        """Cap on the decompressed tar stream: all member data plus header overhead."""
        return self.max_total_bytes + self.max_members * _HEADER_ALLOWANCE_PER_MEMBER + MiB


DEFAULT_LIMITS: Final = BundleLimits()


@dataclass(frozen=True)
class LoadedBundle:
    archive: bytes = field(repr=False)
    content_hash: str
    manifest: Manifest
    component: bytes = field(repr=False)
    members: tuple[str, ...]
    archive_format: str  # "tar.zst" | "tar.gz"

    @property
    def size(self) -> int:
        return len(self.archive)


# --------------------------------------------------------------------------- names


_DRIVE_RE = re.compile(r"^[A-Za-z]:")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def _fmt_size(n: int) -> str:
    return f"{n / MiB:.1f} MiB" if n >= MiB else f"{n} bytes"


def _unsafe(name: str, reason: str) -> BundleError:
    return BundleError(UNSAFE_ARCHIVE_MEMBER, f"{name!r}: {reason}", member=name)


def normalize_member_name(name: str) -> str | None:
    """The canonical member name, None for the archive root entry (`.`), or raise."""
    shown = name
    if name in (".", "./"):
        return None
    if not name:
        raise _unsafe(shown, "empty member name")
    if _CONTROL_RE.search(name):
        raise _unsafe(shown, "member name contains control characters")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise _unsafe(shown, "member name is not valid UTF-8") from None
    if "\\" in name:
        raise _unsafe(shown, "member name contains a backslash")
    if name.startswith("/"):
        raise _unsafe(shown, "absolute paths are not allowed")
    if _DRIVE_RE.match(name):
        raise _unsafe(shown, "drive-letter paths are not allowed")
    if name.startswith("./"):
        name = name[2:]
    segments = name.split("/")
    if any(s == ".." for s in segments):
        raise _unsafe(shown, "'..' path segments are not allowed")
    if any(s in ("", ".") for s in segments):
        raise _unsafe(shown, "empty or '.' path segments are not allowed")
    return name


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """`**` spans directories, `*` and `?` stay within one segment; nothing else is magic."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def member_allowance(manifest: Manifest) -> Callable[[str], bool]:
    """Which file names this manifest allows in its bundle."""
    exact = {MANIFEST_MEMBER, COMPONENT_MEMBER}
    if manifest.sbom:
        exact.add(manifest.sbom)
    if manifest.precompiled:
        exact.update(manifest.precompiled.values())
    patterns = [_glob_regex(p) for p in manifest.assets]

    def allowed(name: str) -> bool:
        return name in exact or name.startswith(UI_PREFIX) or any(p.match(name) for p in patterns)

    return allowed


# --------------------------------------------------------------------------- streams


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _CappedReader(io.RawIOBase):
    """Reads a decompressing stream and fails once more than `cap` bytes came out."""

    def __init__(self, source: _Readable, cap: int) -> None:
        self._source = source
        self._cap = cap
        self._count = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = self._cap - self._count + 1
        chunk = self._source.read(min(size, self._cap - self._count + 1))
        self._count += len(chunk)
        if self._count > self._cap:
            raise BundleError(
                BUNDLE_TOO_LARGE,
                f"archive expands to more than {_fmt_size(self._cap)} when decompressed",
            )
        return chunk

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _decompressing_stream(archive: bytes, archive_format: str) -> _Readable:
    if archive_format == "tar.zst":
        dctx = zstandard.ZstdDecompressor(max_window_size=MAX_ZSTD_WINDOW)
        return dctx.stream_reader(io.BytesIO(archive), read_across_frames=True)
    return gzip.GzipFile(fileobj=io.BytesIO(archive), mode="rb")


def sniff_format(data: bytes) -> str:
    if data.startswith(ZSTD_MAGIC):
        return "tar.zst"
    if data.startswith(GZIP_MAGIC):
        return "tar.gz"
    raise BundleError(BUNDLE_INVALID, "not a bundle archive: expected a zstd (.tar.zst) or gzip (.tar.gz/.tgz) file")


def _read_members(archive: bytes, archive_format: str, limits: BundleLimits) -> dict[str, bytes]:
    """Every regular file of the archive, after checking each header before its data."""
    files: dict[str, bytes] = {}
    seen: set[str] = set()
    entries = 0
    total = 0
    stream = _decompressing_stream(archive, archive_format)
    reader = _CappedReader(stream, limits.max_stream_bytes)
    try:
        with tarfile.open(fileobj=reader, mode="r|") as tar:
            for info in tar:
                entries += 1
                if entries > limits.max_members:
                    raise BundleError(
                        BUNDLE_TOO_LARGE,
                        f"archive has more than {limits.max_members} entries",
                        member=info.name,
                    )
                name = normalize_member_name(info.name)
                if name is None:
                    if not info.isdir():
                        raise _unsafe(info.name, "the archive root must be a directory")
                    continue
                if name in seen:
                    raise _unsafe(name, "duplicate member name")
                seen.add(name)
                if info.issym():
                    raise _unsafe(name, f"symbolic links are not allowed (-> {info.linkname!r})")
                if info.islnk():
                    raise _unsafe(name, f"hard links are not allowed (-> {info.linkname!r})")
                if info.ischr() or info.isblk():
                    raise _unsafe(name, "device files are not allowed")
                if info.isfifo():
                    raise _unsafe(name, "FIFOs are not allowed")
                if info.issparse():
                    raise _unsafe(name, "sparse files are not allowed")
                if info.isdir():
                    continue
                if not info.isreg():
                    raise _unsafe(name, f"unsupported member type {info.type!r}")
                if info.size > limits.max_member_bytes:
                    raise BundleError(
                        BUNDLE_TOO_LARGE,
                        f"{name!r} is {_fmt_size(info.size)}, more than the "
                        f"{_fmt_size(limits.max_member_bytes)} allowed per file",
                        member=name,
                    )
                if name == MANIFEST_MEMBER and info.size > MAX_MANIFEST_BYTES:
                    raise BundleError(
                        MANIFEST_INVALID,
                        "manifest.json is too large",
                        member=name,
                        errors=[FieldError("", f"is larger than {MAX_MANIFEST_BYTES // 1024} KiB")],
                    )
                total += info.size
                if total > limits.max_total_bytes:
                    raise BundleError(
                        BUNDLE_TOO_LARGE,
                        f"files add up to more than {_fmt_size(limits.max_total_bytes)} (reached at {name!r})",
                        member=name,
                    )
                handle = tar.extractfile(info)
                data = handle.read() if handle is not None else b""
                if len(data) != info.size:
                    raise BundleError(BUNDLE_INVALID, f"archive is truncated inside {name!r}", member=name)
                files[name] = data
    except BundleError:
        raise
    except (tarfile.TarError, EOFError, OSError, zstandard.ZstdError, ValueError) as exc:
        raise BundleError(BUNDLE_INVALID, f"archive is corrupt or truncated: {exc}") from None
    return files


# --------------------------------------------------------------------------- checks


def _parse_manifest_member(data: bytes) -> Manifest:
    try:
        return parse_manifest(data)
    except ManifestError as exc:
        raise BundleError(
            MANIFEST_INVALID,
            f"manifest.json is invalid ({len(exc.errors)} problem{'s' if len(exc.errors) != 1 else ''}): "
            + "; ".join(str(e) for e in exc.errors),
            member=MANIFEST_MEMBER,
            errors=exc.errors,
        ) from None


def _unexpected_error(names: list[str]) -> BundleError:
    listed = ", ".join(repr(n) for n in names[:_MAX_LISTED])
    more = f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else ""
    return BundleError(
        UNEXPECTED_MEMBER,
        f"files outside manifest.json, dist/main.wasm, ui/** and the manifest's sbom, precompiled "
        f"and assets entries are not allowed: {listed}{more}",
        member=names[0],
    )


def check_component(data: bytes) -> None:
    """`dist/main.wasm` must be a WebAssembly *component* (not a core module)."""
    if data.startswith(COMPONENT_HEADER):
        return
    if data.startswith(CORE_MODULE_HEADER):
        raise BundleError(
            COMPONENT_INVALID,
            "dist/main.wasm is a core WebAssembly module, not a component; build it as a component "
            "for the alga:extension world (e.g. `jco componentize`, `componentize-py`, "
            "`cargo component` or `wasm-tools component new`)",
            member=COMPONENT_MEMBER,
        )
    if data.startswith(WASM_MAGIC) and len(data) >= 8 and data[6:8] == b"\x01\x00":
        raise BundleError(
            COMPONENT_INVALID,
            f"dist/main.wasm uses an unsupported component encoding (version 0x{data[4:6][::-1].hex()}; "
            "expected 0x000d)",
            member=COMPONENT_MEMBER,
        )
    raise BundleError(COMPONENT_INVALID, "dist/main.wasm is not a WebAssembly binary", member=COMPONENT_MEMBER)


def _check_bundle(files: dict[str, bytes], archive: bytes, archive_format: str) -> LoadedBundle:
    if MANIFEST_MEMBER not in files:
        raise BundleError(MANIFEST_MISSING, "the bundle has no manifest.json at its root")
    manifest = _parse_manifest_member(files[MANIFEST_MEMBER])

    allowed = member_allowance(manifest)
    unexpected = sorted(n for n in files if not allowed(n))
    if unexpected:
        raise _unexpected_error(unexpected)

    if COMPONENT_MEMBER not in files:
        raise BundleError(COMPONENT_MISSING, "the bundle has no dist/main.wasm component")
    component = files[COMPONENT_MEMBER]
    check_component(component)

    missing: list[FieldError] = []
    if manifest.ui is not None and manifest.ui["entry"] not in files:
        missing.append(FieldError("ui.entry", f"{manifest.ui['entry']} is not in the bundle"))
    for target, path in (manifest.precompiled or {}).items():
        if path not in files:
            missing.append(FieldError(f"precompiled.{target}", f"{path} is not in the bundle"))
    if manifest.sbom is not None and manifest.sbom not in files:
        missing.append(FieldError("sbom", f"{manifest.sbom} is not in the bundle"))
    if missing:
        raise BundleError(
            MANIFEST_INVALID,
            "manifest.json references missing files: " + "; ".join(str(e) for e in missing),
            member=MANIFEST_MEMBER,
            errors=missing,
        )

    return LoadedBundle(
        archive=archive,
        content_hash=content_hash_of(archive),
        manifest=manifest,
        component=component,
        members=tuple(sorted(files)),
        archive_format=archive_format,
    )


# --------------------------------------------------------------------------- entry points


def load_bundle_bytes(data: bytes, *, limits: BundleLimits = DEFAULT_LIMITS) -> LoadedBundle:
    """Check an uploaded archive; its format is sniffed from the magic bytes."""
    data = bytes(data)
    if len(data) > limits.max_archive_bytes:
        raise BundleError(
            BUNDLE_TOO_LARGE,
            f"archive is {_fmt_size(len(data))}, more than the {_fmt_size(limits.max_archive_bytes)} allowed",
        )
    archive_format = sniff_format(data)
    files = _read_members(data, archive_format, limits)
    return _check_bundle(files, data, archive_format)


def load_bundle_path(path: Path, *, limits: BundleLimits = DEFAULT_LIMITS) -> LoadedBundle:
    """Load a bundle directory (packed deterministically) or a .tar.zst/.tar.gz/.tgz file."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise BundleError(BUNDLE_NOT_FOUND, f"{path}: no such file or directory") from None
    except OSError as exc:
        raise BundleError(BUNDLE_INVALID, f"{path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        return load_bundle_bytes(pack_directory(path, limits=limits), limits=limits)
    if not stat.S_ISREG(st.st_mode):
        raise BundleError(BUNDLE_INVALID, f"{path}: not a regular file or directory")
    if st.st_size > limits.max_archive_bytes:
        raise BundleError(
            BUNDLE_TOO_LARGE,
            f"archive is {_fmt_size(st.st_size)}, more than the {_fmt_size(limits.max_archive_bytes)} allowed",
        )
    with path.open("rb") as fh:
        data = fh.read(limits.max_archive_bytes + 1)
    return load_bundle_bytes(data, limits=limits)


# --------------------------------------------------------------------------- directories


def _read_regular_file(path: Path, rel: str, limit: int) -> bytes:
    """Read without following a symlink swapped in after the walk, and never more than limit."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise _unsafe(rel, f"cannot be opened as a regular file ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise _unsafe(rel, "is not a regular file")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise BundleError(BUNDLE_TOO_LARGE, f"{rel!r} is more than the {_fmt_size(limit)} allowed per file", member=rel)
    return data


def _walk(root: Path, limits: BundleLimits, allowed: Callable[[str], bool]) -> list[tuple[str, Path]]:
    """All regular files below root (sorted, relative POSIX names); links etc. refused."""
    found: list[tuple[str, Path]] = []
    unexpected: list[str] = []
    total = 0
    stack: list[tuple[Path, str]] = [(root, "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            raise BundleError(BUNDLE_INVALID, f"cannot read directory {prefix or '.'}: {exc.strerror}") from None
        subdirs: list[tuple[Path, str]] = []
        for entry in entries:
            rel = prefix + entry.name
            checked = normalize_member_name(rel)
            if checked != rel:
                raise _unsafe(rel, "not a valid member name")
            st = entry.stat(follow_symlinks=False)
            mode = st.st_mode
            if stat.S_ISLNK(mode):
                raise _unsafe(rel, "symbolic links are not allowed in a bundle directory")
            if stat.S_ISDIR(mode):
                subdirs.append((Path(entry.path), rel + "/"))
                continue
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                raise _unsafe(rel, "device files are not allowed")
            if stat.S_ISFIFO(mode):
                raise _unsafe(rel, "FIFOs are not allowed")
            if not stat.S_ISREG(mode):
                raise _unsafe(rel, "only regular files and directories are allowed")
            if st.st_nlink > 1:
                raise _unsafe(rel, "hard-linked files are not allowed; copy the file instead")
            if not allowed(rel):
                unexpected.append(rel)
                if len(unexpected) > _MAX_LISTED:
                    raise _unexpected_error(unexpected)
                continue
            if len(found) + 1 > limits.max_members:
                raise BundleError(BUNDLE_TOO_LARGE, f"directory has more than {limits.max_members} files", member=rel)
            if st.st_size > limits.max_member_bytes:
                raise BundleError(
                    BUNDLE_TOO_LARGE,
                    f"{rel!r} is {_fmt_size(st.st_size)}, more than the "
                    f"{_fmt_size(limits.max_member_bytes)} allowed per file",
                    member=rel,
                )
            total += st.st_size
            if total > limits.max_total_bytes:
                raise BundleError(
                    BUNDLE_TOO_LARGE,
                    f"files add up to more than {_fmt_size(limits.max_total_bytes)} (reached at {rel!r})",
                    member=rel,
                )
            found.append((rel, Path(entry.path)))
        stack.extend(reversed(subdirs))
    if unexpected:
        raise _unexpected_error(unexpected)
    return sorted(found)


def build_archive(files: Iterable[tuple[str, bytes]]) -> bytes:
    """A deterministic `.tar.zst` of (name, data) pairs: same input, same bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
        for name, data in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = FILE_MODE
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            tar.addfile(info, io.BytesIO(data))
    cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True, write_content_size=True, threads=0)
    return cctx.compress(buffer.getvalue())


def pack_directory(root: Path, *, limits: BundleLimits = DEFAULT_LIMITS) -> bytes:
    """Pack a bundle directory into its deterministic `.tar.zst` (checked by the caller)."""
    root = Path(root)
    manifest_path = root / MANIFEST_MEMBER
    try:
        mst = manifest_path.lstat()
    except FileNotFoundError:
        raise BundleError(MANIFEST_MISSING, f"{root}: no manifest.json in the bundle directory") from None
    if not stat.S_ISREG(mst.st_mode):
        raise _unsafe(MANIFEST_MEMBER, "manifest.json must be a regular file (not a link)")
    if mst.st_size > MAX_MANIFEST_BYTES:
        raise BundleError(
            MANIFEST_INVALID,
            "manifest.json is too large",
            member=MANIFEST_MEMBER,
            errors=[FieldError("", f"is larger than {MAX_MANIFEST_BYTES // 1024} KiB")],
        )
    manifest = _parse_manifest_member(_read_regular_file(manifest_path, MANIFEST_MEMBER, MAX_MANIFEST_BYTES))
    found = _walk(root, limits, member_allowance(manifest))
    files = [(rel, _read_regular_file(p, rel, limits.max_member_bytes)) for rel, p in found]
    archive = build_archive(files)
    if len(archive) > limits.max_archive_bytes:
        raise BundleError(
            BUNDLE_TOO_LARGE,
            f"packed archive is {_fmt_size(len(archive))}, more than the {_fmt_size(limits.max_archive_bytes)} allowed",
        )
    return archive
