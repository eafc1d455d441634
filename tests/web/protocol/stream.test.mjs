import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  ChannelState,
  DataChannel,
  FlowControlError,
  MessageType,
  PayloadType,
  ProtocolError,
  Role,
  RttEstimator,
  T0,
  decodeAcknowledge,
  decodeMessage,
  drain,
  encodeMessage,
  seededInts,
  seededRandom,
  streamBytes,
  utf8,
} from './helpers.mjs';

const acksIn = (frames) =>
  frames.map(decodeMessage).filter((m) => m.messageType === 'acknowledge').map((m) => decodeAcknowledge(m.payload));

const pair = (clientOptions = {}, agentOptions = {}) => [
  new DataChannel(Role.CLIENT, { random: seededRandom(1), ...clientOptions }),
  new DataChannel(Role.AGENT, { random: seededRandom(2), ...agentOptions }),
];

test('sequence numbers, message types and flags', () => {
  const [client, agent] = pair();
  assert.deepEqual([client.send(utf8('a'), 1, T0), client.send(utf8('b'), 1, T0)], [0, 1]);
  const frames = client.dataToSend().map(decodeMessage);
  assert.deepEqual(
    frames.map((m) => [m.messageType, m.sequenceNumber, m.flags]),
    [
      ['input_stream_data', 0, 0],
      ['input_stream_data', 1, 0],
    ],
  );
  agent.send(utf8('x'), 1, T0);
  agent.send(utf8('y'), 1, T0);
  const [first, second] = agent.dataToSend().map(decodeMessage);
  assert.deepEqual([first.messageType, first.flags, second.flags], ['output_stream_data', 1, 0]);
  assert.equal(first.createdDate, T0 * 1000);
});

test('acks are sent for what arrives and stop retransmission', () => {
  const [client, agent] = pair();
  client.send(utf8('hello'), PayloadType.OUTPUT, T0);
  for (const frame of client.dataToSend()) agent.receive(frame, T0 + 0.05);
  assert.equal(streamBytes(drain(agent)), 'hello');
  const [ackFrame] = agent.dataToSend();
  const ack = decodeMessage(ackFrame);
  assert.deepEqual([ack.messageType, ack.sequenceNumber, ack.flags, ack.payloadType], ['acknowledge', 0, 3, 0]);
  const body = decodeAcknowledge(ack.payload);
  assert.deepEqual([body.messageType, body.sequenceNumber], ['input_stream_data', 0]);
  client.receive(ackFrame, T0 + 0.05);
  assert.equal(client.unackedCount, 0);
  assert.equal(client.nextTimeout(), null);
  client.tick(T0 + 10);
  assert.deepEqual(client.dataToSend(), []);
});

test('the RTO follows the spec formula', () => {
  const est = new RttEstimator();
  assert.deepEqual([est.rtt, est.rttvar, est.rto], [0.1, 0, 0.2]);
  est.sample(0.02);
  assert.ok(Math.abs(est.rttvar - 0.02) < 1e-12);
  assert.ok(Math.abs(est.rtt - 0.09) < 1e-12);
  assert.ok(Math.abs(est.rto - 0.17) < 1e-12);
  for (let i = 0; i < 50; i++) est.sample(0.001);
  assert.ok(Math.abs(est.rto - (est.rtt + 0.01)) < 1e-3); // the 10 ms floor on the variation
  est.sample(30);
  assert.equal(est.rto, 1.0);
});

test('Karn: an ack of a retransmitted message gives no RTT sample', () => {
  const [client] = pair();
  client.send(utf8('x'), 1, T0);
  const [frame] = client.dataToSend();
  client.tick(T0 + 0.3); // resent once
  assert.equal(client.dataToSend().length, 1);
  const id = decodeMessage(frame).messageId;
  const ack = encodeMessage({
    messageType: 'acknowledge',
    createdDate: 1,
    flags: 3,
    messageId: '00000000-0000-4000-8000-000000000001',
    payload: utf8(JSON.stringify({ AcknowledgedMessageType: 'input_stream_data', AcknowledgedMessageId: id, AcknowledgedMessageSequenceNumber: 0 })),
  });
  client.receive(ack, T0 + 5);
  assert.equal(client.rtt.rtt, 0.1);
  assert.equal(client.unackedCount, 0);
});

