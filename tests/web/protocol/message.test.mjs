import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  HEADER_LENGTH,
  ProtocolError,
  decodeMessage,
  encodeMessage,
  fromHex,
  messageIdFromWire,
  messageIdToWire,
  toHex,
  vectors,
} from './helpers.mjs';

// The JSON keeps 64-bit values beyond 2**53 as decimal strings; the codec gives BigInts.
const wide = (value) => (typeof value === 'string' ? BigInt(value) : value);

function expectedFields(fields) {
  const { payloadHex, ...rest } = fields;
  return {
    ...rest,
    createdDate: wide(rest.createdDate),
    sequenceNumber: wide(rest.sequenceNumber),
    flags: wide(rest.flags),
    payload: fromHex(payloadHex),
  };
}

for (const vector of vectors.frames) {
  test(`frame vector decodes: ${vector.name}`, () => {
    const decoded = decodeMessage(fromHex(vector.hex));
    assert.deepEqual({ ...decoded }, expectedFields(vector.fields));
    assert.ok(Object.isFrozen(decoded));
  });
  if (vector.encodes) {
    test(`frame vector encodes byte for byte: ${vector.name}`, () => {
      assert.equal(toHex(encodeMessage(expectedFields(vector.fields))), vector.hex);
    });
  }
}

test('the spec vector is 123 bytes with a 116 header length and a space-padded type', () => {
  const frame = fromHex(vectors.frames[0].hex);
  assert.equal(frame.length, 123);
  assert.equal(new DataView(frame.buffer).getUint32(0), HEADER_LENGTH);
  assert.equal(Buffer.from(frame.subarray(4, 36)).toString('latin1'), 'input_stream_data'.padEnd(32, ' '));
});

for (const vector of vectors.badFrames) {
  test(`malformed frame says what is wrong: ${vector.name}`, () => {
    assert.throws(
      () => decodeMessage(fromHex(vector.hex)),
      (err) => err instanceof ProtocolError && err.message.includes(vector.error),
    );
  });
}

test('decode takes an ArrayBuffer and a view with an offset, as WebSocket gives', () => {
  const frame = fromHex(vectors.frames[0].hex);
  assert.equal(decodeMessage(frame.slice().buffer).sequenceNumber, 5);
  const padded = new Uint8Array(frame.length + 8);
  padded.set(frame, 5);
  assert.equal(decodeMessage(padded.subarray(5, 5 + frame.length)).sequenceNumber, 5);
});

test('decode refuses what is not bytes', () => {
  for (const bad of [12, 'text', null, undefined, [1, 2, 3]]) {
    assert.throws(() => decodeMessage(bad), ProtocolError);
  }
});

test('message id halves are swapped on the wire', () => {
  const { uuid, wireHex } = vectors.messageIdSwap;
  assert.equal(toHex(messageIdToWire(uuid)), wireHex);
  assert.equal(messageIdFromWire(fromHex(wireHex)), uuid);
});

test('encode refuses fields that do not fit', () => {
  const base = { messageType: 'output_stream_data', createdDate: 1, messageId: '123e4567-e89b-12d3-a456-426614174000' };
  const bad = [
    { messageType: 'x'.repeat(33) },
    { messageType: '' },
    { messageType: 'é' },
    { sequenceNumber: 2n ** 63n },
    { sequenceNumber: 2 ** 60 }, // unsafe as a Number: must be a BigInt
    { sequenceNumber: 1.5 },
    { flags: -1 },
    { payloadType: 2 ** 32 },
    { schemaVersion: -1 },
    { createdDate: 0 },
    { createdDate: true },
    { messageId: 'not-a-uuid' },
    { payload: 'text is not bytes' },
  ];
  for (const fields of bad) {
    assert.throws(() => encodeMessage({ ...base, ...fields }), ProtocolError, JSON.stringify(fields, (k, v) => (typeof v === 'bigint' ? `${v}n` : v)));
  }
});

test('start and pause publication may have no created date', () => {
  const frame = encodeMessage({ messageType: 'start_publication', createdDate: 0, messageId: '00000000-0000-4000-8000-000000000004' });
  assert.equal(decodeMessage(frame).createdDate, 0);
});
