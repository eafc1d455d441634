import assert from 'node:assert/strict';
import { test } from 'node:test';

import { PayloadType, ProtocolError, Role, SessionCipher, fromHex, toHex, vectors } from './helpers.mjs';

const C = vectors.crypto;
const key = fromHex(C.keyHex);
const fixedNonce = () => fromHex(C.nonceHex);

test('AES-256-GCM vector: key split, nonce prefix, tag, both directions', async () => {
  const client = await SessionCipher.create(key, Role.CLIENT, fixedNonce);
  const agent = await SessionCipher.create(key, Role.AGENT, fixedNonce);
  assert.equal(toHex(await client.encrypt(fromHex(C.plaintextHex))), C.clientSealedHex);
  assert.equal(toHex(await agent.encrypt(fromHex(C.plaintextHex))), C.agentSealedHex);
  assert.equal(toHex(await client.decrypt(fromHex(C.agentSealedHex))), C.plaintextHex);
  assert.equal(toHex(await agent.decrypt(fromHex(C.clientSealedHex))), C.plaintextHex);
  // Each side opens only what the other sealed.
  await assert.rejects(client.decrypt(fromHex(C.clientSealedHex)), /failed authentication/);
});

test('which payload types are encrypted', async () => {
  const client = await SessionCipher.create(key, Role.CLIENT);
  const types = Object.values(PayloadType);
  assert.deepEqual(types.filter((t) => client.encryptsOutgoing(t)), [1]);
  assert.deepEqual(types.filter((t) => client.decryptsIncoming(t)), [1, 11, 12]);
});

test('the challenge round trip', async () => {
  const client = await SessionCipher.create(key, Role.CLIENT);
  const agent = await SessionCipher.create(key, Role.AGENT);
  const secret = new Uint8Array(64).map((_, i) => i * 3);
  const answer = await client.answerChallenge(await agent.encrypt(secret));
  assert.deepEqual(await agent.decrypt(answer), secret);
});

test('bad ciphertext and bad keys are protocol errors', async () => {
  const client = await SessionCipher.create(key, Role.CLIENT);
  for (const bad of [new Uint8Array(0), new Uint8Array(27), new Uint8Array(60)]) {
    await assert.rejects(client.decrypt(bad), ProtocolError);
  }
  await assert.rejects(SessionCipher.create(new Uint8Array(32), Role.CLIENT), /32 bytes, not 64/);
  const shortNonce = await SessionCipher.create(key, Role.CLIENT, () => new Uint8Array(8));
  await assert.rejects(shortNonce.encrypt(new Uint8Array(1)), /nonce source gave 8 bytes/);
});
