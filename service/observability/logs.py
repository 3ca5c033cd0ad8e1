"""The request id (`service.request_context`) in every JSON log line written during a request."""

from __future__ import annotations

from collections.abc import Mapping

from runner.logging_config import add_context_source
from service.request_context import current_request


def request_log_fields() -> Mapping[str, str | None]:
    return {"request_id": current_request().request_id}


def install_request_log_context() -> None:
    add_context_source(request_log_fields)
