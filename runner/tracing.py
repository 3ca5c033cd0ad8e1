"""OpenTelemetry tracing of gateway and runner, configured only by the standard `OTEL_*`
environment variables, and off (free) unless `OTEL_TRACES_EXPORTER` names an exporter.

- `OTEL_TRACES_EXPORTER`: `otlp` (OTLP over HTTP/protobuf; endpoint and headers from
  `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` and friends), `console`,
  or both (comma-separated). Unset or `none`: no tracing at all. `OTEL_SDK_DISABLED=true` wins.
- `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`: read by the SDK (default
  `parentbased_always_on`). `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`: the resource.

Off, every helper here returns at once (a flag test and a shared no-op context), so the hot
path pays no context switches, no span objects and no header work. On, the gateway's spans go
gateway → authorize → policy → audit → runner dispatch, and the runner continues the trace from
the `traceparent` header of the execute call (embedded or remote alike): run → instantiate →
guest call → host calls (`http.fetch`, `storage.*`). Span attributes are ids and codes only:
never a body, a header value, a config value or a secret.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable, Mapping, MutableMapping
from contextlib import AbstractContextManager
from typing import Any, TypeVar

log = logging.getLogger("extgate.tracing")

F = TypeVar("F", bound=Callable[..., Any])
_NO_SPAN: AbstractContextManager[Any] = contextlib.nullcontext()
_tracer: Any = None  # an opentelemetry Tracer while tracing is on


def enabled() -> bool:
    return _tracer is not None


def _exporters(names: list[str]) -> list[Any]:
    exporters: list[Any] = []
    for name in names:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporters.append(OTLPSpanExporter())
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append(ConsoleSpanExporter())
        else:
            log.warning("OTEL_TRACES_EXPORTER: %r is not supported (otlp, console); ignored", name)
    return exporters


def configure_tracing(default_service_name: str) -> bool:
    """Set up the SDK from `OTEL_*` if an exporter is named; returns whether tracing is on."""
    names = [n.strip().lower() for n in os.environ.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    names = [n for n in names if n != "none"]
    if not names or os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": default_service_name})
    provider = TracerProvider(resource=resource)  # the sampler comes from OTEL_TRACES_SAMPLER
    exporters = _exporters(names)
    if not exporters:
        return False
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    use_tracer_provider(provider)
    log.info("tracing on: exporters %s", ",".join(names))
    return True


def use_tracer_provider(provider: Any | None) -> None:
    """Trace with `provider` (None: off). For `configure_tracing`, and tests (in-memory export)."""
    global _tracer
    _tracer = provider.get_tracer("extgate") if provider is not None else None
    if provider is not None:
        from runner.logging_config import add_context_source

        add_context_source(trace_log_fields)  # JSON log lines get the trace id


def trace_log_fields() -> Mapping[str, str | None]:
    return {"trace_id": current_trace_id()}


def span(name: str, attributes: Mapping[str, str | int | bool] | None = None,
         *, kind: str = "internal", parent_headers: Mapping[str, str] | None = None) -> AbstractContextManager[Any]:
    """A child span of the current one (or of the `traceparent` in `parent_headers`)."""
    tracer = _tracer
    if tracer is None:
        return _NO_SPAN
    from opentelemetry.trace import SpanKind

    context = None
    if parent_headers is not None:
        from opentelemetry.propagate import extract

        context = extract(parent_headers)
    return tracer.start_as_current_span(name, context=context, kind=SpanKind[kind.upper()],
                                        attributes=dict(attributes or {}))


def inject(headers: MutableMapping[str, str]) -> None:
    """Add `traceparent` (and `tracestate`) of the current span to outgoing `headers`."""
    if _tracer is None:
        return
    from opentelemetry.propagate import inject as otel_inject

    otel_inject(headers)


def current_trace_id() -> str | None:
    """The current trace id (32 hex digits) for log lines, or None."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def traced(name: str) -> Callable[[F], F]:
    """Decorator: run the function in a span `name` while tracing is on (host calls)."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if _tracer is None:
                return fn(*args, **kwargs)
            with span(name):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate

