// Audit view: filterable records; one record's inclusion proof checked here in the
// browser against the latest signed checkpoint; the server-side verification of the log.

import { api, ApiError, describeError } from './api.js';
import { $, banner, canonicalJson, fill, h, isoFromMicros, shortId } from './dom.js';
import {
  bytesToHex, cryptoAvailable, ed25519Supported, hexToBytes, leafHash, parseCheckpoint,
  verifyInclusion, verifyNote,
} from './merkle.js';

const PAGE = 100;

/**
 * Check one record's inclusion in the log, in this browser. Every step is reported.
 * @param {{seq: number, leaf_hash: string, record: any}} item the record as listed
 * @returns {Promise<{ok: boolean|null, summary: string, steps: {status: string, text: string}[]}>}
 *   ok: true verified, false failed, null could not be decided (not yet checkpointed, no crypto)
 */
export async function checkInclusion(item) {
  const steps = [];
  const step = (status, text) => steps.push({ status, text });
  const done = (ok, summary) => ({ ok, summary, steps });
  if (!cryptoAvailable()) {
    step('fail', 'WebCrypto is not available: the console must be served over HTTPS (or from localhost) to check proofs.');
    return done(null, 'Cannot check proofs in this browser context. Use `extgate audit verify-proof` instead.');
  }
  let latest;
  let keys;
  try {
    [latest, keys] = await Promise.all([api('/api/audit/checkpoints/latest'), api('/api/audit/public-key', { auth: false })]);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      step('warn', 'No checkpoint has been signed yet.');
      return done(null, 'Not checkable yet: no signed checkpoint exists.');
    }
    throw err;
  }
  let note;
  try {
    note = parseCheckpoint(latest.note);
  } catch (err) {
    step('fail', `The latest checkpoint cannot be read: ${err.message}.`);
    return done(false, 'The latest checkpoint is malformed.');
  }
  if (note.origin !== latest.origin || note.size !== BigInt(latest.size) || bytesToHex(note.root) !== latest.root) {
    step('fail', 'The checkpoint note does not match the size and root the server reports.');
    return done(false, 'The checkpoint is inconsistent.');
  }
  step('pass', `Latest signed checkpoint: ${note.origin}, ${note.size} records, root ${bytesToHex(note.root).slice(0, 16)}…`);
  const sig = await verifyNote(note, (keys && keys.keys) || []);
  let signatureChecked = false;
  if (sig.status === 'valid') {
    signatureChecked = true;
    step('pass', `Checkpoint signature verified in this browser (Ed25519, key ${sig.name} ${sig.keyId}). ` +
      'Compare the key with the one you pinned (`extgate audit public-key`).');
  } else if (sig.status === 'unsupported') {
    step('warn', 'This browser cannot verify Ed25519 signatures (WebCrypto has no Ed25519 here): the checkpoint signature was NOT checked. ' +
      'Check it with `extgate audit verify-proof`.');
  } else if (sig.status === 'bad_signature') {
    step('fail', `The checkpoint signature by trusted key ${sig.name} does not verify.`);
    return done(false, 'The signed checkpoint is forged or altered.');
  } else {
    step('fail', 'The checkpoint is not signed by any of the published keys.');
    return done(false, 'The checkpoint is not signed by a trusted key.');
  }
  if (BigInt(item.seq) >= note.size) {
    step('warn', `Record ${item.seq} is newer than the latest checkpoint (${note.size} records).`);
    return done(null, 'Not covered by a signed checkpoint yet: checkpoints are signed periodically; try again shortly.');
  }
  const proof = await api(`/api/audit/records/${encodeURIComponent(item.seq)}/proof`, { query: { size: latest.size } });
  if (proof.checkpoint !== latest.note || proof.tree_size !== latest.size || proof.seq !== item.seq) {
    step('fail', 'The proof is not against the latest checkpoint, or not for this record.');
    return done(false, 'The proof does not match.');
  }
  step('pass', 'The proof is for this record, against that checkpoint.');
  let parsed;
  try {
    parsed = JSON.parse(proof.record);
  } catch {
    step('fail', 'The proven record is not JSON.');
    return done(false, 'The proven record is malformed.');
  }
  if (canonicalJson(parsed) !== canonicalJson(item.record) || parsed.seq !== item.seq) {
    step('fail', 'The record shown in the list differs from the record that was hashed.');
    return done(false, 'The listed record is not the logged one.');
  }
  step('pass', 'The record shown is exactly the record that was hashed.');
  const leaf = await leafHash(proof.record);
  if (bytesToHex(leaf) !== proof.leaf_hash || bytesToHex(leaf) !== item.leaf_hash) {
    step('fail', 'SHA-256(0x00 ‖ record) does not equal the stored leaf hash.');
    return done(false, 'The record was altered after it was hashed.');
  }
  step('pass', `Leaf hash recomputed: SHA-256(0x00 ‖ record) = ${bytesToHex(leaf).slice(0, 16)}…`);
  let path;
  try {
    path = proof.path.map(hexToBytes);
  } catch {
    step('fail', 'The Merkle path is malformed.');
    return done(false, 'The proof is malformed.');
  }
  const included = await verifyInclusion(leaf, item.seq, note.size, path, note.root);
  if (!included) {
    step('fail', `The ${path.length}-step Merkle path does not lead to the signed root.`);
    return done(false, 'The record is NOT in the signed log.');
  }
  step('pass', `The ${path.length}-step Merkle path (RFC 6962) leads to the signed root.`);
  return done(true, signatureChecked
    ? `Verified in this browser: record ${item.seq} is in the signed log of ${note.size} records.`
    : `Record ${item.seq} is in the log of ${note.size} records (checkpoint signature not checked in this browser).`);
}

