// ClientSession against a fake agent made of an agent-side DataChannel and SessionCipher,
// with no network and no clock: `now` only moves when a test moves it.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  ClientSession,
  DataChannel,
  FlowControlError,
  PayloadType,
  ProtocolError,
  Role,
  SessionCipher,
  T0,
  decodeMessage,
  encodeEncChallenge,
  encodeMessage,
  parseExitCode,
  seededRandom,
  utf8,
} from './helpers.mjs';

const DATA_KEY = new Uint8Array(64).map((_, i) => i);
const text = (bytes) => Buffer.from(bytes).toString('utf8');

const shellRequest = (...extra) =>
  utf8(
    JSON.stringify({
      AgentVersion: '3.3.987.0',
      RequestedClientActions: [{ ActionType: 'SessionType', ActionParameters: { SessionType: 'Standard_Stream', Properties: null } }, ...extra],
    }),
  );
const kmsAction = { ActionType: 'KMSEncryption', ActionParameters: { KMSKeyId: 'alias/session', Challenge: 'AAAA' } };
const complete = (message = '') => utf8(JSON.stringify({ HandshakeTimeToComplete: 5, CustomerMessage: message }));

class Pair {
  constructor({ clientOptions = {}, agentOptions = {} } = {}) {
    this.client = new ClientSession({ sessionId: 'sess-1', targetId: 'i-0123456789abcdef0', random: seededRandom(3), ...clientOptions });
    this.agent = new DataChannel(Role.AGENT, { random: seededRandom(4), ...agentOptions });
    this.agentCipher = null;
    this.now = T0;
    this.received = []; // stream data the agent got, opened
    this.wire = []; // every client frame, decoded
    this.dropToAgent = false; // a cut wire: client frames vanish
  }

  async agentFrame(payload, payloadType = PayloadType.OUTPUT) {
    const sealed = this.agentCipher?.encryptsOutgoing(payloadType) ? await this.agentCipher.encrypt(payload) : payload;
    this.agent.send(sealed, payloadType, this.now);
    return this.agent.dataToSend();
  }

  async agentSends(payload, payloadType = PayloadType.OUTPUT) {
    for (const frame of await this.agentFrame(payload, payloadType)) await this.client.receive(frame, this.now);
    await this.pump();
  }

  async pump() {
    for (;;) {
      await this.client.whenIdle();
      const toClient = this.agent.dataToSend();
      const toAgent = this.client.dataToSend();
      if (!toClient.length && !toAgent.length) return;
      for (const frame of toClient) await this.client.receive(frame, this.now);
      for (const frame of toAgent) {
        this.wire.push(decodeMessage(frame));
        if (this.dropToAgent) continue;
        this.agent.receive(frame, this.now);
        let event;
        while ((event = this.agent.nextEvent()) !== null) {
          if (event.type !== 'streamData') continue;
          const opened = this.agentCipher?.decryptsIncoming(event.payloadType) ? await this.agentCipher.decrypt(event.payload) : event.payload;
          this.received.push({ payloadType: event.payloadType, payload: opened });
        }
      }
    }
  }

  async toAgent() {
    await this.pump();
    const got = this.received;
    this.received = [];
    return got;
  }

  events() {
    const out = [];
    let event;
    while ((event = this.client.nextEvent()) !== null) out.push(event);
    return out;
  }

  async startShell() {
    await this.agentSends(shellRequest(), PayloadType.HANDSHAKE_REQUEST);
    await this.agentSends(complete('hi'), PayloadType.HANDSHAKE_COMPLETE);
    await this.toAgent();
    this.events();
  }

