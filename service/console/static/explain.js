// A recorded decision explained as it was made (GET /api/policy/decisions/explanation:
// the revision and the entity snapshot the record names), and — only for records written
// before decision records carried a snapshot — a clearly labelled re-evaluation with
// today's rules: from the audit record to a request for POST /api/policy/explain.
//
// The record names who (actor: id, tenant, type, roles), what (method, path, endpoint
// template) and which install. The install's facts (extension, capabilities) are taken
// from the registry as they are now, so an explanation is "today's rules, today's install";
// the record itself keeps what was decided then (policy ids and revision).

import { h } from './dom.js';

const NS = 'ExtGate';
const ALWAYS_GRANTED = ['cap:context.read', 'cap:log.emit', 'cap:user.read'];
const SAFE = new Set(['GET', 'HEAD']);

const ref = (type, id) => ({ __entity: { type: `${NS}::${type}`, id } });
const uid = (type, id) => ({ type: `${NS}::${type}`, id });

/** "install:<id>/endpoint:<METHOD> <template>" or "install:<id>/debug" */
export function parseResource(resource) {
  const text = String(resource || '');
  let m = /^install:([^/]+)\/endpoint:([A-Z]+) (.*)$/.exec(text);
  if (m) return { kind: 'endpoint', installId: m[1], method: m[2], template: m[3] };
  m = /^install:([^/]+)\/debug$/.exec(text);
  if (m) return { kind: 'debug', installId: m[1] };
  return { kind: 'other' };
}

/**
 * Build the explain request for a decision record.
 * @param {any} record the audit record (parsed)
 * @param {{install?: any, version?: any}} facts the install (admin API) and its version (for declared capabilities)
 * @returns {{request?: any, notes: string[], unsupported?: string}}
 */
export function explainRequestFor(record, { install, version } = {}) {
  const notes = [];
  const actor = record.actor || {};
  const details = record.details || {};
  const res = parseResource(record.resource);
  if (res.kind === 'other') {
    const why = {
      extension_not_available: 'the tenant has no active install of that extension, so no policy was asked',
      tenant_mismatch: 'a tenant header disagreed with the token, so no policy was asked',
    }[details.error];
    return { notes, unsupported: why ? `Refused before policy evaluation: ${why}.` : 'This record does not name an install, so there is nothing to re-evaluate.' };
  }
  if (!actor.id || !actor.tenant) return { notes, unsupported: 'The record does not say who the caller was.' };
  const roles = Array.isArray(actor.roles) ? actor.roles : [];
  const tenant = record.tenant || actor.tenant;
  let capabilities = [];
  let extension = String(details.extension || details.extension_id || '');
  let slug = String(details.extension || '');
  if (install) {
    extension = install.extension_id;
    slug = install.slug || slug;
    const granted = install.granted_capabilities || [];
    if (res.kind === 'endpoint') {
      const declared = version ? version.capabilities || [] : granted;
      capabilities = [...new Set([...granted.filter((c) => declared.includes(c)), ...ALWAYS_GRANTED])].sort();
    } else {
      capabilities = [...granted].sort();
    }
    notes.push('Install facts (extension, granted capabilities) are as they are now in the registry.');
  } else {
    notes.push('The install is no longer listed, so its capabilities are unknown and taken as none.');
  }
  const tenants = [...new Set([actor.tenant, tenant])];
  const entities = [
    {
      uid: uid('User', actor.id),
      attrs: { tenant: ref('Tenant', actor.tenant), userType: String(actor.type || 'internal') },
      parents: roles.map((r) => uid('Role', r)),
    },
    ...roles.map((r) => ({ uid: uid('Role', r), attrs: {}, parents: [] })),
    ...tenants.map((t) => ({ uid: uid('Tenant', t), attrs: {}, parents: [] })),
    {
      uid: uid('Install', res.installId),
      attrs: { tenant: ref('Tenant', tenant), extension: extension || slug, slug: slug || extension, capabilities, enabled: true },
      parents: [],
    },
    { uid: uid('Platform', 'extgate'), attrs: {}, parents: [] },
  ];
  let action;
  let context;
  if (res.kind === 'endpoint') {
    const method = String(details.method || res.method).toUpperCase();
    const declared = res.template !== '<undeclared>';
    action = SAFE.has(method) ? 'read' : 'write';
    context = {
      method,
      path: String(details.path || ''),
      endpointDeclared: declared,
      endpointTemplate: declared ? res.template : '',
    };
  } else {
    action = 'debug.view';
    const justification = typeof details.justification === 'string' ? details.justification : '';
    context = { justification };
    notes.push('Open-session counts are not recorded; they are taken as below the caps.');
  }
  return {
    notes,
    request: { principal: uid('User', actor.id), action, resource: uid('Install', res.installId), context, entities },
  };
}

function shortRevision(rev) {
  const text = String(rev || 'unknown');
  return text.length > 19 ? `${text.slice(0, 19)}…` : text;
}

function policyItem(p) {
  return h('li', null,
    h('span', { class: 'pid' }, p.policy_id),
    p.effect ? ` (${p.effect})` : '',
    p.location ? h('span', { class: 'loc' }, p.location) : null,
    p.reason ? h('div', null, p.reason) : null);
}

function headlineFor(exp, withReason) {
  const now = exp.decision;
  const determining = Array.isArray(exp.determining) ? exp.determining : [];
  const forbids = determining.filter((p) => p.effect === 'forbid');
  const reasons = (list) => (withReason && list.length === 1 && list[0].reason ? `: ${list[0].reason}` : '');
  if (now === 'allow') return `Allowed — permitted by ${determining.map((p) => p.policy_id).join(', ') || 'a policy'}`;
  if (forbids.length) return `Denied — forbidden by ${forbids.map((p) => p.policy_id).join(', ')}${reasons(forbids)}`;
  if ((exp.errors || []).length) return 'Denied — a policy could not be evaluated (errors count as deny)';
  return 'Denied — no policy permits this request (default deny)';
}

