// The AgentMessage binary codec (data-channel.md §2), a port of hatchway/protocol/message.py.
//
// Layout, all integers big-endian:
//
//   0   HeaderLength   u32   always 116: the offset of PayloadLength
//   4   MessageType    32 B  ASCII, space padded
//   36  SchemaVersion  u32
//   40  CreatedDate    u64   Unix epoch milliseconds
//   48  SequenceNumber i64
//   56  Flags          u64
//   64  MessageId      16 B  UUID with its two 8-byte halves swapped
//   80  PayloadDigest  32 B  SHA-256 of the payload as sent
//   112 PayloadType    u32
//   116 PayloadLength  u32
//   120 Payload
//
// The 64-bit fields come out as Numbers when they are safe integers (every real created
// date, sequence number and flag value is) and as BigInts otherwise; encode takes either.

import { sha256 } from '@noble/hashes/sha2.js';

import { equalBytes, fromHex, toBytes, uuidFromString, uuidToString } from './bytes.js';
import { ProtocolError } from './errors.js';

export const HEADER_LENGTH = 116;
export const PAYLOAD_OFFSET = HEADER_LENGTH + 4;
export const MESSAGE_TYPE_LENGTH = 32;
export const DIGEST_LENGTH = 32;

export const MessageType = Object.freeze({
  INPUT_STREAM_DATA: 'input_stream_data',
  OUTPUT_STREAM_DATA: 'output_stream_data',
  ACKNOWLEDGE: 'acknowledge',
  CHANNEL_CLOSED: 'channel_closed',
  START_PUBLICATION: 'start_publication',
  PAUSE_PUBLICATION: 'pause_publication',
});

/** What the payload of a stream message holds (data-channel.md §2.2). */
export const PayloadType = Object.freeze({
  OUTPUT: 1,
  ERROR: 2,
  SIZE: 3,
  PARAMETER: 4,
  HANDSHAKE_REQUEST: 5,
  HANDSHAKE_RESPONSE: 6,
  HANDSHAKE_COMPLETE: 7,
  ENC_CHALLENGE_REQUEST: 8,
  ENC_CHALLENGE_RESPONSE: 9,
  FLAG: 10,
  STDERR: 11,
  EXIT_CODE: 12,
});

export const Flags = Object.freeze({ NONE: 0, SYN: 1, FIN: 2, ACK: 3 });

// The reference plugin accepts these without the CreatedDate and HeaderLength checks.
const UNCHECKED_TYPES = new Set([MessageType.START_PUBLICATION, MessageType.PAUSE_PUBLICATION]);

const EMPTY_DIGEST = sha256(new Uint8Array(0));
const ZERO_DIGEST = new Uint8Array(DIGEST_LENGTH);

const U32_MAX = 2n ** 32n - 1n;
const U64_MAX = 2n ** 64n - 1n;
const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

function checkRange(name, value, low, high) {
  const isInteger = typeof value === 'bigint' || (typeof value === 'number' && Number.isInteger(value));
  if (!isInteger) {
    const kind = value === null ? 'null' : typeof value;
    throw new ProtocolError(`${name} must be an integer, not ${kind}`);
  }
  if (typeof value === 'number' && !Number.isSafeInteger(value)) {
    throw new ProtocolError(`${name} ${value} is not a safe integer; pass a BigInt`);
  }
  const big = BigInt(value);
  if (big < low || big > high) throw new ProtocolError(`${name} ${value} is out of range [${low}, ${high}]`);
  return big;
}

const fromBig = (big) => (big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big);

/** The wire form of a message id (a UUID string): the least-significant half first. */
export function messageIdToWire(messageId) {
  const raw = fromHex(uuidFromString(messageId, 'message id').replaceAll('-', ''));
  const wire = new Uint8Array(16);
  wire.set(raw.subarray(8), 0);
  wire.set(raw.subarray(0, 8), 8);
  return wire;
}

export function messageIdFromWire(wire) {
  const raw = new Uint8Array(16);
  raw.set(wire.subarray(8, 16), 0);
  raw.set(wire.subarray(0, 8), 8);
  return uuidToString(raw);
}

/**
 * Serialize one message to wire bytes. ``fields``: messageType, createdDate (epoch ms;
 * the caller supplies it because this layer never reads a clock), messageId (UUID
 * string), and optionally sequenceNumber, flags, payloadType, payload and schemaVersion.
 * Throws ProtocolError for a field that does not fit.
 */
