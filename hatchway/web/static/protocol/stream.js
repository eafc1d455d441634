// The reliable stream layer of a data channel (data-channel.md §3), sans-I/O: a port of
// hatchway/protocol/stream.py.
//
// One DataChannel is one end of a session's data channel: the client end sends
// input_stream_data and receives output_stream_data; the agent end the reverse. Frames go
// in through receive(); events come out of nextEvent(); frames for the wire come out of
// dataToSend(). The caller passes ``now`` (Unix time in seconds, a float) and calls
// tick(now) by nextTimeout() so retransmission happens. Everything here is synchronous.
//
// Unlike the Python channel, this one never encrypts: payloads go in and come out exactly
// as they are on the wire, and ClientSession seals and opens them (WebCrypto is async,
// and keeping it out of here keeps acks, ordering and timers synchronous and simple).
//
// What it guarantees:
// - every stream message the peer sends is delivered once, in sequence order, whatever
//   the loss, duplication and reordering underneath, as long as the peer retransmits;
// - our own stream messages are kept until acknowledged and resent with a TCP-style RTO
//   (RTT gain 1/8, variation gain 1/4, RTO = RTT + max(10 ms, 4 x RTTVAR), capped at 1 s,
//   Karn's rule), backing off per message, at most one timed-out message per RTO, and
//   the channel fails after ``maxAttempts`` sends;
// - memory is bounded on both sides: send() refuses data beyond the send buffer, the
//   reorder buffer drops (without acking) what does not fit, and stream data the caller
//   has not pulled yet stops being acknowledged past a limit, so the peer must hold it.

import { cryptoRandom, toBytes, uuid4 } from './bytes.js';
import { Role } from './crypto.js';
import { FlowControlError, ProtocolError } from './errors.js';
import { Flags, MessageType, decodeMessage, encodeMessage } from './message.js';
import { decodeAcknowledge, decodeChannelClosed, encodeAcknowledge } from './payloads.js';

export const INITIAL_RTT = 0.1;
export const INITIAL_RTO = 0.2;
export const MAX_RTO = 1.0;
export const MIN_RTO_VARIATION = 0.01;
export const MAX_BACKOFF = 5.0;

export const DEFAULT_SEND_BUFFER_BYTES = 8 * 1024 * 1024;
export const DEFAULT_SEND_BUFFER_MESSAGES = 10_000;
export const DEFAULT_REORDER_BYTES = 8 * 1024 * 1024;
export const DEFAULT_REORDER_MESSAGES = 10_000;
export const DEFAULT_UNDELIVERED_BYTES = 8 * 1024 * 1024;
export const DEFAULT_MAX_ATTEMPTS = 300; // about five minutes at the capped back-off

export const ChannelState = Object.freeze({ OPEN: 'open', CLOSED: 'closed', FAILED: 'failed' });

/** Unix seconds to the epoch milliseconds of CreatedDate, never 0. */
export const toMillis = (now) => Math.max(1, Math.floor(now * 1000));

/** RTT and RTO estimation as both reference peers do it (data-channel.md §3.4). */
export class RttEstimator {
  constructor() {
    this.rtt = INITIAL_RTT;
    this.rttvar = 0;
    this.rto = INITIAL_RTO;
  }

  sample(measured) {
    const m = Math.max(measured, 0);
    this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.rtt - m);
    this.rtt = 0.875 * this.rtt + 0.125 * m;
    this.rto = Math.min(MAX_RTO, this.rtt + Math.max(MIN_RTO_VARIATION, 4 * this.rttvar));
  }
}

// A binary min-heap of retransmission timers [retryAt, seq, attempts]; a timer whose
// attempts no longer match its message is stale and skipped.
class TimerHeap {
  constructor() {
    this.items = [];
  }

  get size() {
    return this.items.length;
  }

  peek() {
    return this.items[0];
  }

  clear() {
    this.items = [];
  }

  static less(a, b) {
    return a[0] !== b[0] ? a[0] < b[0] : a[1] !== b[1] ? a[1] < b[1] : a[2] < b[2];
  }

  push(item) {
    const { items } = this;
    items.push(item);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!TimerHeap.less(items[i], items[parent])) break;
      [items[i], items[parent]] = [items[parent], items[i]];
      i = parent;
    }
  }

  pop() {
    const { items } = this;
    const top = items[0];
    const last = items.pop();
    if (items.length) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let smallest = i;
        if (l < items.length && TimerHeap.less(items[l], items[smallest])) smallest = l;
        if (r < items.length && TimerHeap.less(items[r], items[smallest])) smallest = r;
        if (smallest === i) break;
        [items[i], items[smallest]] = [items[smallest], items[i]];
        i = smallest;
      }
    }
    return top;
  }
}