  async startKms() {
    await this.agentSends(shellRequest(kmsAction), PayloadType.HANDSHAKE_REQUEST);
    await this.client.provideDataKey(utf8('blob'), DATA_KEY, this.now);
    this.agentCipher = await SessionCipher.create(DATA_KEY, Role.AGENT);
    await this.pump();
    const secret = new Uint8Array(64).fill(7);
    await this.agentSends(encodeEncChallenge(await this.agentCipher.encrypt(secret)), PayloadType.ENC_CHALLENGE_REQUEST);
    const answer = (await this.toAgent()).find((m) => m.payloadType === PayloadType.ENC_CHALLENGE_RESPONSE);
    const sealed = Buffer.from(JSON.parse(text(answer.payload)).Challenge, 'base64');
    assert.deepEqual(await this.agentCipher.decrypt(sealed), secret);
    await this.agentSends(complete('This session is encrypted using AWS KMS.'), PayloadType.HANDSHAKE_COMPLETE);
    const events = this.events();
    assert.deepEqual(
      events.map((e) => e.type),
      ['handshakeStarted', 'kmsDataKeyNeeded', 'challengeAnswered', 'sessionStarted'],
    );
    return events;
  }
}

test('the KMS handshake asks for a data key bound to the agent\'s random challenge, acknowledges it, then answers the challenge', async () => {
  const pair = new Pair();
  const [started, needed] = await pair.startKms();
  assert.deepEqual({ ...started }, { type: 'handshakeStarted', agentVersion: '3.3.987.0', sessionType: 'Standard_Stream', properties: {}, kmsKeyId: 'alias/session' });
  assert.deepEqual(
    { ...needed, encryptionContext: { ...needed.encryptionContext } },
    { type: 'kmsDataKeyNeeded', keyId: 'alias/session', encryptionContext: { 'aws:ssm:SessionId': 'sess-1', 'aws:ssm:TargetId': 'i-0123456789abcdef0', 'aws:ssm:RandomChallenge': 'AAAA' } },
  );
  assert.ok(Object.isFrozen(needed));
  const response = pair.wire.find((m) => m.payloadType === PayloadType.HANDSHAKE_RESPONSE);
  const kms = JSON.parse(text(response.payload)).ProcessedClientActions[1];
  assert.deepEqual(kms, { ActionType: 'KMSEncryption', ActionStatus: 1, ActionResult: { KMSCipherTextKey: 'YmxvYg==', KMSCipherTextHash: null, ChallengeAcknowledgement: true }, Error: '' });
});

test('frames passed to receive without awaiting are processed in order, decrypted in stream order', async () => {
  const pair = new Pair();
  await pair.startKms();
  const frames = [];
  for (let i = 0; i < 30; i++) frames.push(...(await pair.agentFrame(utf8(`line ${i}\n`))));
  frames.push(...(await pair.agentFrame(utf8('EXIT_CODE: 7'), PayloadType.EXIT_CODE)));
  // Scramble arrival (the stream reorders), and do not await between calls.
  const order = [...frames.keys()].sort((a, b) => ((a * 7919) % 31) - ((b * 7919) % 31));
  const pending = order.map((i) => pair.client.receive(frames[i], pair.now));
  await Promise.all(pending);
  const events = pair.events();
  assert.equal(events.filter((e) => e.type === 'output').map((e) => text(e.data)).join(''), [...Array(30).keys()].map((i) => `line ${i}\n`).join(''));
  assert.deepEqual({ ...events.at(-1) }, { type: 'exitCode', code: 7, text: 'EXIT_CODE: 7' });
  // Every frame was acked once.
  const acks = pair.client.dataToSend().map(decodeMessage).filter((m) => m.messageType === 'acknowledge');
  assert.equal(acks.length, frames.length);
});

