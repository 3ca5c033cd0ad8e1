// A Server-Sent Events reader over fetch(): unlike EventSource it lets the console choose
// when and how to reconnect (a stream ticket works once, so a reconnect needs a new
// session and sends Last-Event-ID itself) and see the HTTP status of a refusal.

/**
 * Parse an event stream. Yields {event, id, data, retry}; comment lines (pings) are skipped.
 * @param {ReadableStream<Uint8Array>} body
 * @returns {AsyncGenerator<{event: string, id: string|null, data: string, retry: number|null}>}
 */
export async function* readEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let event = '';
  let data = [];
  let id = null;
  let retry = null;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      for (;;) {
        const m = /\r\n|\r|\n/.exec(buffer);
        if (!m) break;
        // A lone CR at the very end may be the first half of CRLF: wait for more input.
        if (m[0] === '\r' && m.index === buffer.length - 1) break;
        const line = buffer.slice(0, m.index);
        buffer = buffer.slice(m.index + m[0].length);
        if (line === '') {
          if (data.length) yield { event: event || 'message', id, data: data.join('\n'), retry };
          event = ''; data = []; id = null; retry = null;
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? '' : line.slice(colon + 1);
        if (val.startsWith(' ')) val = val.slice(1);
        if (field === 'event') event = val;
        else if (field === 'data') data.push(val);
        else if (field === 'id' && !val.includes('\0')) id = val;
        else if (field === 'retry' && /^\d+$/.test(val)) retry = Number(val);
      }
    }
  } finally {
    reader.releaseLock();
  }
}
