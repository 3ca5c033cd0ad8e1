"""Helpers shared by CLI verbs: settings, the container, JSON output, error exits."""

from __future__ import annotations

import functools
import getpass
import inspect
import json
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Annotated, Any, TypeVar

import typer

from audit.config import AuditConfigError
from audit.records import Actor
from runner.settings import DevKeysNotAllowed
from service.commands import Caller
from service.container import ServiceContainer, build_container
from service.errors import DomainError
from service.settings import Settings

T = TypeVar("T")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


# Output: JSON for scripts, a readable form for people -------------------------------------
# `--json` (every verb has it) forces JSON; without it, verbs print JSON when stdout is not a
# terminal (pipes, `$(...)`, files: scripts never change) and the human form at a terminal.
_force_json: ContextVar[bool] = ContextVar("extgate_force_json", default=False)


def json_wanted() -> bool:
    return _force_json.get() or not sys.stdout.isatty()


def json_forced() -> bool:
    """`--json` was given (for verbs whose plain output is itself data, e.g. a key or a note)."""
    return _force_json.get()


def emit(data: Any) -> None:
    """The verb's result on stdout: JSON (see `json_wanted`) or the human form."""
    if json_wanted():
        typer.echo(json.dumps(data, indent=2, sort_keys=True, default=_default))
    else:
        typer.echo(human(data))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in sorted(value.items())) or "-"
    return str(value)


def human(data: Any) -> str:
    """A list of objects as a table (one column per key); an object as aligned `key  value`
    lines; times as ISO 8601."""
    if isinstance(data, list) and data and all(isinstance(row, dict) for row in data):
        columns = list(dict.fromkeys(k for row in data for k in row))
        rows = [[_cell(row.get(c)) for c in columns] for row in data]
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
        lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        return "\n".join(lines)
    if isinstance(data, list):
        return "\n".join(_cell(v) for v in data) or "(none)"
    if isinstance(data, dict):
        width = max((len(k) for k in data), default=0)
        lines = []
        for k, v in sorted(data.items()):
            if isinstance(v, list) and len(v) > 1 and any(" " in str(x) or len(str(x)) > 40 for x in v):
                lines += [k, *(f"  {_cell(x)}" for x in v)]  # commands, paths: one per line, copy-pasteable
            else:
                lines.append(f"{k.ljust(width)}  {_cell(v)}")
        return "\n".join(lines)
    return _cell(data)


def with_json_flag(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` with a `--json` option added (forces JSON output), for verbs that lack one."""
    try:
        sig = inspect.signature(fn, eval_str=True)  # the annotations as objects: typer reads the wrapper's
    except NameError:  # an annotation only importable for type checking: keep the strings
        sig = inspect.signature(fn)
    param = inspect.Parameter(
        "force_json", inspect.Parameter.KEYWORD_ONLY, default=False,
        annotation=Annotated[bool, typer.Option("--json", help="print JSON (default when stdout is no terminal)")],
    )

    @functools.wraps(fn)
    def wrapper(*args: Any, force_json: bool = False, **kwargs: Any) -> Any:
        token = _force_json.set(force_json)
        try:
            return fn(*args, **kwargs)
        finally:
            _force_json.reset(token)

    wrapper.__signature__ = sig.replace(parameters=[*sig.parameters.values(), param])  # type: ignore[attr-defined]
    return wrapper


def _has_json_option(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn, eval_str=True).parameters.values()
    except NameError:
        params = inspect.signature(fn).parameters.values()
    for p in params:
        for meta in getattr(p.annotation, "__metadata__", ()):
            # in Annotated, typer.Option("--json") keeps its first name in `default`
            names = [getattr(meta, "default", None), *(getattr(meta, "param_decls", None) or ())]
            if "--json" in names:
                return True
    return False


def add_json_flags(app: typer.Typer, skip: frozenset[str] = frozenset()) -> None:
    """Give every verb of `app` (recursively) a `--json` option, except those in `skip`
    (servers) and those that already have one."""
    for info in app.registered_commands:
        name = info.name or (info.callback.__name__ if info.callback else "")
        if info.callback is not None and name not in skip and not _has_json_option(info.callback):
            info.callback = with_json_flag(info.callback)
    for group in app.registered_groups:
        if group.typer_instance is not None:
            add_json_flags(group.typer_instance, skip)


def fail(code: str, detail: Any, exit_code: int = EXIT_ERROR) -> None:
    typer.echo(json.dumps({"error": code, "detail": detail}, default=_default), err=True)
    raise typer.Exit(exit_code)


def note_data_dir(settings: Settings) -> None:
    """After a change: one stderr line naming the store it went into (stdout stays JSON)."""
    from runner.contract.data_dir import describe_data_dir

    typer.echo(f"extgate: {describe_data_dir(settings.data_dir)}", err=True)


@contextmanager
def services(*, mutating: bool = False, **kwargs: Any) -> Iterator[ServiceContainer]:
    """The service container for one verb; `mutating` verbs name the data directory on
    stderr once their change is committed (never after an error)."""
    try:
        container = build_container(Settings(), **kwargs)
    except (DevKeysNotAllowed, AuditConfigError) as exc:  # a setting is missing: say which
        fail("configuration_error", str(exc), EXIT_USAGE)
    try:
        yield container
        if mutating:
            note_data_dir(container.settings)
    except DomainError as exc:
        fail(exc.code, exc.detail)
    finally:
        container.close()


def cli_actor() -> Actor:
    """Who ran a CLI verb: the operating-system account, and (as its address) the account
    at this host. CLI verbs act on the database directly (no token, no policy), so their
    records name the account that had that access."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user database in some containers
        user = "unknown"
    return Actor(id=f"cli:{user}", type="operator", auth="cli", ip=f"cli:{user}@{socket.gethostname()}")


def cli_caller() -> Caller:
    return Caller(cli_actor())


def guarded(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except DomainError as exc:
        fail(exc.code, exc.detail)
        raise  # unreachable: fail() exits


def read_json_arg(path: str) -> Any:
    raw = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()  # noqa: SIM115
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        fail("invalid_json", f"{path}: {exc.msg} at line {exc.lineno}", EXIT_USAGE)
