// The JavaScript ClientSession replays the client transcripts the Python library recorded
// (tests/protocol/test_vectors.py): a scripted fake agent feeds it the agent's frames byte
// for byte, and every frame the JavaScript client sends must match the Python client's,
// field by field. Message ids are random, and sealed payloads carry random nonces, so
// those are compared by what they open to under the agent's key.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  ClientSession,
  PayloadType,
  Role,
  SessionCipher,
  base64Decode,
  decodeMessage,
  fromHex,
  fromUtf8,
  toHex,
  vectors,
} from './helpers.mjs';

const { sessionId, targetId, dataKeyHex } = vectors.session;

function eventJson(event) {
  const { data, ...rest } = event;
  return data === undefined ? rest : { ...rest, dataHex: toHex(data) };
}

async function assertSameClientFrame(actualBytes, expectedBytes, opener, where) {
  const actual = decodeMessage(actualBytes);
  const expected = decodeMessage(expectedBytes);
  for (const field of ['messageType', 'schemaVersion', 'createdDate', 'sequenceNumber', 'flags', 'payloadType']) {
    assert.equal(actual[field], expected[field], `${where}: ${field}`);
  }
  const open = async (payload) => toHex(await opener.decrypt(payload));
  if (expected.messageType === 'input_stream_data' && expected.payloadType === PayloadType.OUTPUT && opener.active) {
    assert.equal(await open(actual.payload), await open(expected.payload), `${where}: sealed input`);
  } else if (expected.payloadType === PayloadType.ENC_CHALLENGE_RESPONSE) {
    const sealed = (m) => base64Decode(JSON.parse(fromUtf8(m.payload)).Challenge, 'challenge');
    assert.equal(await open(sealed(actual)), await open(sealed(expected)), `${where}: challenge answer`);
  } else {
    assert.equal(fromUtf8(actual.payload), fromUtf8(expected.payload), `${where}: payload`);
    assert.equal(toHex(actual.payload), toHex(expected.payload), `${where}: payload bytes`);
  }
}

const actions = {
  sendInput: (session, step) => session.sendInput(fromHex(step.dataHex), step.now),
  sendSize: (session, step) => session.sendSize(step.cols, step.rows, step.now),
  provideDataKey: (session, step) => session.provideDataKey(fromHex(step.ciphertextBlobHex), fromHex(step.plaintextHex), step.now),
  refuseKms: (session, step) => session.refuseKms(step.error, step.now),
};

async function replay(steps) {
  const session = new ClientSession({ sessionId, targetId });
  // The agent's key opens what the client seals.
  const opener = await SessionCipher.create(fromHex(dataKeyHex), Role.AGENT);
  opener.active = false;
  const sent = [];
  let events = [];
  const collect = () => {
    sent.push(...session.dataToSend());
    let next;
    while ((next = session.nextEvent()) !== null) events.push(next);
  };
  for (const [index, step] of steps.entries()) {
    const where = `step ${index}`;
    if (step.from === 'agent') {
      await session.receive(fromHex(step.hex), step.now);
      collect();
    } else if (step.from === 'client') {
      assert.ok(sent.length, `${where}: the client sent nothing, the Python client sent ${step.hex.slice(8, 80)}`);
      await assertSameClientFrame(sent.shift(), fromHex(step.hex), opener, where);
    } else if (step.events) {
      assert.deepEqual(events.map(eventJson), step.events, where);
      events = [];
    } else {
      await actions[step.action](session, step);
      if (step.action === 'provideDataKey') opener.active = true;
      collect();
    }
  }
  assert.deepEqual(sent.map((f) => decodeMessage(f).messageType), [], 'frames the Python client did not send');
  assert.deepEqual(events.map(eventJson), [], 'events the Python client did not give');
  return session;
}

test('transcript: shell handshake with ExitCodeReporting, reordered and duplicated output, a paste, exit code, channel_closed', async () => {
  const session = await replay(vectors.transcripts.shell);
  assert.equal(session.state, 'closed');
  assert.equal(session.nextTimeout(), null);
});

test('transcript: KMS data key, challenge, encrypted traffic both ways', async () => {
  const session = await replay(vectors.transcripts.kms);
  assert.equal(session.state, 'closed');
  assert.ok(session.encrypted);
});

test('transcript: a legacy agent that sends no handshake', async () => {
  await replay(vectors.transcripts.legacy);
});

test('transcript: KMS refused by the page', async () => {
  const session = await replay(vectors.transcripts.refusedKms);
  assert.equal(session.encrypted, false);
});

test('transcript: a Port session is refused with the Python client words', async () => {
  const session = await replay(vectors.transcripts.port);
  assert.equal(session.state, 'failed');
});

test('the replay notices a client that differs from Python', async () => {
  // Guard against a replay that passes vacuously: change one size in the transcript.
  const steps = structuredClone(vectors.transcripts.shell);
  const size = steps.find((s) => s.action === 'sendSize');
  size.cols += 1;
  await assert.rejects(replay(steps), /payload/);
});
