"""Bundle loading: layout, unsafe archives (gz and zst), limits, bombs, determinism."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import socket
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zstandard

from service.registry.bundles import (
    COMPONENT_HEADER,
    BundleError,
    BundleLimits,
    LoadedBundle,
    build_archive,
    load_bundle_bytes,
    load_bundle_path,
    pack_directory,
)

COMPONENT = COMPONENT_HEADER + b"\x00" * 24
CORE_MODULE = b"\x00asm\x01\x00\x00\x00" + b"\x00" * 8


def manifest(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "com.acme.tickets",
        "publisher": "acme",
        "version": "1.0.0",
        "runtime": "wasm-js@1",
        "capabilities": ["cap:http.fetch"],
        "ui": {"type": "iframe", "entry": "ui/index.html"},
        "api": {"endpoints": [{"method": "GET", "path": "/tickets", "handler": "list"}]},
    }
    doc.update(overrides)
    return doc


def base_files(**manifest_overrides: Any) -> dict[str, bytes]:
    return {
        "manifest.json": json.dumps(manifest(**manifest_overrides)).encode(),
        "dist/main.wasm": COMPONENT,
        "ui/index.html": b"<html></html>",
        "ui/assets/app.js": b"console.log(1)",
    }


# ---- raw archive crafting (anything tarfile can write, including hostile entries) --------

Entry = tuple[tarfile.TarInfo, bytes | None]


def reg(name: str, data: bytes) -> Entry:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def special(name: str, kind: bytes, linkname: str = "") -> Entry:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def tar_bytes(entries: list[Entry], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def gz(raw: bytes) -> bytes:
    return gzip.compress(raw, mtime=0)


def zst(raw: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=3).compress(raw)


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {"tar.gz": gz, "tar.zst": zst}


@pytest.fixture(params=["tar.gz", "tar.zst"])
def fmt(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def archive(fmt: str, entries: list[Entry]) -> bytes:
    return COMPRESSORS[fmt](tar_bytes(entries))


def good_entries(**manifest_overrides: Any) -> list[Entry]:
    return [reg(n, d) for n, d in base_files(**manifest_overrides).items()]


def refused(data: bytes, code: str, limits: BundleLimits | None = None) -> BundleError:
    with pytest.raises(BundleError) as info:
        load_bundle_bytes(data, limits=limits or BundleLimits())
    assert info.value.code == code, info.value
    return info.value


# --------------------------------------------------------------------------- happy paths


def test_loads_archive(fmt: str) -> None:
    data = archive(fmt, good_entries())
    bundle = load_bundle_bytes(data)
    assert isinstance(bundle, LoadedBundle)
    assert bundle.archive_format == fmt
    assert bundle.archive == data
    assert bundle.content_hash == "sha256:" + hashlib.sha256(data).hexdigest()
    assert bundle.component == COMPONENT
    assert bundle.members == ("dist/main.wasm", "manifest.json", "ui/assets/app.js", "ui/index.html")
    assert bundle.manifest.name == "com.acme.tickets"
    assert bundle.size == len(data)


def test_directory_entries_and_dot_slash_prefix_are_accepted(fmt: str) -> None:
    entries: list[Entry] = [special(".", tarfile.DIRTYPE), special("./dist", tarfile.DIRTYPE)]
    entries += [reg("./" + n, d) for n, d in base_files().items()]
    bundle = load_bundle_bytes(archive(fmt, entries))
    assert "manifest.json" in bundle.members and "dist/main.wasm" in bundle.members


def test_gnu_and_ustar_formats(fmt: str) -> None:
    for tar_format in (tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT):
        data = COMPRESSORS[fmt](tar_bytes(good_entries(), tar_format))
        assert load_bundle_bytes(data).manifest.version == "1.0.0"


def test_load_path_archive_files(tmp_path: Path, fmt: str) -> None:
    data = archive(fmt, good_entries())
    for suffix in (".tar.zst", ".tar.gz", ".tgz"):
        path = tmp_path / f"bundle{suffix}"
        path.write_bytes(data)
        bundle = load_bundle_path(path)
        assert bundle.archive == data and bundle.archive_format == fmt


def test_manifest_referenced_files_are_allowed(fmt: str) -> None:
    files = base_files(
        sbom="sbom.spdx.json",
        precompiled={"x86_64-linux": "precompiled/x86_64.cwasm"},
        assets=["docs/**/*.md", "LICENSE"],
    )
    files.update(
        {
            "sbom.spdx.json": b"{}",
            "precompiled/x86_64.cwasm": b"...",
            "docs/README.md": b"# hi",
            "docs/deep/more.md": b"# more",
            "LICENSE": b"MIT",
        }
    )
    bundle = load_bundle_bytes(archive(fmt, [reg(n, d) for n, d in files.items()]))
    assert "docs/deep/more.md" in bundle.members and "LICENSE" in bundle.members


def test_api_only_bundle_without_ui(fmt: str) -> None:
    files = base_files(ui=None)
    del files["ui/index.html"], files["ui/assets/app.js"]
    bundle = load_bundle_bytes(archive(fmt, [reg(n, d) for n, d in files.items()]))
    assert bundle.manifest.ui is None


# --------------------------------------------------------------------------- layout errors


def test_missing_manifest(fmt: str) -> None:
    entries = [e for e in good_entries() if e[0].name != "manifest.json"]
    refused(archive(fmt, entries), "manifest_missing")


def test_invalid_manifest_carries_field_errors(fmt: str) -> None:
    err = refused(archive(fmt, good_entries(version="1.0", runtime="js")), "manifest_invalid")
    assert [e.path for e in err.errors] == ["version", "runtime"]
    assert err.to_dict()["errors"] == [{"path": e.path, "reason": e.reason} for e in err.errors]


def test_missing_component(fmt: str) -> None:
    entries = [e for e in good_entries() if e[0].name != "dist/main.wasm"]
    refused(archive(fmt, entries), "component_missing")


def test_core_module_is_rejected(fmt: str) -> None:
    files = base_files()
    files["dist/main.wasm"] = CORE_MODULE
    err = refused(archive(fmt, [reg(n, d) for n, d in files.items()]), "component_invalid")
    assert "core WebAssembly module, not a component" in err.message


@pytest.mark.parametrize("blob", [b"", b"\x00as", b"MZ\x90\x00", b"\x00asm\x0e\x00\x01\x00"])
def test_non_component_wasm_is_rejected(fmt: str, blob: bytes) -> None:
    files = base_files()
    files["dist/main.wasm"] = blob
    refused(archive(fmt, [reg(n, d) for n, d in files.items()]), "component_invalid")


@pytest.mark.parametrize("extra", ["README.md", "dist/other.wasm", "src/index.ts", ".env", "dist/main.wasm.map"])
def test_unexpected_members(fmt: str, extra: str) -> None:
    err = refused(archive(fmt, [*good_entries(), reg(extra, b"x")]), "unexpected_member")
    assert err.member == extra and repr(extra) in err.message


def test_missing_referenced_files(fmt: str) -> None:
    files = base_files(sbom="sbom.json", precompiled={"x86_64": "pre/x.cwasm"})
    del files["ui/index.html"]
    err = refused(archive(fmt, [reg(n, d) for n, d in files.items()]), "manifest_invalid")
    assert [e.path for e in err.errors] == ["ui.entry", "precompiled.x86_64", "sbom"]


def test_not_an_archive() -> None:
    refused(b"PK\x03\x04 zip file", "bundle_invalid")
    refused(b"", "bundle_invalid")
    refused(tar_bytes(good_entries()), "bundle_invalid")  # uncompressed tar is not accepted


def test_corrupt_and_truncated_archives(fmt: str) -> None:
    data = archive(fmt, good_entries())
    refused(data[: len(data) // 2], "bundle_invalid")
    refused(COMPRESSORS[fmt](b"not a tar file at all" * 100), "bundle_invalid")
    refused(data[:6] + b"\xff" * 40, "bundle_invalid")


# --------------------------------------------------------------------------- unsafe members


@pytest.mark.parametrize(
    "name",
    ["/etc/passwd", "../evil", "ui/../../evil", "ui/./x", "ui//x", "C:/x", "ui\\..\\x", "ui/a\x01b", "a/.."],
)
def test_unsafe_names(fmt: str, name: str) -> None:
    err = refused(archive(fmt, [*good_entries(), reg(name, b"x")]), "unsafe_archive_member")
    assert err.member == name


def test_non_utf8_member_name(fmt: str) -> None:
    info = tarfile.TarInfo("ui/x")
    raw = bytearray(info.tobuf(tarfile.USTAR_FORMAT))
    raw[3:5] = b"\xff\xfe"  # name becomes b"ui/\xff\xfe"; fix the header checksum
    raw[148:156] = b" " * 8
    raw[148:156] = b"%06o\0 " % sum(raw[:512])
    body = b"".join(
        i.tobuf(tarfile.USTAR_FORMAT) + d + b"\0" * (-len(d) % 512) for i, d in good_entries() if d is not None
    )
    data = COMPRESSORS[fmt](body + bytes(raw) + b"\0" * 1024)
    err = refused(data, "unsafe_archive_member")
    assert "UTF-8" in err.message


@pytest.mark.parametrize(
    ("kind", "linkname", "reason"),
    [
        (tarfile.SYMTYPE, "/etc/passwd", "symbolic links"),
        (tarfile.SYMTYPE, "../../x", "symbolic links"),
        (tarfile.LNKTYPE, "manifest.json", "hard links"),
        (tarfile.CHRTYPE, "", "device"),
        (tarfile.BLKTYPE, "", "device"),
        (tarfile.FIFOTYPE, "", "FIFO"),
    ],
)
def test_links_and_special_files(fmt: str, kind: bytes, linkname: str, reason: str) -> None:
    err = refused(archive(fmt, [*good_entries(), special("ui/evil", kind, linkname)]), "unsafe_archive_member")
    assert err.member == "ui/evil" and reason in err.message


def test_symlinked_directory_member(fmt: str) -> None:
    entries = [special("ui", tarfile.SYMTYPE, "/etc"), *good_entries()]
    refused(archive(fmt, entries), "unsafe_archive_member")


def test_duplicate_members(fmt: str) -> None:
    err = refused(archive(fmt, [*good_entries(), reg("ui/index.html", b"other")]), "unsafe_archive_member")
    assert err.member == "ui/index.html" and "duplicate" in err.message
    err = refused(archive(fmt, [*good_entries(), reg("./manifest.json", b"{}")]), "unsafe_archive_member")
    assert err.member == "manifest.json"


# --------------------------------------------------------------------------- limits and bombs


def test_archive_too_large(fmt: str, tmp_path: Path) -> None:
    data = archive(fmt, good_entries())
    limits = BundleLimits(max_archive_bytes=len(data) - 1)
    refused(data, "bundle_too_large", limits)
    path = tmp_path / "b.tar.zst"
    path.write_bytes(data)
    with pytest.raises(BundleError) as info:
        load_bundle_path(path, limits=limits)
    assert info.value.code == "bundle_too_large"


def test_oversize_member_is_refused_before_reading(fmt: str) -> None:
    data = archive(fmt, [*good_entries(), reg("ui/big.bin", b"\x00" * 200_000)])
    err = refused(data, "bundle_too_large", BundleLimits(max_member_bytes=100_000))
    assert err.member == "ui/big.bin"


def test_total_size_cap(fmt: str) -> None:
    entries = [*good_entries()] + [reg(f"ui/part{i}.bin", b"\x00" * 40_000) for i in range(5)]
    err = refused(archive(fmt, entries), "bundle_too_large", BundleLimits(max_total_bytes=150_000))
    assert err.member is not None and err.member.startswith("ui/part")


def test_too_many_members(fmt: str) -> None:
    entries = [*good_entries()] + [reg(f"ui/f{i}.txt", b"x") for i in range(20)]
    refused(archive(fmt, entries), "bundle_too_large", BundleLimits(max_members=10))


def _pax_bomb(size: int) -> bytes:
    """A tar whose first header is a pax extended header claiming `size` bytes of zeros."""
    header = tarfile.TarInfo("././@PaxHeader")
    header.type = tarfile.XHDTYPE
    header.size = size
    raw = header.tobuf(tarfile.USTAR_FORMAT)
    return raw  # followed by `size` zero bytes (streamed by the compressor below)


def _compress_stream(fmt: str, head: bytes, zeros: int, tail: bytes = b"") -> bytes:
    chunk = b"\x00" * (1 << 20)
    if fmt == "tar.gz":
        out = io.BytesIO()
        with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=9) as g:
            g.write(head)
            for _ in range(zeros // len(chunk)):
                g.write(chunk)
            g.write(tail)
        return out.getvalue()
    cctx = zstandard.ZstdCompressor(level=3)
    co = cctx.compressobj()
    parts = [co.compress(head)]
    for _ in range(zeros // len(chunk)):
        parts.append(co.compress(chunk))
    parts.append(co.compress(tail))
    parts.append(co.flush())
    return b"".join(parts)


def test_compression_bomb_in_pax_header_is_capped(fmt: str) -> None:
    """tarfile reads pax headers whole; the decompression cap must stop that first."""
    size = 64 << 20
    data = _compress_stream(fmt, _pax_bomb(size), size)
    assert len(data) < 1 << 20  # a tiny archive ...
    limits = BundleLimits(max_total_bytes=4 << 20, max_members=100)
    err = refused(data, "bundle_too_large", limits)  # ... that may not expand past the cap
    assert "decompressed" in err.message


def test_compression_bomb_member_is_refused(fmt: str) -> None:
    """A highly compressible oversize member is refused from its header, before its data."""
    info = tarfile.TarInfo("ui/zeros.bin")
    info.size = 512 << 20
    head = b"".join(
        i.tobuf(tarfile.PAX_FORMAT) + d + b"\0" * (-len(d) % 512) for i, d in good_entries() if d is not None
    )
    data = _compress_stream(fmt, head + info.tobuf(tarfile.PAX_FORMAT), 16 << 20)
    err = refused(data, "bundle_too_large")
    assert err.member == "ui/zeros.bin"


def test_many_small_members_cannot_exceed_the_total(fmt: str) -> None:
    entries = [*good_entries()] + [reg(f"ui/z{i}.bin", b"\x00" * 1_000_000) for i in range(6)]
    data = archive(fmt, entries)
    assert len(data) < 200_000
    refused(data, "bundle_too_large", BundleLimits(max_total_bytes=5_000_000))


def test_default_limits() -> None:
    limits = BundleLimits()
    assert limits.max_archive_bytes == 64 * 1024 * 1024
    assert limits.max_member_bytes == 32 * 1024 * 1024
    assert limits.max_total_bytes == 128 * 1024 * 1024
    assert limits.max_members == 10_000


# --------------------------------------------------------------------------- directories


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


def test_directory_bundle(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "ext", base_files())
    bundle = load_bundle_path(root)
    assert bundle.archive_format == "tar.zst"
    assert bundle.archive.startswith(b"\x28\xb5\x2f\xfd")
    assert bundle.members == ("dist/main.wasm", "manifest.json", "ui/assets/app.js", "ui/index.html")
    # the packed archive round-trips through the archive loader with the same hash
    assert load_bundle_bytes(bundle.archive).content_hash == bundle.content_hash


def test_directory_archive_is_normalised(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "ext", base_files())
    data = pack_directory(root)
    with tarfile.open(fileobj=io.BytesIO(zstandard.ZstdDecompressor().decompress(data)), mode="r:") as tar:
        infos = tar.getmembers()
    assert [i.name for i in infos] == sorted(i.name for i in infos)
    assert all(i.isreg() for i in infos)
    assert {(i.mtime, i.uid, i.gid, i.uname, i.gname, i.mode) for i in infos} == {(0, 0, 0, "", "", 0o644)}


def test_directory_hash_is_deterministic(tmp_path: Path) -> None:
    a = write_tree(tmp_path / "a", base_files())
    first = load_bundle_path(a).content_hash
    assert load_bundle_path(a).content_hash == first
    # a different location, creation order, mtimes and permissions: same hash
    b = tmp_path / "b"
    for name, data in reversed(list(base_files().items())):
        (b / name).parent.mkdir(parents=True, exist_ok=True)
        (b / name).write_bytes(data)
    for i, path in enumerate(sorted(b.rglob("*"))):
        os.utime(path, (1_000_000 + i * 7919, 1_500_000_000 + i * 104729))
        if path.is_file():
            path.chmod(0o755 if i % 2 else 0o600)
    assert load_bundle_path(b).content_hash == first
    # a content change changes the hash
    (b / "ui/index.html").write_bytes(b"<html>changed</html>")
    assert load_bundle_path(b).content_hash != first


def test_build_archive_is_order_independent() -> None:
    files = list(base_files().items())
    assert build_archive(files) == build_archive(list(reversed(files)))


def test_directory_symlinks_are_refused(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "ext", base_files())
    (root / "ui" / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(BundleError) as info:
        load_bundle_path(root)
    assert info.value.code == "unsafe_archive_member" and info.value.member == "ui/passwd"


def test_directory_symlinked_dir_is_refused(tmp_path: Path) -> None:
    files = base_files()
    del files["ui/index.html"], files["ui/assets/app.js"]
    root = write_tree(tmp_path / "ext", files)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "index.html").write_bytes(b"x")
    (root / "ui").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(BundleError) as info:
        load_bundle_path(root)
    assert info.value.code == "unsafe_archive_member" and info.value.member == "ui"


def test_directory_manifest_symlink_is_refused(tmp_path: Path) -> None:
    files = base_files()
    manifest_bytes = files.pop("manifest.json")
    root = write_tree(tmp_path / "ext", files)
    (tmp_path / "real.json").write_bytes(manifest_bytes)
    (root / "manifest.json").symlink_to(tmp_path / "real.json")
    with pytest.raises(BundleError) as info:
        load_bundle_path(root)
    assert info.value.code == "unsafe_archive_member"


def test_directory_hardlinks_are_refused(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "ext", base_files())
    os.link(root / "ui" / "index.html", root / "ui" / "copy.html")
    with pytest.raises(BundleError) as info:
        load_bundle_path(root)
    assert info.value.code == "unsafe_archive_member" and "hard-linked" in info.value.message


def test_directory_fifo_is_refused(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "ext", base_files())
    os.mkfifo(root / "ui" / "pipe")
    with pytest.raises(BundleError) as info:
        load_bundle_path(root)
    assert info.value.code == "unsafe_archive_member" and "FIFO" in info.value.message


def test_directory_socket_is_refused(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "ext", base_files())
    path = root / "ui" / "s"
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(path))
    except OSError:
        pytest.skip("cannot bind a unix socket here")
    try:
        with pytest.raises(BundleError) as info:
            load_bundle_path(root)
        assert info.value.code == "unsafe_archive_member"
    finally:
        sock.close()


def test_directory_unexpected_files(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "ext", {**base_files(), "src/index.ts": b"", ".DS_Store": b""})
    with pytest.raises(BundleError) as info:
        load_bundle_path(root)
    assert info.value.code == "unexpected_member"
    assert "'.DS_Store'" in info.value.message and "'src/index.ts'" in info.value.message


def test_directory_limits(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "ext", {**base_files(), "ui/big.bin": b"\x00" * 5000})
    with pytest.raises(BundleError) as info:
        load_bundle_path(root, limits=BundleLimits(max_member_bytes=4000))
    assert info.value.code == "bundle_too_large" and info.value.member == "ui/big.bin"
    with pytest.raises(BundleError) as info:
        load_bundle_path(root, limits=BundleLimits(max_total_bytes=5000))
    assert info.value.code == "bundle_too_large"
    with pytest.raises(BundleError) as info:
        load_bundle_path(root, limits=BundleLimits(max_members=3))
    assert info.value.code == "bundle_too_large"


def test_directory_layout_errors(tmp_path: Path) -> None:
    files = base_files()
    del files["manifest.json"]
    with pytest.raises(BundleError) as info:
        load_bundle_path(write_tree(tmp_path / "a", files))
    assert info.value.code == "manifest_missing"

    files = base_files()
    files["dist/main.wasm"] = CORE_MODULE
    with pytest.raises(BundleError) as info:
        load_bundle_path(write_tree(tmp_path / "b", files))
    assert info.value.code == "component_invalid"

    files = base_files(name="Not Valid")
    with pytest.raises(BundleError) as info:
        load_bundle_path(write_tree(tmp_path / "c", files))
    assert info.value.code == "manifest_invalid" and info.value.errors[0].path == "name"

    files = base_files()
    files["manifest.json"] = b" " * (256 * 1024 + 1)
    with pytest.raises(BundleError) as info:
        load_bundle_path(write_tree(tmp_path / "d", files))
    assert info.value.code == "manifest_invalid"


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(BundleError) as info:
        load_bundle_path(tmp_path / "nope")
    assert info.value.code == "bundle_not_found"
