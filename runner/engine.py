"""One wasmtime Engine per process, with a single epoch ticker thread.

The engine configuration is part of every compiled artifact's cache key: a `.cwasm`
only loads into an engine with the same wasmtime version and flags (e.g. an artifact
compiled without epoch interruption is refused by an epoch engine).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import asdict, dataclass
from importlib import metadata

from wasmtime import Config, Engine

from runner import patches

TICK_MS = 10  # epoch granularity: deadlines are rounded up to whole ticks


@dataclass(frozen=True)
class EngineOptions:
    consume_fuel: bool = False
    max_wasm_stack: int = 512 * 1024

    def config(self) -> Config:
        cfg = Config()
        cfg.epoch_interruption = True
        cfg.consume_fuel = self.consume_fuel
        cfg.max_wasm_stack = self.max_wasm_stack
        cfg.parallel_compilation = True
        return cfg

    def fingerprint(self) -> str:
        """Identifies artifacts this engine can load: wasmtime version + code-affecting flags."""
        doc = {"wasmtime": wasmtime_version(), "epoch": True, **asdict(self)}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def wasmtime_version() -> str:
    return metadata.version("wasmtime")


class EngineHandle:
    """An Engine plus its epoch ticker (a daemon thread; one per engine)."""

    def __init__(self, options: EngineOptions) -> None:
        patches.install()
        self.options = options
        self.engine = Engine(options.config())
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="extgate-epoch", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(TICK_MS / 1000):
            self.engine.increment_epoch()

    @staticmethod
    def ticks_for(timeout_ms: int) -> int:
        # +1: the deadline is relative to the current epoch, which may be about to tick.
        return max(1, -(-timeout_ms // TICK_MS)) + 1


_engines: dict[EngineOptions, EngineHandle] = {}
_engines_lock = threading.Lock()


def get_engine(options: EngineOptions | None = None) -> EngineHandle:
    options = options or EngineOptions()
    with _engines_lock:
        handle = _engines.get(options)
        if handle is None:
            handle = _engines[options] = EngineHandle(options)
        return handle
