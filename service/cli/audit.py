"""`extgate audit ...`: verify, checkpoint, export, prove (and offline proof checking).

Settings come from the environment: `EXTGATE_DATABASE_URL` (default
`sqlite:///{EXTGATE_DATA_DIR}/extgate.db`), `EXTGATE_DATA_DIR` (default `./.extgate`) and
`EXTGATE_AUDIT_*` (see `audit.config`).

`verify` exit codes: 0 ok, 1 tampered (edited / deleted / reordered / truncated /
bad signature / forked), 2 unverifiable (records older than the allowed tail age are not
covered by a signed checkpoint, no trusted key, or `--strict` and an unanchored tail), 3
usage or configuration error (database unreachable, schema missing, unreadable file).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy import Engine, inspect
from sqlalchemy.exc import SQLAlchemyError

from audit.anchors import LoadedCheckpoint, load_checkpoints
from audit.config import DEV_KEY_RELATIVE, AuditConfigError, AuditSettings, parse_private_key
from audit.log import NotCheckpointedError, NotFoundError, RecordFilter
from audit.note import NoteError, NoteSigner, NoteVerifier
from audit.records import parse_time_us
from audit.sql import SqlAuditLog
from audit.verify import EXIT_USAGE, Status, verify_inclusion_bundle, verify_log
from service.cli.common import emit, json_forced

app = typer.Typer(help="Tamper-evident audit log: verify, checkpoint, export, prove.", no_args_is_help=True)


def _fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _env() -> tuple[Any, AuditSettings]:
    from service.settings import Settings

    return Settings(), AuditSettings()


def _engine(settings: Any) -> Engine:
    from service.db.backends import engine_for_url

    try:
        engine = engine_for_url(settings.effective_database_url)
        if not inspect(engine).has_table("audit_record"):
            raise _fail("the audit tables do not exist (run `extgate db upgrade`)")
    except SQLAlchemyError as exc:
        raise _fail(f"cannot open the database: {exc.__class__.__name__}: {exc}") from exc
    return engine


def _signer(settings: Any, audit: AuditSettings, *, create: bool) -> NoteSigner | None:
    """The configured signer; the dev key only in embedded mode (created only if `create`)."""
    try:
        if audit.signing_key is None and not create:
            dev = settings.data_dir / DEV_KEY_RELATIVE
            if not dev.exists():
                return None
            return NoteSigner(audit.origin, parse_private_key(dev.read_text()))
        return audit.signer(settings.data_dir, embedded=settings.is_embedded_database)
    except (AuditConfigError, ValueError, OSError) as exc:
        raise _fail(str(exc)) from exc


def _verifiers(settings: Any, audit: AuditSettings, extra: list[str]) -> list[NoteVerifier]:
    try:
        out = audit.verifiers(_signer(settings, audit, create=False))
        out += [NoteVerifier.from_vkey(k) for k in extra]
    except NoteError as exc:
        raise _fail(str(exc)) from exc
    return out


def _log(settings: Any, audit: AuditSettings, *, signer: NoteSigner | None) -> SqlAuditLog:
    engine = _engine(settings)
    return SqlAuditLog(
        engine,
        origin=audit.origin,
        signer=signer,
        verifiers=audit.verifiers(signer),
        checkpoint_dir=audit.effective_checkpoint_dir(settings.data_dir),
        checkpoint_every=audit.checkpoint_every,
        checkpoint_interval=audit.checkpoint_interval_seconds,
    )


def parse_time(value: str) -> int:
    try:
        return parse_time_us(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 time or an age like 24h / 7d") from exc


@app.command()
def verify(
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option(
            "--checkpoint",
            help="trusted checkpoint file or directory (repeatable); default: the configured checkpoint directory",
        ),
    ] = None,
    key: Annotated[list[str] | None, typer.Option("--key", help="extra trusted verifier key")] = None,
    strict: Annotated[bool, typer.Option(help="any record not covered by an exported checkpoint -> exit 2")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable result")] = False,
) -> None:
    """Recompute every leaf and root, check signatures, contiguity and exported checkpoints."""
    settings, audit = _env()
    verifiers = _verifiers(settings, audit, key or [])
    sources = checkpoint or [audit.effective_checkpoint_dir(settings.data_dir)]
    external: list[LoadedCheckpoint] = []
    for src in sources:
        if checkpoint and not src.exists():
            raise _fail(f"{src} does not exist")
        external += load_checkpoints(src)
    engine = _engine(settings)
    try:
        result = verify_log(
            engine,
            verifiers=verifiers,
            origin=audit.origin,
            external=external,
            max_tail_age=audit.effective_max_tail_age(),
            strict=strict,
        )
    except SQLAlchemyError as exc:
        raise _fail(f"database error: {exc}") from exc
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
        raise typer.Exit(result.exit_code)
    typer.echo(f"Records: {result.records} (head {result.head_size})")
    typer.echo(f"Checkpoints in database: {result.checkpoints_valid}/{result.checkpoints_total} valid")
    typer.echo(f"Exported checkpoints: {result.external_valid}/{result.external_total} valid")
    typer.echo(f"Signed through size {result.signed_size}; exported anchor through size {result.anchored_size}")
    if result.unanchored:
        typer.echo(f"Unanchored tail: {result.unanchored} record(s) after the last checkpoint")
    for warning in result.warnings:
        typer.echo(f"warning: {warning}")
    for finding in result.findings:
        where = f"seq {finding.seq}" + (f"..{finding.seq_end}" if finding.seq_end is not None else "")
        typer.echo(f"TAMPERED [{finding.kind}] {where}: {finding.detail}")
    for digest in result.bad_attachments[:20]:
        typer.echo(f"TAMPERED [attachment_edited] {digest}: the stored snapshot does not hash to its digest")
    first = result.first
    if result.status is Status.TAMPERED and first is None:
        typer.echo(f"Result: TAMPERED, {len(result.bad_attachments)} attachment(s) edited")
    elif result.status is Status.TAMPERED and first is not None:
        typer.echo(f"Result: TAMPERED, first bad seq {first.seq} ({first.kind})")
    elif result.status is Status.UNVERIFIABLE:
        typer.echo("Result: UNVERIFIABLE (see warnings)")
    else:
        typer.echo("Result: OK")
    typer.echo(f"Verified {result.records} records in {result.elapsed:.2f}s")
    raise typer.Exit(result.exit_code)


@app.command("checkpoint")
def checkpoint_now() -> None:
    """Sign a checkpoint of the current log now, store it, and export it to the checkpoint directory."""
    settings, audit = _env()
    log = _log(settings, audit, signer=_signer(settings, audit, create=True))
    try:
        info = log.checkpoint()
    except SQLAlchemyError as exc:
        raise _fail(f"database error: {exc}") from exc
    finally:
        log.engine.dispose()
    assert log.checkpoint_dir is not None
    if json_forced():
        emit({"size": info.size, "root": info.root.hex(), "exported_to": str(log.checkpoint_dir), "note": info.note})
        return
    typer.echo(f"checkpoint size {info.size} root {info.root.hex()}", err=True)
    typer.echo(f"exported to {log.checkpoint_dir}", err=True)
    sys.stdout.write(info.note)


@app.command()
def export(
    tenant: Annotated[str | None, typer.Option(help="only this tenant's records")] = None,
    since: Annotated[str | None, typer.Option(help="ISO 8601 time or age (24h, 7d)")] = None,
    until: Annotated[str | None, typer.Option(help="ISO 8601 time or age (exclusive)")] = None,
    action: Annotated[str | None, typer.Option(help="action, or a prefix ending in '.'")] = None,
    fmt: Annotated[str, typer.Option("--format", help="output format")] = "jsonl",
    out: Annotated[Path | None, typer.Option(help="write here instead of stdout")] = None,
) -> None:
    """Records as JSON Lines: each line is a record's stored bytes, exactly as hashed."""
    if fmt != "jsonl":
        raise _fail(f"unsupported format {fmt!r} (jsonl)")
    settings, audit = _env()
    log = _log(settings, audit, signer=None)
    flt = RecordFilter(
        tenant_id=tenant,
        action=action,
        since_us=parse_time(since) if since else None,
        until_us=parse_time(until) if until else None,
    )
    count = 0
    sink = out.open("wb") if out else sys.stdout.buffer
    try:
        for record in log.iter_records(flt):
            sink.write(record.body + b"\n")
            count += 1
        sink.flush()
    except SQLAlchemyError as exc:
        raise _fail(f"database error: {exc}") from exc
    finally:
        if out:
            sink.close()
        log.engine.dispose()
    typer.echo(f"exported {count} record(s)", err=True)


