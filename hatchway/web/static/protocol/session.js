// The client end of one Session Manager shell session in the browser, sans-I/O: a port of
// hatchway/protocol/client_session.py (data-channel.md §1.4, §4, §5.1, §6).
//
// ClientSession sits on a DataChannel and does what a Session Manager client does on top
// of the reliable stream: it answers the handshake, asks its caller for a KMS data key and
// turns AES-GCM on, answers the encryption challenge, recognises an agent that skipped the
// handshake, chunks input, and turns stream payloads into events. It never touches a
// socket, a timer or a clock: frames and ``now`` (Unix time in seconds, a float) go in;
// events and frames come out.
//
// THE ASYNC CONTRACT. WebCrypto is async, so every method that changes the session
// (receive, sendInput, sendSize, sendFlag, provideDataKey, refuseKms, tick, resendUnacked)
// returns a Promise, and the session runs that work one operation at a time, in the order
// the methods were called, each to its end before the next starts, awaits included. So:
//   - order is the call order: frames are processed in the order they were passed to
//     receive(), decrypted output comes out in stream order, and input gets sequence
//     numbers in the order sendInput/sendSize were called. Nothing is lost or repeated.
//   - when an operation's Promise settles, everything it did is visible: its events in
//     nextEvent(), its frames in dataToSend(), and nextTimeout() reflects it. The usual
//     I/O loop is `await session.receive(bytes, now); flush()`, where flush() writes
//     dataToSend(), handles every nextEvent() and re-arms one timer at nextTimeout().
//   - the caller need not await before calling again (a WebSocket onmessage handler can
//     just call receive for each frame); the operations queue up. A Promise rejects with
//     ProtocolError when its own operation was refused (a malformed frame, a call out of
//     turn, a data key of the wrong length); that changes nothing, and later operations
//     still run. Attach a handler to each Promise, or the runtime reports the rejection.
//   - nextEvent(), dataToSend(), nextTimeout(), sendCapacity and state are synchronous.
//   - whenIdle() resolves once everything called so far has run.
//
// INPUT AND FLOW CONTROL. sendInput takes any amount up to sendCapacity bytes (default
// 1 MiB in all, `inputBufferBytes`) and returns at once with a Promise; beyond that it
// rejects with FlowControlError and queues nothing. The session cuts queued input into
// messages of at most 1024 bytes (`maxInputChunk`, as the reference client does) and hands
// them to the data channel as its send buffer allows; what does not fit waits in the
// session's queue and goes out as acks arrive (within receive), still in order, sizes
// included. So a page pastes by checking sendCapacity, and when a paste is larger than
// that, waits for it to grow (re-check after each receive) and sends the rest.
//
// States and the moves between them:
//   awaiting_handshake --HandshakeRequest, no KMS--> handshaking --HandshakeComplete--> established
//   awaiting_handshake --HandshakeRequest with KMS--> awaiting_data_key
//   awaiting_data_key --provideDataKey / refuseKms--> handshaking
//   awaiting_handshake --first output, no handshake (legacy or skipped)--> established
//   any open state --channel_closed--> closed;  any open state --failure--> failed
//
// Events are frozen objects with a `type`:
//   {type: 'handshakeStarted', agentVersion, sessionType, properties, kmsKeyId}
//   {type: 'kmsDataKeyNeeded', keyId, encryptionContext}  -> call KMS GenerateDataKey
//        (NumberOfBytes 64) with these, then provideDataKey(CiphertextBlob, Plaintext, now)
//        or refuseKms(errorText, now)
//   {type: 'challengeAnswered'}
//   {type: 'sessionStarted', sessionType, properties, agentVersion, customerMessage, handshake}
//   {type: 'output', data: Uint8Array}     {type: 'stderr', data: Uint8Array}
//   {type: 'exitCode', code: number|null, text}
//   {type: 'flag', flag: number, error: {streamId, destination, error}|null}
//   {type: 'unknownPayload', payloadType, data}
//   {type: 'ended', output}                {type: 'failed', reason}

