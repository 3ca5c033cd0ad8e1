"""Every setting the code reads is documented: each `EXTGATE_*` variable of every settings
class appears somewhere under docs/ (a new knob without docs fails here)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from audit.config import AuditSettings
from runner.contract.observability import ObservabilitySettings
from runner.debug.config import DebugPublisherSettings
from runner.settings import RunnerSettings
from service.debug.config import DebugSessionSettings
from service.gateway.config import GatewaySettings
from service.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"
CLASSES: list[type[BaseSettings]] = [Settings, RunnerSettings, GatewaySettings, DebugSessionSettings,
                                     DebugPublisherSettings, AuditSettings, ObservabilitySettings]


def env_names(cls: type[BaseSettings]) -> list[str]:
    prefix = str(cls.model_config.get("env_prefix", "")).upper()
    names = []
    for name, field in cls.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.append(str(alias.choices[0]).upper())
        elif isinstance(alias, str):
            names.append(alias.upper())
        else:
            names.append(prefix + name.upper())
    return names


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_setting_is_documented(cls: type[BaseSettings]) -> None:
    text = "\n".join(p.read_text() for p in DOCS.glob("*.md"))
    names = env_names(cls)
    assert names and all(n.startswith("EXTGATE_") for n in names), names
    missing = [name for name in names if f"`{name}`" not in text]
    assert not missing, f"{cls.__name__}: document {missing} in docs/ (configuration.md, runner.md, ...)"