test('unequal decrypt work cannot reorder output, nor concurrent calls repeat input', async () => {
  const pair = new Pair({ clientOptions: { inputBufferBytes: 8 * 1024 * 1024 } });
  await pair.startKms();
  // A big sealed payload first: its decryption takes longest, yet it must come out first.
  const big = new Uint8Array(4 * 1024 * 1024).fill(0x61);
  const frames = [...(await pair.agentFrame(big)), ...(await pair.agentFrame(utf8('b'))), ...(await pair.agentFrame(utf8('c')))];
  await Promise.all(frames.map((frame) => pair.client.receive(frame, pair.now)));
  const outputs = pair.events().map((e) => e.data);
  assert.deepEqual(outputs.map((d) => d.length), [big.length, 1, 1]);
  assert.deepEqual(outputs.slice(1).map(text), ['b', 'c']);
  // Input calls not awaited, with a size between them: sequence numbers in call order.
  const calls = [
    pair.client.sendInput(new Uint8Array(3000).fill(0x31), pair.now),
    pair.client.sendSize(90, 30, pair.now),
    pair.client.sendInput(utf8('two'), pair.now),
    pair.client.sendInput(new Uint8Array(2000).fill(0x33), pair.now),
  ];
  await Promise.all(calls);
  const got = await pair.toAgent();
  assert.deepEqual(
    got.filter((m) => m.payloadType !== PayloadType.ENC_CHALLENGE_RESPONSE).map((m) => [m.payloadType, m.payload.length]),
    [[1, 1024], [1, 1024], [1, 952], [3, 21], [1, 3], [1, 1024], [1, 976]],
  );
});

test('a 20 KB paste is cut into 1024-byte messages and arrives intact, sealed on the wire', async () => {
  const pair = new Pair();
  await pair.startKms();
  const paste = new Uint8Array(20_000).map((_, i) => (i * 31 + 7) & 0xff);
  pair.wire = [];
  await pair.client.sendInput(paste, pair.now);
  const got = await pair.toAgent();
  assert.deepEqual(got.map((m) => m.payload.length), [...Array(19).fill(1024), 20_000 - 19 * 1024]);
  assert.deepEqual(Buffer.concat(got.map((m) => m.payload)), Buffer.from(paste));
  const sent = pair.wire.filter((m) => m.messageType === 'input_stream_data');
  assert.ok(sent.every((m) => m.payload.length === Math.min(1024, m.payload.length - 28) + 28)); // nonce and tag
  assert.equal(pair.client.sendCapacity, 1024 * 1024);
});

test('input beyond the send buffer waits in order for acks, sizes included, and sendCapacity says so', async () => {
  const pair = new Pair({ clientOptions: { inputBufferBytes: 16 * 1024, channelOptions: { sendBufferMessages: 4 } } });
  await pair.startShell();
  pair.wire = [];
  pair.dropToAgent = true; // nothing is acked for now
  const paste = new Uint8Array(10 * 1024).map((_, i) => i & 0xff);
  await pair.client.sendInput(paste, pair.now);
  await pair.client.sendSize(100, 50, pair.now);
  await pair.pump();
  assert.equal(pair.wire.filter((m) => m.messageType === 'input_stream_data').length, 4);
  assert.equal(pair.client.sendCapacity, 16 * 1024 - (10 * 1024 - 4 * 1024));
  await assert.rejects(pair.client.sendInput(new Uint8Array(16 * 1024), pair.now), FlowControlError);
  assert.equal(pair.client.sendCapacity, 10 * 1024); // the refused input queued nothing
  // The wire heals: retransmission and acks move the rest, in order.
  pair.dropToAgent = false;
  for (let round = 0; round < 50 && pair.client.nextTimeout() !== null; round++) {
    pair.now = pair.client.nextTimeout();
    await pair.client.tick(pair.now);
    await pair.pump();
  }
  const got = pair.received;
  assert.deepEqual(Buffer.concat(got.filter((m) => m.payloadType === 1).map((m) => m.payload)), Buffer.from(paste));
  assert.equal(got.at(-1).payloadType, PayloadType.SIZE); // the size went after the paste
  assert.equal(pair.client.sendCapacity, 16 * 1024);
});

test('input before the session starts is refused and costs no capacity', async () => {
  const pair = new Pair();
  await pair.client.sendSize(80, 24, pair.now); // allowed before anything arrives
  await assert.rejects(pair.client.sendInput(utf8('x'), pair.now), /cannot send input while the session is awaiting_handshake/);
  assert.equal(pair.client.sendCapacity, 1024 * 1024);
});

