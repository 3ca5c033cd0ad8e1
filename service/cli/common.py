"""Helpers shared by CLI verbs: settings, the container, JSON output, error exits."""

from __future__ import annotations

import getpass
import json
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

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


def emit(data: Any) -> None:
    """JSON on stdout, so scripts can use every verb's output."""
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=_default))


def fail(code: str, detail: Any, exit_code: int = EXIT_ERROR) -> None:
    typer.echo(json.dumps({"error": code, "detail": detail}, default=_default), err=True)
    raise typer.Exit(exit_code)


@contextmanager
def services(**kwargs: Any) -> Iterator[ServiceContainer]:
    try:
        container = build_container(Settings(), **kwargs)
    except (DevKeysNotAllowed, AuditConfigError) as exc:  # a setting is missing: say which
        fail("configuration_error", str(exc), EXIT_USAGE)
    try:
        yield container
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