import { base64Encode, cryptoRandom, fromUtf8, toBytes, uuid4 } from './bytes.js';
import { Role, SessionCipher, NONCE_BYTES, TAG_BYTES } from './crypto.js';
import { FlowControlError, ProtocolError } from './errors.js';
import { PayloadType, decodeMessage } from './message.js';
import {
  ActionStatus,
  ActionType,
  SessionType,
  decodeEncChallenge,
  decodeFlag,
  decodeHandshakeComplete,
  decodeHandshakeRequest,
  encodeEncChallenge,
  encodeFlag,
  encodeHandshakeResponse,
  encodeOpenDataChannel,
  encodeTerminalSize,
  failedAction,
  processedAction,
  unsupportedAction,
} from './payloads.js';
import { DataChannel } from './stream.js';

// What we report as ClientVersion. Agents gate features on it (data-channel.md §4.2, §5.3),
// so we claim a modern plugin, as the Python client does.
export const CLIENT_VERSION = '1.2.650.0';

// The reference client reads and sends at most this much stream data per message (§3.4).
export const MAX_INPUT_CHUNK = 1024;
export const DEFAULT_INPUT_BUFFER_BYTES = 1024 * 1024;

export const SHELL_SESSION_TYPES = Object.freeze([
  SessionType.STANDARD_STREAM,
  SessionType.INTERACTIVE_COMMANDS,
  SessionType.NON_INTERACTIVE_COMMANDS,
]);
const ALL_SESSION_TYPES = new Set([...SHELL_SESSION_TYPES, SessionType.PORT]);

// Payload types that start a session when they arrive before any handshake (§4.3).
const SESSION_DATA_TYPES = new Set([PayloadType.OUTPUT, PayloadType.STDERR, PayloadType.EXIT_CODE]);

// Hatchway's optional handshake actions, which this client accepts.
const OPTIONAL_ACTIONS = new Set([ActionType.EXIT_CODE_REPORTING, ActionType.PORT_ERROR_DETAILS]);

export const ClientState = Object.freeze({
  AWAITING_HANDSHAKE: 'awaiting_handshake',
  AWAITING_DATA_KEY: 'awaiting_data_key',
  HANDSHAKING: 'handshaking',
  ESTABLISHED: 'established',
  CLOSED: 'closed',
  FAILED: 'failed',
});

const S = ClientState;
const ENDED = new Set([S.CLOSED, S.FAILED]);
const OPEN = new Set([S.AWAITING_HANDSHAKE, S.AWAITING_DATA_KEY, S.HANDSHAKING, S.ESTABLISHED]);
const MOVES = {
  [S.AWAITING_HANDSHAKE]: new Set([S.AWAITING_DATA_KEY, S.HANDSHAKING, S.ESTABLISHED, ...ENDED]),
  [S.AWAITING_DATA_KEY]: new Set([S.HANDSHAKING, ...ENDED]),
  [S.HANDSHAKING]: new Set([S.ESTABLISHED, ...ENDED]),
  [S.ESTABLISHED]: new Set(ENDED),
  [S.CLOSED]: new Set(),
  [S.FAILED]: new Set(),
};

const event = (type, fields = {}) => Object.freeze({ type, ...fields });
const noop = () => {};

/** The trailing integer of an ExitCode payload such as ``EXIT_CODE: 3`` (a prefix may come first). */
export function parseExitCode(text) {
  const match = /(-?\d+)\s*$/.exec(text);
  return match ? Number.parseInt(match[1], 10) : null;
}

export class ClientSession {
  /**
   * ``sessionId`` and ``targetId`` form the KMS encryption context. ``clientId`` is the
   * per-page id sent in every OpenDataChannel (the same across reconnects; a random UUID
   * when not given). ``random(n) -> Uint8Array`` feeds message ids, request ids and nonces
   * (crypto.getRandomValues by default). ``sessionTypes``: the shell types by default; any
   * other type the agent asks for fails the handshake with the Python client's words.
   * ``channelOptions`` go to the DataChannel (buffer limits, maxAttempts).
   */
  constructor({
    sessionId,
    targetId = '',
    clientId = null,
    clientVersion = CLIENT_VERSION,
    random = cryptoRandom,
    sessionTypes = SHELL_SESSION_TYPES,
    maxInputChunk = MAX_INPUT_CHUNK,
    inputBufferBytes = DEFAULT_INPUT_BUFFER_BYTES,
    channelOptions = {},
  } = {}) {
    if (typeof sessionId !== 'string' || !sessionId) throw new ProtocolError('a client session needs a sessionId');
    if (!Number.isInteger(maxInputChunk) || maxInputChunk < 1) throw new ProtocolError(`maxInputChunk ${maxInputChunk} must be a positive integer`);
    this.sessionId = sessionId;
    this.targetId = targetId;
    this.clientId = clientId ?? uuid4(random);
    this.clientVersion = clientVersion;
    this.maxInputChunk = maxInputChunk;
    this.inputBufferBytes = inputBufferBytes;
    this.channel = new DataChannel(Role.CLIENT, { random, ...channelOptions });
    this.sessionType = null;
    this.sessionProperties = {};
    this.agentVersion = '';
    this._random = random;
    this._sessionTypes = new Set(sessionTypes);
    this._state = S.AWAITING_HANDSHAKE;
    this._cipher = null;
    this._pendingHandshake = null;
    this._events = [];
    this._outbox = []; // {payloadType, data, offset}: stream data waiting for the channel
    this._outboxBytes = 0; // input bytes accepted by sendInput and not yet on the channel
    this._tail = Promise.resolve();
  }

