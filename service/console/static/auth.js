// The bearer token: kept in this tab's sessionStorage only (never localStorage, cookies or URLs).

const KEY = 'extgate.console.token';

export function getToken() {
  try { return sessionStorage.getItem(KEY); } catch { return null; }
}

export function setToken(token) {
  sessionStorage.setItem(KEY, token);
}

export function clearToken() {
  try { sessionStorage.removeItem(KEY); } catch { /* storage unavailable: nothing kept */ }
}

/** Whether a pasted string has the shape of a JWT (three base64url parts). */
export function looksLikeJwt(token) {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token) && token.length <= 8192;
}

/**
 * The token's claims, decoded for display only: the server verifies the token on every
 * request and decides what it may do; nothing here is trusted for access decisions.
 * @returns {{sub: string, tenant: string, roles: string[], exp: number|null, name: string|null}|null}
 */
export function claims(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = atob(part + '='.repeat((4 - (part.length % 4)) % 4));
    const bytes = Uint8Array.from(json, (c) => c.charCodeAt(0));
    const data = JSON.parse(new TextDecoder().decode(bytes));
    const roles = Array.isArray(data.roles) ? data.roles.filter((r) => typeof r === 'string') : [];
    return {
      sub: String(data.sub ?? ''),
      tenant: String(data.tenant ?? ''),
      roles,
      exp: typeof data.exp === 'number' ? data.exp : null,
      name: typeof data.name === 'string' ? data.name : null,
    };
  } catch {
    return null;
  }
}
