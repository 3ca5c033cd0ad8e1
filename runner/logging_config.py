"""Process logging for the servers (`extgate serve`, `extgate runner serve`).

uvicorn configures only its own loggers; without this, extgate's INFO lines are dropped and
warnings print bare. One line per record, UTC timestamps, logger name and level: easy to
ship as-is. Level from `EXTGATE_LOG_LEVEL` (default INFO). Never log secrets, tokens or
bodies: the code's log calls carry ids and error classes only.
"""

from __future__ import annotations

import logging
import os
import time

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str | None = None) -> None:
    chosen = (level or os.environ.get("EXTGATE_LOG_LEVEL") or "INFO").upper()
    if chosen not in logging.getLevelNamesMapping():
        chosen = "INFO"
    root = logging.getLogger()
    if any(getattr(h, "_extgate", False) for h in root.handlers):
        return  # already configured in this process
    handler = logging.StreamHandler()
    formatter = logging.Formatter(FORMAT, "%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler._extgate = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(chosen)
