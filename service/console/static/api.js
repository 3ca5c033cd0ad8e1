// fetch() wrapper for the extgate API: bearer token from the session, JSON in and out,
// uniform errors ({"error": code, "detail": ...}) turned into sentences a person understands.

import { getToken } from './auth.js';

export class ApiError extends Error {
  constructor(status, code, detail, requestId) {
    super(`${status} ${code}`);
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.requestId = requestId;
  }
}

/**
 * @param {string} path absolute path on this origin, e.g. /api/audit/records
 * @param {{method?: string, body?: any, query?: Record<string, any>, auth?: boolean, signal?: AbortSignal}} [opts]
 */
export async function api(path, { method = 'GET', body, query, auth = true, signal } = {}) {
  if (!path.startsWith('/') || path.startsWith('//')) throw new Error('api(): same-origin paths only');
  const url = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && String(v).trim() !== '') url.searchParams.set(k, String(v).trim());
  }
  const headers = { accept: 'application/json' };
  if (auth) {
    const token = getToken();
    if (!token) throw new ApiError(401, 'unauthenticated', { message: 'not signed in' }, null);
    headers.authorization = `Bearer ${token}`;
  }
  if (body !== undefined) headers['content-type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(url, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit', cache: 'no-store', redirect: 'error', signal,
    });
  } catch (err) {
    if (err && err.name === 'AbortError') throw err;
    throw new ApiError(0, 'network_error', { message: 'the server cannot be reached' }, null);
  }
  const requestId = resp.headers.get('x-request-id');
  let data = null;
  const type = resp.headers.get('content-type') || '';
  if (type.includes('json')) {
    try { data = await resp.json(); } catch { data = null; }
  }
  if (!resp.ok) {
    const code = data && typeof data.error === 'string' ? data.error : `http_${resp.status}`;
    const error = new ApiError(resp.status, code, data ? data.detail : null, requestId);
    if (resp.status === 401 && auth) window.dispatchEvent(new CustomEvent('console:unauthenticated'));
    throw error;
  }
  return data;
}

const ACTIONS = {
  'debug.view': "watch this install's live logs",
  'audit.read': 'read the audit log',
  'audit.export': 'export the audit log',
  'policy.read': 'read policies and their explanations',
  'install.read': "list this tenant's installs",
  'extension.read': 'browse the extension registry',
};

function detailMessage(detail) {
  if (!detail) return '';
  if (typeof detail === 'string') return detail;
  if (typeof detail.message === 'string') return detail.message;
  if (Array.isArray(detail)) {
    return detail.map((d) => [Array.isArray(d.loc) ? d.loc.join('.') : '', d.msg || ''].filter(Boolean).join(': '))
      .join('; ');
  }
  return '';
}

/**
 * A refusal or failure as a banner spec: {kind, title, text, items, code}.
 * @param {unknown} err
 */
export function describeError(err) {
  if (!(err instanceof ApiError)) {
    return { kind: 'bad', title: 'Something went wrong in the console', text: String(err && err.message || err), code: 'client' };
  }
  const { status, code, detail } = err;
  const rid = err.requestId ? `Request id ${err.requestId}.` : '';
  const base = { kind: 'bad', code, items: [] };
  if (status === 0) return { ...base, title: 'The server cannot be reached', text: 'Check your connection and try again.' };
  if (status === 401) {
    if (code === 'invalid_ticket') {
      return { ...base, title: 'The stream ticket was not accepted', text: 'It expired or was already used. Open a new session.' };
    }
    return { ...base, title: 'Not signed in', text: 'Your token was not accepted: it is missing, invalid or expired. Sign in again with a new token.' };
  }
  if (status === 403) {
    if (code === 'tenant_mismatch') return { ...base, title: 'Refused', text: 'A tenant header disagreed with your token.' };
    const action = detail && typeof detail.action === 'string' ? detail.action : null;
    const what = action ? (ACTIONS[action] || action) : 'do this';
    const reasons = detail && Array.isArray(detail.reasons) ? detail.reasons.filter((r) => typeof r === 'string') : [];
    return {
      ...base,
      title: 'Refused by policy',
      text: `Your token is not allowed to ${what}${action ? ` (${action})` : ''}. ` +
        (detailMessage(detail) && !action ? detailMessage(detail) + '. ' : '') +
        'Ask an administrator if you need this access. ' + rid,
      items: reasons,
    };
  }
  if (status === 404) {
    const what = { install_not_found: 'No such active install for this tenant.', extension_not_found: 'No such extension.' }[code];
    return { ...base, kind: 'warn', title: 'Not found', text: what || detailMessage(detail) || 'Nothing by that name for your tenant.' };
  }
  if (status === 409 && code === 'not_checkpointed') {
    return {
      ...base, kind: 'warn', title: 'Not covered by a signed checkpoint yet',
      text: 'Checkpoints are signed periodically (by default every 60 s or 10,000 records). Try again shortly.',
    };
  }
  if (status === 422) return { ...base, title: 'The request was not accepted', text: detailMessage(detail) || code };
  if (status === 429) {
    return { ...base, kind: 'warn', title: 'Busy', text: detailMessage(detail) || 'Too many requests; retry shortly.' };
  }
  if (status === 503) {
    const texts = {
      debug_unavailable: 'The debug stream store (Redis) is unavailable: new sessions cannot be opened until it returns. Sessions already open keep running.',
      audit_unavailable: 'The audit log cannot be written, so nothing that needs a record is allowed right now.',
      policy_unavailable: 'The policy engine is unavailable; every request is refused until it returns.',
      access_policy_unavailable: 'Access checks are unavailable; every request is refused until they return.',
    };
    return { ...base, title: 'Temporarily unavailable', text: texts[code] || detailMessage(detail) || code };
  }
  return { ...base, title: `Error ${status}`, text: `${code}. ${detailMessage(detail)} ${rid}`.trim() };
}
