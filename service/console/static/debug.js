// Debug view: pick an install, open an audited session, watch live lines over SSE.
//
// Lines are kept in memory (up to MAX_LINES) and filtered in the browser, so changing a
// filter never loses anything. Pausing keeps reading the stream and holds new lines until
// "Resume". A dropped connection (no `end` event) is resumed with a new session and
// Last-Event-ID, so no line the server still has is lost.

import { api, ApiError, describeError } from './api.js';
import { $, banner, fill, h, shortId } from './dom.js';
import { readEvents } from './sse.js';

const LEVELS = ['debug', 'info', 'warn', 'error'];
const MAX_LINES = 20000;
const RETRY_DELAYS_S = [1, 2, 4, 8, 16];

const END_TEXT = {
  max_duration: ['Session time is up', 'The session reached its maximum duration. Open a new session to keep watching.'],
  revoked: ['Access was revoked', 'The policy no longer allows you to watch this install (a role, the install\'s cap:debug.logs grant or the install itself changed). The session is closed.'],
  error: ['The server ended the session', 'Something failed on the server. Open a new session to continue.'],
  client_closed: ['Session closed', 'You closed the session.'],
  permission_changed: ['Access was revoked', 'Your permissions changed. The session is closed.'],
  idle_timeout: ['Session ended', 'The session was idle for too long. Open a new session to continue.'],
  server_shutdown: ['The server is restarting', 'Open a new session in a moment to continue.'],
};

export function describeStreamEvent(kind, data) {
  if (kind === 'gap' && data.reason === 'trimmed') {
    return {
      kind: 'warn', code: 'gap-trimmed', title: 'Some lines may be missing',
      text: 'The stream no longer holds the lines after the point this view resumed from: they were trimmed or expired ' +
        `while you were disconnected${data.oldest_available ? ` (oldest line still available: ${data.oldest_available})` : ''}.`,
    };
  }
  if (kind === 'gap' && data.reason === 'slow_viewer') {
    const n = Number(data.dropped) || 0;
    return {
      kind: 'warn', code: 'gap-slow', title: `${n} line${n === 1 ? ' was' : 's were'} skipped`,
      text: 'This view fell behind the stream, so the server discarded its oldest queued lines. Other viewers are not affected.',
    };
  }
  if (kind === 'gap') return { kind: 'warn', code: 'gap', title: 'Some lines may be missing', text: String(data.reason || '') };
  if (kind === 'warning' && data.code === 'redis_unavailable') {
    return {
      kind: 'warn', code: 'redis_unavailable', title: 'Redis unavailable — lines are buffered on the runner',
      text: 'The debug stream store cannot be read right now. The session stays open, extension calls keep working, ' +
        'and the lines buffered meanwhile appear here (marked "late") when it recovers.',
    };
  }
  if (kind === 'warning') return { kind: 'warn', code: String(data.code || 'warning'), title: 'Warning', text: String(data.message || data.code || '') };
  if (kind === 'info' && data.code === 'redis_recovered') {
    return {
      kind: 'ok', code: 'redis_recovered', title: 'Redis is back',
      text: 'Reading again. Lines buffered during the outage follow, marked "late".',
    };
  }
  if (kind === 'end') {
    const [title, text] = END_TEXT[data.reason] || ['Session ended', `The server ended the session (${data.reason}).`];
    return { kind: data.reason === 'error' || data.reason === 'revoked' ? 'bad' : 'info', code: `end-${data.reason}`, title, text, dismissible: false };
  }
  return null;
}

function formatTime(ts) {
  const m = /T(\d\d:\d\d:\d\d(?:\.\d{1,3})?)/.exec(String(ts || ''));
  return m ? m[1] : String(ts || '');
}

function formatRemaining(s) {
  if (s <= 0) return '0:00';
  const m = Math.floor(s / 60);
  return `${m}:${String(Math.floor(s % 60)).padStart(2, '0')}`;
}

