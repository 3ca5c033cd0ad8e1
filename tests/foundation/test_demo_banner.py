"""`make run`'s banner pastes into a shell in order (issue 21, part 5): every token it uses is
exported before the first command that needs it, and none is missing (EDITOR was)."""

from __future__ import annotations

import re

from service.demo import DemoInfo, describe


def test_banner_exports_every_token_before_use() -> None:
    roles = ["viewer", "editor", "admin", "operator", "platform-admin"]
    info = DemoInfo("demo", "extgate.dev.extgate.demo", "inst-1", "sha256:x", {r: f"tok-{r}" for r in roles})
    text = describe(info, "http://127.0.0.1:8000", "data directory: /d (per-user default)")
    lines = text.splitlines()
    exported: set[str] = set()
    used: set[str] = set()
    for line in lines:
        m = re.match(r"\s*export (\w+)=(\S+)$", line)
        if m:
            exported.add(m.group(1))
            continue
        for var in re.findall(r"\$(\w+)", line):
            assert var in exported, f"${var} used before it is exported: {line}"
            used.add(var)
    assert exported == {"VIEWER", "EDITOR", "ADMIN", "OPERATOR", "PLATFORM_ADMIN"}
    assert {"VIEWER", "EDITOR", "ADMIN", "OPERATOR"} <= used
    assert "data directory: /d" in text
