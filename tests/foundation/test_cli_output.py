"""Consistent CLI output (issue 21, part 5).

Reproduction: the README said "every verb prints JSON", but the policy verbs, `audit verify`,
`audit verify-proof` and `debug tail` printed text, and e.g. `ext list --json` was "No such
option". Now every verb takes `--json`; without it, verbs that print data print JSON when
stdout is not a terminal and a readable form (tables, ISO times) at a terminal.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest
import typer.main
from typer.testing import CliRunner

from service.cli import common
from service.cli.main import app

STREAMING = {"serve", "runner serve", "demo serve", "dev"}  # servers and the dev loop


def verbs() -> dict[str, click.Command]:
    root = typer.main.get_command(app)
    ctx = click.Context(root)
    out: dict[str, click.Command] = {}

    def walk(cmd: click.Command, path: list[str]) -> None:
        if hasattr(cmd, "list_commands"):  # a group (typer's own, not a click.Group subclass)
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None
                walk(sub, [*path, name])
        else:
            out[" ".join(path)] = cmd

    walk(root, [])
    return out


def test_every_verb_takes_json() -> None:
    found = verbs()
    assert {"ext list", "install create", "policy validate", "audit verify-proof", "debug tail", "token"} <= set(found)
    missing = sorted(name for name, cmd in found.items()
                     if name not in STREAMING and not any("--json" in p.opts for p in cmd.params))
    assert missing == []
    # a verb that had its own --json keeps exactly one (a second one would shadow it)
    twice = sorted(name for name, cmd in found.items() if sum("--json" in p.opts for p in cmd.params) > 1)
    assert twice == []


def test_human_form() -> None:
    when = datetime(2026, 12, 4, 18, 0, 1, 123456, tzinfo=UTC)
    table = common.human([{"id": "a", "versions": ["1.0.0", "1.1.0"], "created_at": when},
                          {"id": "bb", "versions": [], "created_at": None}])
    assert table.splitlines() == [
        "ID  VERSIONS      CREATED_AT",
        "a   1.0.0, 1.1.0  2026-12-04T18:00:01+00:00",
        "bb  -             -",
    ]
    assert common.human({"slug": "x", "created": True}).splitlines() == ["created  yes", "slug     x"]
    assert common.human([]) == "(none)"


def test_terminal_gets_the_human_form_and_json_is_forced(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(common.sys.stdout, "isatty", lambda: True, raising=False)
    common.emit([{"id": "a"}])
    assert capsys.readouterr().out == "ID\na\n"
    token = common._force_json.set(True)
    try:
        common.emit([{"id": "a"}])
    finally:
        common._force_json.reset(token)
    assert json.loads(capsys.readouterr().out) == [{"id": "a"}]


def test_text_verbs_answer_json_on_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXTGATE_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    listed = runner.invoke(app, ["ext", "list", "--json"])  # also creates the store and its dev audit key
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []
    plain = runner.invoke(app, ["audit", "public-key"])
    assert plain.exit_code == 0, plain.output
    key = plain.stdout.strip()  # unchanged: scripts write it to a file
    assert key
    as_json = runner.invoke(app, ["audit", "public-key", "--json"])
    assert json.loads(as_json.stdout) == {"public_keys": [key]}
