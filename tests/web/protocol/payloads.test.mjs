import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  ProtocolError,
  decodeAcknowledge,
  decodeChannelClosed,
  decodeEncChallenge,
  decodeFlag,
  decodeHandshakeComplete,
  decodeHandshakeRequest,
  decodeTerminalSize,
  encodeAcknowledge,
  encodeEncChallenge,
  encodeFlag,
  encodeHandshakeResponse,
  encodeOpenDataChannel,
  encodeTerminalSize,
  fromHex,
  fromUtf8,
  toHex,
  utf8,
  vectors,
} from './helpers.mjs';

const P = vectors.payloads;

test('acknowledge: byte-exact both ways', () => {
  assert.equal(fromUtf8(encodeAcknowledge(P.acknowledge.fields)), P.acknowledge.json);
  assert.deepEqual({ ...decodeAcknowledge(utf8(P.acknowledge.json)) }, P.acknowledge.fields);
});

test('handshake request: the fields a client needs', () => {
  const request = decodeHandshakeRequest(utf8(P.handshakeRequest.json));
  const { actions, ...fields } = request;
  assert.deepEqual(fields, P.handshakeRequest.fields);
  assert.deepEqual(
    actions.map((a) => a.actionType),
    ['SessionType', 'KMSEncryption'],
  );
});

test('handshake responses: byte-exact, with the reference quirks', () => {
  for (const vector of P.handshakeResponses) {
    const json = fromUtf8(encodeHandshakeResponse(vector));
    assert.equal(json, vector.json);
  }
});

test('handshake complete, challenge, size, channel_closed', () => {
  assert.deepEqual({ ...decodeHandshakeComplete(utf8(P.handshakeComplete.json)) }, P.handshakeComplete.fields);
  assert.equal(fromUtf8(encodeEncChallenge(fromHex(P.encChallenge.challengeHex))), P.encChallenge.json);
  assert.equal(toHex(decodeEncChallenge(utf8(P.encChallenge.json))), P.encChallenge.challengeHex);
  const { cols, rows, json } = P.terminalSize;
  assert.equal(fromUtf8(encodeTerminalSize(cols, rows)), json);
  assert.deepEqual({ ...decodeTerminalSize(utf8(json)) }, { cols, rows });
  assert.deepEqual({ ...decodeChannelClosed(utf8(P.channelClosed.json)) }, P.channelClosed.fields);
});

test('open-data-channel text frame: the exact field order', () => {
  const v = P.openDataChannel;
  assert.equal(encodeOpenDataChannel(v), v.json);
  assert.throws(() => encodeOpenDataChannel({ ...v, token: '' }), ProtocolError);
});

test('flags are 4-byte big-endian, and ConnectToPortError may carry its reason', () => {
  for (const { flag, hex } of P.flags) {
    assert.equal(toHex(encodeFlag(flag)), hex);
    assert.deepEqual({ ...decodeFlag(fromHex(hex)) }, { flag, error: null });
  }
  const detail = decodeFlag(fromHex(P.connectErrorFlag.hex));
  assert.deepEqual({ ...detail.error }, P.connectErrorFlag.error);
  assert.throws(() => decodeFlag(new Uint8Array(3)), /not 4/);
  assert.throws(() => encodeFlag(9), /unknown flag/);
});

test('bad payloads raise ProtocolError naming the payload', () => {
  const cases = [
    [() => decodeAcknowledge(utf8('{')), /acknowledge payload is not valid JSON/],
    [() => decodeAcknowledge(utf8('[1]')), /must be a JSON object, not list/],
    [() => decodeAcknowledge(utf8('{"AcknowledgedMessageId":"x","AcknowledgedMessageSequenceNumber":1}')), /not a UUID/],
    [
      () => decodeAcknowledge(utf8('{"AcknowledgedMessageId":"123e4567-e89b-12d3-a456-426614174000","AcknowledgedMessageSequenceNumber":true}')),
      /wrong type bool/,
    ],
    [() => decodeAcknowledge(utf8('{"AcknowledgedMessageId":"123e4567-e89b-12d3-a456-426614174000"}')), /lacks the field AcknowledgedMessageSequenceNumber/],
    [() => decodeHandshakeRequest(utf8('{"RequestedClientActions":[1]}')), /action is not an object/],
    [() => decodeHandshakeRequest(new Uint8Array([0xff, 0xfe])), /not valid UTF-8/],
    [() => decodeEncChallenge(utf8('{"Challenge":"***"}')), /not valid base64/],
    [() => decodeTerminalSize(utf8('{"cols":-1,"rows":5}')), /out of range/],
    [() => encodeTerminalSize(80.5, 24), /out of range/],
  ];
  for (const [call, pattern] of cases) assert.throws(call, (err) => err instanceof ProtocolError && pattern.test(err.message));
});