function whyParts(exp) {
  const out = [];
  const now = exp.decision;
  const determining = Array.isArray(exp.determining) ? exp.determining : [];
  if (determining.length) {
    out.push(h('h3', null, now === 'allow' ? 'Why: the deciding policies' : 'Why: the policies that forbid it'));
    out.push(h('ul', { class: 'policylist determining' }, determining.map(policyItem)));
  }
  for (const err of exp.errors || []) out.push(h('p', { class: 'banner bad' }, `Evaluation error: ${err}`));
  const whyNot = Array.isArray(exp.why_not) ? exp.why_not : [];
  if (whyNot.length) {
    out.push(h('h3', null, 'Why not: permits that could apply, closest first'));
    out.push(h('ul', { class: 'policylist whynot' }, whyNot.map((c) => h('li', null,
      h('span', { class: 'pid' }, c.policy_id),
      c.location ? h('span', { class: 'loc' }, c.location) : null,
      c.reason ? h('div', null, c.reason) : null,
      h('ul', { class: 'checks' },
        (c.failed || []).map((k) => h('li', { class: k.status === 'error' ? 'warn' : 'fail' },
          `${k.status}: ${k.kind} ${k.condition}${k.error ? ` [${k.error}]` : ''}`)),
        (c.satisfied || []).map((k) => h('li', { class: 'pass' }, `satisfied: ${k.kind} ${k.condition}`)))))));
  } else if (now === 'deny' && !determining.length) {
    out.push(h('p', { class: 'note' }, 'No permit applies to this action and resource at all.'));
  }
  return out;
}

/** "today it would be ALLOW (rules sha256:…: rbac.write)", or why today cannot say. */
export function todayText(today) {
  if (!today || !today.decision) return `Today: ${today && today.error ? today.error : 'unknown'}`;
  const ids = (today.policy_ids || []).join(', ') || 'no policy (default deny)';
  return `Today it would be ${today.decision.toUpperCase()} (rules ${shortRevision(today.revision)}: ${ids})`;
}

/**
 * Render a recorded decision explained as it was made (the decisions explanation API's answer).
 * @param {any} data GET /api/policy/decisions/explanation
 */
export function renderRecordedExplanation(data) {
  const exp = data.explanation;
  const recorded = data.recorded || {};
  const out = [];
  if (exp) {
    out.push(h('div', { class: `headline ${exp.decision}` }, headlineFor(exp, true)));
  } else {
    out.push(h('div', { class: 'headline deny' }, 'Denied — the recorded facts did not fit the rules (errors count as deny)'));
  }
  out.push(h('p', { class: 'recorded-revision muted', title: String(recorded.revision || '') },
    `As decided: rules ${shortRevision(recorded.revision)} · facts ${shortRevision(recorded.entities)} (recorded snapshot)`));
  out.push(h('p', { class: 'today' }, todayText(data.today)));
  if (!data.matches_record) {
    out.push(h('p', { class: 'banner bad mismatch' },
      `Re-evaluating the recorded request does not reproduce the record: ${data.mismatch}`));
  }
  const req = exp ? exp.request : null;
  out.push(h('dl', { class: 'kv' },
    h('dt', null, 'Who'), h('dd', null, req ? req.principal : ''),
    h('dt', null, 'Action'), h('dd', null, req ? req.action : ''),
    h('dt', null, 'Resource'), h('dd', null, req ? req.resource : ''),
    h('dt', null, 'Context'), h('dd', { class: 'mono' }, req ? JSON.stringify(req.context) : ''),
    h('dt', null, 'Recorded'), h('dd', null, `${recorded.decision} · ${(recorded.policy_ids || []).join(', ') || 'no policy'}`)));
  if (exp) out.push(...whyParts(exp));
  else if (data.schema_error) out.push(h('p', { class: 'banner bad' }, `Evaluation error: ${data.schema_error}`));
  return out;
}

/**
 * Render the explanation next to what the record says was decided.
 * @param {any} record @param {any} exp the explain API's answer @param {string[]} notes
 */
export function renderExplanation(record, exp, notes) {
  const decided = record.outcome;
  const now = exp.decision;
  const out = [h('div', { class: `headline ${now}` }, headlineFor(exp, false))];
  const sameRevision = !record.policy_revision || record.policy_revision === exp.revision;
  if (decided && decided !== now) {
    out.push(h('p', { class: 'banner warn' }, `The gateway decided "${decided}" at the time; re-evaluated now the answer is "${now}". ` +
      'The policies or the install changed since.'));
  }
  out.push(h('dl', { class: 'kv' },
    h('dt', null, 'Who'), h('dd', null, exp.request ? exp.request.principal : ''),
    h('dt', null, 'Action'), h('dd', null, exp.request ? exp.request.action : ''),
    h('dt', null, 'Resource'), h('dd', null, exp.request ? exp.request.resource : ''),
    h('dt', null, 'Context'), h('dd', { class: 'mono' }, exp.request ? JSON.stringify(exp.request.context) : ''),
    h('dt', null, 'Recorded'), h('dd', { title: String(record.policy_revision || '') }, `${decided} · rules ${shortRevision(record.policy_revision)}`),
    h('dt', null, 'Re-evaluated'), h('dd', { title: String(exp.revision || '') }, `${now} · rules ${shortRevision(exp.revision)}${sameRevision ? ' (the same rules)' : ' (the rules changed since)'}`)));
  out.push(...whyParts(exp));
  for (const n of notes) out.push(h('p', { class: 'note' }, n));
  return out;
}