test('a legacy agent starts a shell with its first output; exit code and channel_closed end it', async () => {
  const pair = new Pair();
  await pair.agentSends(utf8('$ '));
  await pair.client.sendInput(utf8('exit 3\r'), pair.now);
  assert.deepEqual((await pair.toAgent()).map((m) => text(m.payload)), ['exit 3\r']);
  await pair.agentSends(utf8('EXIT_CODE: 3'), PayloadType.EXIT_CODE);
  pair.agent.sendMessage({ messageType: 'channel_closed', createdDate: 1, flags: 3, payload: utf8('{"SessionId":"sess-1","Output":"bye"}') });
  await pair.pump();
  assert.deepEqual(
    pair.events().map((e) => ({ ...e })),
    [
      { type: 'sessionStarted', sessionType: 'Standard_Stream', properties: {}, agentVersion: '', customerMessage: '', handshake: false },
      { type: 'output', data: utf8('$ ') },
      { type: 'exitCode', code: 3, text: 'EXIT_CODE: 3' },
      { type: 'ended', output: 'bye' },
    ],
  );
  assert.equal(pair.client.state, 'closed');
  assert.equal(pair.client.sendCapacity, 0);
  await assert.rejects(pair.client.sendInput(utf8('x'), pair.now), FlowControlError);
  await assert.rejects(pair.client.sendSize(1, 1, pair.now), /closed/);
});

test('an unparsable channel_closed still ends the session, once', async () => {
  const pair = new Pair();
  const frame = encodeMessage({ messageType: 'channel_closed', createdDate: 1, messageId: '00000000-0000-4000-8000-000000000001', payload: utf8('{not json') });
  await pair.client.receive(frame, pair.now);
  assert.deepEqual(pair.events().map((e) => ({ ...e })), [{ type: 'ended', output: '' }]);
  await pair.client.receive(frame, pair.now);
  assert.deepEqual(pair.events(), []);
  assert.equal(pair.client.nextTimeout(), null);
});

test('a malformed frame rejects, changes nothing, and later work still runs', async () => {
  const pair = new Pair();
  const bad = pair.client.receive(new Uint8Array(10), pair.now);
  const good = pair.client.sendSize(80, 24, pair.now);
  await assert.rejects(bad, (err) => err instanceof ProtocolError && /shorter than/.test(err.message));
  await good;
  assert.equal(pair.client.state, 'awaiting_handshake');
  assert.equal(pair.client.dataToSend().length, 1);
  await assert.rejects(pair.client.receive('text', pair.now), /must be bytes/);
});

test('the agent\'s protocol violations fail the session with the reason', async () => {
  const cases = [
    [complete(), PayloadType.HANDSHAKE_COMPLETE, /unexpected HandshakeComplete while awaiting_handshake/],
    [utf8('[1]'), PayloadType.HANDSHAKE_REQUEST, /HandshakeRequest must be a JSON object/],
    [utf8('{"Challenge":"AA=="}'), PayloadType.ENC_CHALLENGE_REQUEST, /before a data key was agreed/],
  ];
  for (const [payload, payloadType, reason] of cases) {
    const pair = new Pair();
    await pair.agentSends(payload, payloadType);
    const [event] = pair.events();
    assert.equal(event.type, 'failed');
    assert.match(event.reason, reason);
    assert.equal(pair.client.state, 'failed');
  }
  const pair = new Pair();
  await pair.agentSends(shellRequest(), PayloadType.HANDSHAKE_REQUEST);
  await pair.agentSends(shellRequest(), PayloadType.HANDSHAKE_REQUEST);
  assert.match(pair.events().at(-1).reason, /unexpected HandshakeRequest while handshaking/);
});

test('tampered encrypted output fails the session', async () => {
  const pair = new Pair();
  await pair.startKms();
  const [frame] = await pair.agentFrame(utf8('secret'));
  const message = decodeMessage(frame);
  const payload = Uint8Array.from(message.payload);
  payload[20] ^= 1;
  await pair.client.receive(encodeMessage({ ...message, payload }), pair.now);
  const [event] = pair.events();
  assert.equal(event.type, 'failed');
  assert.match(event.reason, /message \d+: encrypted payload failed authentication/);
});

