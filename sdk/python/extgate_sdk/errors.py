"""Typed errors of the extgate guest SDK.

Host results that are `err(...)` in WIT arrive in componentize-py as a generic
`componentize_py_types.Err` whose value is an enum case. The SDK turns the ones an
extension author usually has to branch on (config and secrets) into exception classes,
so `except SecretExpired:` reads like the business rule it implements.
None of these errors carry a secret *value*; only key names.
"""

from __future__ import annotations


class ExtgateError(Exception):
    """Base class of every SDK error. `code` is a stable snake_case string."""

    code = "extension_error"
    status = 500

    def __init__(self, message: str, **detail: object) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def to_json(self) -> dict[str, object]:
        return {"error": self.code, "message": self.message, **self.detail}


class HttpError(ExtgateError):
    """Raise from a handler to answer with a JSON error body (`{"error": code, ...}`)."""

    def __init__(self, status: int, code: str, message: str = "", **detail: object) -> None:
        super().__init__(message or code.replace("_", " "), **detail)
        self.status = status
        self.code = code


class ConfigError(ExtgateError):
    """The install's config lacks a key or holds a value of the wrong shape."""

    code = "config_error"

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message, key=key)
        self.key = key


class ConfigMissing(ConfigError):
    code = "config_missing"

    def __init__(self, key: str) -> None:
        super().__init__(key, f"config key {key!r} is not set for this install")


class ConfigInvalid(ConfigError):
    code = "config_invalid"

    def __init__(self, key: str, expected: str) -> None:
        super().__init__(key, f"config key {key!r} must be {expected}")


class SecretError(ExtgateError):
    """A secret could not be read. Subclasses mirror WIT `secret-error`."""

    code = "secret_error"  # noqa: S105 - an error code, not a secret

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message, key=key)
        self.key = key


class SecretMissing(SecretError):
    code = "secret_missing"  # noqa: S105

    def __init__(self, key: str) -> None:
        super().__init__(key, f"secret {key!r} is not set for this install")


class SecretDenied(SecretError):
    """The install was not granted `cap:secrets.get`."""

    code = "secret_denied"  # noqa: S105

    def __init__(self, key: str) -> None:
        super().__init__(key, "this install is not granted cap:secrets.get")


class SecretExpired(SecretError):
    """The install's secret envelope is past its `expires_at`."""

    code = "secret_expired"  # noqa: S105

    def __init__(self, key: str) -> None:
        super().__init__(key, "the install's secrets have expired; an admin must set them again")


class SecretUnavailable(SecretError):
    """The host failed internally (WIT `internal`)."""

    code = "secret_unavailable"  # noqa: S105

    def __init__(self, key: str) -> None:
        super().__init__(key, "secrets are temporarily unavailable")


SECRET_ERRORS: dict[str, type[SecretError]] = {
    "missing": SecretMissing,
    "denied": SecretDenied,
    "expired": SecretExpired,
    "internal": SecretUnavailable,
}