test('retransmission backs off with identical bytes and is bounded', () => {
  const [client] = pair({ maxAttempts: 5 });
  client.send(utf8('lost'), 1, T0);
  const original = client.dataToSend();
  const resendTimes = [];
  for (let step = 1; step <= 1200; step++) {
    const now = T0 + step * 0.05;
    client.tick(now);
    const frames = client.dataToSend();
    if (frames.length) {
      assert.deepEqual(frames, original); // same id, date and seq
      resendTimes.push(Math.round(step * 5) / 100);
    }
  }
  assert.equal(resendTimes.length, 4);
  assert.equal(resendTimes[0], 0.2); // the first RTO is 200 ms: the tick at T0 + 0.2 resends
  const gaps = resendTimes.slice(1).map((t, i) => t - resendTimes[i]);
  assert.deepEqual(gaps, [...gaps].sort((a, b) => a - b));
  const events = drain(client);
  assert.equal(events.at(-1).type, 'channelFailed');
  assert.match(events.at(-1).reason, /not acknowledged after 5 sends/);
  assert.equal(client.nextTimeout(), null);
});

test('messages that time out together are resent one per RTO, the oldest first', () => {
  const [client, agent] = pair();
  for (let n = 0; n < 5; n++) agent.send(utf8(`m${n}`), 1, T0);
  agent.dataToSend(); // all delayed in some queue
  agent.tick(T0 + 0.5);
  const [first] = agent.dataToSend();
  assert.equal(decodeMessage(first).sequenceNumber, 0);
  agent.tick(T0 + 0.5 + agent.rtt.rto / 2);
  assert.deepEqual(agent.dataToSend(), []); // still within the RTO of that resend
  client.receive(first, T0 + 0.6);
  for (const ack of client.dataToSend()) agent.receive(ack, T0 + 0.6);
  agent.tick(T0 + 0.5 + agent.rtt.rto);
  const [second] = agent.dataToSend();
  assert.equal(decodeMessage(second).sequenceNumber, 1);
  assert.equal(agent.retransmissions, 2);
});

test('duplicates are dropped and acked again', () => {
  const [client, agent] = pair();
  agent.send(utf8('once'), 1, T0);
  const [frame] = agent.dataToSend();
  client.receive(frame, T0);
  client.receive(frame, T0);
  assert.equal(streamBytes(drain(client)), 'once');
  assert.deepEqual(acksIn(client.dataToSend()).map((a) => a.sequenceNumber), [0, 0]);
});

test('out-of-order messages are acked at once and delivered in order', () => {
  const [client, agent] = pair();
  for (const part of ['0', '1', '2', '3']) agent.send(utf8(part), 1, T0);
  const [f0, f1, f2, f3] = agent.dataToSend();
  client.receive(f3, T0);
  client.receive(f2, T0);
  client.receive(f2, T0); // a duplicate while buffered: acked again, kept once
  assert.deepEqual(drain(client), []);
  assert.deepEqual(acksIn(client.dataToSend()).map((a) => a.sequenceNumber), [3, 2, 2]);
  client.receive(f0, T0);
  assert.equal(streamBytes(drain(client)), '0');
  client.receive(f1, T0);
  assert.deepEqual(drain(client).map((e) => e.sequenceNumber), [1, 2, 3]);
});

test('the send buffer is bounded when the peer never acks', () => {
  const [client] = pair({ sendBufferBytes: 10_000, sendBufferMessages: 100 });
  let sent = 0;
  assert.throws(() => {
    for (let i = 0; i < 1000; i++) {
      client.send(new Uint8Array(1000), 1, T0);
      sent += 1;
    }
  }, FlowControlError);
  assert.equal(sent, 10);
  assert.equal(client.sendCapacity, 0);
  assert.equal(client.canSend(1), false);
  assert.equal(client.bufferedBytes, 10_000);
});

