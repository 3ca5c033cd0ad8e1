"""Shared plumbing for provider-backed interfaces: capability + install checks and
exception mapping, so that a provider failure is an error value, never a trap."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from runner.providers import ProviderError

T = TypeVar("T")
log = logging.getLogger("runner.host.providers")


def call_provider(fn: Callable[[], T], allowed_codes: frozenset[str], internal: str = "internal") -> T | str:
    try:
        return fn()
    except ProviderError as exc:
        return exc.code if exc.code in allowed_codes else internal
    except Exception:  # noqa: BLE001
        log.exception("provider call failed")
        return internal


def result_error(fn: Callable[[], Any], make_error: Callable[[str], Any]) -> Any:
    """For functions that return a result *record* (success/error fields) instead of a WIT result."""
    try:
        return fn()
    except ProviderError as exc:
        return make_error(str(exc))
    except Exception:  # noqa: BLE001
        log.exception("provider call failed")
        return make_error("internal error")