test('handshake answers: unsupported actions, Hatchway options, unknown and refused session types', async () => {
  const pair = new Pair();
  await pair.agentSends(
    shellRequest(
      { ActionType: 'Teleport', ActionParameters: { To: 'Mars' } },
      { ActionType: 'ExitCodeReporting' },
      { ActionType: 'PortErrorDetails' },
      { ActionType: 'PseudoTerminal' },
    ),
    PayloadType.HANDSHAKE_REQUEST,
  );
  const [response] = await pair.toAgent();
  assert.equal(
    text(response.payload),
    '{"ClientVersion":"1.2.650.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":1,"ActionResult":null,"Error":""},' +
      '{"ActionType":"Teleport","ActionStatus":0,"ActionResult":3,"Error":"Unsupported action Teleport"},' +
      '{"ActionType":"ExitCodeReporting","ActionStatus":1,"ActionResult":null,"Error":""},' +
      '{"ActionType":"PortErrorDetails","ActionStatus":1,"ActionResult":null,"Error":""},' +
      // The browser is a terminal: it keeps the pty the agent offers to do without.
      '{"ActionType":"PseudoTerminal","ActionStatus":1,"ActionResult":{"Allocate":true},"Error":""}],"Errors":["Unsupported action Teleport"]}',
  );
  for (const [type, error] of [
    ['Bogus', 'Unknown session type Bogus'],
    ['Port', 'session type Port is not supported by this client'],
  ]) {
    const p = new Pair();
    const request = { AgentVersion: '3.3.987.0', RequestedClientActions: [{ ActionType: 'SessionType', ActionParameters: { SessionType: type } }] };
    await p.agentSends(utf8(JSON.stringify(request)), PayloadType.HANDSHAKE_REQUEST);
    const body = JSON.parse(text((await p.toAgent())[0].payload));
    assert.deepEqual(body.ProcessedClientActions, [{ ActionType: 'SessionType', ActionStatus: 2, ActionResult: null, Error: `Failed to process action SessionType: ${error}` }]);
    assert.deepEqual(body.Errors, [error]);
  }
});

test('calls out of turn reject with the state in the message', async () => {
  const pair = new Pair();
  await assert.rejects(pair.client.provideDataKey(utf8('b'), DATA_KEY, pair.now), /cannot provide a data key while the session is awaiting_handshake/);
  await assert.rejects(pair.client.refuseKms('no', pair.now), /refuse KMS/);
  await assert.rejects(pair.client.sendFlag(2, pair.now), /send a flag/);
  await assert.rejects(pair.client.sendSize(-1, 5, pair.now), /out of range/);
  assert.throws(() => new ClientSession({}), /sessionId/);
});

test('a data key of the wrong length is refused and changes nothing', async () => {
  const pair = new Pair();
  await pair.agentSends(shellRequest(kmsAction), PayloadType.HANDSHAKE_REQUEST);
  await assert.rejects(pair.client.provideDataKey(utf8('blob'), new Uint8Array(32), pair.now), /32 bytes, not 64/);
  assert.equal(pair.client.state, 'awaiting_data_key');
  assert.deepEqual(await pair.toAgent(), []);
  await pair.client.provideDataKey(utf8('blob'), DATA_KEY, pair.now);
  assert.equal(pair.client.state, 'handshaking');
});

test('refusing KMS fails the action with the error', async () => {
  const pair = new Pair();
  await pair.agentSends(shellRequest(kmsAction), PayloadType.HANDSHAKE_REQUEST);
  await pair.client.refuseKms('AccessDeniedException: no', pair.now);
  const body = JSON.parse(text((await pair.toAgent())[0].payload));
  assert.deepEqual(body.ProcessedClientActions[1], { ActionType: 'KMSEncryption', ActionStatus: 2, ActionResult: null, Error: 'Failed to process action KMSEncryption: AccessDeniedException: no' });
  assert.deepEqual(body.Errors, ['AccessDeniedException: no']);
  assert.equal(pair.client.encrypted, false);
});

