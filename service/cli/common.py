"""Helpers shared by CLI verbs: settings, the container, JSON output, error exits."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import typer

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
    container = build_container(Settings(), **kwargs)
    try:
        yield container
    except DomainError as exc:
        fail(exc.code, exc.detail)
    finally:
        container.close()


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
