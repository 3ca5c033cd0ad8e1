"""The console in a real browser (Debian's chromium, headless, driven by Playwright) against a
real server running the demo guest: live log lines, filters and pause; refusals instead of
data; a denial's explanation; an inclusion proof checked in the browser; the log verified.

Every wait is on a condition (Playwright's `expect`), never a sleep."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.console.conftest import ConsoleEnv, screenshot, sign_in

pytestmark = pytest.mark.slow

expect: Any
try:
    from playwright.sync_api import expect as _expect

    _expect.set_options(timeout=15_000)
    expect = _expect
except ImportError:  # the browser fixture skips or fails with the reason
    expect = None


def lines(page: Any, rid: str, *, visible: bool = False) -> Any:
    loc = page.locator(f'#debug-log .logline[data-request-id="{rid}"]')
    return loc.filter(visible=True) if visible else loc


def open_debug_session(page: Any, env: ConsoleEnv, *, live: bool = True) -> None:
    expect(page.locator(f'#debug-install option[value="{env.install_id}"]')).to_have_count(1)
    page.select_option("#debug-install", env.install_id)
    page.fill("#debug-justification", "ticket #123: customer reports failing sync")
    page.click("#debug-open")
    if live:
        expect(page.locator("#debug-state")).to_have_text("live")


def test_live_lines_from_a_real_guest_with_filters_and_pause(page: Any, console_env: ConsoleEnv,
                                                             tmp_path: Path) -> None:
    env = console_env
    sign_in(page, env.tokens["operator"], "debug")
    open_debug_session(page, env)
    expect(page.locator("#debug-remaining")).to_have_text(re.compile(r"^\d+:\d\d$"))

    first = env.call("GET", "/log")
    second = env.call("GET", "/log")
    assert first.status_code == 200 and second.status_code == 200
    rid1, rid2 = first.headers["x-request-id"], second.headers["x-request-id"]
    expect(lines(page, rid1)).to_have_count(6)
    expect(lines(page, rid2)).to_have_count(6)
    # level and source colouring come from classes on each line
    error_line = page.locator(f'#debug-log .logline.level-error.source-log[data-request-id="{rid1}"] .msg')
    expect(error_line).to_have_text("error line")
    stderr_line = page.locator(f'#debug-log .logline.source-stderr[data-request-id="{rid1}"] .msg')
    expect(stderr_line).to_have_text("stderr line")
    expect(page.locator(f'#debug-log .logline.level-warn[data-request-id="{rid1}"]')).to_have_count(1)

    # a request-id filter hides the other request's lines (they stay in memory)
    page.fill("#filter-request", rid1)
    expect(lines(page, rid2, visible=True)).to_have_count(0)
    expect(lines(page, rid1, visible=True)).to_have_count(6)
    expect(page.locator("#debug-shown")).to_have_text("6")
    page.fill("#filter-text", "stdout line")
    expect(lines(page, rid1, visible=True)).to_have_count(2)
    page.select_option("#filter-level", "warn")
    page.fill("#filter-text", "")
    expect(lines(page, rid1, visible=True)).to_have_count(3)  # warn and error log calls, stderr (error)
    page.uncheck('#debug-filters input[value="log"]')
    expect(lines(page, rid1, visible=True).locator(".msg")).to_have_text(["stderr line"])
    page.click("#filter-reset")
    expect(lines(page, rid2, visible=True)).to_have_count(6)

    # pause: lines keep arriving but are held, then shown in order on resume
    page.click("#debug-pause")
    expect(page.locator("#debug-state")).to_have_text("live (paused)")
    third = env.call("GET", "/log")
    rid3 = third.headers["x-request-id"]
    expect(page.locator("#debug-held")).to_have_text("Paused — 6 new lines held")
    expect(lines(page, rid3)).to_have_count(0)
    page.click("#debug-pause")
    expect(lines(page, rid3)).to_have_count(6)
    expect(page.locator("#debug-count")).to_have_text("18")
    messages = lines(page, rid3).locator(".msg").all_inner_texts()
    assert messages.index("stdout line 1") < messages.index("stdout line 2")

    page.fill("#filter-request", rid1)
    screenshot(page, "console-debug", tmp_path)
    page.click("#debug-close")
    expect(page.locator("#debug-state")).to_have_text("closed")


def test_an_unauthorized_user_sees_refusals_not_data(page: Any, console_env: ConsoleEnv, tmp_path: Path) -> None:
    env = console_env
    env.call("GET", "/hello")  # there is data a viewer must not see
    env.flush_audit()
    sign_in(page, env.tokens["viewer"], "debug")
    expect(page.locator(f'#debug-install option[value="{env.install_id}"]')).to_have_count(1)
    page.fill("#debug-justification", "just looking")
    page.click("#debug-open")
    refusal = page.locator("#debug-refusal .banner.bad")
    expect(refusal).to_contain_text("Refused by policy")
    expect(refusal).to_contain_text("watch this install's live logs (debug.view)")
    expect(page.locator("#debug-state")).to_have_text("refused")
    expect(page.locator("#debug-log .logline")).to_have_count(0)
    screenshot(page, "console-refusal", tmp_path)

    page.click("#tab-decisions")
    expect(page.locator("#decisions-refusal .banner.bad")).to_contain_text("read the audit log (audit.read)")
    expect(page.locator("#decisions-table tbody tr")).to_have_count(0)

    page.click("#tab-audit")
    expect(page.locator("#audit-refusal .banner.bad")).to_contain_text("Refused by policy")
    expect(page.locator("#audit-table tbody tr")).to_have_count(0)
    page.click("#aud-verify")
    expect(page.locator("#verify-result .banner.bad")).to_contain_text("read the audit log")


def test_an_invalid_token_is_refused_at_sign_in(page: Any, console_env: ConsoleEnv) -> None:
    header, payload, _sig = console_env.tokens["admin"].split(".")
    page.goto("/console")
    page.fill("#token-input", f"{header}.{payload}.AAAA")
    page.click("#sign-in")
    expect(page.locator("#global-message .banner.bad")).to_contain_text("Your token was not accepted")
    expect(page.locator("#global-message .banner")).to_have_count(1)
    expect(page.locator("#identity")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0
    page.fill("#token-input", "not a token")
    page.click("#sign-in")
    expect(page.locator("#global-message .banner.bad")).to_contain_text("That is not a token")

    # signed in, then the server stops accepting the token (revoked, key rotated): signed out, forgotten
    sign_in(page, console_env.tokens["admin"])
    assert page.evaluate("sessionStorage.length") == 1
    page.route("**/api/audit/records?*", lambda route: route.fulfill(
        status=401, content_type="application/json", body='{"error": "unauthenticated"}'))
    page.click("#tab-audit")
    expect(page.locator("#global-message .banner.warn")).to_contain_text("no longer accepts your token")
    expect(page.locator("#view-signin")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_a_denials_explanation_names_the_policy(page: Any, console_env: ConsoleEnv, tmp_path: Path) -> None:
    env = console_env
    allowed = env.call("GET", "/hello")
    denied = env.call("POST", "/echo", content=b"hi")  # a viewer may not write
    undeclared = env.call("GET", "/not-declared")
    assert (allowed.status_code, denied.status_code, undeclared.status_code) == (200, 403, 404)
    env.flush_audit()

    sign_in(page, env.tokens["admin"], "decisions")
    row = page.locator(f'#decisions-table tr[data-request-id="{denied.headers["x-request-id"]}"]')
    expect(row).to_contain_text("deny")
    expect(row).to_contain_text("default deny")
    row.click()
    panel = page.locator("#explain-panel")
    expect(panel.locator(".headline")).to_have_text("Denied — no policy permits this request (default deny)")
    expect(panel.locator(".whynot")).to_contain_text("rbac.write")
    expect(panel.locator(".whynot")).to_contain_text(
        "Editors and admins of the install's tenant may call its write endpoints.")
    expect(panel.locator(".whynot .checks li.fail").first).to_contain_text("principal in")
    screenshot(page, "console-decisions", tmp_path)

    # explained as recorded: the revision and entity snapshot the record names, today's answer second
    expect(panel.locator(".recorded-revision")).to_contain_text("As decided: rules sha256:")
    expect(panel.locator(".today")).to_contain_text("Today it would be DENY")
    expect(panel.locator(".unavailable")).to_have_count(0)

    page.locator(f'#decisions-table tr[data-request-id="{undeclared.headers["x-request-id"]}"]').click()
    expect(panel.locator(".headline")).to_have_text(
        "Denied — forbidden by endpoint.undeclared: The installed version does not declare this endpoint.")
    expect(panel.locator(".determining")).to_contain_text("The installed version does not declare this endpoint.")

    page.locator(f'#decisions-table tr[data-request-id="{allowed.headers["x-request-id"]}"]').click()
    expect(panel.locator(".headline")).to_have_text("Allowed — permitted by rbac.read")

    # a record from before decision records named their snapshot: said so, then today's rules, labelled
    from audit.records import Actor, AuditEvent

    env.container.audit.append(AuditEvent(
        action="gateway.decision", outcome="deny", tenant_id="acme", request_id="before-snapshots",
        actor=Actor("victor-viewer", tenant="acme", roles=("viewer",)),
        resource=f"install:{env.install_id}/endpoint:POST /echo", policy_ids=(),
        policy_revision=env.container.policy.revision,
        details={"method": "POST", "path": "/echo", "extension": env.slug, "reasons": []}))
    page.click("#dec-search")
    page.locator('#decisions-table tr[data-request-id="before-snapshots"]').click()
    expect(panel.locator(".unavailable")).to_contain_text("The exact explanation is unavailable")
    expect(panel.locator(".today-label")).to_have_text("Re-evaluated with today's rules")
    expect(panel.locator(".headline")).to_have_text("Denied — no policy permits this request (default deny)")

    page.select_option("#dec-outcome", "deny")
    page.click("#dec-search")
    expect(page.locator('#decisions-table tr[data-outcome="allow"]')).to_have_count(0)
    expect(page.locator('#decisions-table tr[data-outcome="deny"]').first).to_be_visible()

    # "why can't I watch the logs?": a refused debug session, explained
    refused = httpx.post(f"{env.url}/api/ext-debug/sessions", headers=env.auth("viewer"), timeout=15,
                         json={"extension": env.slug, "justification": "want to see"})
    assert refused.status_code == 403
    env.flush_audit()
    page.select_option("#dec-kind", "debug_session.deny")
    page.fill("#dec-actor", "victor-viewer")
    page.click("#dec-search")
    # debug_session.deny records carry no request id (service/debug/sessions.py): newest first
    page.locator("#decisions-table tbody tr").first.click()
    expect(panel.locator(".headline")).to_have_text("Denied — no policy permits this request (default deny)")
    expect(panel.locator(".whynot")).to_contain_text("debug.tenant-operator")
    expect(panel.locator(".whynot")).to_contain_text("Operators of the install's tenant may watch its debug stream.")


def _view_a_debug_stream(env: ConsoleEnv) -> None:
    """Open a debug session over the API and read until it starts (audits debug_session.start)."""
    opened = httpx.post(f"{env.url}/api/ext-debug/sessions", headers=env.auth("operator"), timeout=15,
                        json={"extension": env.slug, "justification": "incident INC-7 follow-up"})
    assert opened.status_code == 201, opened.text
    with httpx.Client(timeout=15) as client, client.stream("GET", env.url + opened.json()["stream_url"]) as resp:
        for line in resp.iter_lines():
            if "session_started" in line:
                break


def test_audit_records_proof_checked_in_browser_and_log_verified(page: Any, console_env: ConsoleEnv,
                                                                 tmp_path: Path) -> None:
    env = console_env
    call = env.call("GET", "/hello")
    _view_a_debug_stream(env)
    size = env.checkpoint()
    assert size > 0

    sign_in(page, env.tokens["admin"], "audit")
    expect(page.locator("#audit-table tbody tr").first).to_be_visible()

    # "who viewed this tenant's logs?"
    page.click("#aud-preset-debug")
    viewing = page.locator('#audit-table tr[data-action="debug_session.start"]').first
    expect(viewing).to_contain_text("olivia-operator")
    expect(page.locator('#audit-table tbody tr:not([data-action^="debug_session."])')).to_have_count(0)

    page.fill("#aud-action", "gateway.decision")
    page.fill("#aud-request", call.headers["x-request-id"])
    page.click("#aud-search")
    expect(page.locator("#audit-table tbody tr")).to_have_count(1)
    page.locator("#audit-table tbody tr").click()
    expect(page.locator("#record-panel pre")).to_contain_text(call.headers["x-request-id"])
    page.click("#proof-check")
    result = page.locator('#record-panel [data-proof="true"]')
    expect(result).to_contain_text(f"in the signed log of {size} records")
    expect(result).to_contain_text("Verified in this browser")
    steps = page.locator("#record-panel .steps li")
    expect(steps.filter(has_text="Checkpoint signature verified in this browser (Ed25519")).to_have_count(1)
    expect(steps.filter(has_text="Merkle path (RFC 6962) leads to the signed root")).to_have_count(1)
    expect(page.locator("#record-panel .steps li.fail")).to_have_count(0)

    page.click("#aud-verify")
    verdict = page.locator('#verify-result [data-status="ok"]')
    expect(verdict).to_contain_text("The audit log verifies")
    screenshot(page, "console-audit", tmp_path)


# --- stream events, deterministic: the stream response is replaced, the sessions are real -----

def _wait_for(page: Any, condition: Any, timeout_s: float = 15.0) -> None:
    """Let the page (and Playwright's route handlers) run until `condition()` holds."""
    import time

    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        page.wait_for_timeout(50)  # pumps Playwright's event loop; not an assertion


def _sse(event: str, data: dict[str, Any], entry_id: str | None = None) -> str:
    head = f"event: {event}\r\n" + (f"id: {entry_id}\r\n" if entry_id else "")
    return head + f"data: {json.dumps(data)}\r\n\r\n"


def _log(entry_id: str, message: str, **extra: Any) -> str:
    data = {"v": 1, "ts": "2026-11-25T10:00:00.123Z", "level": "info", "source": "stdout", "message": message,
            "request_id": "req-canned", "truncated": False, "dropped": 0, "redacted": 0, "backfill": False, **extra}
    return _sse("log", data, entry_id)


def test_stream_events_become_banners_and_a_dropped_connection_resumes(page: Any, console_env: ConsoleEnv,
                                                                        tmp_path: Path) -> None:
    env = console_env
    seen_resume: list[str | None] = []
    started = {"code": "session_started", "session_id": "s", "tenant": "acme", "extension": env.extension_id,
               "install": env.install_id, "max_duration_s": 90}

    pending: list[Any] = []

    def stream(route: Any) -> None:
        seen_resume.append(route.request.headers.get("last-event-id"))
        if len(seen_resume) == 1:
            # no `end`: the connection just drops, as when a proxy or a replica goes away
            body = (_sse("info", started) + _log("5-0", "<b>not markup</b>")
                    + _sse("gap", {"reason": "trimmed", "requested_after": "1-0", "oldest_available": "4-0"})
                    + _sse("gap", {"reason": "slow_viewer", "dropped": 2})
                    + _sse("gap", {"reason": "slow_viewer", "dropped": 3})
                    + _sse("warning", {"code": "redis_unavailable"}) + ": ping\r\n\r\n")
            route.fulfill(status=200, headers={"content-type": "text/event-stream"}, body=body)
        else:
            pending.append(route)  # answered by the test, once it has seen the outage banner

    page.route("**/api/ext-debug/stream?*", stream)
    sign_in(page, env.tokens["operator"], "debug")
    open_debug_session(page, env, live=False)
    banners = page.locator("#debug-banners")
    expect(banners.locator('[data-code="redis_unavailable"]')).to_contain_text(
        "Redis unavailable — lines are buffered on the runner")
    expect(banners.locator('[data-code="gap-trimmed"]')).to_contain_text("Some lines may be missing")
    expect(banners.locator('[data-code="gap-slow"]')).to_have_count(1)
    expect(banners.locator('[data-code="gap-slow"]')).to_contain_text("5 lines were skipped")
    expect(banners.locator('[data-code="reconnecting"]')).to_contain_text("Connection lost — reconnecting")
    # data is text, never markup
    expect(page.locator("#debug-log .logline .msg").first).to_have_text("<b>not markup</b>")
    assert page.locator("#debug-log b").count() == 0
    screenshot(page, "console-debug-events", tmp_path)

    # the connection dropped without `end`: a new session resumes after the last line seen
    _wait_for(page, lambda: len(pending) == 1)
    pending[0].fulfill(status=200, headers={"content-type": "text/event-stream"}, body=(
        _sse("info", started) + _sse("info", {"code": "redis_recovered"})
        + _log("7-0", "written during the outage", backfill=True, redacted=1, level="error", source="stderr")
        + _sse("end", {"reason": "max_duration"})))
    expect(banners.locator('[data-code="redis_recovered"]')).to_contain_text("Redis is back")
    expect(banners.locator('[data-code="redis_unavailable"]')).to_have_count(0)
    expect(banners.locator('[data-code="reconnected"]')).to_be_visible()
    expect(banners.locator('[data-code="reconnecting"]')).to_have_count(0)
    late = page.locator("#debug-log .logline.level-error.source-stderr")
    expect(late.locator(".flag")).to_have_text(["1 masked", "late"])
    expect(banners.locator('[data-code="end-max_duration"]')).to_contain_text("Session time is up")
    expect(page.locator("#debug-state")).to_have_text("ended")
    markers = page.locator("#debug-log .marker")
    expect(markers.filter(has_text="lines skipped (this view fell behind)")).to_have_count(2)
    expect(markers.filter(has_text="stream store unavailable")).to_have_count(1)
    assert seen_resume == [None, "5-0"]


# --- the browser's proof code against the Python implementation --------------------------------

# Runs in the page: the console's merkle.js against vectors made by audit.merkle / audit.note.
MERKLE_CHECK_JS = """async ([cases, big, note, pub, stranger]) => {
    const m = await import('/console/assets/merkle.js');
    const fails = [];
    for (const c of cases) {
      const leaf = await m.leafHash(c.record);
      const path = c.path.map(m.hexToBytes);
      const root = m.hexToBytes(c.root);
      const edited = await m.leafHash(c.record + ' ');
      const moved = (c.index + 1) % c.size;
      if (!(await m.verifyInclusion(leaf, c.index, c.size, path, root))) fails.push(['ok', c.index, c.size]);
      if (await m.verifyInclusion(edited, c.index, c.size, path, root)) fails.push(['edited', c.index, c.size]);
      if (c.size > 1 && await m.verifyInclusion(leaf, moved, c.size, path, root)) fails.push(['moved', c.index]);
    }
    const bigOk = await m.verifyInclusion(await m.leafHash(big.record), big.index, big.size,
                                          big.path.map(m.hexToBytes), m.hexToBytes(big.root));
    const parsed = m.parseCheckpoint(note);
    const keys = [{name: 'extgate.test/audit', public_key: pub}];
    const valid = await m.verifyNote(parsed, keys);
    const forged = await m.verifyNote(m.parseCheckpoint(note.replace('\\n13\\n', '\\n14\\n')), keys);
    const untrusted = await m.verifyNote(parsed, [{name: 'extgate.test/audit', public_key: stranger}]);
    const kid = m.bytesToHex(await m.keyId('extgate.test/audit', m.base64ToBytes(pub)));
    return {fails, bigOk, valid, forged: forged.status, untrusted: untrusted.status, kid,
            size: String(parsed.size), root: m.bytesToHex(parsed.root)};
  }"""


def test_browser_merkle_and_checkpoint_code_matches_python(page: Any, console_env: ConsoleEnv) -> None:
    import base64
    import hashlib

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from audit.merkle import inclusion_proof, leaf_hash, node_hash, root_of
    from audit.note import Checkpoint, NoteSigner, key_id

    records = [json.dumps({"seq": i, "msg": f"record {i} ✓"}, ensure_ascii=False) for i in range(13)]
    leaves = [leaf_hash(r.encode()) for r in records]
    cases = []
    for size in range(1, len(leaves) + 1):
        root = root_of(leaves, 0, size)
        for index in range(size):
            cases.append({"record": records[index], "index": index, "size": size,
                          "path": [p.hex() for p in inclusion_proof(leaves, index, size)], "root": root.hex()})
    # beyond 32 bits: the last leaf of a tree of 2**33 + 1 leaves has a one-step path
    left = hashlib.sha256(b"left").digest()
    big_leaf = leaf_hash(b"{}")
    big = {"record": "{}", "index": 2**33, "size": 2**33 + 1, "path": [left.hex()],
           "root": node_hash(left, big_leaf).hex()}
    signer = NoteSigner("extgate.test/audit", Ed25519PrivateKey.generate())
    note = Checkpoint("extgate.test/audit", 13, root_of(leaves)).sign([signer])
    pub = base64.b64encode(signer.verifier.public_key).decode()
    stranger = base64.b64encode(NoteSigner("extgate.test/audit", Ed25519PrivateKey.generate())
                                .verifier.public_key).decode()

    page.goto("/console")  # same origin, secure context (127.0.0.1)
    result = page.evaluate(MERKLE_CHECK_JS, [cases, big, note, pub, stranger])
    assert result["fails"] == []
    assert result["bigOk"] is True
    assert result["valid"]["status"] == "valid"
    assert result["forged"] == "bad_signature" and result["untrusted"] == "untrusted"
    assert result["kid"] == key_id("extgate.test/audit", signer.verifier.public_key).hex()
    assert result["size"] == "13" and result["root"] == root_of(leaves).hex()


def test_a_platform_admin_chooses_the_tenant_and_cross_tenant_viewing_is_audited(page: Any,
                                                                                console_env: ConsoleEnv) -> None:
    env = console_env
    denied = env.call("POST", "/echo", content=b"x")
    env.flush_audit()
    sign_in(page, env.tokens["platform"])
    expect(page.locator("#scope-field")).to_be_visible()  # only platform admins choose a tenant
    page.fill("#scope-tenant", "acme")
    page.dispatch_event("#scope-tenant", "change")

    page.click("#tab-decisions")
    page.locator(f'#decisions-table tr[data-request-id="{denied.headers["x-request-id"]}"]').click()
    expect(page.locator("#explain-panel .whynot")).to_contain_text("rbac.write")

    # another tenant's stream: the console names the tenant in the request; the policy wants a justification
    page.click("#tab-debug")
    expect(page.locator(f'#debug-install option[value="{env.install_id}"]')).to_have_count(1)
    page.fill("#debug-justification", "short")
    page.click("#debug-open")
    expect(page.locator("#debug-refusal .banner.bad")).to_contain_text("debug.view")
    open_debug_session(page, env)  # with a real justification
    page.click("#debug-close")
    expect(page.locator("#debug-state")).to_have_text("closed")

    page.fill("#scope-tenant", "*")
    page.dispatch_event("#scope-tenant", "change")
    page.click("#tab-audit")
    page.fill("#aud-action", "debug_session.start")
    page.fill("#aud-actor", "root-1")
    page.click("#aud-search")
    row = page.locator("#audit-table tbody tr").first
    expect(row).to_contain_text("acme")
    row.click()
    expect(page.locator("#record-panel pre")).to_contain_text('"cross_tenant": true')
    expect(page.locator("#record-panel pre")).to_contain_text("ticket #123: customer reports failing sync")