test('stderr, flags (with PortErrorDetails) and other payload types become events', async () => {
  const pair = new Pair();
  await pair.agentSends(utf8('out'));
  await pair.agentSends(utf8('err'), PayloadType.STDERR);
  await pair.agentSends(new Uint8Array([0, 0, 0, 3]), PayloadType.FLAG);
  const detail = { StreamId: 3, Destination: 'localhost:9', Error: 'connection refused by localhost:9' };
  await pair.agentSends(Buffer.concat([Buffer.from([0, 0, 0, 3]), Buffer.from(JSON.stringify(detail))]), PayloadType.FLAG);
  await pair.agentSends(utf8('?'), PayloadType.ERROR);
  const events = pair.events().slice(1).map((e) => ({ ...e, ...(e.error ? { error: { ...e.error } } : {}) }));
  assert.deepEqual(events, [
    { type: 'output', data: utf8('out') },
    { type: 'stderr', data: utf8('err') },
    { type: 'flag', flag: 3, error: null },
    { type: 'flag', flag: 3, error: { streamId: 3, destination: 'localhost:9', error: 'connection refused by localhost:9' } },
    { type: 'unknownPayload', payloadType: 2, data: utf8('?') },
  ]);
});

test('exit code text: the trailing integer', () => {
  const cases = [
    ['EXIT_CODE: 3', 3],
    ['EXIT_CODE: 0', 0],
    ['[prefix] EXIT_CODE: 127\n', 127],
    ['EXIT_CODE: -1', -1],
    ['EXIT_CODE:', null],
    ['', null],
  ];
  for (const [input, code] of cases) assert.equal(parseExitCode(input), code, input);
});

test('after a reconnect, resendUnacked delivers lost input once, and the next tick does not repeat it', async () => {
  const pair = new Pair();
  await pair.startShell();
  await pair.client.sendInput(utf8('one'), pair.now);
  await pair.client.sendInput(utf8('two'), pair.now);
  assert.equal(pair.client.dataToSend().length, 2); // lost with the old socket
  pair.now += 5; // long past the first timeout
  await pair.client.resendUnacked(pair.now);
  assert.equal(pair.client.dataToSend().length, 2);
  await pair.client.tick(pair.now);
  assert.deepEqual(pair.client.dataToSend(), []);
  await pair.client.resendUnacked(pair.now);
  assert.deepEqual((await pair.toAgent()).map((m) => text(m.payload)), ['one', 'two']);
  assert.equal(pair.client.nextTimeout(), null);
});

test('retransmission exhaustion fails the session', async () => {
  const pair = new Pair({ clientOptions: { channelOptions: { maxAttempts: 2 } } });
  await pair.client.sendSize(80, 24, pair.now);
  pair.client.dataToSend();
  for (let i = 0; i < 10 && pair.client.nextTimeout() !== null; i++) await pair.client.tick(pair.client.nextTimeout());
  const [event] = pair.events();
  assert.equal(event.type, 'failed');
  assert.match(event.reason, /not acknowledged/);
  assert.equal(pair.client.nextTimeout(), null);
});

test('the open-data-channel text frame: a new RequestId each time, the same ClientId', () => {
  const session = new ClientSession({ sessionId: 's', clientId: 'c0ffee00-0000-4000-8000-000000000002' });
  const first = JSON.parse(session.openDataChannelMessage('token-1'));
  const second = JSON.parse(session.openDataChannelMessage('token-2'));
  assert.deepEqual(Object.keys(first), ['MessageSchemaVersion', 'RequestId', 'TokenValue', 'ClientId', 'ClientVersion']);
  assert.deepEqual([first.MessageSchemaVersion, first.TokenValue, first.ClientId, first.ClientVersion], ['1.0', 'token-1', 'c0ffee00-0000-4000-8000-000000000002', '1.2.650.0']);
  assert.match(first.RequestId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.notEqual(first.RequestId, second.RequestId);
  assert.equal(second.ClientId, first.ClientId);
  assert.match(new ClientSession({ sessionId: 's' }).clientId, /^[0-9a-f-]{36}$/);
});