const event = (type, fields = {}) => Object.freeze({ type, ...fields });

/**
 * One end of a data channel's reliable, ordered stream. Events (frozen objects):
 * {type: 'streamData', payloadType, payload, sequenceNumber}, {type: 'channelClosed',
 * closed}, {type: 'publicationPaused'}, {type: 'publicationResumed'},
 * {type: 'otherMessage', message}, {type: 'channelFailed', reason}.
 */
export class DataChannel {
  constructor(
    role = Role.CLIENT,
    {
      sendBufferBytes = DEFAULT_SEND_BUFFER_BYTES,
      sendBufferMessages = DEFAULT_SEND_BUFFER_MESSAGES,
      reorderBytes = DEFAULT_REORDER_BYTES,
      reorderMessages = DEFAULT_REORDER_MESSAGES,
      undeliveredBytes = DEFAULT_UNDELIVERED_BYTES,
      maxAttempts = DEFAULT_MAX_ATTEMPTS,
      random = cryptoRandom,
    } = {},
  ) {
    if (role !== Role.CLIENT && role !== Role.AGENT) throw new ProtocolError(`unknown role ${role}`);
    this.role = role;
    this.outgoingType = role === Role.CLIENT ? MessageType.INPUT_STREAM_DATA : MessageType.OUTPUT_STREAM_DATA;
    this.incomingType = role === Role.CLIENT ? MessageType.OUTPUT_STREAM_DATA : MessageType.INPUT_STREAM_DATA;
    this.state = ChannelState.OPEN;
    this.rtt = new RttEstimator();
    this._random = random;

    // sending
    this._nextSeq = 0;
    this._sendLimitBytes = sendBufferBytes;
    this._sendLimitMessages = sendBufferMessages;
    this._unacked = new Map(); // seq -> entry, in sequence order
    this._held = []; // queued while the peer paused publication
    this._bufferedBytes = 0;
    this._timers = new TimerHeap();
    this._maxAttempts = maxAttempts;
    this.peerPaused = false;
    this.retransmissions = 0; // sends beyond the first, for diagnostics
    this._quietUntil = 0; // no other timed-out message is resent before this

    // receiving
    this._expected = 0;
    this._reorder = new Map();
    this._reorderBytes = 0;
    this._reorderLimitBytes = reorderBytes;
    this._reorderLimitMessages = reorderMessages;
    this._undeliveredLimit = undeliveredBytes;
    this._undeliveredBytes = 0;
    this._wePausedPeer = false;
    this._holding = false;

    this._events = [];
    this._wire = [];
  }

  // --- sending ----------------------------------------------------------------------------

  get nextSequenceNumber() {
    return this._nextSeq;
  }

  get expectedSequenceNumber() {
    return this._expected;
  }

  get unackedCount() {
    return this._unacked.size + this._held.length;
  }

  /** Whether send() takes a payload of ``size`` bytes now, without a FlowControlError. */
  canSend(size) {
    if (this.unackedCount >= this._sendLimitMessages) return false;
    return !this._bufferedBytes || this._bufferedBytes + size <= this._sendLimitBytes;
  }

  /** Bytes of our own stream data kept for retransmission or held while paused. */
  get bufferedBytes() {
    return this._bufferedBytes;
  }

  /** How many payload bytes send() accepts right now (0 when full). */
  get sendCapacity() {
    if (this.unackedCount >= this._sendLimitMessages) return 0;
    return Math.max(0, this._sendLimitBytes - this._bufferedBytes);
  }

  /**
   * Queue one stream message, with its payload exactly as it goes on the wire; returns its
   * sequence number. Throws FlowControlError when the send buffer is full.
   */
  send(payload, payloadType, now) {
    if (this.state !== ChannelState.OPEN) throw new ProtocolError(`cannot send on a ${this.state} channel`);
    const body = toBytes(payload, 'payload');
    if (
      this.unackedCount >= this._sendLimitMessages ||
      (this._bufferedBytes && this._bufferedBytes + body.length > this._sendLimitBytes)
    ) {
      throw new FlowControlError(
        `send buffer full (${this.unackedCount} messages, ${this._bufferedBytes} bytes unacknowledged)`,
      );
    }
    const seq = this._nextSeq;
    const frame = encodeMessage({
      messageType: this.outgoingType,
      createdDate: toMillis(now),
      sequenceNumber: seq,
      flags: seq === 0 && this.role === Role.AGENT ? Flags.SYN : Flags.NONE,
      messageId: uuid4(this._random),
      payloadType,
      payload: body,
    });
    this._nextSeq += 1;
    const entry = { seq, frame, size: body.length, firstSent: null, retryAt: 0, attempts: 0 };
    this._bufferedBytes += entry.size;
    if (this.peerPaused) this._held.push(entry);
    else this._transmit(entry, now);
    return seq;
  }

