"""Every host interface against the real Python guest (examples/demo)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from runner.contract import capabilities as caps
from runner.contract.envelope import Keyring, seal
from runner.providers import (
    ClientsListResult,
    ClientSummary,
    CreateManualInvoiceResult,
    CreateScheduleResult,
    ProviderError,
    Providers,
    ScheduleInfo,
    ServicesListResult,
    ServiceSummary,
)
from tests.runner.conftest import body_of, make_request

ALL_CAPS = sorted(caps.KNOWN_CAPABILITIES)
ENDPOINT_CAPS = ["http", "secrets", "storage", "ui-proxy", "scheduler", "clients", "services"]


def call(runner, demo_hash, path, **kw):
    resp = runner.execute(make_request(demo_hash, path, **kw))
    assert resp.error is None, resp.error
    return resp.status, json.loads(body_of(resp))


class FakeDomain:
    def call_route(self, ctx, route, payload):
        if route == "/api/missing":
            raise ProviderError("route-not-found")
        return b'{"pong": true}'

    def list_schedules(self, ctx):
        return [ScheduleInfo("s1", "/hello", "GET", None, "0 * * * *", "UTC", True)]

    def get_schedule(self, ctx, schedule_id):
        return None

    def create_schedule(self, ctx, input):
        return CreateScheduleResult(success=True, schedule_id="s2")

    def update_schedule(self, ctx, schedule_id, input):
        raise NotImplementedError

    def delete_schedule(self, ctx, schedule_id):
        raise NotImplementedError

    def get_endpoints(self, ctx):
        return []

    def create_manual_invoice(self, ctx, input):
        assert input.items[0].service_id == "s1"
        return CreateManualInvoiceResult(success=True, invoice_id="inv1", total=10.0)

    def list_clients(self, ctx, input):
        assert input.page == 1 and input.page_size == 25
        return ClientsListResult([ClientSummary("c1", "Acme")], 1, 1, 25)

    def get_client(self, ctx, client_id):
        return None

    def list_services(self, ctx, input):
        return ServicesListResult([ServiceSummary("s1", "Support", "service", "hourly")], 1, 1, 25)

    def get_service(self, ctx, service_id):
        return None


@pytest.fixture
def with_providers(runner) -> Iterator[None]:
    fake = FakeDomain()
    runner.providers = Providers(ui_proxy=fake, scheduler=fake, invoicing=fake, clients=fake, services=fake)
    yield
    runner.providers = Providers()


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("location", "http://evil.invalid/")
                self.end_headers()
                return
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello from upstream")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://localhost:{server.server_address[1]}"
    server.shutdown()


def test_every_capability_denied_without_grant(runner, demo_hash, with_providers) -> None:
    _, probe = call(runner, demo_hash, "/probe", providers=[])
    assert probe["context"] == "ok" and probe["config"] == "ok"
    assert probe["secrets"] == "err:denied"
    assert probe["http"] == "err:not-allowed"
    assert probe["storage"] == "err:denied"
    assert probe["ui-proxy"] == "err:denied"
    assert probe["scheduler"] == "err:denied"
    assert probe["scheduler.create"].startswith("fail:Permission denied")
    assert probe["clients"] == "err:not-allowed"
    assert probe["services"] == "err:not-allowed"
    assert probe["invoicing"].startswith("fail:Permission denied")
    # user.read is always granted
    assert probe["user"] == "err:not-available"


def test_every_capability_granted(runner, demo_hash, keyring: Keyring, with_providers) -> None:
    env = seal({"api_key": "k-123456"}, keyring=keyring, tenant_id="t1", install_id="i1", version="s1")
    _, probe = call(runner, demo_hash, "/probe", providers=ALL_CAPS, secret_envelope=env.model_dump(mode="json"),
                    egress={"allowed_hosts": ["api.example.com"]},
                    user={"user_id": "u1", "user_email": "u@example.com", "user_name": "U", "user_type": "internal"})
    assert probe["secrets"] == "ok" and probe["secrets.list"] == "ok"
    assert probe["http"] == "err:transport"  # allowed, but api.example.com is unreachable here
    assert probe["storage"] == "ok"
    assert probe["ui-proxy"] == "ok"
    assert probe["scheduler"] == "ok" and probe["scheduler.create"] == "ok"
    assert probe["clients"] == "ok" and probe["services"] == "ok" and probe["invoicing"] == "ok"
    assert probe["user"] == "ok" and probe["user-v2"] == "ok"


def test_domain_interfaces_without_provider_answer_denied(runner, demo_hash) -> None:
    _, probe = call(runner, demo_hash, "/probe", providers=ALL_CAPS)
    assert probe["ui-proxy"] == "err:denied"
    assert probe["scheduler"] == "err:denied"
    assert probe["clients"] == "err:not-allowed" and probe["services"] == "err:not-allowed"
    assert probe["invoicing"].startswith("fail:")


def test_egress_allowlist(runner, demo_hash, http_server) -> None:
    grant = [caps.HTTP_FETCH]
    _, ok = call(runner, demo_hash, "/fetch", providers=grant, query={"url": http_server + "/x"},
                 egress={"allowed_hosts": ["localhost"]})
    assert ok == {"status": 200, "length": len(b"hello from upstream")}
    # unlisted host
    status, denied = call(runner, demo_hash, "/fetch", providers=grant, query={"url": http_server + "/x"},
                          egress={"allowed_hosts": ["example.com"]})
    assert (status, denied) == (502, {"error": "not-allowed"})
    # empty allowlist denies everything (upstream: allow all)
    _, empty = call(runner, demo_hash, "/fetch", providers=grant, query={"url": http_server + "/x"})
    assert empty == {"error": "not-allowed"}
    # no capability
    _, nocap = call(runner, demo_hash, "/fetch", query={"url": http_server + "/x"},
                    egress={"allowed_hosts": ["localhost"]})
    assert nocap == {"error": "not-allowed"}
    # a suffix that is not a subdomain
    _, trick = call(runner, demo_hash, "/fetch", providers=grant, query={"url": "http://notlocalhost/x"},
                    egress={"allowed_hosts": ["localhost"]})
    assert trick == {"error": "not-allowed"}
    # redirects are returned, not followed
    _, redirect = call(runner, demo_hash, "/fetch", providers=grant, query={"url": http_server + "/redirect"},
                       egress={"allowed_hosts": ["localhost"]})
    assert redirect["status"] == 302
    _, bad = call(runner, demo_hash, "/fetch", providers=grant, query={"url": "file:///etc/passwd"},
                  egress={"allowed_hosts": ["localhost"]})
    assert bad == {"error": "invalid-url"}


def test_secrets(runner, demo_hash, keyring: Keyring) -> None:
    grant = [caps.SECRETS_GET]

    def check(envelope, key="api_key", **kw):
        resp = runner.execute(make_request(demo_hash, "/secret-check", providers=grant, query={"key": key},
                                           secret_envelope=envelope.model_dump(mode="json"), **kw))
        return resp.error or json.loads(body_of(resp))

    v1 = seal({"api_key": "value-one"}, keyring=keyring, tenant_id="t1", install_id="i1", version="v1")
    assert check(v1) == {"key": "api_key", "present": True}
    assert check(v1, key="nope") == {"key": "nope", "present": False, "error": "missing"}
    # a new secrets version takes effect on the next request (cache keyed by version)
    v2 = seal({"other": "x"}, keyring=keyring, tenant_id="t1", install_id="i1", version="v2")
    assert check(v2)["error"] == "missing"
    assert check(v1)["present"] is True
    expired = seal({"api_key": "v"}, keyring=keyring, tenant_id="t1", install_id="i1", version="v3",
                   expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert check(expired)["error"] == "expired"
    # an envelope bound to another install does not open
    foreign = seal({"api_key": "v"}, keyring=keyring, tenant_id="t1", install_id="other", version="v4")
    assert check(foreign) == "secret_decrypt_failed"
    # sealed under an unknown key
    alien = seal({"api_key": "v"}, keyring=Keyring.generate("alien"), tenant_id="t1", install_id="i1", version="v5")
    assert check(alien) == "secret_decrypt_failed"


def test_config_version_change(runner, demo_hash) -> None:
    h1 = {"x-ext-config-version": "c1", "x-alga-tenant": "t1", "x-alga-extension": "acme.demo"}
    r1 = runner.execute(make_request(demo_hash, "/config", config={"color": "blue"}), h1)
    assert json.loads(body_of(r1)) == {"color": "blue"}
    h2 = {**h1, "x-ext-config-version": "c2"}
    r2 = runner.execute(make_request(demo_hash, "/config", config={"color": "red", "size": "L"}), h2)
    assert json.loads(body_of(r2)) == {"color": "red", "size": "L"}


def test_storage_revisions_and_isolation(runner, demo_hash) -> None:
    kv = [caps.STORAGE_KV]
    status, e1 = call(runner, demo_hash, "/kv/notes/a", method="PUT", body=b"one", providers=kv)
    assert status == 200 and e1["revision"] == 1
    _, e2 = call(runner, demo_hash, "/kv/notes/a", method="PUT", body=b"two", providers=kv,
                 query={"revision": "1"})
    assert e2["revision"] == 2
    status, stale = call(runner, demo_hash, "/kv/notes/a", method="PUT", body=b"x", providers=kv,
                         query={"revision": "1"})
    assert (status, stale) == (409, {"error": "conflict"})
    _, got = call(runner, demo_hash, "/kv/notes/a", providers=kv)
    assert got["value"] == "two"
    # another install of the same tenant sees nothing
    status, other = call(runner, demo_hash, "/kv/notes/a", providers=kv, install="i2")
    assert (status, other) == (404, {"error": "missing"})
    _, listed = call(runner, demo_hash, "/kv/notes", providers=kv)
    assert [e["key"] for e in listed["entries"]] == ["a"]
    status, _ = call(runner, demo_hash, "/kv/notes/a", method="DELETE", providers=kv)
    assert status == 200
    status, _ = call(runner, demo_hash, "/kv/notes/a", providers=kv)
    assert status == 404
    # value over the cap
    big = b"v" * (runner.settings.runner_kv_max_value_bytes + 1)
    status, refused = call(runner, demo_hash, "/kv/notes/big", method="PUT", body=big, providers=kv)
    assert (status, refused) == (403, {"error": "denied"})
    status, _ = call(runner, demo_hash, "/kv/" + "n" * 200 + "/a", providers=kv)
    assert status == 403


def test_user_interfaces(runner, demo_hash) -> None:
    user = {"user_id": "u1", "user_email": "u@example.com", "user_name": "U", "user_type": "client",
            "client_id": "c9", "additional_fields": {"b": "2", "a": "1"}}
    _, out = call(runner, demo_hash, "/user", user=user)
    assert out["user"] == {"id": "u1", "email": "u@example.com", "type": "client"}
    assert out["user_v2"] == {"client_id": "c9", "fields": {"a": "1", "b": "2"}}
    _, anon = call(runner, demo_hash, "/user")
    assert anon["user"] == {"error": "not-available"}


def test_output_capture_and_logging_become_debug_events(runner, demo_hash) -> None:
    runner.debug.clear()
    resp = runner.execute(make_request(demo_hash, "/log", request_id="req-log-1", providers=["cap:debug.logs"]))
    assert resp.error is None
    events = runner.debug.events(request_id="req-log-1")
    got = [(e.stream, e.level, e.message) for e in events]
    assert ("log", "info", "info line") in got and ("log", "warn", "warn line") in got
    assert ("stdout", "info", "stdout line 1") in got and ("stdout", "info", "stdout line 2") in got
    assert ("stderr", "error", "stderr line") in got
    for e in events:
        assert (e.tenant_id, e.extension_id, e.install_id, e.version_id) == ("t1", "acme.demo", "i1", "v1")


def test_debug_lines_are_collected_only_while_the_grant_is_held(runner, demo_hash, wat_guests) -> None:
    # Issue 17 (4): the runner published every install's lines, granted or not, so lines
    # printed before `cap:debug.logs` was granted showed up in the tail after it.
    runner.debug.clear()
    before = runner.execute(make_request(demo_hash, "/log", request_id="before-grant"))
    assert before.error is None
    crashed = runner.execute(make_request(demo_hash, "/crash", request_id="before-grant-crash"))
    assert crashed.error == "guest_crash"
    refused = runner.execute(make_request("sha256:" + "0" * 64, "/", request_id="before-grant-refused"))
    assert refused.error == "bundle_not_found"
    assert runner.debug.events() == []  # nothing collected: no line from before the grant can ever show

    after = runner.execute(make_request(demo_hash, "/log", request_id="after-grant", providers=["cap:debug.logs"]))
    assert after.error is None
    assert {e.request_id for e in runner.debug.events()} == {"after-grant"}


def test_secret_values_are_masked_in_debug_events(runner, demo_hash, keyring) -> None:
    # The guest's crash traceback goes to stderr; make the secret appear in a log line via /echo? The
    # demo never prints secrets, so check the masking path with the runner's publisher directly.
    runner.debug.clear()
    req = make_request(demo_hash, "/hello", request_id="mask-1")
    runner._publish(req, "mask-1", "stdout", "info", "token=supersecret-42 end", ["supersecret-42"])
    (event,) = runner.debug.events(request_id="mask-1")
    assert "supersecret-42" not in event.message and "***" in event.message


def test_python_guest_faults_are_contained(runner, demo_hash) -> None:
    assert runner.execute(make_request(demo_hash, "/loop", limits={"timeout_ms": 300})).error == "timeout"
    assert runner.execute(make_request(demo_hash, "/oom", limits={"memory_mb": 64})).error == "memory_limit"
    assert runner.execute(make_request(demo_hash, "/crash")).error == "guest_crash"
    assert runner.execute(make_request(demo_hash, "/big", query={"n": "3000000"})).error == "payload_too_large"
    ok = runner.execute(make_request(demo_hash, "/hello"))
    assert ok.error is None and json.loads(body_of(ok))["tenant"] == "t1"


def test_guest_sees_only_allowlisted_headers(runner, demo_hash) -> None:
    resp = runner.execute(make_request(demo_hash, "/echo", method="POST", body=b"x",
                                       headers={"content-type": "text/x-demo", "authorization": "Bearer s",
                                                "cookie": "a=b"}))
    assert resp.headers["content-type"] == "text/x-demo"


@pytest.mark.parametrize("address,public", [
    ("93.184.215.14", True), ("2606:4700::6810:85e5", True),
    ("127.0.0.1", False), ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.1.1", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False), ("224.0.0.1", False),
    ("::1", False), ("fe80::1", False), ("fc00::1", False), ("::ffff:127.0.0.1", False), ("::ffff:10.0.0.1", False),
])
def test_only_public_addresses_are_reachable(address: str, public: bool) -> None:
    from runner.egress import is_public

    assert is_public(address) is public


def _teredo(server: str, client: str) -> str:
    """A Teredo address (RFC 4380): prefix, server IPv4, flags, port, client IPv4 (both obfuscated)."""
    import ipaddress

    value = (0x20010000 << 96) | (int(ipaddress.IPv4Address(server)) << 64) | (0x8000 << 48) | (0xFFFF << 32)
    value |= ~int(ipaddress.IPv4Address(client)) & 0xFFFFFFFF
    return str(ipaddress.IPv6Address(value))


# Issue 17 (3): every IPv6 form that embeds or tunnels an IPv4 address is judged by that
# address (on an IPv6-only runner behind NAT64, `64:ff9b::a00:5` *is* 10.0.0.5).
EMBEDDED_IPV4_CASES = [
    # range, private example, public example
    ("IPv4-mapped ::ffff:0:0/96", "::ffff:10.0.0.5", "::ffff:8.8.8.8"),
    ("IPv4-translated ::ffff:0:0:0/96", "::ffff:0:a00:5", "::ffff:0:808:808"),
    ("NAT64 well-known 64:ff9b::/96", "64:ff9b::a00:5", "64:ff9b::808:808"),
    ("NAT64 well-known, metadata", "64:ff9b::a9fe:a9fe", "64:ff9b::5db8:d70e"),
    ("NAT64 local-use 64:ff9b:1::/48", "64:ff9b:1::a00:5", None),
    ("NAT64 local-use, /48 placement", "64:ff9b:1:a00:5::", None),
    ("NAT64 local-use, /64 placement", "64:ff9b:1:0:a:0:500::", None),
    ("6to4 2002::/16", "2002:a00:5::1", "2002:808:808::1"),
    ("6to4 loopback relay", "2002:7f00:1::1", None),
    ("IPv4-compatible ::/96", "::10.0.0.5", "::8.8.8.8"),
    ("IPv4-compatible loopback", "::127.0.0.1", None),
    ("Teredo 2001::/32, private client", _teredo("8.8.4.4", "10.0.0.5"), _teredo("8.8.4.4", "8.8.8.8")),
    ("Teredo 2001::/32, private server", _teredo("192.168.0.1", "8.8.8.8"), None),
]


@pytest.mark.parametrize(("label", "private", "public"), EMBEDDED_IPV4_CASES, ids=[c[0] for c in EMBEDDED_IPV4_CASES])
def test_ipv6_forms_embedding_ipv4_are_judged_by_the_ipv4_address(label: str, private: str,
                                                                   public: str | None) -> None:
    from runner.egress import is_public

    assert is_public(private) is False, private
    if public is not None:
        assert is_public(public) is True, public


@pytest.mark.parametrize("address", ["fec0::1", "fec0:0:0:1::5", "feff::1"])
def test_deprecated_site_local_is_private(address: str) -> None:
    from runner.egress import is_public

    assert is_public(address) is False


def test_egress_guard_blocks_internal_addresses_even_when_allowlisted(
        tmp_path, compiled_dir, keyring, demo_hash, http_server) -> None:  # type: ignore[no-untyped-def]
    """With default settings an allowlisted name or literal that resolves to loopback is
    refused at connect time (`not-allowed`), so a guest cannot reach internal services."""
    from tests.runner.conftest import make_runner

    guarded = make_runner(tmp_path, compiled_dir, keyring)
    try:
        port = http_server.rsplit(":", 1)[1]
        grant = [caps.HTTP_FETCH]
        for url, hosts in ((f"http://localhost:{port}/x", ["localhost"]),
                           (f"http://127.0.0.1:{port}/x", ["127.0.0.1"]),
                           (f"http://[::1]:{port}/x", ["::1"])):
            status, body = call(guarded, demo_hash, "/fetch", providers=grant, query={"url": url},
                                egress={"allowed_hosts": hosts})
            assert (status, body) == (502, {"error": "not-allowed"}), url
    finally:
        guarded.close()