  // --- synchronous views ------------------------------------------------------------------

  get state() {
    return this._state;
  }

  /** Whether AES-GCM is on (after provideDataKey). */
  get encrypted() {
    return this._cipher !== null;
  }

  /** Input bytes sendInput accepts now; 0 once the session has ended. */
  get sendCapacity() {
    if (ENDED.has(this._state)) return 0;
    return Math.max(0, this.inputBufferBytes - this._outboxBytes);
  }

  nextEvent() {
    return this._events.shift() ?? null;
  }

  /** Binary frames to write to the WebSocket, in order, each as one message. */
  dataToSend() {
    return this.channel.dataToSend();
  }

  /** When tick() should next run (Unix seconds), or null when nothing waits. */
  nextTimeout() {
    return ENDED.has(this._state) ? null : this.channel.nextTimeout();
  }

  /**
   * The JSON text of the first WebSocket frame (a *text* frame), to send on every open,
   * reconnects included: the token from StartSession or ResumeSession, a new RequestId
   * each time, and the same ClientId.
   */
  openDataChannelMessage(token) {
    return encodeOpenDataChannel({
      token,
      requestId: uuid4(this._random),
      clientId: this.clientId,
      clientVersion: this.clientVersion,
    });
  }

  /** Resolves once every operation called so far has run. */
  whenIdle() {
    return this._tail;
  }

  // --- operations (each returns a Promise; see the contract at the top) -------------------

  /** Take one binary frame from the WebSocket. Rejects with ProtocolError for a malformed
   * frame, which changes nothing: the caller logs it and carries on, as the reference
   * client does. */
  receive(frame, now) {
    let bytes;
    try {
      bytes = Uint8Array.from(toBytes(frame, 'frame')); // the caller may reuse its buffer
    } catch (err) {
      return Promise.reject(err);
    }
    return this._run(async () => {
      if (ENDED.has(this._state)) return;
      this.channel.receive(decodeMessage(bytes), now);
      await this._pull(now);
      await this._flushOutbox(now);
    });
  }

  /**
   * Send keystrokes or pasted bytes (a Uint8Array; encode text with TextEncoder). Only once
   * the session has started: agents drop input that arrives during a handshake. Rejects at
   * once with FlowControlError, queuing nothing, when more than sendCapacity bytes.
   */
  sendInput(data, now) {
    let bytes;
    try {
      bytes = Uint8Array.from(toBytes(data, 'input'));
    } catch (err) {
      return Promise.reject(err);
    }
    if (bytes.length > this.sendCapacity) {
      return Promise.reject(
        new FlowControlError(`${bytes.length} bytes of input do not fit in the send buffer (${this.sendCapacity} bytes free)`),
      );
    }
    this._outboxBytes += bytes.length;
    return this._run(async () => {
      try {
        this._require([S.ESTABLISHED], 'send input');
      } catch (err) {
        this._outboxBytes -= bytes.length;
        throw err;
      }
      if (bytes.length) this._outbox.push({ payloadType: PayloadType.OUTPUT, data: bytes, offset: 0 });
      await this._flushOutbox(now);
    });
  }

