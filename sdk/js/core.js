// extgate guest SDK for JavaScript components (componentize-js) — the pure part.
//
// Nothing here imports a WIT interface, so it runs unchanged under Node for unit tests
// (`node --test sdk/js/test`). `guest.js` binds it to the host.

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'];
const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

// ---- errors ---------------------------------------------------------------------------

/** Base class; `code` is a stable snake_case string, `status` the HTTP status it maps to. */
export class ExtgateError extends Error {
  constructor(message, { code = 'extension_error', status = 500, detail = {} } = {}) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.status = status;
    this.detail = detail;
  }
  toJSON() {
    return { error: this.code, message: this.message, ...this.detail };
  }
}

/** Throw from a handler to answer with `{"error": code, "message": ..., ...detail}`. */
export class HttpError extends ExtgateError {
  constructor(status, code, message = '', detail = {}) {
    super(message || code.replaceAll('_', ' '), { code, status, detail });
  }
}

export class ConfigError extends ExtgateError {
  constructor(key, message, code = 'config_error') {
    super(message, { code, detail: { key } });
    this.key = key;
  }
}
export class ConfigMissing extends ConfigError {
  constructor(key) { super(key, `config key '${key}' is not set for this install`, 'config_missing'); }
}
export class ConfigInvalid extends ConfigError {
  constructor(key, expected) { super(key, `config key '${key}' must be ${expected}`, 'config_invalid'); }
}

/** Mirrors WIT `secret-error`; never carries the value, only the key name. */
export class SecretError extends ExtgateError {
  constructor(key, message, code = 'secret_error') {
    super(message, { code, detail: { key } });
    this.key = key;
  }
}
export class SecretMissing extends SecretError {
  constructor(key) { super(key, `secret '${key}' is not set for this install`, 'secret_missing'); }
}
export class SecretDenied extends SecretError {
  constructor(key) { super(key, 'this install is not granted cap:secrets.get', 'secret_denied'); }
}
export class SecretExpired extends SecretError {
  constructor(key) { super(key, "the install's secrets have expired; an admin must set them again", 'secret_expired'); }
}
export class SecretUnavailable extends SecretError {
  constructor(key) { super(key, 'secrets are temporarily unavailable', 'secret_unavailable'); }
}

/** WIT `secret-error` case → error class. */
export const SECRET_ERRORS = {
  missing: SecretMissing,
  denied: SecretDenied,
  expired: SecretExpired,
  internal: SecretUnavailable,
};

// ---- request / response ---------------------------------------------------------------

export function normalizePath(path) {
  return '/' + path.split('/').filter(Boolean).join('/');
}

function decodeComponent(s) {
  try { return decodeURIComponent(s.replaceAll('+', ' ')); } catch { return s; }
}

function parseQuery(qs) {
  const out = {};
  for (const part of qs.split('&')) {
    if (!part) continue;
    const i = part.indexOf('=');
    const k = decodeComponent(i < 0 ? part : part.slice(0, i));
    const v = i < 0 ? '' : decodeComponent(part.slice(i + 1));
    if (!(k in out)) out[k] = v; // first value wins, like the Python SDK
  }
  return out;
}

export class Request {
  /**
   * @param {{method: string, url: string, headers?: Record<string,string>, body?: Uint8Array,
   *          context?: object}} init
   */
  constructor({ method, url, headers = {}, body, context = {} }) {
    this.method = method.toUpperCase();
    this.url = url;
    const q = url.indexOf('?');
    this.path = normalizePath(q < 0 ? url : url.slice(0, q));
    this.query = q < 0 ? {} : parseQuery(url.slice(q + 1));
    this.headers = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
    this.body = body ?? new Uint8Array();
    this.context = context;
    this.params = {};
  }
  header(name) { return this.headers[name.toLowerCase()]; }
  text() {
    try { return decoder.decode(this.body); } catch { throw new HttpError(400, 'invalid_body', 'request body is not UTF-8'); }
  }
  /** The body parsed as JSON; a 400 `invalid_json` HttpError when it is not. */
  json() {
    if (this.body.length === 0) throw new HttpError(400, 'invalid_json', 'request body is empty; JSON expected');
    try { return JSON.parse(this.text()); } catch (e) {
      if (e instanceof HttpError) throw e;
      throw new HttpError(400, 'invalid_json', `request body is not JSON: ${e.message}`);
    }
  }
  jsonObject() {
    const doc = this.json();
    if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
      throw new HttpError(400, 'invalid_json', 'request body must be a JSON object');
    }
    return doc;
  }
}

export class Response {
  constructor(status = 200, headers = {}, body = new Uint8Array()) {
    this.status = status;
    this.headers = headers;
    this.body = typeof body === 'string' ? encoder.encode(body) : body;
  }
}

export function json(data, status = 200, headers = {}) {
  return new Response(status, { 'content-type': 'application/json', ...headers }, JSON.stringify(data));
}
export function text(body, status = 200, contentType = 'text/plain; charset=utf-8') {
  return new Response(status, { 'content-type': contentType }, body);
}
export function empty(status = 204) {
  return new Response(status, {}, new Uint8Array());
}
export function error(status, code, message = '', detail = {}) {
  const e = new HttpError(status, code, message, detail);
  return json(e.toJSON(), status);
}

// ---- routing ----------------------------------------------------------------------------

/**
 * Method + path routing with `:param` segments — the gateway's rule for manifest endpoints
 * (equal segment counts, `:param` matches one non-empty segment, first match wins), so a
 * route in code and in manifest.json match the same requests.
 */
