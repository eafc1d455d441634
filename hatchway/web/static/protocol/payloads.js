// The JSON (and flag) payloads of the data channel, a port of hatchway/protocol/payloads.py.
//
// Writers produce the exact field order and compact separators of the reference client, as
// UTF-8 bytes; readers accept what real peers send and throw ProtocolError for anything else.

import { base64Decode, base64Encode, fromUtf8, utf8, uuidFromString } from './bytes.js';
import { ProtocolError } from './errors.js';

export const ActionType = Object.freeze({
  SESSION_TYPE: 'SessionType',
  KMS_ENCRYPTION: 'KMSEncryption',
  // Hatchway's optional actions: a client that accepts ExitCodeReporting gets the exit
  // status as PayloadType 12, and one that accepts PortErrorDetails gets the reason after a
  // ConnectToPortError flag. Reference clients answer "unsupported" and get neither.
  EXIT_CODE_REPORTING: 'ExitCodeReporting',
  PORT_ERROR_DETAILS: 'PortErrorDetails',
  // Offered for sessions under a pty: a client whose input is not a terminal answers
  // {Allocate: false} and gets a session on pipes. The browser is always a terminal.
  PSEUDO_TERMINAL: 'PseudoTerminal',
});

export const ActionStatus = Object.freeze({ SUCCESS: 1, FAILED: 2, UNSUPPORTED: 3 });

export const SessionType = Object.freeze({
  STANDARD_STREAM: 'Standard_Stream',
  INTERACTIVE_COMMANDS: 'InteractiveCommands',
  NON_INTERACTIVE_COMMANDS: 'NonInteractiveCommands',
  PORT: 'Port',
});

export const PortFlag = Object.freeze({ DISCONNECT_TO_PORT: 1, TERMINATE_SESSION: 2, CONNECT_TO_PORT_ERROR: 3 });

// JSON.stringify writes what Python's json.dumps(separators=(",", ":"), ensure_ascii=False)
// writes for these payloads: the same escapes, no spaces, keys in insertion order.
export const dumpJson = (obj) => utf8(JSON.stringify(obj));

/** Parse a JSON object from bytes or text, or throw ProtocolError naming the payload. */
export function loadObject(data, what) {
  const text = typeof data === 'string' ? data : fromUtf8(data, what);
  let obj;
  try {
    obj = JSON.parse(text);
  } catch (err) {
    throw new ProtocolError(`${what} is not valid JSON: ${err.message}`);
  }
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    throw new ProtocolError(`${what} must be a JSON object, not ${jsonKind(obj)}`);
  }
  return obj;
}

function jsonKind(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'list';
  if (typeof value === 'number') return Number.isInteger(value) ? 'int' : 'float';
  return { string: 'str', boolean: 'bool', object: 'dict' }[typeof value] ?? typeof value;
}

const MISSING = Symbol('missing');
const KIND_CHECKS = {
  str: (v) => typeof v === 'string',
  int: (v) => typeof v === 'number' && Number.isInteger(v),
  number: (v) => typeof v === 'number',
  bool: (v) => typeof v === 'boolean',
  dict: (v) => v !== null && typeof v === 'object' && !Array.isArray(v),
  list: (v) => Array.isArray(v),
};

/** ``obj[key]`` with its JSON kind checked ('str', 'int', 'number', 'bool', 'dict', 'list'). */
export function getField(obj, key, kinds, what, fallback = MISSING) {
  const value = Object.hasOwn(obj, key) ? obj[key] : null;
  if (value === null) {
    if (fallback === MISSING) throw new ProtocolError(`${what} lacks the field ${key}`);
    return fallback;
  }
  const allowed = Array.isArray(kinds) ? kinds : [kinds];
  if (!allowed.some((kind) => KIND_CHECKS[kind](value))) {
    throw new ProtocolError(`${what} field ${key} has the wrong type ${jsonKind(value)}`);
  }
  return value;
}

// --- acknowledge and channel_closed -----------------------------------------------------

