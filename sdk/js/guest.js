// extgate guest SDK for JavaScript — the bridge to the host (componentize-js 0.23.0).
//
// Import this module from your component's entry file. It imports `extgate:extension/config`,
// so build for world `runner-ext` (the upstream `runner` world plus config).
//
//   import { App, json } from './extgate-sdk/core.js';
//   import { serve, config } from './extgate-sdk/guest.js';
//   const app = new App().get('/hello', () => ({ greeting: config().get('greeting', 'hi') }));
//   export const handler = serve(app);

import { getContext } from 'alga:extension/context';
import * as hostSecrets from 'alga:extension/secrets';
import * as hostConfig from 'extgate:extension/config';
import { Config, Request, SECRET_ERRORS, Secrets, SecretUnavailable } from './core.js';

export * from './core.js';

/** The WIT enum case carried by a host `err(...)`: componentize-js throws it as `e.payload`. */
export function errorCode(e) {
  return e && typeof e === 'object' && 'payload' in e ? String(e.payload) : 'internal';
}

export function context() {
  return getContext(); // {requestId, tenantId, extensionId, installId, versionId}
}

export function config() {
  return new Config((key) => hostConfig.get(key), () => hostConfig.listAll());
}

export function secrets() {
  return new Secrets((key) => {
    try {
      return hostSecrets.get(key);
    } catch (e) {
      const Cls = SECRET_ERRORS[errorCode(e)] ?? SecretUnavailable;
      throw new Cls(key);
    }
  }, () => hostSecrets.listKeys());
}

export function toRequest(request) {
  const headers = {};
  for (const h of request.http.headers) headers[h.name] = h.value;
  return new Request({
    method: request.http.method,
    url: request.http.url,
    headers,
    body: request.http.body,
    context: request.context,
  });
}

export function toResponse(response) {
  return {
    status: response.status,
    headers: Object.entries(response.headers).map(([name, value]) => ({ name, value: String(value) })),
    body: response.body,
  };
}

/** The `handler` export for the component: `export const handler = serve(app);` */
export function serve(app) {
  return (request) => toResponse(app.handle(toRequest(request)));
}