test('the reorder buffer is bounded, and what did not fit is taken when resent', () => {
  const [client, agent] = pair({ reorderMessages: 2 });
  for (let i = 0; i < 5; i++) agent.send(new Uint8Array([i]), 1, T0);
  const frames = agent.dataToSend();
  for (const frame of frames.slice(1)) client.receive(frame, T0);
  assert.deepEqual(acksIn(client.dataToSend()).map((a) => a.sequenceNumber), [1, 2]); // 3 and 4 did not fit
  client.receive(frames[0], T0);
  assert.equal(streamBytes(drain(client)), '\x00\x01\x02');
  client.receive(frames[3], T0);
  client.receive(frames[4], T0);
  assert.equal(streamBytes(drain(client)), '\x03\x04');
});

test('undelivered data stops being acked until the consumer pulls it', () => {
  const [client, agent] = pair({ undeliveredBytes: 2500 });
  for (let i = 0; i < 4; i++) agent.send(new Uint8Array(1000), 1, T0);
  for (const frame of agent.dataToSend()) client.receive(frame, T0);
  assert.equal(acksIn(client.dataToSend()).length, 2);
  assert.equal(streamBytes(drain(client)).length, 2000);
});

test('pause and start publication hold and release sending', () => {
  const [client, agent] = pair();
  client.pausePeer(T0);
  client.pausePeer(T0); // idempotent
  const [pause] = client.dataToSend();
  assert.equal(decodeMessage(pause).messageType, 'pause_publication');
  agent.receive(pause, T0);
  assert.deepEqual(drain(agent).map((e) => e.type), ['publicationPaused']);
  agent.send(utf8('held'), 1, T0);
  assert.deepEqual(agent.dataToSend(), []);
  assert.equal(agent.unackedCount, 1);
  client.resumePeer(T0);
  agent.receive(client.dataToSend()[0], T0);
  assert.deepEqual(drain(agent).map((e) => e.type), ['publicationResumed']);
  const [frame] = agent.dataToSend();
  assert.equal(Buffer.from(decodeMessage(frame).payload).toString(), 'held');
});

test('holding incoming data leaves it unacked', () => {
  const [client, agent] = pair();
  client.holdIncoming(T0);
  assert.ok(client.holding);
  client.dataToSend();
  agent.send(utf8('later'), 1, T0);
  client.receive(agent.dataToSend()[0], T0);
  assert.deepEqual(acksIn(client.dataToSend()), []);
  client.releaseIncoming(T0);
  assert.equal(decodeMessage(client.dataToSend()[0]).messageType, 'start_publication');
});

test('channel_closed and other messages become events; sending afterwards fails', () => {
  const [client] = pair();
  const state = encodeMessage({ messageType: 'agent_session_state', createdDate: 1, messageId: '00000000-0000-4000-8000-000000000009', payload: utf8('{}') });
  client.receive(state, T0);
  const closed = encodeMessage({
    messageType: MessageType.CHANNEL_CLOSED,
    createdDate: 1,
    flags: 3,
    messageId: '00000000-0000-4000-8000-00000000000a',
    payload: utf8('{"SessionId":"s","Output":"bye","MessageType":"channel_closed"}'),
  });
  client.receive(closed, T0);
  const [other, done] = drain(client);
  assert.equal(other.type, 'otherMessage');
  assert.equal(other.message.messageType, 'agent_session_state');
  assert.equal(done.type, 'channelClosed');
  assert.equal(done.closed.output, 'bye');
  assert.equal(client.state, ChannelState.CLOSED);
  assert.throws(() => client.send(utf8('late'), 1, T0), /cannot send on a closed channel/);
});

