// DOM helpers. All data becomes text nodes or attribute values: nothing is parsed as HTML
// (the page's CSP requires Trusted Types, so an innerHTML string would throw anyway).

const URL_ATTRS = new Set(['href', 'src', 'action', 'formaction', 'xlink:href']);

/**
 * h('tr', {class: 'x', dataset: {seq: 3}, onclick: fn}, 'text', child)
 * @param {string} tag
 * @param {Record<string, any>|null} [props]
 * @param {...any} children strings, numbers, Nodes, arrays, null/false (skipped)
 * @returns {HTMLElement}
 */
export function h(tag, props = null, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = String(value);
    else if (key === 'text') el.textContent = String(value);
    else if (key === 'dataset') {
      for (const [k, v] of Object.entries(value)) if (v !== undefined && v !== null) el.dataset[k] = String(v);
    } else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key.startsWith('on') || key === 'style') throw new Error(`h(): ${key} is not allowed`);
    else if (URL_ATTRS.has(key) && !/^(\/(?!\/)|#)/.test(String(value))) throw new Error(`h(): unsafe ${key}`);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace an element's content with the given children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function $(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing element #${id}`);
  return el;
}

/**
 * A message box. kind: info | ok | warn | bad.
 * @param {{kind?: string, title?: string, text?: string, items?: string[], dismissible?: boolean, code?: string}} opts
 */
export function banner({ kind = 'info', title = '', text = '', items = [], dismissible = true, code = '' }) {
  const body = h('div', { class: 'body' },
    title ? h('div', { class: 'title' }, title) : null,
    text ? h('div', null, text) : null,
    items.length ? h('ul', null, items.map((i) => h('li', null, i))) : null);
  const box = h('div', { class: `banner ${kind}`, role: kind === 'bad' ? 'alert' : 'status', dataset: { code } }, body);
  if (dismissible) {
    box.append(h('button', {
      type: 'button', class: 'dismiss', 'aria-label': 'Dismiss', title: 'Dismiss', onclick: () => box.remove(),
    }, '×'));
  }
  return box;
}

/** ISO 8601 (UTC) with milliseconds from audit microseconds. */
export function isoFromMicros(us) {
  if (typeof us !== 'number' || !Number.isFinite(us)) return '';
  return new Date(Math.floor(us / 1000)).toISOString().replace('T', ' ').replace('Z', '');
}

export function shortId(id, n = 8) {
  const s = String(id ?? '');
  return s.length > n ? s.slice(0, n) + '…' : s;
}

/** JSON with sorted keys (the audit log's canonical form, for comparing records). */
export function canonicalJson(value) {
  if (Array.isArray(value)) return '[' + value.map(canonicalJson).join(',') + ']';
  if (value && typeof value === 'object') {
    return '{' + Object.keys(value).sort().map((k) => JSON.stringify(k) + ':' + canonicalJson(value[k])).join(',') + '}';
  }
  return JSON.stringify(value);
}
