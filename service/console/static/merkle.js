// Audit-log proofs checked in the browser with WebCrypto:
//   leaf hash  = SHA-256(0x00 || record bytes)          (RFC 6962 §2.1)
//   node hash  = SHA-256(0x01 || left || right)
//   inclusion  = RFC 9162 §2.1.3.2 (sizes and indexes as BigInt: JS bit operators are 32-bit)
//   checkpoint = C2SP tlog-checkpoint in a signed note; Ed25519 signature over the body,
//                key id = SHA-256(name || "\n" || 0x01 || public key)[:4]
// WebCrypto needs a secure context (HTTPS, or http://localhost / 127.0.0.1).

const encoder = new TextEncoder();
const SIG_PREFIX = '\u2014 '; // em dash + space

export function cryptoAvailable() {
  return Boolean(globalThis.isSecureContext && globalThis.crypto && globalThis.crypto.subtle);
}

export function hexToBytes(hex) {
  if (typeof hex !== 'string' || !/^([0-9a-fA-F]{2})*$/.test(hex)) throw new Error('not hex');
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
  return out;
}

export function bytesToHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export function base64ToBytes(text) {
  if (typeof text !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) {
    throw new Error('not base64');
  }
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

export function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
}

/** Leaf hash of a record: its stored text, UTF-8 encoded, prefixed with 0x00. */
export async function leafHash(recordText) {
  return sha256(concat(Uint8Array.of(0), encoder.encode(recordText)));
}

export async function nodeHash(left, right) {
  return sha256(concat(Uint8Array.of(1), left, right));
}

/**
 * The root an inclusion path leads to, or null if the path does not fit (RFC 9162 §2.1.3.2).
 * @param {Uint8Array} leaf @param {number|bigint} index @param {number|bigint} size @param {Uint8Array[]} path
 */
export async function rootFromInclusion(leaf, index, size, path) {
  let fn = BigInt(index);
  let sn = BigInt(size) - 1n;
  if (fn < 0n || fn > sn) return null;
  let r = leaf;
  for (const p of path) {
    if (sn === 0n) return null;
    if ((fn & 1n) === 1n || fn === sn) {
      r = await nodeHash(p, r);
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n ? r : null;
}

export async function verifyInclusion(leaf, index, size, path, root) {
  const got = await rootFromInclusion(leaf, index, size, path);
  return got !== null && equalBytes(got, root);
}

/**
 * Parse a signed checkpoint note (signatures are checked separately).
 * @returns {{origin: string, size: bigint, root: Uint8Array, body: Uint8Array,
 *            signatures: {name: string, keyId: Uint8Array, signature: Uint8Array}[]}}
 */
export function parseCheckpoint(text) {
  const split = text.indexOf('\n\n');
  if (split < 0) throw new Error('the note has no signature block');
  const bodyText = text.slice(0, split);
  const sigText = text.slice(split + 2);
  const lines = bodyText.split('\n');
  if (lines.length < 3) throw new Error('the checkpoint needs origin, size and root');
  const [origin, sizeText, rootB64] = lines;
  if (!origin || !/^(0|[1-9][0-9]*)$/.test(sizeText)) throw new Error('bad checkpoint origin or size');
  const root = base64ToBytes(rootB64);
  if (root.length !== 32) throw new Error('the checkpoint root is not 32 bytes');
  if (!sigText.endsWith('\n')) throw new Error('the note must end with a newline');
  const signatures = [];
  for (const line of sigText.slice(0, -1).split('\n')) {
    if (!line.startsWith(SIG_PREFIX)) throw new Error('malformed signature line');
    const rest = line.slice(SIG_PREFIX.length);
    const space = rest.lastIndexOf(' ');
    const raw = base64ToBytes(rest.slice(space + 1));
    if (space <= 0 || raw.length < 5) throw new Error('malformed signature');
    signatures.push({ name: rest.slice(0, space), keyId: raw.slice(0, 4), signature: raw.slice(4) });
  }
  if (!signatures.length) throw new Error('the note has no signatures');
  return { origin, size: BigInt(sizeText), root, body: encoder.encode(bodyText + '\n'), signatures };
}

export async function keyId(name, publicKey) {
  return (await sha256(concat(encoder.encode(name + '\n'), Uint8Array.of(1), publicKey))).slice(0, 4);
}

let ed25519Probe = null;

/** Whether this browser's WebCrypto implements Ed25519 (Chromium 137+, Firefox 129+, Safari 17+). */
export function ed25519Supported() {
  if (!ed25519Probe) {
    ed25519Probe = (async () => {
      if (!cryptoAvailable()) return false;
      try {
        await crypto.subtle.importKey('raw', new Uint8Array(32), { name: 'Ed25519' }, false, ['verify']);
        return true;
      } catch (err) {
        // A zero key may be rejected as a point; only "not supported" means no Ed25519.
        return !(err && err.name === 'NotSupportedError');
      }
    })();
  }
  return ed25519Probe;
}

/**
 * Check a parsed note's signatures against trusted keys ({name, public_key: base64 of 32 bytes}).
 * Signatures by unknown keys are ignored (C2SP signed-note); a trusted key's bad signature fails.
 * @returns {Promise<{status: 'valid'|'bad_signature'|'untrusted'|'unsupported', name?: string, keyId?: string}>}
 */
export async function verifyNote(note, keys) {
  if (!(await ed25519Supported())) return { status: 'unsupported' };
  let valid = null;
  for (const sig of note.signatures) {
    for (const key of keys) {
      if (key.name !== sig.name) continue;
      const pub = base64ToBytes(key.public_key);
      if (pub.length !== 32 || !equalBytes(await keyId(key.name, pub), sig.keyId)) continue;
      const cryptoKey = await crypto.subtle.importKey('raw', pub, { name: 'Ed25519' }, false, ['verify']);
      const ok = await crypto.subtle.verify({ name: 'Ed25519' }, cryptoKey, sig.signature, note.body);
      if (!ok) return { status: 'bad_signature', name: sig.name, keyId: bytesToHex(sig.keyId) };
      valid = { status: 'valid', name: sig.name, keyId: bytesToHex(sig.keyId) };
    }
  }
  return valid || { status: 'untrusted' };
}