test('malformed frames throw and leave the channel usable', () => {
  const [client, agent] = pair();
  assert.throws(() => client.receive(utf8('garbage'), T0), ProtocolError);
  const badAck = encodeMessage({ messageType: 'acknowledge', createdDate: 1, messageId: '00000000-0000-4000-8000-00000000000b', payload: utf8('{') });
  assert.throws(() => client.receive(badAck, T0), ProtocolError);
  agent.send(utf8('fine'), 1, T0);
  client.receive(agent.dataToSend()[0], T0);
  assert.equal(streamBytes(drain(client)), 'fine');
});

test('resendUnacked after a reconnect sends the same frames, and retires their timers', () => {
  const [client] = pair();
  client.send(utf8('a'), 1, T0);
  client.send(utf8('b'), 1, T0);
  const first = client.dataToSend();
  client.resendUnacked(T0 + 5);
  assert.deepEqual(client.dataToSend(), first);
  client.tick(T0 + 5);
  assert.deepEqual(client.dataToSend(), []); // not a second time on the next tick
  assert.ok(client.nextTimeout() > T0 + 5);
});

test('exactly once and in order across loss, duplication and reordering (seeded)', () => {
  for (let seed = 1; seed <= 40; seed++) {
    const pick = seededInts(seed);
    const [client, agent] = pair({ maxAttempts: 1e9, random: seededRandom(seed) }, { maxAttempts: 1e9, random: seededRandom(seed + 1000) });
    const up = [];
    const down = [];
    const wires = { up: [], down: [] };
    const got = { client: [], agent: [] };
    let now = T0;
    for (let i = 0; i < 1 + pick(20); i++) up.push(new Uint8Array(1 + pick(40)).map(() => pick(256)));
    for (let i = 0; i < 1 + pick(20); i++) down.push(new Uint8Array(1 + pick(40)).map(() => pick(256)));
    for (const chunk of up) client.send(chunk, 1, now);
    for (const chunk of down) agent.send(chunk, 1, now);
    const pump = () => {
      wires.up.push(...client.dataToSend());
      wires.down.push(...agent.dataToSend());
    };
    const deliver = (direction, index) => {
      const [frame] = wires[direction].splice(index, 1);
      (direction === 'up' ? agent : client).receive(frame, now);
      got.agent.push(...drain(agent));
      got.client.push(...drain(client));
    };
    pump();
    for (let step = 0; step < 300; step++) {
      const direction = pick(2) ? 'up' : 'down';
      const wire = wires[direction];
      const action = pick(5);
      if (action === 4) {
        now += pick(700) / 1000;
        client.tick(now);
        agent.tick(now);
      } else if (wire.length) {
        const index = pick(wire.length);
        if (action === 0) deliver(direction, index);
        else if (action === 1) wire.splice(index, 1); // lost
        else if (action === 2) wire.push(wire[index]); // duplicated
        else [wire[0], wire[index]] = [wire[index], wire[0]]; // reordered
      }
      pump();
    }
    // Then the network heals: everything in flight arrives and retransmission fills gaps.
    for (let round = 0; round < 2000; round++) {
      if (!client.unackedCount && !agent.unackedCount && !wires.up.length && !wires.down.length) break;
      while (wires.up.length || wires.down.length) {
        if (wires.up.length) deliver('up', 0);
        if (wires.down.length) deliver('down', 0);
        pump();
      }
      now += 1;
      client.tick(now);
      agent.tick(now);
      pump();
    }
    assert.equal(client.unackedCount + agent.unackedCount, 0, `seed ${seed}`);
    const joined = (chunks) => Buffer.concat(chunks).toString('latin1');
    assert.equal(streamBytes(got.agent), joined(up), `seed ${seed}`);
    assert.equal(streamBytes(got.client), joined(down), `seed ${seed}`);
    for (const side of Object.values(got)) {
      assert.deepEqual(side.map((e) => e.sequenceNumber), side.map((_, i) => i));
    }
  }
});
