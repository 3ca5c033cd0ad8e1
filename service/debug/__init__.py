"""Debug-stream viewing: sessions (tickets, caps, revocation, audit) and the SSE hub.

* `config`   — `DebugSessionSettings` (`EXTGATE_DEBUG_*`);
* `source`   — where entries are read: Redis Streams or the in-process hub (one interface);
* `hub`      — one reader per (process, stream) fanning out to bounded per-viewer queues;
* `tickets`  — one-time tickets and session leases (Redis or memory);
* `sessions` — opening (Cedar `debug.view`), redeeming, revalidating and auditing sessions;
* `stream`   — the SSE event sequence of one session.
"""