function outcomeClass(outcome) {
  if (['allow', 'success', 'ok'].includes(outcome)) return 'outcome-allow';
  if (['deny', 'error', 'rejected', 'tampered'].includes(outcome)) return 'outcome-deny';
  return 'outcome-other';
}

const VERIFY_TEXT = {
  ok: ['The audit log verifies', 'Every record, leaf and root was recomputed on the server and matches the signed checkpoints.'],
  tampered: ['The audit log has been TAMPERED with', 'Records or checkpoints do not match what was signed. Escalate: see the findings below.'],
  unverifiable: ['The audit log cannot be fully verified', 'Nothing was found altered, but part of the log is not covered by a trusted signed checkpoint (see the warnings).'],
};

export function createAuditView(ctx) {
  const els = {
    form: $('audit-form'), action: $('aud-action'), outcome: $('aud-outcome'), actor: $('aud-actor'),
    resource: $('aud-resource'), request: $('aud-request'), since: $('aud-since'), until: $('aud-until'),
    presetDebug: $('aud-preset-debug'), presetDeny: $('aud-preset-deny'), verify: $('aud-verify'),
    refusal: $('audit-refusal'), verifyResult: $('verify-result'),
    body: document.querySelector('#audit-table tbody'), empty: $('audit-empty'), more: $('audit-more'),
    panel: $('record-panel'),
  };
  let loaded = false;
  let cursor = null;
  let query = null;
  let generation = 0;

  function row(item) {
    const r = item.record;
    const tr = h('tr', { tabindex: '0', dataset: { seq: item.seq, action: r.action } },
      h('td', { class: 'mono' }, String(item.seq)),
      h('td', null, isoFromMicros(r.ts)),
      h('td', null, r.tenant ?? '(platform)'),
      h('td', null, r.actor ? String(r.actor.id) : '–'),
      h('td', { class: 'mono' }, r.action),
      h('td', { class: 'mono' }, r.resource ?? ''),
      h('td', null, h('span', { class: `outcome ${outcomeClass(r.outcome)}` }, r.outcome)));
    const choose = () => {
      for (const other of els.body.querySelectorAll('tr.selected')) other.classList.remove('selected');
      tr.classList.add('selected');
      showRecord(item);
    };
    tr.addEventListener('click', choose);
    tr.addEventListener('keydown', (e) => { if (e.key === 'Enter') choose(); });
    return tr;
  }

  function showRecord(item) {
    const result = h('div', { class: 'proof-result', 'aria-live': 'polite' });
    const check = h('button', { type: 'button', class: 'secondary', id: 'proof-check' }, 'Check inclusion proof');
    check.addEventListener('click', async () => {
      check.disabled = true;
      fill(result, h('p', { class: 'muted' }, 'Checking…'));
      try {
        const outcome = await checkInclusion(item);
        const kind = outcome.ok === true ? 'ok' : outcome.ok === false ? 'bad' : 'warn';
        fill(result,
          h('div', { class: `banner ${kind}`, dataset: { proof: String(outcome.ok) } }, h('div', { class: 'body' }, h('div', { class: 'title' }, outcome.summary))),
          h('ul', { class: 'steps' }, outcome.steps.map((s) => h('li', { class: s.status }, s.text))));
      } catch (err) {
        fill(result, banner({ ...describeError(err), dismissible: false }));
      } finally {
        check.disabled = false;
      }
    });
    const r = item.record;
    fill(els.panel,
      h('h2', null, `Record #${item.seq}`),
      h('dl', { class: 'kv' },
        h('dt', null, 'Time (UTC)'), h('dd', null, isoFromMicros(r.ts)),
        h('dt', null, 'Action'), h('dd', null, r.action),
        h('dt', null, 'Outcome'), h('dd', null, r.outcome),
        h('dt', null, 'Actor'), h('dd', null, r.actor ? `${r.actor.id} (${r.actor.type}${r.actor.tenant ? `, ${r.actor.tenant}` : ''})` : '–'),
        h('dt', null, 'Request id'), h('dd', { class: 'mono' }, r.request_id || '–'),
        h('dt', null, 'Leaf hash'), h('dd', { class: 'mono' }, shortId(item.leaf_hash, 24))),
      check,
      result,
      h('h3', null, 'Record as logged'),
      h('pre', null, JSON.stringify(r, null, 2)));
  }

  async function search(append = false) {
    const gen = ++generation;
    fill(els.refusal);
    if (!append) {
      cursor = null;
      query = {
        tenant: ctx.scopeTenant({ allowAll: true }),
        action: els.action.value, outcome: els.outcome.value, actor: els.actor.value,
        resource: els.resource.value, request_id: els.request.value, since: els.since.value, until: els.until.value,
        limit: PAGE,
      };
      fill(els.body);
      els.empty.hidden = true;
      fill(els.panel, h('p', { class: 'muted' }, 'Choose a record to see it and check its inclusion proof.'));
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

  async function verifyLog() {
    els.verify.disabled = true;
    els.verifyResult.hidden = false;
    fill(els.verifyResult, h('p', { class: 'muted' }, 'Verifying the whole log on the server…'));
    try {
      const r = await api('/api/audit/verify', { method: 'POST' });
      const [title, text] = VERIFY_TEXT[r.status] || ['Verification finished', ''];
      const kind = r.status === 'ok' ? 'ok' : r.status === 'tampered' ? 'bad' : 'warn';
      fill(els.verifyResult,
        h('div', { class: `banner ${kind}`, dataset: { status: r.status } },
          h('div', { class: 'body' }, h('div', { class: 'title summary' }, title), h('div', null, text))),
        h('dl', { class: 'kv' },
          h('dt', null, 'Records'), h('dd', null, `${r.records} (head ${r.head_size ?? '–'})`),
          h('dt', null, 'Checkpoints'), h('dd', null, `${r.checkpoints.valid}/${r.checkpoints.total} valid in the database; ` +
            `${r.exported_checkpoints.valid}/${r.exported_checkpoints.total} exported`),
          h('dt', null, 'Signed through'), h('dd', null, `${r.signed_size} records (${r.unanchored_records} after the last checkpoint)`),
          h('dt', null, 'Took'), h('dd', null, `${r.elapsed_seconds} s`)),
        r.findings.length ? h('h3', null, 'Findings') : null,
        r.findings.length ? h('ul', { class: 'checks' }, r.findings.map((f) => h('li', { class: 'fail' },
          `${f.kind} at seq ${f.seq}${f.seq_end !== undefined && f.seq_end !== null ? `..${f.seq_end}` : ''}${f.detail ? `: ${f.detail}` : ''}`))) : null,
        r.warnings.length ? h('ul', { class: 'checks' }, r.warnings.map((w) => h('li', { class: 'warn' }, w))) : null,
        r.redacted ? h('p', { class: 'note' }, 'Findings are shown without server details for tenant auditors.') : null);
    } catch (err) {
      fill(els.verifyResult, banner({ ...describeError(err), dismissible: false }));
    } finally {
      els.verify.disabled = false;
    }
  }

  els.form.addEventListener('submit', (e) => { e.preventDefault(); search(false); });
  els.more.addEventListener('click', () => search(true));
  els.presetDebug.addEventListener('click', () => {
    els.form.reset();
    els.action.value = 'debug_session.';
    search(false);
  });
  els.presetDeny.addEventListener('click', () => {
    els.form.reset();
    els.outcome.value = 'deny';
    search(false);
  });
  els.verify.addEventListener('click', verifyLog);
  ctx.onScopeChange(() => { if (loaded) search(false); });

  return {
    show() {
      if (!loaded) search(false);
      ed25519Supported(); // warm the probe
    },
    reset() {
      generation++;
      loaded = false; cursor = null;
      fill(els.body); fill(els.refusal); fill(els.verifyResult);
      els.verifyResult.hidden = true;
      els.more.hidden = true; els.empty.hidden = true;
      els.form.reset();
      fill(els.panel, h('p', { class: 'muted' }, 'Choose a record to see it and check its inclusion proof.'));
    },
  };
}
