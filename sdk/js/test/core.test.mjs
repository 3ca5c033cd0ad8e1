// Unit tests of the pure part of the JS guest SDK: `node --test sdk/js/test/`
// (run by tests/sdk/test_js_sdk.py). guest.js needs the host and is covered by the
// example component in tests/sdk/test_examples.py.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  App, Config, ConfigInvalid, ConfigMissing, HttpError, Request, SecretDenied, SecretMissing, Secrets,
  json,
} from '../core.js';

const decode = (r) => (r.body.length ? JSON.parse(new TextDecoder().decode(r.body)) : null);

function makeApp() {
  return new App()
    .get('/items', (req) => ({ items: [], q: req.query.q }))
    .get('/items/:id', (req) => ({ id: req.params.id }))
    .put('/items/:id', (req) => json({ id: req.params.id, doc: req.jsonObject() }, 201))
    .delete('/items/:id', () => undefined)
    .get('/items/:id/parts/:part', (req) => ({ ...req.params }))
    .get('/boom', () => { throw new Error('internal detail'); })
    .get('/teapot', () => { throw new HttpError(418, 'teapot', 'short and stout', { size: 'small' }); })
    .get('/needs-config', () => ({ n: Config.fromObject({}).require('region') }));
}

const call = (app, method, url, body) =>
  app.handle(new Request({ method, url, headers: { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : new TextEncoder().encode(body) }));

test('routes match like the gateway', () => {
  const app = makeApp();
  assert.deepEqual(decode(call(app, 'GET', '/items?q=a+b&q=ignored')), { items: [], q: 'a b' });
  assert.deepEqual(decode(call(app, 'GET', '//items//42/')), { id: '42' });
  assert.deepEqual(decode(call(app, 'GET', '/items/a%20b')), { id: 'a b' });
  assert.deepEqual(decode(call(app, 'GET', '/items/1/parts/x')), { id: '1', part: 'x' });
  assert.equal(call(app, 'GET', '/items/1/parts').status, 404);
});

test('unknown route, wrong method, HEAD', () => {
  const app = makeApp();
  assert.equal(decode(call(app, 'GET', '/nope')).error, 'route_not_found');
  const r = call(app, 'POST', '/items/1');
  assert.equal(r.status, 405);
  assert.equal(r.headers.allow, 'DELETE, GET, PUT');
  const head = call(app, 'HEAD', '/items/1');
  assert.equal(head.status, 200);
  assert.equal(head.body.length, 0);
});

test('JSON body helpers', () => {
  const app = makeApp();
  const ok = call(app, 'PUT', '/items/1', '{"a": 1}');
  assert.equal(ok.status, 201);
  assert.deepEqual(decode(ok), { id: '1', doc: { a: 1 } });
  for (const bad of ['', '{nope', '[1]']) {
    const r = call(app, 'PUT', '/items/1', bad);
    assert.equal(r.status, 400, bad);
    assert.equal(decode(r).error, 'invalid_json');
  }
  const notUtf8 = app.handle(new Request({ method: 'PUT', url: '/items/1', body: new Uint8Array([0xff]) }));
  assert.equal(decode(notUtf8).error, 'invalid_body');
});

test('handler results and errors', () => {
  const app = makeApp();
  assert.equal(call(app, 'DELETE', '/items/1').status, 204);
  const tea = call(app, 'GET', '/teapot');
  assert.equal(tea.status, 418);
  assert.deepEqual(decode(tea), { error: 'teapot', message: 'short and stout', size: 'small' });
  const cfg = call(app, 'GET', '/needs-config');
  assert.equal(cfg.status, 500);
  assert.equal(decode(cfg).error, 'config_missing');
  assert.equal(decode(cfg).key, 'region');
  const origError = console.error;
  const logged = [];
  console.error = (m) => logged.push(m);
  try {
    const boom = call(app, 'GET', '/boom');
    assert.equal(boom.status, 500);
    assert.deepEqual(decode(boom), { error: 'internal_error', message: 'internal error' });
  } finally {
    console.error = origError;
  }
  assert.match(logged.join('\n'), /internal detail/); // stderr (debug stream), not the caller
});

test('route registration is validated', () => {
  assert.throws(() => new App().route('HEAD', '/x'), /method/);
  assert.throws(() => new App().get('x', () => null), /start with/);
});

test('config typed reads', () => {
  const cfg = Config.fromObject({ n: ' 7 ', flag: 'Yes', bad: 'seven', doc: '{"a":[1]}', s: 'v' });
  assert.equal(cfg.get('s'), 'v');
  assert.equal(cfg.get('absent'), undefined);
  assert.equal(cfg.get('absent', 'd'), 'd');
  assert.equal(cfg.getInt('n'), 7);
  assert.equal(cfg.getInt('absent', 3), 3);
  assert.equal(cfg.getBool('flag'), true);
  assert.deepEqual(cfg.getJson('doc'), { a: [1] });
  assert.throws(() => cfg.getInt('absent'), ConfigMissing);
  assert.throws(() => cfg.getInt('bad'), ConfigInvalid);
  assert.throws(() => cfg.getBool('bad'), ConfigInvalid);
  assert.throws(() => cfg.getJson('bad'), ConfigInvalid);
  assert.equal(cfg.toObject().s, 'v');
});

test('secrets typed errors never carry values', () => {
  const s = Secrets.fromObject({ 'api-key': 's3cr3t' });
  assert.equal(s.get('api-key'), 's3cr3t');
  assert.deepEqual(s.keys(), ['api-key']);
  assert.equal(s.getOptional('other'), undefined);
  assert.throws(() => s.get('other'), (e) => e instanceof SecretMissing && e.code === 'secret_missing'
    && !JSON.stringify(e.toJSON()).includes('s3cr3t'));
  const denied = new Secrets((k) => { throw new SecretDenied(k); }, () => []);
  assert.throws(() => denied.getOptional('api-key'), SecretDenied);
});
