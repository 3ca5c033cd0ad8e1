"""Typed reading of install config and secrets.

Both classes take plain callables so they work against the host (see `guest.config()` /
`guest.secrets()`) and against dicts in unit tests (`Config.from_dict`, `Secrets.from_dict`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from .errors import ConfigInvalid, ConfigMissing, SecretMissing

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class Config:
    """The install's config: a string map set by a tenant admin (`extgate install config set`)."""

    def __init__(self, lookup: Callable[[str], str | None], items: Callable[[], list[tuple[str, str]]]) -> None:
        self._lookup = lookup
        self._items = items

    @classmethod
    def from_dict(cls, values: Mapping[str, str]) -> Config:
        data = dict(values)
        return cls(data.get, lambda: sorted(data.items()))

    def get(self, key: str, default: str | None = None) -> str | None:
        value = self._lookup(key)
        return default if value is None else value

    def require(self, key: str) -> str:
        value = self._lookup(key)
        if value is None:
            raise ConfigMissing(key)
        return value

    def get_int(self, key: str, default: int | None = None) -> int:
        raw = self._lookup(key)
        if raw is None:
            if default is None:
                raise ConfigMissing(key)
            return default
        try:
            return int(raw.strip())
        except ValueError:
            raise ConfigInvalid(key, "an integer") from None

    def get_bool(self, key: str, default: bool | None = None) -> bool:
        raw = self._lookup(key)
        if raw is None:
            if default is None:
                raise ConfigMissing(key)
            return default
        low = raw.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigInvalid(key, "a boolean (true/false, 1/0, yes/no, on/off)")

    def get_json(self, key: str, default: Any = None) -> Any:
        raw = self._lookup(key)
        if raw is None:
            if default is None:
                raise ConfigMissing(key)
            return default
        try:
            return json.loads(raw)
        except ValueError:
            raise ConfigInvalid(key, "JSON") from None

    def as_dict(self) -> dict[str, str]:
        return dict(self._items())


class Secrets:
    """The install's secrets. `lookup` returns the value or raises a `SecretError`."""

    def __init__(self, lookup: Callable[[str], str], keys: Callable[[], list[str]]) -> None:
        self._lookup = lookup
        self._keys = keys

    @classmethod
    def from_dict(cls, values: Mapping[str, str]) -> Secrets:
        data = dict(values)

        def lookup(key: str) -> str:
            if key not in data:
                raise SecretMissing(key)
            return data[key]

        return cls(lookup, lambda: sorted(data))

    def get(self, key: str) -> str:
        """The value; raises SecretMissing / SecretDenied / SecretExpired / SecretUnavailable."""
        return self._lookup(key)

    def get_optional(self, key: str) -> str | None:
        """The value, or None when the key is not set (other errors still raise)."""
        try:
            return self._lookup(key)
        except SecretMissing:
            return None

    def keys(self) -> list[str]:
        """Names of the install's secrets (empty when not granted or expired)."""
        return list(self._keys())