  /** Send the terminal size. Allowed before the session starts: an agent without a
   * handshake uses it at once, and one in a handshake acks and ignores it, so send it
   * again on sessionStarted. */
  sendSize(cols, rows, now) {
    let payload;
    try {
      payload = encodeTerminalSize(cols, rows);
    } catch (err) {
      return Promise.reject(err);
    }
    return this._run(async () => {
      this._require(OPEN, 'send size');
      this._outbox.push({ payloadType: PayloadType.SIZE, data: payload, offset: 0 });
      await this._flushOutbox(now);
    });
  }

  /** Send a Flag (PortFlag value), such as TerminateSession (2). */
  sendFlag(flag, now) {
    return this._run(async () => {
      this._require([S.ESTABLISHED], 'send a flag');
      this._outbox.push({ payloadType: PayloadType.FLAG, data: encodeFlag(flag), offset: 0 });
      await this._flushOutbox(now);
    });
  }

  /** Answer kmsDataKeyNeeded with GenerateDataKey's CiphertextBlob and Plaintext (bytes,
   * base64-decoded), and turn encryption on. A key that is not 64 bytes is refused and
   * changes nothing. */
  provideDataKey(ciphertextBlob, plaintext, now) {
    return this._run(async () => {
      this._require([S.AWAITING_DATA_KEY], 'provide a data key');
      const cipher = await SessionCipher.create(toBytes(plaintext, 'data key'), Role.CLIENT, this._random);
      const result = { KMSCipherTextKey: base64Encode(toBytes(ciphertextBlob, 'ciphertext blob')), KMSCipherTextHash: null };
      // Agents that require it (Kms.RequireKMSChallengeResponse) check this.
      if (this._pendingHandshake?.challenge) result.ChallengeAcknowledgement = true;
      this._finishKms(processedAction(ActionType.KMS_ENCRYPTION, ActionStatus.SUCCESS, result), null, now);
      // From here the agent encrypts its output and expects ours encrypted (§4.4 step 2).
      this._cipher = cipher;
    });
  }

  /** Answer kmsDataKeyNeeded with a failure (the KMS error, for the agent's log); the agent
   * then ends the session. */
  refuseKms(error, now) {
    return this._run(async () => {
      this._require([S.AWAITING_DATA_KEY], 'refuse KMS encryption');
      const text = String(error);
      this._finishKms(failedAction(ActionType.KMS_ENCRYPTION, text), text, now);
    });
  }

  /** Run retransmission; call at nextTimeout(). */
  tick(now) {
    return this._run(async () => {
      if (ENDED.has(this._state)) return;
      this.channel.tick(now);
      await this._pull(now);
    });
  }

  /** After a reconnect (ResumeSession, a new WebSocket, openDataChannelMessage sent): put
   * every unacknowledged message on the new socket. */
  resendUnacked(now) {
    return this._run(async () => {
      if (!ENDED.has(this._state)) this.channel.resendUnacked(now);
    });
  }

  // --- internals: the queue and the state machine -----------------------------------------

  _run(job) {
    const result = this._tail.then(job);
    this._tail = result.then(noop, noop);
    return result;
  }

  _require(states, action) {
    if (!new Set(states).has(this._state)) {
      throw new ProtocolError(`cannot ${action} while the session is ${this._state}`);
    }
  }

  _move(next) {
    if (!MOVES[this._state].has(next)) throw new ProtocolError(`session cannot go from ${this._state} to ${next}`);
    this._state = next;
  }

  _end(output) {
    this._move(S.CLOSED);
    this._dropOutbox();
    this._events.push(event('ended', { output }));
  }

  _fail(reason) {
    this._move(S.FAILED);
    this._dropOutbox();
    this._events.push(event('failed', { reason }));
  }

  _dropOutbox() {
    this._outbox = [];
    this._outboxBytes = 0;
  }

  async _pull(now) {
    let next;
    while (!ENDED.has(this._state) && (next = this.channel.nextEvent()) !== null) {
      if (next.type === 'streamData') await this._onStream(next, now);
      else if (next.type === 'channelClosed') this._end(next.closed.output);
      else if (next.type === 'channelFailed') this._fail(next.reason);
      // Pause and resume are handled inside DataChannel; other message types, such as
      // agent_session_state, are not meant for a client.
    }
  }

