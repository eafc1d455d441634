// The one error hierarchy of the browser protocol layer, as in hatchway/protocol/errors.py.

/** Malformed bytes, an illegal state transition, or a violated protocol limit. The
 * message always says what was wrong, so the page can show it to the user as it is. */
export class ProtocolError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/** The caller tried to queue more than the session's bounded buffers allow. */
export class FlowControlError extends ProtocolError {
  constructor(message) {
    super(message);
    this.name = 'FlowControlError';
  }
}
