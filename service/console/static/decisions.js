// Decisions view: the tenant's recent gateway decisions (audit records), and for one of
// them the policy explanation (why / why not) from POST /api/policy/explain.

import { api, describeError } from './api.js';
import { $, banner, fill, h, isoFromMicros, shortId } from './dom.js';
import { explainRequestFor, parseResource, renderExplanation, renderRecordedExplanation } from './explain.js';

const PAGE = 50;

export function createDecisionsView(ctx) {
  const els = {
    form: $('decisions-form'), kind: $('dec-kind'), outcome: $('dec-outcome'), actor: $('dec-actor'),
    request: $('dec-request'), since: $('dec-since'), refusal: $('decisions-refusal'),
    body: document.querySelector('#decisions-table tbody'), empty: $('decisions-empty'), more: $('decisions-more'),
    panel: $('explain-panel'),
  };
  let loaded = false;
  let cursor = null;
  let query = null;
  let registry = null; // {installs: Map, versions: Map} for the scope tenant
  let generation = 0;

  function describeRequest(record) {
    const res = parseResource(record.resource);
    const d = record.details || {};
    if (res.kind === 'endpoint') {
      const target = d.path ? `${res.method} ${d.path}` : `${res.method} ${res.template}`;
      return [h('div', { class: 'mono' }, target), h('div', { class: 'muted' }, `${d.extension || ''} · install ${shortId(res.installId)}`)];
    }
    if (res.kind === 'debug') return [h('div', null, 'open debug stream'), h('div', { class: 'muted' }, `install ${shortId(res.installId)}`)];
    return [h('div', { class: 'mono' }, String(record.resource || d.extension || '')), d.error ? h('div', { class: 'muted' }, d.error) : null];
  }

  function determiningCell(record) {
    const ids = record.policy_ids || [];
    const d = record.details || {};
    if (ids.length) return ids.map((id) => h('div', { class: 'policy' }, id));
    if (record.outcome === 'deny' && d.error) return h('span', { class: 'muted' }, `before policy: ${d.error}`);
    if (record.outcome === 'deny') return h('span', { class: 'muted' }, 'default deny (no permit)');
    return h('span', { class: 'muted' }, '—');
  }

  function row(item) {
    const r = item.record;
    const actor = r.actor || {};
    const tr = h('tr', { tabindex: '0', dataset: { seq: item.seq, outcome: r.outcome, requestId: r.request_id || '' } },
      h('td', null, isoFromMicros(r.ts)),
      h('td', null, h('span', { class: `outcome outcome-${r.outcome === 'allow' ? 'allow' : r.outcome === 'deny' ? 'deny' : 'other'}` }, r.outcome)),
      h('td', null, h('div', null, String(actor.id || '')), h('div', { class: 'muted' }, (actor.roles || []).join(', '))),
      h('td', null, describeRequest(r)),
      h('td', null, determiningCell(r)));
    const choose = () => {
      for (const other of els.body.querySelectorAll('tr.selected')) other.classList.remove('selected');
      tr.classList.add('selected');
      explain(r);
    };
    tr.addEventListener('click', choose);
    tr.addEventListener('keydown', (e) => { if (e.key === 'Enter') choose(); });
    return tr;
  }

  async function search(append = false) {
    const gen = ++generation;
    fill(els.refusal);
    if (!append) {
      cursor = null;
      query = {
        tenant: ctx.scopeTenant(),
        action: els.kind.value,
        outcome: els.outcome.value,
        actor: els.actor.value,
        request_id: els.request.value,
        since: els.since.value,
        limit: PAGE,
      };
      fill(els.body);
      els.empty.hidden = true;
      fill(els.panel, h('p', { class: 'muted' }, 'Choose a decision to see why it was made.'));
    }
    try {
      const page = await api('/api/audit/records', { query: { ...query, cursor } });
      if (gen !== generation) return;
      els.body.append(...page.records.map(row));
      cursor = page.next_cursor || null;
      els.more.hidden = !cursor;
      els.empty.hidden = els.body.children.length > 0;
    } catch (err) {
      if (gen !== generation) return;
      els.more.hidden = true;
      els.refusal.append(banner(describeError(err)));
    }
    loaded = true;
  }

  async function loadRegistry(tenant) {
    if (registry && registry.tenant === tenant) return registry;
    const installs = new Map();
    const versions = new Map();
    try {
      const [list, extensions] = await Promise.all([
        api(`/api/admin/tenants/${encodeURIComponent(tenant)}/installs`),
        api('/api/admin/extensions').catch(() => []),
      ]);
      const byExt = new Map(extensions.map((e) => [e.id, e]));
      for (const i of list) {
        const ext = byExt.get(i.extension_id);
        installs.set(i.id, { ...i, slug: ext ? ext.slug : i.extension_id });
        for (const v of ext ? ext.versions : []) versions.set(v.id, v);
      }
    } catch {
      // Without the registry the explanation still runs, with unknown capabilities (said in a note).
    }
    registry = { tenant, installs, versions };
    return registry;
  }

  // The decision as it was made: the revision and entity snapshot its record names.
  async function explain(record) {
    fill(els.panel, h('p', { class: 'muted' }, 'Explaining…'));
    const gen = generation;
    const head = [
      h('h2', null, `Decision #${record.seq}`),
      h('p', { class: 'muted' }, `${isoFromMicros(record.ts)} UTC · request ${record.request_id || '–'}`),
    ];
    try {
      const data = await api('/api/policy/decisions/explanation', { query: { seq: record.seq } });
      if (gen !== generation) return;
      fill(els.panel, head, renderRecordedExplanation(data));
      return;
    } catch (err) {
      if (gen !== generation) return;
      if (!(err && err.code === 'snapshot_not_found')) {
        const spec = describeError(err);
        fill(els.panel, head, banner({ ...spec, dismissible: false }), recordedSummary(record));
        return;
      }
      // Written before decision records carried their entity snapshot: say so, then re-evaluate.
      const why = err.detail && err.detail.message ? err.detail.message : 'no entity snapshot was recorded';
      await explainToday(record, head, h('p', { class: 'banner warn unavailable' },
        `The exact explanation is unavailable (${why}). Below: a re-evaluation with today's rules and ` +
        "today's install facts, which may differ from what was decided."));
    }
  }

  function recordedSummary(record) {
    return h('p', { class: 'note' }, `What the record says: ${record.outcome}` +
      ((record.policy_ids || []).length ? ` by ${record.policy_ids.join(', ')}` : '') +
      ((record.details && record.details.reasons || []).length ? ` — ${record.details.reasons.join(' ')}` : ''));
  }

  async function explainToday(record, head, unavailable) {
    const res = parseResource(record.resource);
    const reg = res.kind === 'other' ? null : await loadRegistry(record.tenant || ctx.scopeTenant());
    const install = reg ? reg.installs.get(res.installId) : undefined;
    const version = install && reg ? reg.versions.get(install.version_id) : undefined;
    const built = explainRequestFor(record, { install, version });
    if (built.unsupported) {
      fill(els.panel, head, h('p', null, built.unsupported),
        (record.policy_ids || []).length ? h('p', null, `Recorded policies: ${record.policy_ids.join(', ')}`) : null);
      return;
    }
    try {
      const exp = await api('/api/policy/explain', { method: 'POST', body: built.request });
      fill(els.panel, head, unavailable, h('h3', { class: 'today-label' }, 'Re-evaluated with today\'s rules'),
        renderExplanation(record, exp, built.notes));
    } catch (err) {
      const spec = describeError(err);
      fill(els.panel, head, unavailable, banner({ ...spec, dismissible: false }), recordedSummary(record));
    }
  }

  els.form.addEventListener('submit', (e) => { e.preventDefault(); search(false); });
  els.more.addEventListener('click', () => search(true));
  ctx.onScopeChange(() => { registry = null; if (loaded) search(false); });

  return {
    show() { if (!loaded) search(false); },
    reset() {
      generation++;
      loaded = false; cursor = null; registry = null;
      fill(els.body); fill(els.refusal);
      els.more.hidden = true; els.empty.hidden = true;
      els.form.reset();
      fill(els.panel, h('p', { class: 'muted' }, 'Choose a decision to see why it was made.'));
    },
  };
}