  /** Send every unacknowledged message again at once, as after a reconnect. */
  resendUnacked(now) {
    for (const entry of this._unacked.values()) {
      this._wire.push(entry.frame);
      // Counting the send retires the entry's old timer, which would otherwise fire on the
      // next tick and send the message a second time.
      entry.attempts += 1;
      entry.retryAt = now + this.rtt.rto;
      this._timers.push([entry.retryAt, entry.seq, entry.attempts]);
    }
  }

  /** Ask the peer to stop publishing (our consumer is congested). */
  pausePeer(now) {
    if (!this._wePausedPeer) {
      this._wePausedPeer = true;
      this._wire.push(this._control(MessageType.PAUSE_PUBLICATION, now));
    }
  }

  resumePeer(now) {
    if (this._wePausedPeer) {
      this._wePausedPeer = false;
      this._wire.push(this._control(MessageType.START_PUBLICATION, now));
    }
  }

  /** Take no new stream data until releaseIncoming: it stays unacked, so the peer keeps it. */
  holdIncoming(now) {
    this._holding = true;
    this.pausePeer(now);
  }

  releaseIncoming(now) {
    this._holding = false;
    this.resumePeer(now);
  }

  get holding() {
    return this._holding;
  }

  /** Put an unsequenced message (channel_closed...) on the wire; ``fields`` as encodeMessage. */
  sendMessage(fields) {
    this._wire.push(encodeMessage({ messageId: uuid4(this._random), ...fields }));
  }

  // --- receiving --------------------------------------------------------------------------

  /**
   * Take one frame from the wire (bytes, or a message decodeMessage returned). Throws
   * ProtocolError for a malformed frame, which leaves the channel as it was: the caller
   * logs it and carries on.
   */
  receive(frame, now) {
    const message = frame instanceof Uint8Array || frame instanceof ArrayBuffer ? decodeMessage(frame) : frame;
    const kind = message.messageType;
    if (kind === MessageType.ACKNOWLEDGE) {
      this._onAck(decodeAcknowledge(message.payload), now);
    } else if (kind === this.incomingType) {
      this._onStream(message, now);
    } else if (kind === MessageType.CHANNEL_CLOSED) {
      // The reference client ends the session even when it cannot parse the payload
      // (§6.1); so do we, without a reason to show.
      let closed = null;
      let malformed = null;
      if (message.payload.length) {
        try {
          closed = decodeChannelClosed(message.payload);
        } catch (err) {
          if (!(err instanceof ProtocolError)) throw err;
          malformed = err.message;
        }
      }
      this.state = ChannelState.CLOSED;
      this._timers.clear();
      this._events.push(event('channelClosed', { closed: closed ?? { output: '', sessionId: '' }, malformed }));
    } else if (kind === MessageType.PAUSE_PUBLICATION) {
      if (!this.peerPaused) {
        this.peerPaused = true;
        this._events.push(event('publicationPaused'));
      }
    } else if (kind === MessageType.START_PUBLICATION) {
      // The peer may have dropped what we sent while it was congested; sending it now
      // beats waiting out a backed-off retransmission timer.
      this.resendUnacked(now);
      if (this.peerPaused) {
        this.peerPaused = false;
        this._events.push(event('publicationResumed'));
        for (const entry of this._held.splice(0)) this._transmit(entry, now);
      }
    } else {
      this._events.push(event('otherMessage', { message }));
    }
  }

  nextEvent() {
    const next = this._events.shift() ?? null;
    if (next?.type === 'streamData') this._undeliveredBytes -= next.payload.length;
    return next;
  }

  /** Frames to write to the WebSocket, each as one binary message. */
  dataToSend() {
    const frames = this._wire;
    this._wire = [];
    return frames;
  }

  // --- time -------------------------------------------------------------------------------

  /** When tick() should next be called (Unix seconds), or null when nothing waits for an ack. */
  nextTimeout() {
    this._dropStaleTimers();
    return this._timers.size ? this._timers.peek()[0] : null;
  }

