"""`extgate policy ...`: the compliance team's verbs.

Exit codes (for CI): 0 success; 1 the check failed (invalid policies, failing tests,
unformatted files, a rejected reload or rollback, any policy or permission change found by
`diff`, decision flips found by `replay`, a deny from `explain`); 2 usage or input errors
(unknown revision or request id, unreadable files, bad JSON). Only `reload` and `rollback`
change anything; every other verb reads.
Every verb takes `--json` for machine-readable output.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from audit.config import AuditConfigError
from runner.settings import DevKeysNotAllowed
from service.cli.common import cli_actor
from service.errors import DomainError
from service.policy.bundle import check, compile_bundle
from service.policy.diff import load_real_installs, matrix_diff
from service.policy.engine import EntitiesError, PolicyEngine
from service.policy.explain import explain_request
from service.policy.fmt import format_text, policy_files
from service.policy.service import CandidateRejected, PolicyService, PolicyStatus, iso_time
from service.policy.source import BundleError, BundleSource, Problem, short_revision
from service.policy.store import BundleStore, RevisionNotFound
from service.policy.testing import run_tests
from service.policy.uids import UidError
from service.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

app = typer.Typer(help="Policies: validate, format, test, explain, diff, reload, roll back.", no_args_is_help=True)

DirArg = Annotated[Path | None, typer.Argument(help="policy directory (default: EXTGATE_POLICY_DIR or ./policies)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def default_service(settings: Settings) -> PolicyService:
    return PolicyService.from_settings(settings)


def audited_service(settings: Settings) -> PolicyService:
    """The service's own PolicyService (its audit hook records reloads, rejections and
    rollbacks, with the CLI account as the actor); closed when the command exits."""
    import atexit

    from service.container import build_container

    container = build_container(settings, validate_component=None)
    atexit.register(container.close)
    policy = container.policy
    if not isinstance(policy, PolicyService):  # build_container always makes one
        raise RuntimeError("the service container has no policy engine")
    return policy


#: Builds the PolicyService for reload/rollback/status: audited by default; tests may
#: replace it.
SERVICE_FACTORY: Callable[[Settings], PolicyService] = audited_service


def _dir(directory: Path | None) -> Path:
    return directory if directory is not None else Settings().policy_dir


def _out(as_json: bool, data: Any, text: str) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str) if as_json else text)


def _problems_text(problems: list[Problem]) -> str:
    return "\n".join(f"error: {p}" for p in problems)


def _load(directory: Path) -> BundleSource:
    try:
        return BundleSource.from_dir(directory)
    except BundleError as exc:
        typer.echo(_problems_text(exc.problems), err=True)
        raise typer.Exit(EXIT_USAGE) from None


def _compile_or_exit(source: BundleSource, as_json: bool) -> PolicyEngine:
    bundle, problems = check(source)
    if bundle is None:
        _out(as_json, {"ok": False, "problems": [p.to_dict() for p in problems]}, _problems_text(problems))
        raise typer.Exit(EXIT_FAILED)
    return PolicyEngine(bundle)


@app.command()
def validate(directory: DirArg = None, as_json: JsonOpt = False) -> None:
    """Parse the schema and policies, validate them against the schema, check @id/@reason."""
    source = _load(_dir(directory))
    engine = _compile_or_exit(source, as_json)
    bundle = engine.bundle
    files = len(source.policy_files)
    _out(
        as_json,
        {"ok": True, "revision": bundle.revision, "policies": len(bundle.policies), "files": files},
        f"ok: {len(bundle.policies)} policies in {files} files, revision {short_revision(bundle.revision)}",
    )


@app.command()
def fmt(
    directory: DirArg = None,
    check_only: Annotated[bool, typer.Option("--check", help="only report files that need formatting")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Rewrite policy files in canonical form (or, with --check, list those that are not)."""
    root = _dir(directory)
    changed, broken = [], []
    for path in policy_files(root):
        text = path.read_text(encoding="utf-8")
        try:
            formatted = format_text(text)
        except ValueError as exc:
            broken.append(f"{path}: does not parse: {str(exc).splitlines()[0]}")
            continue
        if formatted != text:
            changed.append(str(path))
            if not check_only:
                path.write_text(formatted, encoding="utf-8")
    verb = "would reformat" if check_only else "reformatted"
    lines = [f"{verb} {p}" for p in changed] + [f"error: {b}" for b in broken]
    lines.append(f"{len(changed)} file(s) {verb}" if changed else "all policy files are formatted")
    _out(as_json, {"changed": changed, "errors": broken, "check": check_only}, "\n".join(lines))
    if broken or (check_only and changed):
        raise typer.Exit(EXIT_FAILED)


