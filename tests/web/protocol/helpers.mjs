// Shared by the protocol tests: the vectors the Python library wrote, and small tools.

import { readFileSync } from 'node:fs';

export * from '../../../hatchway/web/static/protocol/index.js';
export { base64Decode, base64Encode, fromHex, toHex, utf8, fromUtf8 } from '../../../hatchway/web/static/protocol/bytes.js';

export const vectors = JSON.parse(readFileSync(new URL('../../protocol/vectors.json', import.meta.url), 'utf8'));

export const T0 = 1_700_000_000.0;

/** A deterministic random(n): a seeded xorshift, so ids and nonces repeat run to run. */
export function seededRandom(seed = 1) {
  let x = seed >>> 0 || 1;
  return (n) => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      out[i] = x & 0xff;
    }
    return out;
  };
}

/** A seeded PRNG of integers in [0, n), for the scrambled-network tests. */
export function seededInts(seed = 7) {
  const bytes = seededRandom(seed);
  return (n) => {
    const [a, b, c, d] = bytes(4);
    return (((a << 24) | (b << 16) | (c << 8) | d) >>> 0) % n;
  };
}

export function drain(source) {
  const out = [];
  let next;
  while ((next = source.nextEvent()) !== null) out.push(next);
  return out;
}

export const streamBytes = (events) =>
  Buffer.concat(events.filter((e) => e.type === 'streamData').map((e) => e.payload)).toString('latin1');