  /** Hand queued stream data to the channel while its send buffer has room. */
  async _flushOutbox(now) {
    while (this._outbox.length && OPEN.has(this._state)) {
      const item = this._outbox[0];
      const isInput = item.payloadType === PayloadType.OUTPUT;
      const end = isInput ? Math.min(item.data.length, item.offset + this.maxInputChunk) : item.data.length;
      const chunk = item.data.subarray(item.offset, end);
      const sealed = this._cipher !== null && this._cipher.encryptsOutgoing(item.payloadType);
      if (!this.channel.canSend(chunk.length + (sealed ? NONCE_BYTES + TAG_BYTES : 0))) return; // acks make room
      const body = sealed ? await this._cipher.encrypt(chunk) : chunk;
      this.channel.send(body, item.payloadType, now);
      if (isInput) this._outboxBytes -= chunk.length;
      item.offset = end;
      if (item.offset >= item.data.length) this._outbox.shift();
    }
  }

  // --- internals: stream payloads ---------------------------------------------------------

  async _onStream(data, now) {
    const kind = data.payloadType;
    let payload = data.payload;
    try {
      if (this._cipher !== null && this._cipher.decryptsIncoming(kind)) {
        try {
          payload = await this._cipher.decrypt(payload);
        } catch (err) {
          throw err instanceof ProtocolError ? new ProtocolError(`message ${data.sequenceNumber}: ${err.message}`) : err;
        }
      }
      if (kind === PayloadType.HANDSHAKE_REQUEST) this._onHandshakeRequest(payload, now);
      else if (kind === PayloadType.ENC_CHALLENGE_REQUEST) await this._onChallenge(payload, now);
      else if (kind === PayloadType.HANDSHAKE_COMPLETE) this._onHandshakeComplete(payload);
      else {
        if (this._state === S.AWAITING_HANDSHAKE && SESSION_DATA_TYPES.has(kind)) this._startWithoutHandshake();
        if (!ENDED.has(this._state)) this._events.push(dataEvent(kind, payload));
      }
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      // The message is consumed and acked, so the agent will not send it again: the
      // session cannot recover from a payload it could not use.
      this._fail(err.message);
    }
  }

  _onHandshakeRequest(payload, now) {
    if (this._state !== S.AWAITING_HANDSHAKE) {
      throw new ProtocolError(`unexpected HandshakeRequest while ${this._state}`);
    }
    const request = decodeHandshakeRequest(payload);
    this.agentVersion = request.agentVersion;
    const pending = { actions: [], errors: [] };
    let keyId = null;
    for (const action of request.actions) {
      let processed;
      if (action.actionType === ActionType.SESSION_TYPE) {
        processed = this._sessionTypeAction(action, pending.errors);
      } else if (action.actionType === ActionType.KMS_ENCRYPTION) {
        [keyId, processed] = kmsAction(action, keyId, pending.errors);
        // The agent's random challenge: bound into the data key's encryption context
        // and acknowledged (data-channel.md §4.5).
        const challenge = action.parameters?.Challenge;
        if (typeof challenge === 'string' && challenge) pending.challenge = challenge;
      } else if (action.actionType === ActionType.PSEUDO_TERMINAL) {
        // The browser is a terminal: it always keeps the pty.
        processed = processedAction(action.actionType, ActionStatus.SUCCESS, Object.freeze({ Allocate: true }));
      } else if (OPTIONAL_ACTIONS.has(action.actionType)) {
        processed = processedAction(action.actionType, ActionStatus.SUCCESS);
      } else {
        processed = unsupportedAction(action.actionType);
        pending.errors.push(processed.Error);
      }
      pending.actions.push(processed);
    }
    this._pendingHandshake = pending;
    this._events.push(
      event('handshakeStarted', {
        agentVersion: request.agentVersion,
        sessionType: request.sessionType,
        properties: request.properties,
        kmsKeyId: request.kmsKeyId,
      }),
    );
    if (pending.actions.includes(null)) {
      this._move(S.AWAITING_DATA_KEY);
      const encryptionContext = Object.freeze({
        'aws:ssm:SessionId': this.sessionId,
        'aws:ssm:TargetId': this.targetId,
        ...(pending.challenge ? { 'aws:ssm:RandomChallenge': pending.challenge } : {}),
      });
      this._events.push(event('kmsDataKeyNeeded', { keyId, encryptionContext }));
    } else {
      this._sendHandshakeResponse(now);
    }
  }