export class App {
  constructor() { this.routes = []; }

  route(method, pattern, handler) {
    method = method.toUpperCase();
    if (!METHODS.includes(method)) throw new Error(`method must be one of ${METHODS.join(', ')}, got ${method}`);
    if (!pattern.startsWith('/')) throw new Error(`route pattern must start with '/', got ${pattern}`);
    const segments = normalizePath(pattern).split('/').filter(Boolean);
    this.routes.push({ method, pattern: normalizePath(pattern), segments, handler });
    return this;
  }
  get(p, h) { return this.route('GET', p, h); }
  post(p, h) { return this.route('POST', p, h); }
  put(p, h) { return this.route('PUT', p, h); }
  patch(p, h) { return this.route('PATCH', p, h); }
  delete(p, h) { return this.route('DELETE', p, h); }

  /** @param {Request} request @returns {Response} */
  handle(request) {
    // HEAD is authorised as GET by the gateway; answer it with the GET route, no body.
    const method = request.method === 'HEAD' ? 'GET' : request.method;
    const segs = request.path.split('/').filter(Boolean).map(decodeComponent);
    const allowed = new Set();
    for (const route of this.routes) {
      const params = matchSegments(route.segments, segs);
      if (params === null) continue;
      if (route.method !== method) { allowed.add(route.method); continue; }
      request.params = params;
      const response = this.#call(route, request);
      if (request.method === 'HEAD') response.body = new Uint8Array();
      return response;
    }
    if (allowed.size) {
      const r = error(405, 'method_not_allowed', `${request.method} is not allowed here`);
      r.headers.allow = [...allowed].sort().join(', ');
      return r;
    }
    return error(404, 'route_not_found', `no route for ${request.method} ${request.path}`);
  }

  #call(route, request) {
    let result;
    try {
      result = route.handler(request);
    } catch (e) {
      if (e instanceof ExtgateError) return json(e.toJSON(), e.status);
      // Details go to stderr (the operator's debug stream), never to the caller.
      console.error(`extgate-sdk: unhandled ${e?.name ?? 'error'} in ${route.method} ${route.pattern}: ${e?.message ?? e}`);
      return error(500, 'internal_error');
    }
    if (result instanceof Response) return result;
    if (result === undefined || result === null) return empty();
    return json(result);
  }
}

export function matchSegments(pattern, segs) {
  if (pattern.length !== segs.length) return null;
  const params = {};
  for (let i = 0; i < pattern.length; i++) {
    const want = pattern[i];
    if (want.startsWith(':')) {
      if (!segs[i]) return null;
      params[want.slice(1)] = segs[i];
    } else if (want !== segs[i]) {
      return null;
    }
  }
  return params;
}

// ---- config and secrets -----------------------------------------------------------------

const TRUE = new Set(['1', 'true', 'yes', 'on']);
const FALSE = new Set(['0', 'false', 'no', 'off']);

/** The install's config (a string map). `lookup(key)` returns a string or undefined. */
export class Config {
  constructor(lookup, items) { this._lookup = lookup; this._items = items; }
  static fromObject(obj) {
    return new Config((k) => (Object.hasOwn(obj, k) ? obj[k] : undefined), () => Object.entries(obj).sort());
  }
  get(key, fallback = undefined) { return this._lookup(key) ?? fallback; }
  require(key) {
    const v = this._lookup(key);
    if (v === undefined || v === null) throw new ConfigMissing(key);
    return v;
  }
  getInt(key, fallback = undefined) {
    const raw = this._lookup(key);
    if (raw === undefined || raw === null) {
      if (fallback === undefined) throw new ConfigMissing(key);
      return fallback;
    }
    if (!/^\s*[-+]?\d+\s*$/.test(raw)) throw new ConfigInvalid(key, 'an integer');
    return Number.parseInt(raw, 10);
  }
  getBool(key, fallback = undefined) {
    const raw = this._lookup(key);
    if (raw === undefined || raw === null) {
      if (fallback === undefined) throw new ConfigMissing(key);
      return fallback;
    }
    const low = raw.trim().toLowerCase();
    if (TRUE.has(low)) return true;
    if (FALSE.has(low)) return false;
    throw new ConfigInvalid(key, 'a boolean (true/false, 1/0, yes/no, on/off)');
  }
  getJson(key, fallback = undefined) {
    const raw = this._lookup(key);
    if (raw === undefined || raw === null) {
      if (fallback === undefined) throw new ConfigMissing(key);
      return fallback;
    }
    try { return JSON.parse(raw); } catch { throw new ConfigInvalid(key, 'JSON'); }
  }
  toObject() { return Object.fromEntries(this._items()); }
}

/** The install's secrets. `lookup(key)` returns the value or throws a SecretError. */
export class Secrets {
  constructor(lookup, keys) { this._lookup = lookup; this._keys = keys; }
  static fromObject(obj) {
    return new Secrets((k) => {
      if (!Object.hasOwn(obj, k)) throw new SecretMissing(k);
      return obj[k];
    }, () => Object.keys(obj).sort());
  }
  /** The value; throws SecretMissing / SecretDenied / SecretExpired / SecretUnavailable. */
  get(key) { return this._lookup(key); }
  /** The value, or undefined when the key is not set (other errors still throw). */
  getOptional(key) {
    try { return this._lookup(key); } catch (e) {
      if (e instanceof SecretMissing) return undefined;
      throw e;
    }
  }
  keys() { return [...this._keys()]; }
}
