// The Session Manager data-channel protocol for the browser console, sans-I/O.
// Nothing here opens a socket, sets a timer or reads a clock: see session.js.

export { ProtocolError, FlowControlError } from './errors.js';
export {
  HEADER_LENGTH,
  PAYLOAD_OFFSET,
  MessageType,
  PayloadType,
  Flags,
  encodeMessage,
  decodeMessage,
  messageIdToWire,
  messageIdFromWire,
} from './message.js';
export * from './payloads.js';
export { Role, SessionCipher } from './crypto.js';
export { DataChannel, ChannelState, RttEstimator } from './stream.js';
export { ClientSession, ClientState, CLIENT_VERSION, MAX_INPUT_CHUNK, SHELL_SESSION_TYPES, parseExitCode } from './session.js';