/** The payload of an ``acknowledge`` message (data-channel.md §3.1). */
export function encodeAcknowledge({ messageType, messageId, sequenceNumber, isSequential = true }) {
  return dumpJson({
    AcknowledgedMessageType: messageType,
    AcknowledgedMessageId: messageId,
    AcknowledgedMessageSequenceNumber: sequenceNumber,
    IsSequentialMessage: isSequential,
  });
}

export function decodeAcknowledge(data) {
  const what = 'acknowledge payload';
  const obj = loadObject(data, what);
  return Object.freeze({
    messageType: getField(obj, 'AcknowledgedMessageType', 'str', what, ''),
    messageId: uuidFromString(getField(obj, 'AcknowledgedMessageId', 'str', what), what),
    sequenceNumber: getField(obj, 'AcknowledgedMessageSequenceNumber', 'int', what),
    isSequential: getField(obj, 'IsSequentialMessage', 'bool', what, true),
  });
}

const NIL_UUID = '00000000-0000-0000-0000-000000000000';

/** The payload of ``channel_closed`` (data-channel.md §6.1). */
export function decodeChannelClosed(data) {
  const what = 'channel_closed payload';
  const obj = loadObject(data, what);
  const rawId = getField(obj, 'MessageId', 'str', what, '');
  return Object.freeze({
    sessionId: getField(obj, 'SessionId', 'str', what, ''),
    messageId: rawId ? uuidFromString(rawId, what) : NIL_UUID,
    createdDate: getField(obj, 'CreatedDate', 'str', what, ''),
    destinationId: getField(obj, 'DestinationId', 'str', what, ''),
    output: getField(obj, 'Output', 'str', what, ''),
    schemaVersion: getField(obj, 'SchemaVersion', 'int', what, 1),
  });
}

export function encodeChannelClosed({ sessionId, messageId, createdDate, destinationId = '', output = '', schemaVersion = 1 }) {
  return dumpJson({
    MessageId: messageId,
    CreatedDate: createdDate,
    DestinationId: destinationId,
    SessionId: sessionId,
    MessageType: 'channel_closed',
    SchemaVersion: schemaVersion,
    Output: output,
  });
}

// --- handshake --------------------------------------------------------------------------

/** PayloadType 5, agent to client (data-channel.md §4.1). */
export function decodeHandshakeRequest(data) {
  const what = 'HandshakeRequest';
  const obj = loadObject(data, what);
  const actions = getField(obj, 'RequestedClientActions', 'list', what, []).map((item) => {
    if (!KIND_CHECKS.dict(item)) throw new ProtocolError(`${what} action is not an object`);
    return Object.freeze({
      actionType: getField(item, 'ActionType', 'str', what),
      parameters: getField(item, 'ActionParameters', 'dict', what, {}),
    });
  });
  const find = (type) => actions.find((a) => a.actionType === type);
  const sessionAction = find(ActionType.SESSION_TYPE);
  const kmsAction = find(ActionType.KMS_ENCRYPTION);
  const sessionType = sessionAction?.parameters.SessionType;
  const properties = sessionAction?.parameters.Properties;
  const kmsKeyId = kmsAction?.parameters.KMSKeyId;
  return Object.freeze({
    agentVersion: getField(obj, 'AgentVersion', 'str', what, ''),
    actions: Object.freeze(actions),
    sessionType: typeof sessionType === 'string' ? sessionType : null,
    properties: KIND_CHECKS.dict(properties) ? properties : {},
    kmsKeyId: typeof kmsKeyId === 'string' ? kmsKeyId : null,
  });
}

/** One entry of ProcessedClientActions, in the reference client's field order. */
export function processedAction(actionType, status, result = null, error = '') {
  return Object.freeze({ ActionType: actionType, ActionStatus: status, ActionResult: result, Error: error });
}

/** The reference client puts 3 in ActionResult and 0 in ActionStatus (§4.2). */
export const unsupportedAction = (actionType) =>
  processedAction(actionType, 0, ActionStatus.UNSUPPORTED, `Unsupported action ${actionType}`);

/** The reference client's words for a failed action (§4.2). */
export const failedAction = (actionType, error) =>
  processedAction(actionType, ActionStatus.FAILED, null, `Failed to process action ${actionType}: ${error}`);

