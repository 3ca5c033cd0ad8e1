"""Fixtures for policy tests: the shipped bundle, engines, and editable copies."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from service.auth.principal import Principal
from service.policy.bundle import Bundle, compile_bundle
from service.policy.engine import PolicyEngine
from service.policy.model import InstallFacts
from service.policy.source import BundleSource

POLICY_DIR = Path(__file__).resolve().parents[2] / "policies"


@pytest.fixture(scope="session")
def shipped_source() -> BundleSource:
    return BundleSource.from_dir(POLICY_DIR)


@pytest.fixture(scope="session")
def shipped_bundle(shipped_source: BundleSource) -> Bundle:
    return compile_bundle(shipped_source)


@pytest.fixture(scope="session")
def engine(shipped_bundle: Bundle) -> PolicyEngine:
    return PolicyEngine(shipped_bundle)


@pytest.fixture
def policy_copy(tmp_path: Path) -> Path:
    """An editable copy of the shipped policies/ directory."""
    target = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, target)
    return target


@pytest.fixture
def edit(shipped_source: BundleSource) -> Callable[..., BundleSource]:
    """A source equal to the shipped one with some files replaced (None deletes)."""

    def make(changes: dict[str, str | None]) -> BundleSource:
        merged = dict(shipped_source.files)
        for name, text in changes.items():
            if text is None:
                merged.pop(name, None)
            else:
                merged[name] = text
        return BundleSource(merged)

    return make


def user(subject: str, tenant: str, *roles: str, user_type: str = "internal") -> Principal:
    return Principal(subject=subject, tenant=tenant, roles=frozenset(roles), user_type=user_type)


def install(tenant: str, install_id: str = "", *caps: str, enabled: bool = True) -> InstallFacts:
    return InstallFacts(tenant, install_id or f"{tenant}-inst", "ext-1", "pub.ext", frozenset(caps), enabled)
