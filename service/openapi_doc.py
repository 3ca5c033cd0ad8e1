"""Generate the OpenAPI document (committed at openapi/openapi.json, checked for drift)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from service.container import build_container
from service.settings import Settings

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "openapi" / "openapi.json"


def generate() -> dict[str, Any]:
    from service.app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        container = build_container(
            Settings(data_dir=Path(tmp), database_url=None), auto_migrate=True, validate_component=None
        )
        try:
            return create_app(container=container).openapi()
        finally:
            container.close()


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"