  _sessionTypeAction(action, errors) {
    const value = action.parameters.SessionType;
    let error;
    if (typeof value !== 'string' || !ALL_SESSION_TYPES.has(value)) {
      error = `Unknown session type ${value === undefined || value === null ? 'None' : value}`;
    } else if (!this._sessionTypes.has(value)) {
      error = `session type ${value} is not supported by this client`;
    } else {
      this.sessionType = value;
      const properties = action.parameters.Properties;
      this.sessionProperties = properties !== null && typeof properties === 'object' && !Array.isArray(properties) ? properties : {};
      return processedAction(ActionType.SESSION_TYPE, ActionStatus.SUCCESS);
    }
    errors.push(error);
    return failedAction(ActionType.SESSION_TYPE, error);
  }

  _finishKms(answer, error, now) {
    const pending = this._pendingHandshake;
    pending.actions = pending.actions.map((a) => (a === null ? answer : a));
    if (error !== null) pending.errors.push(error);
    this._sendHandshakeResponse(now);
  }

  _sendHandshakeResponse(now) {
    const { actions, errors } = this._pendingHandshake;
    const payload = encodeHandshakeResponse({
      clientVersion: this.clientVersion,
      actions: actions.filter((a) => a !== null),
      errors: errors.length ? errors : null,
    });
    this.channel.send(payload, PayloadType.HANDSHAKE_RESPONSE, now);
    this._pendingHandshake = null;
    this._move(S.HANDSHAKING);
  }

  async _onChallenge(payload, now) {
    const cipher = this._cipher;
    if (this._state !== S.HANDSHAKING || cipher === null) {
      throw new ProtocolError('EncChallengeRequest arrived before a data key was agreed');
    }
    const challenge = decodeEncChallenge(payload, 'EncChallengeRequest payload');
    let answer;
    try {
      answer = await cipher.answerChallenge(challenge);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      throw new ProtocolError(`cannot answer the encryption challenge: ${err.message}`);
    }
    this.channel.send(encodeEncChallenge(answer), PayloadType.ENC_CHALLENGE_RESPONSE, now);
    this._events.push(event('challengeAnswered'));
  }

  _onHandshakeComplete(payload) {
    if (this._state !== S.HANDSHAKING) throw new ProtocolError(`unexpected HandshakeComplete while ${this._state}`);
    const complete = decodeHandshakeComplete(payload);
    // The reference client's words for the same case (§4.3).
    if (this.sessionType === null) throw new ProtocolError('unable to determine SessionType');
    this._move(S.ESTABLISHED);
    this._events.push(
      event('sessionStarted', {
        sessionType: this.sessionType,
        properties: this.sessionProperties,
        agentVersion: this.agentVersion,
        customerMessage: complete.customerMessage,
        handshake: true,
      }),
    );
  }

  _startWithoutHandshake() {
    // Legacy agents, and current ones for shells without KMS, send no handshake: their
    // first output means a shell (§4.3).
    if (!this._sessionTypes.has(SessionType.STANDARD_STREAM)) {
      throw new ProtocolError('the agent started a shell without a handshake');
    }
    this.sessionType = SessionType.STANDARD_STREAM;
    this._move(S.ESTABLISHED);
    this._events.push(
      event('sessionStarted', { sessionType: this.sessionType, properties: {}, agentVersion: '', customerMessage: '', handshake: false }),
    );
  }
}

/** null stands for "answered once the data key arrives". */
function kmsAction(action, keyId, errors) {
  const requested = action.parameters.KMSKeyId;
  let error;
  if (typeof requested !== 'string' || !requested) error = 'the request names no KMSKeyId';
  else if (keyId !== null && requested !== keyId) error = 'the request names two different KMS keys';
  else return [requested, null];
  errors.push(error);
  return [keyId, failedAction(ActionType.KMS_ENCRYPTION, error)];
}

function dataEvent(kind, payload) {
  if (kind === PayloadType.OUTPUT) return event('output', { data: payload });
  if (kind === PayloadType.STDERR) return event('stderr', { data: payload });
  if (kind === PayloadType.EXIT_CODE) {
    const text = fromUtf8(payload);
    return event('exitCode', { code: parseExitCode(text), text });
  }
  if (kind === PayloadType.FLAG && payload.length >= 4) {
    const { flag, error } = decodeFlag(payload);
    return event('flag', { flag, error });
  }
  return event('unknownPayload', { payloadType: kind, data: payload });
}
