// Session encryption after a KMS handshake (data-channel.md §4.4-4.5), a port of
// hatchway/protocol/crypto.py on WebCrypto (globalThis.crypto.subtle), which is async.
//
// The 64-byte data key is split in two: bytes 0-31 encrypt what the agent sends, bytes
// 32-63 what the client sends. Each sealed payload is nonce(12) || ciphertext || tag(16)
// under AES-256-GCM with no associated data.

import { concat, cryptoRandom, toBytes } from './bytes.js';
import { ProtocolError } from './errors.js';
import { PayloadType } from './message.js';

export const DATA_KEY_BYTES = 64;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;

export const Role = Object.freeze({ CLIENT: 'client', AGENT: 'agent' });

// What each side encrypts (§4.4 step 6). Size, Flag and the handshake stay in clear.
const ENCRYPTED_FROM = {
  [Role.CLIENT]: new Set([PayloadType.OUTPUT]),
  [Role.AGENT]: new Set([PayloadType.OUTPUT, PayloadType.STDERR, PayloadType.EXIT_CODE]),
};

const peerOf = (role) => (role === Role.CLIENT ? Role.AGENT : Role.CLIENT);

function subtle() {
  const api = globalThis.crypto?.subtle;
  if (!api) throw new ProtocolError('WebCrypto (crypto.subtle) is not available: the page must be served over https or from localhost');
  return api;
}

async function importKey(raw, usage) {
  return subtle().importKey('raw', raw, { name: 'AES-GCM' }, false, [usage]);
}

/** Seals what this side sends and opens what the peer sends. Build with ``create``. */
export class SessionCipher {
  /**
   * ``random(n)`` gives the nonces; it exists so tests can be deterministic, and defaults
   * to crypto.getRandomValues. Rejects with ProtocolError for a key that is not 64 bytes.
   */
  static async create(dataKey, role, random = cryptoRandom) {
    const key = toBytes(dataKey, 'data key');
    if (key.length !== DATA_KEY_BYTES) throw new ProtocolError(`data key is ${key.length} bytes, not ${DATA_KEY_BYTES}`);
    if (role !== Role.CLIENT && role !== Role.AGENT) throw new ProtocolError(`unknown role ${role}`);
    const agentKey = key.slice(0, 32);
    const clientKey = key.slice(32);
    const sealKey = await importKey(role === Role.AGENT ? agentKey : clientKey, 'encrypt');
    const openKey = await importKey(role === Role.AGENT ? clientKey : agentKey, 'decrypt');
    return new SessionCipher(role, sealKey, openKey, random);
  }

  constructor(role, sealKey, openKey, random) {
    this.role = role;
    this._sealKey = sealKey;
    this._openKey = openKey;
    this._random = random;
  }

  encryptsOutgoing(payloadType) {
    return ENCRYPTED_FROM[this.role].has(payloadType);
  }

  decryptsIncoming(payloadType) {
    return ENCRYPTED_FROM[peerOf(this.role)].has(payloadType);
  }

  async encrypt(plaintext) {
    const nonce = Uint8Array.from(this._random(NONCE_BYTES));
    if (nonce.length !== NONCE_BYTES) throw new ProtocolError(`nonce source gave ${nonce.length} bytes, not ${NONCE_BYTES}`);
    const sealed = await subtle().encrypt({ name: 'AES-GCM', iv: nonce, tagLength: TAG_BYTES * 8 }, this._sealKey, toBytes(plaintext));
    return concat(nonce, new Uint8Array(sealed));
  }

  async decrypt(sealed) {
    const bytes = toBytes(sealed, 'encrypted payload');
    if (bytes.length < NONCE_BYTES + TAG_BYTES) throw new ProtocolError(`encrypted payload is only ${bytes.length} bytes`);
    try {
      const plain = await subtle().decrypt(
        { name: 'AES-GCM', iv: bytes.subarray(0, NONCE_BYTES), tagLength: TAG_BYTES * 8 },
        this._openKey,
        bytes.subarray(NONCE_BYTES),
      );
      return new Uint8Array(plain);
    } catch {
      throw new ProtocolError('encrypted payload failed authentication');
    }
  }

  /** Client side of §4.5: open with the agent's key, seal again with our own. */
  async answerChallenge(sealedChallenge) {
    return this.encrypt(await this.decrypt(sealedChallenge));
  }
}
