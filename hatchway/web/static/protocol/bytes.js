// Small byte helpers shared by the protocol modules: UTF-8, hex, base64 and UUIDs.

import { ProtocolError } from './errors.js';

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder('utf-8', { fatal: true });
const lenientDecoder = new TextDecoder('utf-8');

export const utf8 = (text) => encoder.encode(text);

/** Decode UTF-8; ``what`` names the payload in the error when the bytes are not UTF-8. */
export function fromUtf8(bytes, what = null) {
  if (what === null) return lenientDecoder.decode(bytes);
  try {
    return strictDecoder.decode(bytes);
  } catch {
    throw new ProtocolError(`${what} is not valid UTF-8`);
  }
}

/** Accept a Uint8Array, an ArrayBuffer or any typed array view; always a Uint8Array out. */
export function toBytes(data, what = 'data') {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const kind = data === null ? 'null' : typeof data;
  throw new ProtocolError(`${what} must be bytes (Uint8Array or ArrayBuffer), not ${kind}`);
}

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

export function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

export const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

export function fromHex(hex) {
  if (hex.length % 2 !== 0 || /[^0-9a-fA-F]/.test(hex)) throw new ProtocolError(`${JSON.stringify(hex)} is not hex`);
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

// Standard alphabet, padded, as Go and Python's base64 module write it.
export function base64Encode(bytes) {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

export function base64Decode(text, what) {
  // Strict like Python's b64decode(validate=True): only the alphabet, with correct padding.
  if (typeof text !== 'string' || text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
    throw new ProtocolError(`${what} is not valid base64`);
  }
  let binary;
  try {
    binary = atob(text);
  } catch {
    throw new ProtocolError(`${what} is not valid base64`);
  }
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

/** The default source of randomness: WebCrypto's CSPRNG, in browsers and Node alike. */
export function cryptoRandom(n) {
  return globalThis.crypto.getRandomValues(new Uint8Array(n));
}

/** A random (version 4) UUID as 16 bytes in RFC 4122 order, from ``random(n)``. */
export function uuid4Bytes(random) {
  const b = Uint8Array.from(random(16));
  if (b.length !== 16) throw new ProtocolError(`random source gave ${b.length} bytes, not 16`);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  return b;
}

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Lower-case hyphenated form (8-4-4-4-12) of 16 UUID bytes. */
export function uuidToString(bytes) {
  const h = toHex(bytes);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Parse a UUID string the way Python's uuid.UUID does for the forms peers send. */
export function uuidFromString(text, what = 'UUID') {
  const normal = typeof text === 'string' ? text.trim().toLowerCase().replace(/^urn:uuid:/, '').replace(/^\{(.*)\}$/, '$1') : '';
  const plain = normal.replaceAll('-', '');
  if (!(UUID_PATTERN.test(normal) || /^[0-9a-f]{32}$/.test(normal)) || plain.length !== 32) {
    throw new ProtocolError(`${what} ${JSON.stringify(text)} is not a UUID`);
  }
  return uuidToString(fromHex(plain));
}

export const uuid4 = (random = cryptoRandom) => uuidToString(uuid4Bytes(random));
