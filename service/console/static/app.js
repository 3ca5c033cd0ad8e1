// extgate console: sign-in, identity, tabs. Each view lives in its own module.

import { api, describeError } from './api.js';
import { claims, clearToken, getToken, looksLikeJwt, setToken } from './auth.js';
import { $, banner, fill, h } from './dom.js';
import { createAuditView } from './audit.js';
import { createDebugView } from './debug.js';
import { createDecisionsView } from './decisions.js';

const VIEWS = ['debug', 'decisions', 'audit'];
const scopeListeners = [];

const ctx = {
  claims: null,
  isPlatformAdmin() { return Boolean(this.claims && this.claims.roles.includes('platform-admin')); },
  /** The tenant the views look at: the token's own, or (platform admins) the one typed in the top bar. */
  scopeTenant({ allowAll = false } = {}) {
    const own = this.claims ? this.claims.tenant : '';
    if (!this.isPlatformAdmin()) return own;
    const typed = $('scope-tenant').value.trim();
    if (!typed) return own;
    if (typed === '*') return allowAll ? '*' : own;
    return typed;
  },
  onScopeChange(fn) { scopeListeners.push(fn); },
  notify(spec) { $('global-message').append(banner(spec)); },
};

let views = null;
let current = null;
let expiryTimer = null;

function showOnly(id) {
  for (const section of document.querySelectorAll('main > .view')) section.hidden = section.id !== id;
}

function route() {
  if (!ctx.claims) return;
  const wanted = window.location.hash.replace(/^#\/?/, '');
  const name = VIEWS.includes(wanted) ? wanted : 'debug';
  for (const tab of document.querySelectorAll('.tab')) {
    tab.setAttribute('aria-selected', String(tab.dataset.view === name));
  }
  showOnly(`view-${name}`);
  if (current !== name) {
    current = name;
    views[name].show();
  }
}

function renderIdentity() {
  const c = ctx.claims;
  const exp = c.exp ? new Date(c.exp * 1000).toISOString().slice(0, 16).replace('T', ' ') + ' UTC' : 'no expiry';
  fill($('whoami'),
    h('strong', null, c.sub), ' @ ', h('strong', null, c.tenant),
    ' · roles: ', c.roles.length ? c.roles.join(', ') : 'none',
    ' · token expires ', exp);
  $('scope-field').hidden = !ctx.isPlatformAdmin();
  $('scope-tenant').value = ctx.isPlatformAdmin() ? c.tenant : '';
}

function signedIn() {
  ctx.claims = claims(getToken());
  fill($('global-message'));
  $('identity').hidden = false;
  $('tabs').hidden = false;
  renderIdentity();
  views = views || {
    debug: createDebugView(ctx),
    decisions: createDecisionsView(ctx),
    audit: createAuditView(ctx),
  };
  current = null;
  if (ctx.claims.exp) {
    const ms = ctx.claims.exp * 1000 - Date.now();
    clearTimeout(expiryTimer);
    if (ms > 0 && ms < 2 ** 31) expiryTimer = setTimeout(() => signOut('Your token expired. Sign in again.'), ms);
  }
  route();
}

function signOut(reason) {
  clearToken();
  clearTimeout(expiryTimer);
  if (views) for (const v of Object.values(views)) v.reset();
  ctx.claims = null;
  current = null;
  $('identity').hidden = true;
  $('tabs').hidden = true;
  $('token-input').value = '';
  fill($('signin-status'));
  showOnly('view-signin');
  fill($('global-message'));
  if (reason) ctx.notify({ kind: 'warn', title: 'Signed out', text: reason, code: 'signed_out' });
}

async function signIn(event) {
  event.preventDefault();
  const token = $('token-input').value.trim().replace(/^bearer\s+/i, '');
  fill($('global-message'));
  if (!looksLikeJwt(token) || !claims(token)) {
    ctx.notify({ kind: 'bad', title: 'That is not a token', text: 'Paste the whole JWT (three parts separated by dots).', code: 'bad_token' });
    return;
  }
  const c = claims(token);
  if (c.exp && c.exp * 1000 <= Date.now()) {
    ctx.notify({ kind: 'bad', title: 'Token expired', text: 'This token has expired. Get a new one.', code: 'expired' });
    return;
  }
  fill($('signin-status'), 'Checking the token…');
  setToken(token);
  try {
    // Any authenticated read tells a valid token from an invalid one; 403 still means "valid".
    await api('/api/admin/extensions');
  } catch (err) {
    if (err && err.status === 401) {
      clearToken();
      fill($('signin-status'));
      ctx.notify(describeError(err));
      return;
    }
    if (!(err && err.status === 403)) {
      clearToken();
      fill($('signin-status'));
      ctx.notify(describeError(err));
      return;
    }
  }
  $('token-input').value = '';
  fill($('signin-status'));
  signedIn();
}

function init() {
  $('signin-form').addEventListener('submit', signIn);
  $('sign-out').addEventListener('click', () => signOut(''));
  for (const tab of document.querySelectorAll('.tab')) {
    tab.addEventListener('click', () => { window.location.hash = tab.dataset.view; });
  }
  window.addEventListener('hashchange', route);
  window.addEventListener('console:unauthenticated', () => {
    if (ctx.claims) signOut('The server no longer accepts your token (expired or revoked). Sign in again.');
  });
  $('scope-tenant').addEventListener('change', () => { for (const fn of scopeListeners) fn(); });
  const token = getToken();
  if (token && claims(token)) signedIn();
  else showOnly('view-signin');
}

init();
