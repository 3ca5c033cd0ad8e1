"""The web console: static assets (package data in `static/`) and the server-side helpers
its router needs. Served by `service.api.console` at `/console`; see docs/console.md."""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