export function encodeMessage({
  messageType,
  createdDate,
  messageId,
  sequenceNumber = 0,
  flags = 0,
  payloadType = 0,
  payload = new Uint8Array(0),
  schemaVersion = 1,
}) {
  if (typeof messageType !== 'string' || !/^[\x00-\x7f]*$/.test(messageType)) {
    throw new ProtocolError(`message type ${JSON.stringify(messageType)} is not ASCII`);
  }
  if (!messageType) throw new ProtocolError('message type is empty');
  if (messageType.length > MESSAGE_TYPE_LENGTH) {
    throw new ProtocolError(`message type ${JSON.stringify(messageType)} is longer than ${MESSAGE_TYPE_LENGTH} bytes`);
  }
  const schema = checkRange('schemaVersion', schemaVersion, 0n, U32_MAX);
  const created = checkRange('createdDate', createdDate, 0n, U64_MAX);
  if (created === 0n && !UNCHECKED_TYPES.has(messageType)) {
    throw new ProtocolError(`${messageType} message needs a non-zero createdDate`);
  }
  const seq = checkRange('sequenceNumber', sequenceNumber, I64_MIN, I64_MAX);
  const flagBits = checkRange('flags', flags, 0n, U64_MAX);
  const kind = checkRange('payloadType', payloadType, 0n, U32_MAX);
  const body = toBytes(payload, 'payload');
  const wireId = messageIdToWire(messageId);

  const frame = new Uint8Array(PAYLOAD_OFFSET + body.length);
  const view = new DataView(frame.buffer);
  view.setUint32(0, HEADER_LENGTH);
  frame.fill(0x20, 4, 4 + MESSAGE_TYPE_LENGTH);
  for (let i = 0; i < messageType.length; i++) frame[4 + i] = messageType.charCodeAt(i);
  view.setUint32(36, Number(schema));
  view.setBigUint64(40, created);
  view.setBigInt64(48, seq);
  view.setBigUint64(56, flagBits);
  frame.set(wireId, 64);
  frame.set(sha256(body), 80);
  view.setUint32(112, Number(kind));
  view.setUint32(116, body.length);
  frame.set(body, PAYLOAD_OFFSET);
  return frame;
}

const isAsciiSpace = (b) => b === 0x20 || (b >= 0x09 && b <= 0x0d);

function parseMessageType(field) {
  let start = 0;
  let end = field.length;
  // NULs off both ends, then whitespace, as message.py does.
  while (start < end && field[start] === 0) start++;
  while (end > start && field[end - 1] === 0) end--;
  while (start < end && isAsciiSpace(field[start])) start++;
  while (end > start && isAsciiSpace(field[end - 1])) end--;
  const bytes = field.subarray(start, end);
  if (bytes.some((b) => b > 0x7f)) {
    throw new ProtocolError(`message type ${JSON.stringify(String.fromCharCode(...bytes))} is not ASCII`);
  }
  const text = String.fromCharCode(...bytes);
  if (!text) throw new ProtocolError('message type is empty');
  if (bytes.some((b) => b <= 0x20 || b === 0x7f)) {
    throw new ProtocolError(`message type ${JSON.stringify(text)} holds non-printable characters`);
  }
  return text;
}

/**
 * Parse one AgentMessage, validating it the way the reference client does. Returns a
 * frozen object with the fields encodeMessage takes (messageId as a UUID string, the
 * payload as a Uint8Array). Throws ProtocolError, and nothing else, for invalid input.
 */
export function decodeMessage(data) {
  const raw = toBytes(data, 'message');
  if (raw.length < PAYLOAD_OFFSET) {
    throw new ProtocolError(`message is ${raw.length} bytes, shorter than the ${PAYLOAD_OFFSET}-byte header`);
  }
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const headerLength = view.getUint32(0);
  const messageType = parseMessageType(raw.subarray(4, 4 + MESSAGE_TYPE_LENGTH));
  const schemaVersion = view.getUint32(36);
  const createdDate = view.getBigUint64(40);
  const sequenceNumber = view.getBigInt64(48);
  const flags = view.getBigUint64(56);
  const messageId = messageIdFromWire(raw.subarray(64, 80));
  const digest = raw.subarray(80, 112);
  const payloadType = view.getUint32(112);
  const payloadLength = view.getUint32(116);

  // Some peers may grow the header; the payload always starts 4 bytes after HeaderLength.
  if (headerLength < HEADER_LENGTH) {
    throw new ProtocolError(`header length ${headerLength} is less than ${HEADER_LENGTH}`);
  }
  const payloadStart = headerLength + 4;
  if (payloadStart > raw.length) {
    throw new ProtocolError(`header length ${headerLength} points past the end of a ${raw.length}-byte message`);
  }
  const payload = raw.slice(payloadStart);
  if (payloadLength !== payload.length) {
    throw new ProtocolError(`payload length field says ${payloadLength} bytes but ${payload.length} follow`);
  }
  if (!UNCHECKED_TYPES.has(messageType) && createdDate === 0n) {
    throw new ProtocolError(`${messageType} message has no created date`);
  }
  if (payload.length && !equalBytes(sha256(payload), digest)) {
    throw new ProtocolError(`payload digest mismatch on ${messageType} seq ${sequenceNumber}`);
  }
  if (!payload.length && !equalBytes(digest, EMPTY_DIGEST) && !equalBytes(digest, ZERO_DIGEST)) {
    throw new ProtocolError(`empty ${messageType} payload carries a non-empty digest`);
  }
  return Object.freeze({
    messageType,
    schemaVersion,
    createdDate: fromBig(createdDate),
    sequenceNumber: fromBig(sequenceNumber),
    flags: fromBig(flags),
    messageId,
    payloadType,
    payload,
  });
}
