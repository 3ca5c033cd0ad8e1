"""Process logging for the servers (`extgate serve`, `extgate runner serve`).

uvicorn configures only its own loggers; without this, extgate's INFO lines are dropped and
warnings print bare. One line per record, UTC timestamps, logger name and level: easy to
ship as-is. Level from `EXTGATE_LOG_LEVEL` (default INFO). Never log secrets, tokens or
bodies: the code's log calls carry ids and error classes only.

`EXTGATE_LOG_FORMAT=json` writes one JSON object per line instead: time, level, logger,
message, and the request's context where it is known (request id, tenant, extension,
install). The context comes from `bind_log_context` (contextvars, so it follows the request
into the thread pool) and from sources the service registers (`add_context_source`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from types import MappingProxyType

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Context fields a JSON line may carry, in output order (nothing else is taken from records).
CONTEXT_FIELDS = ("request_id", "trace_id", "tenant", "extension", "install")

_EMPTY: Mapping[str, str] = MappingProxyType({})
_LOG_CONTEXT: ContextVar[Mapping[str, str]] = ContextVar("extgate_log_context", default=_EMPTY)
_CONTEXT_SOURCES: list[Callable[[], Mapping[str, str | None]]] = []


def bind_log_context(**fields: str | None) -> Token[Mapping[str, str]]:
    """Add fields to this context's log lines until `reset_log_context(token)`."""
    merged = {**_LOG_CONTEXT.get(), **{k: v for k, v in fields.items() if v}}
    return _LOG_CONTEXT.set(MappingProxyType(merged))


def reset_log_context(token: Token[Mapping[str, str]]) -> None:
    _LOG_CONTEXT.reset(token)


def add_context_source(source: Callable[[], Mapping[str, str | None]]) -> None:
    """Register a function whose fields (e.g. the current request id) join every JSON line."""
    if source not in _CONTEXT_SOURCES:
        _CONTEXT_SOURCES.append(source)


def current_log_context() -> dict[str, str]:
    found: dict[str, str] = {}
    for source in _CONTEXT_SOURCES:
        found.update({k: v for k, v in source().items() if v})
    found.update(_LOG_CONTEXT.get())
    return found


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = current_log_context()
        explicit = getattr(record, "request_id", None)  # `extra={"request_id": ...}` of a log call
        if explicit and "request_id" not in context:
            context["request_id"] = str(explicit)
        for name in CONTEXT_FIELDS:
            if name in context:
                line[name] = context[name]
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def text_formatter() -> logging.Formatter:
    formatter = logging.Formatter(FORMAT, "%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime
    return formatter


def configure_logging(level: str | None = None, log_format: str | None = None) -> None:
    from runner.contract.observability import ObservabilitySettings

    settings = ObservabilitySettings()
    chosen = (level or settings.log_level or "INFO").upper()
    if chosen not in logging.getLevelNamesMapping():
        chosen = "INFO"
    root = logging.getLogger()
    if any(getattr(h, "_extgate", False) for h in root.handlers):
        return  # already configured in this process
    as_json = (log_format or settings.log_format) == "json"
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if as_json else text_formatter())
    handler._extgate = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(chosen)
    if as_json:
        # uvicorn's own lines (startup, access log) go through the same JSON handler.
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            uvicorn_logger = logging.getLogger(name)
            uvicorn_logger.handlers.clear()
            uvicorn_logger.propagate = True
