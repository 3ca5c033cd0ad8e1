// Notes: an extgate example extension in JavaScript, written with the extgate guest SDK.
//
// The same API as examples/python-notes: each tenant install keeps its own notes in the
// host's key-value storage (cap:storage.kv), the greeting comes from the install config,
// and /status reports whether the `api-key` secret is usable without ever returning it.
//
// Build: `make -C examples js-notes` (componentize-js 0.23.0, world `runner-ext`).
// The SDK is imported by relative path; `extgate ext new --lang js` vendors a copy instead.

import { App, HttpError, SecretError, config, context, empty, errorCode, json, secrets, serve }
  from '../../../sdk/js/guest.js';
import * as storage from 'alga:extension/storage';

const NAMESPACE = 'notes';
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function storageError(e) {
  const code = errorCode(e); // 'missing' | 'conflict' | 'denied' | 'internal'
  const status = { missing: 404, conflict: 409, denied: 403 }[code] ?? 500;
  return new HttpError(status, `storage_${code.replaceAll('-', '_')}`);
}

// Host calls that return result<_, storage-error> throw; turn that into an HTTP answer.
function withStorage(fn) {
  try { return fn(); } catch (e) { throw storageError(e); }
}

function note(entry) {
  const revision = entry.revision === undefined ? null : Number(entry.revision); // u64 → BigInt
  return { id: entry.key, revision, ...JSON.parse(decoder.decode(entry.value)) };
}

const app = new App()
  .get('/hello', () => ({
    message: config().get('greeting', 'Hello'),
    tenant: context().tenantId,
    language: 'javascript',
  }))
  .get('/status', () => {
    try {
      secrets().get('api-key');
      return { api_key: 'present' };
    } catch (e) {
      if (e instanceof SecretError) return { api_key: e.code };
      throw e;
    }
  })
  .get('/notes', (req) => ({
    notes: withStorage(() => storage.listEntries(NAMESPACE, req.query.cursor)).map(note),
  }))
  .get('/notes/:id', (req) => note(withStorage(() => storage.get(NAMESPACE, req.params.id))))
  .put('/notes/:id', (req) => {
    const doc = req.jsonObject();
    if (typeof doc.text !== 'string' || !doc.text) {
      throw new HttpError(422, 'invalid_note', "field 'text' must be a non-empty string");
    }
    const maxLen = config().getInt('max-note-length', 1000);
    if (doc.text.length > maxLen) {
      throw new HttpError(422, 'note_too_long', `at most ${maxLen} characters`, { limit: maxLen });
    }
    const entry = {
      namespace: NAMESPACE,
      key: req.params.id,
      value: encoder.encode(JSON.stringify({ text: doc.text })),
      // optimistic concurrency: 0 = create only
      revision: Number.isInteger(doc.revision) ? BigInt(doc.revision) : undefined,
    };
    return note(withStorage(() => storage.put(entry)));
  })
  .delete('/notes/:id', (req) => {
    withStorage(() => storage.delete(NAMESPACE, req.params.id));
    return empty(204);
  })
  .post('/echo', (req) => json({ received: req.json() }));

export const handler = serve(app);
