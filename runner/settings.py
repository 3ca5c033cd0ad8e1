"""Runner settings (environment variables prefixed `EXTGATE_`).

Everything has a laptop default under `EXTGATE_DATA_DIR` (per user: `~/.local/share/extgate`): the dev keyring
(`keys/secret-keys`), the service credential (`keys/runner-token`), bundles and compiled
artifacts, and a SQLite database for the KV store.
"""

from __future__ import annotations

import os
import secrets as _secrets
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from runner.contract.data_dir import default_data_dir
from runner.contract.envelope import Keyring, load_or_create_dev_keyring

MIB = 1024 * 1024
# wasmtime refuses a single guest→host list<u8> above ~2,796,202 bytes (hostcall fuel);
# every guest→host cap must stay below this.
WASMTIME_HOSTCALL_LIST_LIMIT = 2_796_202


class DevKeysNotAllowed(ValueError):
    """A key is not configured and generated development keys are not allowed here."""

    def __init__(self, variable: str) -> None:
        super().__init__(
            f"{variable} is not set: with PostgreSQL every replica must share configured keys "
            "(set EXTGATE_ALLOW_DEV_KEYS=1 to use generated development keys anyway)"
        )
        self.variable = variable


class RunnerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EXTGATE_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)  # runner/contract/data_dir.py
    runner_token: SecretStr | None = None
    secret_keys: SecretStr | None = None
    database_url: str | None = None
    # None: generated dev keys only on SQLite. See `dev_keys_allowed`.
    allow_dev_keys: bool | None = None
    # Create the KV table at startup (default: only for the SQLite embedded default;
    # production schemas are managed by migrations).
    runner_create_tables: bool | None = None
    runner_compiled_dir: Path | None = None  # default {data_dir}/compiled

    runner_host: str = "127.0.0.1"
    runner_port: int = 8080
    runner_processes: int = Field(default=1, ge=1)
    # Guests running at once per process; unset: the cores divided among the processes (a
    # running guest releases the GIL, so one thread per core keeps every core busy).
    runner_threads: int | None = Field(default=None, ge=1)
    # Calls waiting per process (all tenants) before `overloaded`.
    runner_queue_size: int = Field(default=64, ge=0)
    # Fair scheduling (runner/scheduler.py). Unset caps: half the threads per tenant (at least
    # one), and the tenant cap per install.
    runner_tenant_max_concurrency: int | None = Field(default=None, ge=1)
    runner_install_max_concurrency: int | None = Field(default=None, ge=1)
    runner_tenant_queue_size: int = Field(default=16, ge=1)
    # A call that cannot start within this is answered `runner_busy` at once; the guest's own
    # deadline starts when it starts. A request's `limits.admission_timeout_ms` may be shorter.
    runner_admission_timeout_ms: int = Field(default=1_000, gt=0, le=60_000)

    # engine
    runner_fuel: bool = False
    runner_component_cache_size: int = 32
    # At start, deserialize this many of the most recently used compiled components (0: off),
    # so the first request after a restart does not pay for loading its artifact.
    runner_warm_components: int = 8
    # Call a component's bulk-body export (`handler-b64`, added at publish) when it has one;
    # false: always the plain `handler` (an operator's switch back, no republish needed).
    runner_bulk_bodies: bool = True
    # At start, rebuild in the background the artifacts an earlier transform version built
    # (they keep serving through the plain path until then); false: only `extgate runner recompile`.
    runner_rebuild_outdated_artifacts: bool = True

    # per-request limits (request values are clamped to the maxima)
    runner_default_timeout_ms: int = 10_000
    runner_max_timeout_ms: int = 60_000
    runner_default_memory_mb: int = 128
    runner_max_memory_mb: int = 512
    runner_default_fuel: int = 2_000_000_000
    runner_max_request_body_bytes: int = 10 * MIB
    runner_max_response_body_bytes: int = 2 * MIB

    # host interfaces
    runner_kv_max_value_bytes: int = 1 * MIB
    runner_kv_max_namespace_chars: int = 128
    runner_kv_max_key_chars: int = 256
    runner_kv_page_size: int = 100
    runner_fetch_max_response_bytes: int = 1 * MIB
    runner_fetch_max_request_bytes: int = 1 * MIB
    runner_fetch_max_timeout_ms: int = 10_000
    # http.fetch connects only to public addresses (see runner.egress); 1 also allows
    # private, loopback and link-local ones (the egress allowlist still applies).
    runner_fetch_allow_private_networks: bool = False
    runner_output_max_bytes: int = 64 * 1024
    runner_output_max_line_bytes: int = 4096

    # caches
    runner_secrets_cache_ttl_s: float = 30.0
    runner_idempotency_ttl_s: float = 600.0
    runner_idempotency_max_entries: int = 10_000

    @property
    def effective_threads(self) -> int:
        if self.runner_threads is not None:
            return self.runner_threads
        return max(1, (os.cpu_count() or 2) // self.runner_processes)

    @property
    def effective_tenant_max_concurrency(self) -> int:
        cap = self.runner_tenant_max_concurrency or max(1, self.effective_threads // 2)
        return min(cap, self.effective_threads)

    @property
    def effective_install_max_concurrency(self) -> int:
        return min(self.runner_install_max_concurrency or self.effective_tenant_max_concurrency,
                   self.effective_tenant_max_concurrency)

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def bundles_dir(self) -> Path:
        return self.data_dir / "bundles"

    @property
    def compiled_dir(self) -> Path:
        return self.runner_compiled_dir or self.data_dir / "compiled"

    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'extgate.db').resolve()}"

    def create_tables(self) -> bool:
        if self.runner_create_tables is not None:
            return self.runner_create_tables
        return self.effective_database_url().startswith("sqlite")

    def dev_keys_allowed(self) -> bool:
        """Generated key files stand in for missing keys on SQLite (one machine); with
        PostgreSQL (several replicas) keys must be configured, or EXTGATE_ALLOW_DEV_KEYS=1."""
        if self.allow_dev_keys is not None:
            return self.allow_dev_keys
        return self.effective_database_url().startswith("sqlite")

    def _require_dev_keys(self, what: str) -> None:
        if not self.dev_keys_allowed():
            raise DevKeysNotAllowed(what)

    def keyring(self) -> Keyring:
        if self.secret_keys is not None:
            return Keyring.from_spec(self.secret_keys.get_secret_value())
        self._require_dev_keys("EXTGATE_SECRET_KEYS")
        return load_or_create_dev_keyring(self.keys_dir / "secret-keys")

    def service_tokens(self) -> list[str]:
        """Every credential the runner accepts. `EXTGATE_RUNNER_TOKEN` may list several,
        comma-separated (the new one first), so the credential rotates without a window of
        refused calls: runners accept both, gateways switch, then the old one is removed."""
        if self.runner_token is None:
            return [self.service_token()]
        tokens = [t.strip() for t in self.runner_token.get_secret_value().split(",") if t.strip()]
        if not tokens or any(len(t) < 16 for t in tokens):
            raise ValueError("EXTGATE_RUNNER_TOKEN: each token must be at least 16 characters")
        return tokens

    def service_token(self) -> str:
        """The credential callers of `/v1/execute` must present (created 0600 on first use)."""
        if self.runner_token is not None:
            return self.service_tokens()[0]
        self._require_dev_keys("EXTGATE_RUNNER_TOKEN")
        path = self.keys_dir / "runner-token"
        if path.exists():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        token = _secrets.token_urlsafe(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process won the race; use its token
            return path.read_text().strip()
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
        return token
