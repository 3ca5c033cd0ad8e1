"""Test helpers: bundles on disk, containers on a throwaway database, dev tokens."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from audit.config import AuditSettings
from service.auth.tokens import mint_dev_token
from service.container import ServiceContainer, build_container
from service.settings import Settings

# The smallest thing that passes the bundle loader's component check (magic + component layer).
# Registry tests don't execute it; runner tests use real components.
COMPONENT_HEADER = b"\x00asm\x0d\x00\x01\x00"


def manifest(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "com.acme.tickets",
        "publisher": "acme",
        "version": "1.0.0",
        "runtime": "wasm-js@1",
        "capabilities": ["cap:secrets.get", "cap:storage.kv"],
        "api": {
            "endpoints": [
                {"method": "GET", "path": "/tickets", "handler": "list"},
                {"method": "POST", "path": "/tickets/:id", "handler": "update"},
            ]
        },
    }
    doc.update(overrides)
    return doc


def write_bundle(root: Path, doc: dict[str, Any] | None = None, component: bytes = COMPONENT_HEADER) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.json").write_text(json.dumps(doc or manifest()))
    (root / "dist").mkdir(exist_ok=True)
    (root / "dist" / "main.wasm").write_bytes(component)
    return root


def make_settings(tmp_path: Path, database_url: str, **overrides: Any) -> Settings:
    # Tests use generated keys on PostgreSQL too (production must configure them).
    return Settings(data_dir=tmp_path / "data", database_url=database_url,
                    **{"allow_dev_keys": True, **overrides})


def make_container(tmp_path: Path, database_url: str, **overrides: Any) -> ServiceContainer:
    # Checkpoints are signed with a dev key even on PostgreSQL (tests only).
    audit = AuditSettings(allow_dev_key=True, checkpoint_interval_seconds=3600)
    return build_container(
        make_settings(tmp_path, database_url, **overrides),
        auto_migrate=True,
        validate_component=None,
        audit_settings=audit,
    )


def token(container: ServiceContainer, tenant: str, *roles: str, sub: str = "user-1") -> str:
    return mint_dev_token(container.settings, tenant=tenant, subject=sub, roles=list(roles))
