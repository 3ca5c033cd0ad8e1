"""Every invalid setting is one `configuration_error` line from `extgate serve`, naming the
variable, with no traceback and without the value (issue 17, item 5)."""

from __future__ import annotations

import json
import types
import typing
from typing import Any

import pytest
from pydantic_settings import BaseSettings
from typer.testing import CliRunner

from audit.config import AuditSettings
from runner.debug.config import DebugPublisherSettings
from runner.settings import RunnerSettings
from service.cli.main import app
from service.debug.config import DebugSessionSettings
from service.gateway.config import GatewaySettings
from service.settings import Settings
from tests.docs.test_settings_documented import env_names

CLASSES: list[type[BaseSettings]] = [Settings, GatewaySettings, RunnerSettings, DebugSessionSettings,
                                     DebugPublisherSettings, AuditSettings]
BAD_VALUE = "not-a-valid-value-7f3a"


def _invalid_for(annotation: Any) -> bool:
    """Does BAD_VALUE fail this type? (numbers and booleans; free text accepts anything)"""
    args = typing.get_args(annotation) if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) \
        else (annotation,)
    kinds = {a for a in args if a is not type(None)}
    return bool(kinds) and kinds <= {int, float, bool}


def _cases() -> list[tuple[str, str]]:
    out = []
    for cls in CLASSES:
        names = env_names(cls)
        for (name, field), env in zip(cls.model_fields.items(), names, strict=True):
            if _invalid_for(field.annotation):
                out.append((cls.__name__, env))
    return out


CASES = _cases()


@pytest.fixture
def serve(tmp_path, monkeypatch):
    import uvicorn

    calls: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    monkeypatch.setenv("EXTGATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("EXTGATE_DATABASE_URL", raising=False)

    def run() -> Any:
        result = CliRunner().invoke(app, ["serve"])
        assert calls == [], "nothing may start"
        return result

    return run


def _one_configuration_error(result: Any) -> dict[str, Any]:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    body: dict[str, Any] = json.loads(lines[0])
    assert body["error"] == "configuration_error"
    return body


def test_there_are_settings_to_check() -> None:
    assert len(CASES) > 40 and {c for c, _ in CASES} == {c.__name__ for c in CLASSES}


@pytest.mark.parametrize(("cls", "variable"), CASES, ids=[v for _, v in CASES])
def test_each_invalid_setting_is_one_configuration_error(serve, monkeypatch, cls: str, variable: str) -> None:
    monkeypatch.setenv(variable, BAD_VALUE)
    body = _one_configuration_error(serve())
    settings = [p["setting"] for p in body["detail"]]
    assert any(variable.startswith(s) or s.startswith(variable) or s.lower() in variable.lower() for s in settings), \
        (variable, settings)
    assert BAD_VALUE not in json.dumps(body)


@pytest.mark.parametrize("variable", ["EXTGATE_REDIS_URL", "EXTGATE_DEBUG_REDIS_URL"])
@pytest.mark.parametrize("url", ["redis+cluster://:hunter2@h1:6379", "memcached://h:11211", "h:6379", "http://x"])
def test_an_unsupported_redis_url_is_one_configuration_error(serve, monkeypatch, variable: str, url: str) -> None:
    """Issue 17 (5): an unsupported EXTGATE_REDIS_URL scheme crashed `extgate serve` with a traceback."""
    monkeypatch.setenv(variable, url)
    body = _one_configuration_error(serve())
    assert "unsupported scheme" in json.dumps(body)
    assert "hunter2" not in json.dumps(body)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://h:6380", "unix:///tmp/redis.sock"])
def test_supported_redis_urls_are_accepted(url: str) -> None:
    assert Settings(redis_url=url).redis_url == url


@pytest.mark.parametrize(("variable", "value"), [("EXTGATE_RUNNER_THREADS", "0"), ("EXTGATE_RUNNER_THREADS", "many"),
                                                 ("EXTGATE_RUNNER_ADMISSION_TIMEOUT_MS", "-1"),
                                                 ("EXTGATE_RUNNER_TENANT_QUEUE_SIZE", "0")])
def test_runner_serve_reports_an_invalid_setting_in_one_line(tmp_path, monkeypatch, variable: str, value: str) -> None:
    import uvicorn

    calls: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: calls.append(kw))
    monkeypatch.setenv("EXTGATE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv(variable, value)
    result = CliRunner().invoke(app, ["runner", "serve"])
    body = _one_configuration_error(result)
    assert calls == [] and body["detail"][0]["setting"] == variable
