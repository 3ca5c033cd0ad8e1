"""Where extgate keeps its data when `EXTGATE_DATA_DIR` is unset: one store per user.

The rule, the same for every `extgate` command and server, from any working directory:

1. `EXTGATE_DATA_DIR`, when set (handled by the settings classes; this module is their default);
2. otherwise `./.extgate` **if it already exists** in the working directory — the old default,
   kept so nobody loses data — with a one-line notice on stderr saying how to move it;
3. otherwise the per-user XDG data directory: `$XDG_DATA_HOME/extgate`, or
   `~/.local/share/extgate` when `XDG_DATA_HOME` is unset or not absolute.

Shared by the service and the runner so an in-process and a standalone runner agree.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

LEGACY = Path(".extgate")
_noticed: set[Path] = set()


def user_data_dir() -> Path:
    """The per-user default: `$XDG_DATA_HOME/extgate` or `~/.local/share/extgate`."""
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return (base / "extgate").resolve()


def legacy_data_dir() -> Path | None:
    """`./.extgate` when it exists in the working directory (the default before the per-user one)."""
    legacy = LEGACY.resolve()
    return legacy if legacy.is_dir() else None


def default_data_dir() -> Path:
    """The data directory to use when `EXTGATE_DATA_DIR` is unset (see the module docstring)."""
    legacy = legacy_data_dir()
    if legacy is None:
        return user_data_dir()
    if legacy not in _noticed:  # once per process, however many settings objects are built
        _noticed.add(legacy)
        print(
            f"extgate: using the existing {legacy} as data directory (the default is now "
            f"{user_data_dir()}: move it there, or set EXTGATE_DATA_DIR to keep this one)",
            file=sys.stderr,
        )
    return legacy


def describe_data_dir(path: Path) -> str:
    """One line saying which data directory is in use and why, for banners and verb output."""
    if os.environ.get("EXTGATE_DATA_DIR"):
        why = "EXTGATE_DATA_DIR"
    elif path == LEGACY.resolve():
        why = "existing ./.extgate"
    else:
        why = "per-user default; EXTGATE_DATA_DIR overrides"
    return f"data directory: {path} ({why})"