export function createDebugView(ctx) {
  const els = {
    form: $('debug-form'), install: $('debug-install'), extField: $('debug-ext-field'), extension: $('debug-extension'),
    justification: $('debug-justification'), open: $('debug-open'), close: $('debug-close'), reload: $('debug-reload'),
    refusal: $('debug-refusal'), state: $('debug-state'), remaining: $('debug-remaining'), count: $('debug-count'),
    shown: $('debug-shown'), held: $('debug-held'), pause: $('debug-pause'), clear: $('debug-clear'),
    follow: $('debug-follow'), banners: $('debug-banners'), log: $('debug-log'),
    fRequest: $('filter-request'), fLevel: $('filter-level'), fText: $('filter-text'), fReset: $('filter-reset'),
    fForm: $('debug-filters'),
  };
  let installs = [];
  let loaded = false;
  /** @type {{abort: AbortController, params: any, lastId: string|null, ended: boolean, startedAt: number, maxS: number}|null} */
  let session = null;
  let timer = null;
  let paused = false;
  let held = [];
  let lines = []; // {data, el}
  let shown = 0;

  // --- filters -----------------------------------------------------------------------
  function filters() {
    const sources = new Set([...els.fForm.querySelectorAll('input[name="source"]:checked')].map((i) => i.value));
    return {
      request: els.fRequest.value.trim(),
      level: LEVELS.indexOf(els.fLevel.value),
      sources,
      text: els.fText.value.trim().toLowerCase(),
    };
  }

  function matches(data, f) {
    if (f.request && !String(data.request_id || '').startsWith(f.request)) return false;
    const lvl = LEVELS.indexOf(data.level);
    if (f.level > 0 && (lvl < 0 ? 0 : lvl) < f.level) return false;
    if (!f.sources.has(String(data.source))) return false;
    if (f.text && !String(data.message || '').toLowerCase().includes(f.text)) return false;
    return true;
  }

  function applyFilters() {
    const f = filters();
    shown = 0;
    for (const line of lines) {
      if (!line.el) continue;
      line.el.hidden = !matches(line.data, f);
      if (!line.el.hidden) shown += 1;
    }
    updateCounts();
  }

  function updateCounts() {
    els.count.textContent = String(lines.length);
    els.shown.textContent = String(shown);
    els.held.hidden = !paused;
    els.held.textContent = paused ? `Paused — ${held.length} new line${held.length === 1 ? '' : 's'} held` : '';
  }

  // --- rendering -------------------------------------------------------------------------
  function lineElement(data) {
    const level = LEVELS.includes(data.level) ? data.level : 'info';
    const source = ['stdout', 'stderr', 'log', 'system'].includes(data.source) ? data.source : 'system';
    const flags = [];
    if (data.truncated) flags.push(h('span', { class: 'flag', title: 'the line was cut at the size limit' }, 'cut'));
    if (data.dropped) flags.push(h('span', { class: 'flag', title: 'lines dropped just before this one (rate limit or full queue)' }, `${data.dropped} dropped before`));
    if (data.redacted) flags.push(h('span', { class: 'flag', title: 'secret values masked in this line' }, `${data.redacted} masked`));
    if (data.backfill) flags.push(h('span', { class: 'flag', title: 'written late, after a Redis outage' }, 'late'));
    const rid = data.request_id ? String(data.request_id) : '';
    return h('div', {
      class: `logline level-${level} source-${source}`,
      dataset: { requestId: rid, level, source },
    },
    h('span', { class: 'ts', title: String(data.ts || '') }, formatTime(data.ts)),
    h('span', { class: 'level' }, level),
    h('span', { class: 'source' }, source),
    rid ? h('button', { type: 'button', class: 'rid', title: `request ${rid} — click to show only this request`, onclick: () => { els.fRequest.value = rid; applyFilters(); } }, shortId(rid, 8)) : h('span', { class: 'rid' }),
    h('span', { class: 'msg' }, String(data.message ?? ''), flags.length ? h('span', { class: 'flags' }, flags) : null));
  }

  function render(batch) {
    if (!batch.length) return;
    const f = filters();
    const stick = els.follow.checked;
    const frag = document.createDocumentFragment();
    for (const line of batch) {
      line.el = lineElement(line.data);
      line.el.hidden = !matches(line.data, f);
      if (!line.el.hidden) shown += 1;
      frag.append(line.el);
    }
    els.log.append(frag);
    while (lines.length > MAX_LINES) {
      const old = lines.shift();
      if (old.el) {
        if (!old.el.hidden) shown -= 1;
        old.el.remove();
      }
    }
    if (stick) els.log.scrollTop = els.log.scrollHeight;
    updateCounts();
  }

  function addLine(data) {
    const line = { data, el: null };
    lines.push(line);
    if (paused) held.push(line);
    else render([line]);
    updateCounts();
  }

  function marker(text) {
    els.log.append(h('div', { class: 'logline marker' }, `— ${text} —`));
  }

  function setPaused(value) {
    paused = value;
    els.pause.textContent = paused ? 'Resume' : 'Pause';
    if (session && session.startedAt && !session.ended) setState(paused ? 'live (paused)' : 'live');
    if (!paused) {
      const batch = held;
      held = [];
      render(batch);
      if (!session || session.ended) els.pause.disabled = true;
    }
    updateCounts();
  }

  // One banner per kind of event (the newest wins), so a long session does not pile them up;
  // where in the stream it happened is marked in the log itself.
  const SUPERSEDES = { redis_recovered: ['redis_unavailable'], reconnected: ['reconnecting'] };
  let skipped = 0;

  function note(spec) {
    if (!spec) return;
    for (const code of [spec.code, ...(SUPERSEDES[spec.code] || [])]) {
      for (const old of els.banners.querySelectorAll('.banner')) if (old.dataset.code === code) old.remove();
    }
    els.banners.append(banner(spec));
  }

  function setState(text) {
    els.state.textContent = text;
  }

  // --- installs ----------------------------------------------------------------------------
  async function loadInstalls() {
    fill(els.refusal);
    const tenant = ctx.scopeTenant();
    fill(els.install, h('option', { value: '' }, 'loading…'));
    try {
      const [list, extensions] = await Promise.all([
        api(`/api/admin/tenants/${encodeURIComponent(tenant)}/installs`),
        api('/api/admin/extensions').catch(() => []),
      ]);
      const slugs = new Map(extensions.map((e) => [e.id, e.slug]));
      installs = list.map((i) => ({ ...i, slug: slugs.get(i.extension_id) || i.extension_id }));
      els.extField.hidden = installs.length > 0;
      if (!installs.length) {
        fill(els.install, h('option', { value: '' }, 'no installs'));
      } else {
        fill(els.install, installs.map((i) => {
          const notes = [];
          if (!(i.enabled && i.status === 'enabled')) notes.push('disabled');
          if (!i.granted_capabilities.includes('cap:debug.logs')) notes.push('no cap:debug.logs');
          return h('option', { value: i.id }, `${i.slug} — install ${shortId(i.id, 8)}${notes.length ? ` (${notes.join(', ')})` : ''}`);
        }));
      }
    } catch (err) {
      installs = [];
      fill(els.install, h('option', { value: '' }, 'type an extension →'));
      els.extField.hidden = false;
      if (!(err instanceof ApiError && err.status === 401)) {
        const spec = describeError(err);
        els.refusal.append(banner({ ...spec, kind: 'warn', title: `Installs cannot be listed: ${spec.title.toLowerCase()}`, text: `${spec.text} You can still type an extension slug or id.` }));
      }
    }
    loaded = true;
  }

  // --- sessions -----------------------------------------------------------------------------
  function sessionParams() {
    const chosen = installs.find((i) => i.id === els.install.value);
    const body = chosen
      ? { extension: chosen.extension_id, install: chosen.id }
      : { extension: els.extension.value.trim() };
    const justification = els.justification.value.trim();
    if (justification) body.justification = justification;
    const tenant = ctx.scopeTenant();
    if (ctx.claims && tenant !== ctx.claims.tenant) body.tenant = tenant;
    return body;
  }

  async function openSession(event) {
    event.preventDefault();
    const params = sessionParams();
    if (!params.extension) {
      els.refusal.append(banner({ kind: 'warn', title: 'Choose an install', text: 'Pick an install (or type an extension) first.', code: 'no_install' }));
      return;
    }
    closeSession('replaced', false);
    fill(els.refusal);
    fill(els.banners);
    skipped = 0;
    session = { abort: new AbortController(), params, lastId: null, ended: false, startedAt: 0, maxS: 0 };
    els.open.disabled = true;
    els.close.disabled = false;
    els.pause.disabled = false;
    setState('connecting…');
    run(session);
  }

  async function run(s) {
    let attempt = 0;
    let connected = false;
    while (!s.ended && !s.abort.signal.aborted) {
      let refused = null;
      try {
        const opened = await api('/api/ext-debug/sessions', { method: 'POST', body: s.params, signal: s.abort.signal });
        const url = String(opened.stream_url || '');
        if (!url.startsWith('/api/ext-debug/stream?')) throw new Error('unexpected stream URL');
        const headers = { accept: 'text/event-stream' };
        if (s.lastId) headers['last-event-id'] = s.lastId;
        const resp = await fetch(url, { headers, credentials: 'omit', cache: 'no-store', redirect: 'error', signal: s.abort.signal });
        if (!resp.ok) {
          let data = null;
          try { data = await resp.json(); } catch { data = null; }
          throw new ApiError(resp.status, data && data.error || `http_${resp.status}`, data && data.detail, resp.headers.get('x-request-id'));
        }
        if (attempt > 0) note({ kind: 'ok', code: 'reconnected', title: 'Reconnected', text: s.lastId ? 'Resumed right after the last line received: nothing the server still holds was missed.' : 'Watching again.' });
        attempt = 0;
        connected = true;
        for await (const ev of readEvents(resp.body)) {
          if (s !== session) return;
          handle(s, ev);
          if (s.ended) break;
        }
      } catch (err) {
        if (s.abort.signal.aborted || (err && err.name === 'AbortError')) return;
        // Before the first connection every failure is reported as it is; afterwards only
        // refusals are final and anything else (network, 5xx) is retried.
        if (!connected || (err instanceof ApiError && [401, 403, 404, 422].includes(err.status))) refused = err;
        else if (!(err instanceof ApiError) && !(err instanceof TypeError)) refused = err;
      }
      if (s.ended || s.abort.signal.aborted) return;
      if (refused) {
        if (!(refused instanceof ApiError && refused.status === 401 && refused.code === 'unauthenticated')) {
          els.refusal.append(banner({ ...describeError(refused), dismissible: true }));
        }
        finish(s, 'refused');
        return;
      }
      if (attempt >= RETRY_DELAYS_S.length) {
        note({ kind: 'bad', code: 'disconnected', title: 'Connection lost', text: 'The stream could not be resumed. Open a new session to continue.', dismissible: false });
        finish(s, 'disconnected');
        return;
      }
      const delay = RETRY_DELAYS_S[attempt++];
      setState(`reconnecting in ${delay} s…`);
      note({ kind: 'warn', code: 'reconnecting', title: 'Connection lost — reconnecting', text: `Trying again in ${delay} s with a new session; the stream resumes after the last line received.` });
      await new Promise((resolve) => setTimeout(resolve, delay * 1000));
    }
  }

  function handle(s, ev) {
    let data = {};
    try { data = JSON.parse(ev.data); } catch { return; }
    if (!data || typeof data !== 'object') return;
    if (ev.event === 'log') {
      if (ev.id) s.lastId = ev.id;
      addLine(data);
      return;
    }
    if (ev.event === 'info' && data.code === 'session_started') {
      s.startedAt = Date.now();
      s.maxS = Number(data.max_duration_s) || 0;
      setState(paused ? 'live (paused)' : 'live');
      marker(`session started · ${data.tenant} / ${shortId(data.install, 12)} · recorded in the audit log`);
      tick();
      clearInterval(timer);
      timer = setInterval(tick, 1000);
      return;
    }
    if (ev.event === 'gap' && data.reason === 'slow_viewer') {
      skipped += Number(data.dropped) || 0;
      marker(`${Number(data.dropped) || 0} lines skipped (this view fell behind)`);
      note(describeStreamEvent('gap', { reason: 'slow_viewer', dropped: skipped }));
      return;
    }
    const spec = describeStreamEvent(ev.event, data);
    if (ev.event === 'gap') marker('lines may be missing here');
    if (ev.event === 'warning') marker('stream store unavailable');
    if (ev.event === 'info' && data.code === 'redis_recovered') marker('stream store recovered');
    if (ev.event === 'end') {
      note(spec);
      marker(`session ended: ${data.reason}`);
      finish(s, 'ended');
      return;
    }
    note(spec);
  }

  function tick() {
    if (!session || !session.startedAt) { els.remaining.textContent = '–'; return; }
    const left = session.maxS - (Date.now() - session.startedAt) / 1000;
    els.remaining.textContent = formatRemaining(left);
    els.remaining.classList.toggle('remaining-low', left < 60);
  }

  function finish(s, state) {
    s.ended = true;
    if (s === session) {
      clearInterval(timer);
      timer = null;
      els.remaining.textContent = '–';
      els.open.disabled = false;
      els.close.disabled = true;
      if (!paused) els.pause.disabled = true; // still needed to resume held lines
      setState(state);
    }
  }

  function closeSession(state = 'closed', announce = true) {
    if (!session) return;
    const s = session;
    s.abort.abort();
    finish(s, state);
    if (announce) marker('session closed');
    session = null;
  }

  // --- wiring ------------------------------------------------------------------------------
  els.form.addEventListener('submit', openSession);
  els.close.addEventListener('click', () => closeSession());
  els.reload.addEventListener('click', () => loadInstalls());
  els.pause.addEventListener('click', () => setPaused(!paused));
  els.clear.addEventListener('click', () => {
    lines = []; held = []; shown = 0; els.log.replaceChildren(); updateCounts();
  });
  els.fForm.addEventListener('input', applyFilters);
  els.fForm.addEventListener('change', applyFilters);
  els.fForm.addEventListener('submit', (e) => e.preventDefault());
  els.fReset.addEventListener('click', () => { els.fForm.reset(); applyFilters(); });
  ctx.onScopeChange(() => { if (loaded) loadInstalls(); });

  return {
    show() { if (!loaded) loadInstalls(); },
    reset() {
      closeSession('no session', false);
      installs = []; loaded = false; lines = []; held = []; shown = 0; paused = false;
      els.pause.textContent = 'Pause';
      els.pause.disabled = true;
      els.log.replaceChildren();
      fill(els.banners); fill(els.refusal); fill(els.install);
      els.justification.value = '';
      setState('no session');
      updateCounts();
    },
  };
}