/** PayloadType 6, client to agent. ``errors`` is null when nothing failed. */
export function encodeHandshakeResponse({ clientVersion, actions = [], errors = null }) {
  return dumpJson({ ClientVersion: clientVersion, ProcessedClientActions: actions, Errors: errors });
}

/** PayloadType 7, agent to client; the duration is in nanoseconds. */
export function decodeHandshakeComplete(data) {
  const what = 'HandshakeComplete';
  const obj = loadObject(data, what);
  return Object.freeze({
    timeToCompleteNs: getField(obj, 'HandshakeTimeToComplete', 'int', what, 0),
    customerMessage: getField(obj, 'CustomerMessage', 'str', what, ''),
  });
}

/** ``{"Challenge": base64}``: the body of both EncChallengeRequest (8) and -Response (9). */
export const encodeEncChallenge = (challenge) => dumpJson({ Challenge: base64Encode(challenge) });

export function decodeEncChallenge(data, what = 'EncChallengeRequest payload') {
  const obj = loadObject(data, what);
  return base64Decode(getField(obj, 'Challenge', 'str', what), `${what} Challenge`);
}

// --- terminal size and flags ------------------------------------------------------------

const U32_MAX = 2 ** 32 - 1;

/** PayloadType 3, ``{"cols":C,"rows":R}``. */
export function encodeTerminalSize(cols, rows) {
  for (const [name, value] of [['cols', cols], ['rows', rows]]) {
    if (!Number.isInteger(value) || value < 0 || value > U32_MAX) {
      throw new ProtocolError(`terminal ${name} ${value} is out of range`);
    }
  }
  return dumpJson({ cols, rows });
}

export function decodeTerminalSize(data) {
  const what = 'terminal size';
  const obj = loadObject(data, what);
  const cols = getField(obj, 'cols', 'int', what);
  const rows = getField(obj, 'rows', 'int', what);
  if (!(cols >= 0 && cols <= U32_MAX && rows >= 0 && rows <= U32_MAX)) {
    throw new ProtocolError(`${what} ${cols}x${rows} is out of range`);
  }
  return Object.freeze({ cols, rows });
}

/** PayloadType 10: a 4-byte big-endian value. */
export function encodeFlag(flag) {
  if (!Object.values(PortFlag).includes(flag)) throw new ProtocolError(`unknown flag value ${flag}`);
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, flag);
  return out;
}

/**
 * A Flag payload: ``flag`` is its 4-byte value; ``error`` is the reason a Hatchway agent
 * adds after a ConnectToPortError (PortErrorDetails), or null.
 */
export function decodeFlag(data) {
  if (data.length < 4) throw new ProtocolError(`flag payload is ${data.length} bytes, not 4`);
  const flag = new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(0);
  let error = null;
  if (flag === PortFlag.CONNECT_TO_PORT_ERROR && data.length > 4) {
    try {
      const body = JSON.parse(fromUtf8(data.subarray(4), 'flag details'));
      const streamId = Number.parseInt(body.StreamId, 10);
      if (Number.isInteger(streamId) && body.Destination != null && body.Error != null) {
        error = Object.freeze({ streamId, destination: String(body.Destination), error: String(body.Error) });
      }
    } catch {
      error = null; // a bare flag, as reference agents send it
    }
  }
  return Object.freeze({ flag, error });
}

// --- the first text frame of a data channel ---------------------------------------------

/**
 * The OpenDataChannel text frame (data-channel.md §1.3), in the reference client's field
 * order. Returns a string: it goes out as a WebSocket *text* frame.
 */
export function encodeOpenDataChannel({ token, requestId, clientId, clientVersion = '', schemaVersion = '1.0' }) {
  if (typeof token !== 'string' || !token) throw new ProtocolError('the open-data-channel message needs a token');
  const obj = { MessageSchemaVersion: schemaVersion, RequestId: requestId, TokenValue: token, ClientId: clientId };
  if (clientVersion) obj.ClientVersion = clientVersion;
  return JSON.stringify(obj);
}