@app.command()
def prove(
    seq: Annotated[int, typer.Argument(help="record sequence number")],
    size: Annotated[int | None, typer.Option(help="prove against the checkpoint of this size")] = None,
    out: Annotated[Path | None, typer.Option(help="write the proof here instead of stdout")] = None,
) -> None:
    """Inclusion proof of one record against a signed checkpoint (check offline with `verify-proof`)."""
    settings, audit = _env()
    log = _log(settings, audit, signer=None)
    try:
        bundle = log.inclusion_proof(seq, tree_size=size).to_json()
    except (NotFoundError, NotCheckpointedError) as exc:
        raise _fail(str(exc), 1) from exc
    finally:
        log.engine.dispose()
    text = json.dumps(bundle, indent=2) + "\n"
    if out:
        out.write_text(text)
    else:
        sys.stdout.write(text)


@app.command("verify-proof")
def verify_proof(
    proof: Annotated[Path, typer.Argument(help="proof file from `extgate audit prove`")],
    key: Annotated[list[str] | None, typer.Option("--key", help="trusted verifier key")] = None,
) -> None:
    """Check an inclusion proof offline: signature, record hash, Merkle path (exit 0 valid, 1 invalid)."""
    settings, audit = _env()
    verifiers = _verifiers(settings, audit, key or [])
    if not verifiers:
        raise _fail("no trusted key: pass --key or configure EXTGATE_AUDIT_TRUSTED_KEYS")
    try:
        bundle = json.loads(proof.read_text())
    except (OSError, ValueError) as exc:
        raise _fail(f"cannot read {proof}: {exc}") from exc
    ok, message = verify_inclusion_bundle(bundle, verifiers)
    if json_forced():
        emit({"valid": ok, "message": message})
    else:
        typer.echo(("valid: " if ok else "INVALID: ") + message)
    raise typer.Exit(0 if ok else 1)


@app.command("public-key")
def public_key() -> None:
    """Print the trusted verifier key(s) (`name+keyid+base64`), for auditors and tenants."""
    settings, audit = _env()
    keys = [verifier.vkey for verifier in _verifiers(settings, audit, [])]
    if json_forced():
        emit({"public_keys": keys})
        return
    for vkey in keys:
        typer.echo(vkey)
