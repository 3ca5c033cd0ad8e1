// {{name}}: an extgate extension (JavaScript, componentize-js 0.23.0, world runner-ext).
// Declare every route in manifest.json too: the gateway only lets declared endpoints through.

import { App, HttpError, SecretError, config, context, secrets, serve } from '../vendor/extgate-sdk/guest.js';

const app = new App()
  .get('/hello', () => {
    // Logged lines reach the debug stream (`extgate debug tail`, `extgate dev`): cap:debug.logs.
    console.log(`hello called by tenant ${context().tenantId}`);
    return { message: config().get('greeting', 'Hello'), tenant: context().tenantId };
  })
  .get('/hello/:name', (req) => ({ message: `${config().get('greeting', 'Hello')}, ${req.params.name}` }))
  .post('/echo', (req) => {
    const doc = req.jsonObject(); // 400 invalid_json for anything else
    if (!('text' in doc)) throw new HttpError(422, 'text_required', "field 'text' is required");
    return { echo: doc.text };
  })
  .get('/status', () => {
    try {
      secrets().get('api-key'); // never return or log the value
      return { api_key: 'present' };
    } catch (e) {
      if (e instanceof SecretError) return { api_key: e.code }; // secret_missing, _denied, _expired, ...
      throw e;
    }
  });

export const handler = serve(app);
