"""`extgate debug tail`: follow an extension's debug stream from a running server.

Talks HTTP to the server (`--server`, `EXTGATE_SERVER_URL`) with a bearer token (`--token`,
`EXTGATE_TOKEN`): opens a session, follows the SSE stream, colours lines by level and
source, and on a dropped connection opens a new session and resumes with `Last-Event-ID`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.text import Text

app = typer.Typer(help="Watch extensions' live debug streams.", no_args_is_help=True)

LEVEL_STYLE = {"debug": "dim", "info": "default", "warn": "yellow", "error": "bold red"}
SOURCE_STYLE = {"stdout": "cyan", "stderr": "magenta", "log": "green", "system": "blue"}
RECONNECT_DELAYS = (1, 2, 4, 8, 16)
EXIT_ENDED_BADLY = 1


def parse_sse(lines: Iterator[str]) -> Iterator[tuple[str, str | None, str]]:
    """(event, id, data) for each event of an SSE body; comments (pings) are skipped."""
    event: str = "message"
    entry_id: str | None = None
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r")
        if not line:
            if data:
                yield event, entry_id, "\n".join(data)
            event, entry_id, data = "message", None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "id":
            entry_id = value
        elif name == "data":
            data.append(value)


def render(event: str, data: dict[str, Any]) -> Text:
    if event == "log":
        level, source = data.get("level", "info"), data.get("source", "system")
        text = Text()
        text.append(str(data.get("ts", ""))[11:23] + " ", style="dim")
        text.append(f"{level:<5} ", style=LEVEL_STYLE.get(level, "default"))
        text.append(f"{source:<6} ", style=SOURCE_STYLE.get(source, "default"))
        rid = data.get("request_id") or ""
        text.append(f"[{rid[:12]}] ", style="dim")
        text.append(str(data.get("message", "")), style="red" if source == "stderr" else "")
        flags = [f for f, on in (("truncated", data.get("truncated")), ("backfill", data.get("backfill"))) if on]
        if data.get("dropped"):
            flags.append(f"{data['dropped']} dropped before")
        if flags:
            text.append(f"  ({', '.join(flags)})", style="dim italic")
        return text
    style = {"gap": "bold yellow", "warning": "bold yellow", "end": "bold", "info": "dim"}.get(event, "")
    return Text(f"-- {event}: {json.dumps(data, sort_keys=True)}", style=style)


@app.command()
def tail(
    extension: Annotated[str, typer.Argument(help="extension id, slug publisher.name or install id")],
    install: Annotated[str | None, typer.Option("--install", help="install id")] = None,
    request_id: Annotated[str | None, typer.Option("--request-id", help="only this request")] = None,
    level: Annotated[str | None, typer.Option("--level", help="minimum level: debug, info, warn, error")] = None,
    justification: Annotated[str | None, typer.Option("--justification", help="why (audited)")] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="another tenant (platform admins)")] = None,
    server: Annotated[str, typer.Option("--server", envvar="EXTGATE_SERVER_URL")] = "http://127.0.0.1:8000",
    token: Annotated[str | None, typer.Option("--token", envvar="EXTGATE_TOKEN", help="bearer token")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="one JSON object per event")] = False,
) -> None:
    """Stream EXTENSION's debug lines to the terminal until the session ends (Ctrl-C to stop)."""
    if not token:
        typer.echo(json.dumps({"error": "missing_token", "detail": "pass --token or set EXTGATE_TOKEN"}), err=True)
        raise typer.Exit(2)
    console = Console(highlight=False)
    body = {k: v for k, v in {"extension": extension, "install": install, "request_id": request_id,
                              "min_level": level, "justification": justification, "tenant": tenant}.items() if v}
    last_id: str | None = None
    attempt = 0
    with httpx.Client(base_url=server.rstrip("/"), timeout=httpx.Timeout(10.0, read=60.0)) as client:
        while True:
            try:
                opened = client.post("/api/ext-debug/sessions", json=body, headers={"Authorization": f"Bearer {token}"})
                if opened.status_code != 201:
                    typer.echo(opened.text, err=True)
                    raise typer.Exit(EXIT_ENDED_BADLY)
                headers = {"Accept": "text/event-stream"}
                if last_id:
                    headers["Last-Event-ID"] = last_id
                with client.stream("GET", opened.json()["stream_url"], headers=headers) as resp:
                    if resp.status_code != 200:
                        typer.echo(resp.read().decode(errors="replace"), err=True)
                        raise typer.Exit(EXIT_ENDED_BADLY)
                    attempt = 0
                    for event, entry_id, data in parse_sse(resp.iter_lines()):
                        payload = json.loads(data)
                        if entry_id:
                            last_id = entry_id
                        if json_out:
                            typer.echo(json.dumps({"event": event, "id": entry_id, "data": payload}))
                        else:
                            console.print(render(event, payload))
                        if event == "end":
                            raise typer.Exit(0 if payload.get("reason") in ("max_duration", "client_closed")
                                             else EXIT_ENDED_BADLY)
            except (httpx.TransportError, json.JSONDecodeError) as exc:
                if attempt >= len(RECONNECT_DELAYS):
                    typer.echo(json.dumps({"error": "disconnected", "detail": str(exc)}), err=True)
                    raise typer.Exit(EXIT_ENDED_BADLY) from None
                delay = RECONNECT_DELAYS[attempt]
                attempt += 1
                console.print(Text(f"-- connection lost ({type(exc).__name__}); reconnecting in {delay}s",
                                   style="bold yellow"))
                time.sleep(delay)