  /**
   * Retransmit what has waited longer than its timeout, at most one message per RTO: when
   * many time out together the cause is nearly always a queue, not many losses, and
   * resending them all would feed the delay that caused it.
   */
  tick(now) {
    if (this.state !== ChannelState.OPEN) return;
    for (;;) {
      this._dropStaleTimers();
      if (!this._timers.size || this._timers.peek()[0] > now) return;
      const [, seq, attempts] = this._timers.pop();
      const entry = this._unacked.get(seq);
      if (now < this._quietUntil) {
        entry.retryAt = this._quietUntil;
        this._timers.push([entry.retryAt, seq, attempts]);
        continue;
      }
      if (entry.attempts >= this._maxAttempts) {
        this._fail(`message ${seq} was not acknowledged after ${entry.attempts} sends; the peer is gone or not reading`);
        return;
      }
      this._wire.push(entry.frame);
      entry.attempts += 1;
      this.retransmissions += 1;
      const backoff = Math.min(MAX_BACKOFF, this.rtt.rto * 2 ** Math.min(entry.attempts - 1, 16));
      entry.retryAt = now + backoff;
      this._timers.push([entry.retryAt, seq, entry.attempts]);
      this._quietUntil = now + this.rtt.rto;
    }
  }

  // --- internals --------------------------------------------------------------------------

  _transmit(entry, now) {
    this._wire.push(entry.frame);
    entry.firstSent = now;
    entry.attempts = 1;
    entry.retryAt = now + this.rtt.rto;
    this._unacked.set(entry.seq, entry);
    this._timers.push([entry.retryAt, entry.seq, entry.attempts]);
  }

  _dropStaleTimers() {
    while (this._timers.size) {
      const [, seq, attempts] = this._timers.peek();
      const entry = this._unacked.get(seq);
      if (entry !== undefined && entry.attempts === attempts) return;
      this._timers.pop();
    }
  }

  _onAck(ack, now) {
    // Acks are selective and matched by sequence number only (§3.1).
    const entry = this._unacked.get(ack.sequenceNumber);
    if (entry === undefined) return;
    this._unacked.delete(ack.sequenceNumber);
    this._bufferedBytes -= entry.size;
    // Karn's rule: a retransmitted message gives an ambiguous sample.
    if (entry.attempts === 1 && entry.firstSent !== null) this.rtt.sample(now - entry.firstSent);
  }

  _onStream(message, now) {
    const seq = message.sequenceNumber;
    if (this.state !== ChannelState.OPEN) return;
    if (typeof seq !== 'number') return; // beyond 2**53: no real peer gets there
    if (seq < this._expected) {
      this._ack(message, now); // a duplicate: its ack was lost, so ack again
      return;
    }
    if (this._holding) return; // our consumer is congested: the peer keeps it and resends
    if (this._undeliveredBytes && this._undeliveredBytes + message.payload.length > this._undeliveredLimit) {
      return; // our consumer is behind: leave it unacked so the peer holds it
    }
    if (seq > this._expected) {
      if (this._reorder.has(seq)) {
        this._ack(message, now);
      } else if (
        this._reorder.size < this._reorderLimitMessages &&
        this._reorderBytes + message.payload.length <= this._reorderLimitBytes
      ) {
        this._reorder.set(seq, message);
        this._reorderBytes += message.payload.length;
        this._ack(message, now);
      }
      // else: no room; without an ack the peer sends it again later
      return;
    }
    this._ack(message, now);
    this._deliver(message);
    while (this.state === ChannelState.OPEN && this._reorder.has(this._expected)) {
      const buffered = this._reorder.get(this._expected);
      this._reorder.delete(this._expected);
      this._reorderBytes -= buffered.payload.length;
      this._deliver(buffered);
    }
  }

  _deliver(message) {
    this._expected += 1;
    this._undeliveredBytes += message.payload.length;
    this._events.push(
      event('streamData', {
        payloadType: message.payloadType,
        payload: message.payload,
        sequenceNumber: message.sequenceNumber,
      }),
    );
  }

  _ack(message, now) {
    this._wire.push(
      encodeMessage({
        messageType: MessageType.ACKNOWLEDGE,
        createdDate: toMillis(now),
        flags: Flags.ACK,
        messageId: uuid4(this._random),
        payload: encodeAcknowledge({
          messageType: message.messageType,
          messageId: message.messageId,
          sequenceNumber: message.sequenceNumber,
        }),
      }),
    );
  }

  _control(messageType, now) {
    return encodeMessage({ messageType, createdDate: toMillis(now), messageId: uuid4(this._random) });
  }

  /** Stop: the session cannot go on (used by the channel and by a session that failed). */
  _fail(reason) {
    this.state = ChannelState.FAILED;
    this._timers.clear();
    this._events.push(event('channelFailed', { reason }));
  }
}
