"""`extgate policy ...`: the compliance team's verbs.

Exit codes (for CI): 0 success; 1 the check failed (invalid policies, failing tests,
unformatted files, a rejected reload, permission changes found by `diff`, a deny from
`explain`); 2 usage or input errors (unknown revision, unreadable files, bad JSON).
Every verb takes `--json` for machine-readable output.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from service.policy.bundle import check, compile_bundle
from service.policy.diff import matrix_diff
from service.policy.engine import EntitiesError, PolicyEngine
from service.policy.explain import explain_request
from service.policy.fmt import format_text, policy_files
from service.policy.service import CandidateRejected, PolicyService
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
    principal: Annotated[str, typer.Option(help='e.g. acme-viewer or ExtGate::User::"acme-viewer"')],
    action: Annotated[str, typer.Option(help="e.g. read, write, debug.view, audit.read")],
    resource: Annotated[str, typer.Option(help='e.g. acme-crm or ExtGate::Tenant::"acme"')],
    context: Annotated[str | None, typer.Option(help="JSON object; missing keys get defaults")] = None,
    entities: Annotated[
        Path | None, typer.Option(help="entities JSON file (default: every entities file in DIR/tests)")
    ] = None,
    directory: Annotated[Path | None, typer.Option("--dir", help="policy directory")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Decide one request and say why: determining policies, or for a deny, which permits
    came closest and which of their conditions failed. Exit 0 allow, 1 deny."""
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


@app.command()
def diff(
    against: Annotated[str, typer.Option("--against", help="a policy directory or a kept revision (prefix)")],
    directory: DirArg = None,
    as_json: JsonOpt = False,
) -> None:
    """Permission-matrix diff: who gains or loses which access going from --against to DIR.
    Exit 0 when nothing changes, 1 when something does."""
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
    result = matrix_diff(old_engine, new_engine)
    _out(as_json, result.to_dict(), result.render())
    if result.changes:
        raise typer.Exit(EXIT_FAILED)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user database in some containers
        return "cli"


@app.command()
def reload(directory: DirArg = None, as_json: JsonOpt = False) -> None:
    """Validate DIR (schema, tests) and make it the active bundle for every replica."""
    settings = Settings()
    service = SERVICE_FACTORY(settings)
    try:
        status = service.reload(directory or settings.policy_dir, actor=_actor())
    except CandidateRejected as exc:
        _out(
            as_json,
            {"ok": False, **exc.to_dict()},
            "rejected, the active bundle is unchanged:\n" + _problems_text(exc.problems),
        )
        raise typer.Exit(EXIT_FAILED) from None
    _out(as_json, status.to_dict(), f"active revision {status.active_revision}")


@app.command()
def rollback(
    revision: Annotated[str, typer.Argument(help="a kept revision (unique prefix)")], as_json: JsonOpt = False
) -> None:
    """Make an earlier kept revision active again (see `status` for the kept revisions)."""
    service = SERVICE_FACTORY(Settings())
    try:
        status = service.rollback(revision, actor=_actor())
    except RevisionNotFound as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    except CandidateRejected as exc:
        _out(as_json, {"ok": False, **exc.to_dict()}, "rollback rejected:\n" + _problems_text(exc.problems))
        raise typer.Exit(EXIT_FAILED) from None
    _out(as_json, status.to_dict(), f"active revision {status.active_revision}")


@app.command()
def status(as_json: JsonOpt = False) -> None:
    """The active revision, when it was activated, the last error and the kept revisions."""
    service = SERVICE_FACTORY(Settings())
    state = service.store.read_state()
    data = {
        "active_revision": state.active,
        "activated_at": state.activated_at,
        "last_error": state.last_error,
        "history": [h.__dict__ for h in state.history],
        "available_revisions": service.store.revisions(),
    }
    lines = [f"active revision: {state.active or 'none'}"]
    for h in state.history[:10]:
        lines.append(f"  {short_revision(h.revision)}  {h.via:<8} {h.actor or '-'}  at {h.activated_at:.0f}")
    if state.last_error:
        lines.append("last error:")
        for p in state.last_error.get("problems", []):
            lines.append(f"  {Problem(**p) if 'file' in p else p.get('message')}")
    _out(as_json, data, "\n".join(lines))