@app.command("test")
def test_cmd(
    directory: DirArg = None,
    min_coverage: Annotated[
        float, typer.Option(help="fail when fewer than this share of policies (0-1) determine some test")
    ] = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Run the policy tests in DIR/tests (Cedar CLI run-tests format) and report coverage.

    Fails on any failing test, on a policy file none of whose policies determines a test,
    and on coverage below --min-coverage."""
    source = _load(_dir(directory))
    engine = _compile_or_exit(source, as_json)
    report = run_tests(engine.bundle, engine)
    uncovered_files = report.uncovered_files(engine.bundle)
    lines = [f"FAIL {r.label}: {r.message}" for r in report.failed]
    lines += [f"error: {p}" for p in report.problems]
    lines.append(f"{sum(r.passed for r in report.results)} passed, {len(report.failed)} failed")
    lines.append(f"coverage: {report.coverage:.0%} of policies determine at least one test")
    for pid in report.uncovered:
        lines.append(f"  never determining: {pid} ({report.policies[pid]})")
    for name in uncovered_files:
        lines.append(f"error: {name}: no policy in this file determines any test")
    data = {**report.to_dict(), "uncovered_files": uncovered_files}
    _out(as_json, data, "\n".join(lines))
    if not report.ok or uncovered_files or report.coverage + 1e-9 < min_coverage:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def explain(
    principal: Annotated[str | None, typer.Option(help='e.g. acme-viewer or ExtGate::User::"acme-viewer"')] = None,
    action: Annotated[str | None, typer.Option(help="e.g. read, write, debug.view, audit.read")] = None,
    resource: Annotated[str | None, typer.Option(help='e.g. acme-crm or ExtGate::Tenant::"acme"')] = None,
    context: Annotated[str | None, typer.Option(help="JSON object; missing keys get defaults")] = None,
    entities: Annotated[
        Path | None, typer.Option(help="entities JSON file (default: every entities file in DIR/tests)")
    ] = None,
    directory: Annotated[Path | None, typer.Option("--dir", help="policy directory")] = None,
    request_id: Annotated[
        str | None, typer.Option("--request-id", help="explain the recorded decision of this request, as it was made")
    ] = None,
    seq: Annotated[int | None, typer.Option("--seq", help="explain the recorded decision at this audit seq")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Decide one request and say why: determining policies, or for a deny, which permits
    came closest and which of their conditions failed. Exit 0 allow, 1 deny.

    With --request-id or --seq: explain a recorded decision exactly as it was made (the
    revision and entity snapshot its audit record names), then what today's active
    revision would decide. Exit 0 allow, 1 deny or the record does not re-evaluate to
    itself (said loudly), 2 no such decision, revision or snapshot."""
    if request_id is not None or seq is not None:
        given = [n for n, v in (("--principal", principal), ("--action", action), ("--resource", resource),
                                ("--context", context), ("--entities", entities), ("--dir", directory)) if v]
        if given or (request_id is not None and seq is not None):
            typer.echo(f"error: --request-id/--seq cannot be combined with {', '.join(given) or 'each other'}",
                       err=True)
            raise typer.Exit(EXIT_USAGE)
        _explain_recorded(request_id, seq, as_json)
        return
    if principal is None or action is None or resource is None:
        typer.echo("error: give --principal, --action and --resource (or --request-id / --seq)", err=True)
        raise typer.Exit(EXIT_USAGE)
    engine = _compile_or_exit(_load(_dir(directory)), as_json)
    try:
        ctx = json.loads(context) if context else None
        if ctx is not None and not isinstance(ctx, dict):
            raise ValueError("--context must be a JSON object")
        ents = json.loads(entities.read_text(encoding="utf-8")) if entities else None
        explanation = explain_request(engine, principal, action, resource, ctx, ents)
    except (ValueError, UidError, EntitiesError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    _out(as_json, explanation.to_dict(), explanation.render())
    if not explanation.decision.allowed:
        raise typer.Exit(EXIT_FAILED)


def _read_only_audit_log(settings: Settings) -> Any:
    """The audit log for reading (never appended to: no writer thread is started)."""
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    from audit.sql import SqlAuditLog
    from service.db.backends import engine_for_url

    try:
        engine = engine_for_url(settings.effective_database_url)
        if not inspect(engine).has_table("audit_record"):
            raise ValueError("the audit tables do not exist (run `extgate db upgrade`)")
    except (SQLAlchemyError, ValueError) as exc:
        typer.echo(f"error: cannot read the audit log: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    return SqlAuditLog(engine)


def _active_engine(store: BundleStore) -> PolicyEngine | None:
    """Today's active revision from the shared store, compiled (None if there is none)."""
    active = store.read_state().active
    if not active:
        return None
    try:
        return PolicyEngine(compile_bundle(store.load(active)))
    except (RevisionNotFound, BundleError, OSError):
        return None


def _explain_recorded(request_id: str | None, seq: int | None, as_json: bool) -> None:
    from service.policy.recorded import RecordedDecisionError, explain_recorded, find_decision

    settings = Settings()
    store = BundleStore(settings.data_dir / "policy")
    log = _read_only_audit_log(settings)
    try:
        rec = find_decision(log, request_id=request_id, seq=seq)
        result = explain_recorded(log, store, rec, current=_active_engine(store))
    except RecordedDecisionError as exc:
        if as_json:
            typer.echo(json.dumps({"error": exc.code, "detail": {"message": exc.message}}, indent=2))
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    finally:
        log.engine.dispose()
    _out(as_json, result.to_dict(), result.render())
    if result.mismatch is not None:
        typer.echo(f"error: {result.mismatch}", err=True)
        raise typer.Exit(EXIT_FAILED)
    if not result.allowed:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def diff(
    against: Annotated[str, typer.Option("--against", help="a policy directory or a kept revision (prefix)")],
    directory: DirArg = None,
    installs: Annotated[
        bool, typer.Option("--installs/--no-installs", help="also decide the real installs of the service database")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """What changed going from --against to DIR: the policies added, removed or changed
    (with a text diff), and who gains or loses which access over a population built from
    the literals both bundles' policies mention (see docs/policies.md).
    Exit 0 when no policy and no permission changed, 1 when any did."""
    new_engine = _compile_or_exit(_load(_dir(directory)), as_json)
    against_path = Path(against)
    if against_path.is_dir():
        old_source = _load(against_path)
    else:
        settings = Settings()
        try:
            old_source = BundleStore(settings.data_dir / "policy").load(against)
        except (RevisionNotFound, OSError) as exc:
            typer.echo(f"error: {against!r} is neither a directory nor a kept revision ({exc})", err=True)
            raise typer.Exit(EXIT_USAGE) from None
    try:
        old_engine = PolicyEngine(compile_bundle(old_source))
    except BundleError as exc:
        typer.echo(f"error: the --against bundle is invalid:\n{_problems_text(exc.problems)}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    real, note = (None, "not requested (--no-installs)")
    if installs:
        try:
            real, note = load_real_installs(Settings())
        except Exception as exc:  # noqa: BLE001 - best effort: settings that do not load
            real, note = None, f"settings not usable ({type(exc).__name__})"
    result = matrix_diff(old_engine, new_engine, installs=real, real_installs_note=note)
    _out(as_json, result.to_dict(), result.render())
    if result.changed:
        raise typer.Exit(EXIT_FAILED)


def _actor() -> tuple[str, str | None]:
    """The CLI account (`cli:<os account>`) and its address (`cli:<os account>@<host>`)."""
    actor = cli_actor()
    return actor.id, actor.ip


AllowUntestedOpt = Annotated[
    bool,
    typer.Option(
        "--allow-untested",
        help="activate although test coverage is below EXTGATE_POLICY_MIN_COVERAGE (platform admins; recorded)",
    ),
]


def _activation_failed(exc: Exception, as_json: bool, verb: str) -> None:
    if isinstance(exc, CandidateRejected):
        _out(as_json, {"ok": False, "error": exc.code, **exc.to_dict()},
             f"{verb} rejected, the active bundle is unchanged:\n" + _problems_text(exc.problems))
    elif isinstance(exc, DomainError):  # audit_unavailable: nothing was activated
        _out(as_json, {"ok": False, "error": exc.code, "detail": exc.detail},
             f"error: {exc.code}: {exc.detail}; the active bundle is unchanged")
    raise typer.Exit(EXIT_FAILED) from None


def _activated(as_json: bool, status: PolicyStatus, previous: str | None) -> None:
    if status.active_revision == previous:
        text = f"unchanged: {status.active_revision} is already the active revision"
    else:
        text = f"active revision {status.active_revision} (was {previous or 'none'})"
    _out(as_json, status.to_dict(), text)


def _service_or_exit(settings: Settings) -> PolicyService:
    try:
        return SERVICE_FACTORY(settings)
    except (DevKeysNotAllowed, AuditConfigError) as exc:
        typer.echo(json.dumps({"error": "configuration_error", "detail": str(exc)}), err=True)
        raise typer.Exit(EXIT_USAGE) from None


@app.command()
def reload(directory: DirArg = None, allow_untested: AllowUntestedOpt = False, as_json: JsonOpt = False) -> None:
    """Validate DIR (schema, tests, coverage) and make it the active bundle for every replica.
    The only way (with rollback) a changed policy folder goes live; audited."""
    settings = Settings()
    service = _service_or_exit(settings)
    previous = service.store.read_state().active
    try:
        actor, actor_ip = _actor()
        status = service.reload(directory or settings.policy_dir, actor=actor, actor_ip=actor_ip,
                                allow_untested=allow_untested)
    except (CandidateRejected, DomainError) as exc:
        _activation_failed(exc, as_json, "reload")
        return
    _activated(as_json, status, previous)


@app.command()
def rollback(
    revision: Annotated[str, typer.Argument(help="a kept revision (unique prefix)")],
    allow_untested: AllowUntestedOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Make an earlier kept revision active again (see `status` for the kept revisions); audited."""
    service = _service_or_exit(Settings())
    previous = service.store.read_state().active
    try:
        actor, actor_ip = _actor()
        status = service.rollback(revision, actor=actor, actor_ip=actor_ip, allow_untested=allow_untested)
    except RevisionNotFound as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    except (CandidateRejected, DomainError) as exc:
        _activation_failed(exc, as_json, "rollback")
        return
    _activated(as_json, status, previous)


def render_status(status: PolicyStatus) -> str:
    lines = [f"active revision: {status.active_revision or 'none'}"]
    if status.activated_at:
        lines[0] += f" (activated {iso_time(status.activated_at)})"
    if status.folder is not None:
        lines.append(f"policy folder {status.folder.path}: {status.folder.message}")
        changes = status.folder.changes
        if changes is not None:
            for label, ids in (("added", changes.added), ("removed", changes.removed), ("changed", changes.changed)):
                if ids:
                    lines.append(f"  {label}: {', '.join(ids)}")
    if status.history:
        lines.append("history (newest first):")
    for h in status.history[:10]:
        lines.append(f"  {short_revision(h['revision'])}  {h['via']:<9} {h.get('actor') or '-':<20} "
                     f"{iso_time(h['activated_at'])}")
    if status.last_error:
        lines.append("last error:")
        for p in status.last_error.get("problems", []):
            lines.append(f"  {Problem(**p) if 'file' in p else p.get('message')}")
    return "\n".join(lines)


@app.command()
def status(as_json: JsonOpt = False) -> None:
    """The active revision, its history, the last error, and whether the policy folder
    differs from what is active. Reads only: activates nothing, records nothing."""
    result = PolicyService.from_settings(Settings()).status()
    _out(as_json, result.to_dict(), render_status(result))


@app.command()
def replay(
    candidate: Annotated[Path, typer.Argument(help="the candidate policy directory")],
    since: Annotated[str, typer.Option(help="start of the window: an age (30m, 24h, 7d) or ISO 8601")] = "7d",
    until: Annotated[str | None, typer.Option(help="end of the window (exclusive): an age or ISO 8601")] = None,
    tenant: Annotated[str | None, typer.Option(help="only this tenant's decisions")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="read at most N decisions")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-decide the recorded decisions of a window with a candidate bundle and report the
    flips (allow->deny, deny->allow) by determining policy, tenant, action and endpoint.

    Only reads the audit log. Decisions recorded without an entity snapshot, with an
    unreadable one, or with one that does not fit the candidate's schema are counted as
    skipped. Exit 0 no flips, 1 flips found, 2 usage error."""
    from audit.log import RecordFilter
    from audit.records import parse_time_us
    from service.policy.recorded import replay as replay_decisions

    try:
        since_us = parse_time_us(since)
        until_us = parse_time_us(until) if until is not None else None
    except ValueError as exc:
        typer.echo(f"error: --since/--until: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    source = _load(candidate)
    try:
        engine = PolicyEngine(compile_bundle(source))
    except BundleError as exc:
        typer.echo(f"error: the candidate bundle is invalid:\n{_problems_text(exc.problems)}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    log = _read_only_audit_log(Settings())
    try:
        report = replay_decisions(log, engine, RecordFilter(tenant_id=tenant, since_us=since_us, until_us=until_us),
                                  limit=limit)
    finally:
        log.engine.dispose()
    _out(as_json, report.to_dict(), report.render())
    if report.flips:
        raise typer.Exit(EXIT_FAILED)
