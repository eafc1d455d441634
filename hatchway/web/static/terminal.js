// One terminal tab: xterm.js on top, the data-channel protocol (./protocol, sans-I/O)
// beneath, and this file as the thin I/O layer between them and the WebSocket: it feeds
// frames in, writes frames out, runs the retransmission timer, asks KMS for the data key,
// and resumes the session when the WebSocket drops.

import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import { WebLinksAddon } from "@xterm/addon-web-links";
import { Unicode11Addon } from "@xterm/addon-unicode11";
import { ClientSession } from "./protocol/index.js";

// The CLI's budget (hatchway/client/connection.py): 8 attempts over about 25 s.
const RETRY_ATTEMPTS = 8;
const FIRST_DELAY_MS = 200;
const MAX_DELAY_MS = 5000;
const OPEN_TIMEOUT_MS = 15000;
const DIM = "\x1b[2m";
const RESET = "\x1b[0m";

const now = () => Date.now() / 1000;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const encoder = new TextEncoder();

function fromBase64(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

// The WebSocket URL for a StreamUrl, reached through the page's own origin and path prefix:
// behind a TLS-terminating proxy or a prefix, that is the address the browser can reach.
export function streamUrlForPage(streamUrl, pageBase) {
  const stream = new URL(streamUrl);
  const base = new URL("../", pageBase); // the console lives at <prefix>/console/
  const path = stream.pathname.slice(stream.pathname.indexOf("/v1/data-channel/") + 1);
  const url = new URL(path + stream.search, base);
  url.protocol = base.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

export class TerminalTab {
  constructor({ api, target, document, element }) {
    this.api = api;
    this.target = target;
    this.document = document; // undefined: the service's default, SSM-SessionManagerRunShell
    this.element = element;
    this.sessionId = "";
    this.session = null;
    this.socket = null;
    this.timer = null;
    this.ended = false;
    this.attempts = 0; // reconnection attempts since a frame last arrived
    this.exitCode = null;
    this.pasting = Promise.resolve();
    this.wakeSender = null; // a paste waiting for room in the send buffer
    this.onEnd = () => {};
    this.onSessionId = () => {};
    this.term = new Terminal({
      allowProposedApi: true, // the unicode11 addon needs it
      cursorBlink: true,
      fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, monospace',
      fontSize: 14,
      // At line height 1 the underscore of DejaVu Sans Mono 14px is drawn outside its row
      // and does not show at device scale 1 (snake_case read "snake case").
      lineHeight: 1.2,
      scrollback: 10000,
      theme: { background: "#0d1117" },
    });
    this.fit = new FitAddon();
    this.term.loadAddon(this.fit);
    this.term.loadAddon(new WebLinksAddon());
    this.term.loadAddon(new Unicode11Addon());
    this.term.unicode.activeVersion = "11";
    this.term.open(element);
    this.resizeObserver = new ResizeObserver(() => this.refit());
    this.resizeObserver.observe(element);
    this.term.onData((text) => this.input(text));
    this.term.onBinary((text) => this.input(Uint8Array.from(text, (c) => c.charCodeAt(0) & 255)));
    this.term.onResize(({ cols, rows }) => this.run((t) => this.session?.sendSize(cols, rows, t)));
  }

  focus() {
    this.refit();
    this.term.focus();
  }

  refit() {
    if (this.element.hidden || !this.element.offsetWidth) return;
    try {
      this.fit.fit();
    } catch {
      // Not laid out yet; the observer calls again once it is.
    }
  }

  // What the screen shows, as text (for the tests and for copying out by hand).
  screenText() {
    const buffer = this.term.buffer.active;
    const lines = [];
    for (let i = 0; i < buffer.length; i++) {
      lines.push(buffer.getLine(i)?.translateToString(true) ?? "");
    }
    return lines.join("\n").replace(/\n+$/, "");
  }

  notice(text) {
    this.term.write(`\r\n${DIM}${text}${RESET}\r\n`);
  }

  // --- opening and resuming -----------------------------------------------------------

  async start() {
    this.refit();
    this.term.write(`${DIM}Starting a session with ${this.target}…${RESET}`);
    let started;
    try {
      started = await this.api.call("AmazonSSM.StartSession", {
        Target: this.target,
        ...(this.document ? { DocumentName: this.document } : {}),
        Reason: "Hatchway web console",
      });
    } catch (error) {
      return this.fail(`An error occurred (${error.type || error.status}) when calling the StartSession operation: ${error.reason || error.message}`);
    }
    this.sessionId = started.SessionId;
    this.onSessionId(this.sessionId);
    this.session = new ClientSession({ sessionId: this.sessionId, targetId: this.target });
    this.term.write(`\r\n${DIM}Starting session with SessionId: ${this.sessionId}${RESET}\r\n`);
    try {
      await this.connect(started.TokenValue, started.StreamUrl, false);
    } catch (error) {
      const diagnosis = await this.diagnose();
      if (diagnosis) return this.fail(`Error: Failed to open session. ${diagnosis}`);
      await this.reconnect(error);
    }
  }

  // Opens the WebSocket, sends the token (and on a resume, what the agent has not
  // acknowledged), and resolves once it is open. Rejects if it does not open.
  connect(token, streamUrl, resuming) {
    return new Promise((resolve, reject) => {
      const url = streamUrlForPage(streamUrl, this.api.base);
      const socket = new WebSocket(url);
      socket.binaryType = "arraybuffer";
      let opened = false;
      const timeout = setTimeout(() => socket.close(), OPEN_TIMEOUT_MS);
      socket.onopen = () => {
        opened = true;
        clearTimeout(timeout);
        this.socket = socket;
        socket.send(this.session.openDataChannelMessage(token));
        // The size goes once the session has started; a resume sends again what the
        // agent has not acknowledged.
        if (resuming) this.run((t) => this.session.resendUnacked(t));
        resolve();
      };
      socket.onmessage = (message) => {
        if (typeof message.data === "string") return; // the service sends only binary frames
        this.attempts = 0;
        this.run((t) => this.session.receive(new Uint8Array(message.data), t));
      };
      socket.onclose = (event) => {
        clearTimeout(timeout);
        if (!opened) {
          reject(new Error(`the WebSocket to ${new URL(url).host} did not open (code ${event.code})`));
          return;
        }
        if (this.socket === socket) this.socket = null;
        if (!this.ended) this.reconnect(new Error(`the WebSocket closed (code ${event.code})`));
      };
    });
  }

  async reconnect(cause) {
    if (this.reconnecting || this.ended) return;
    this.reconnecting = true;
    let lastError = cause;
    try {
      // The count goes on across resumes until a frame arrives on the new WebSocket, so a
      // socket that opens and drops at once cannot retry for ever.
      while (this.attempts < RETRY_ATTEMPTS && !this.ended) {
        const attempt = ++this.attempts;
        this.notice(`Trying to open session (Retrying. Attempt #${attempt})`);
        const delay = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** (attempt - 1));
        await sleep(delay * (1 + Math.random() * 0.5));
        let resumed;
        try {
          resumed = await this.api.call("AmazonSSM.ResumeSession", { SessionId: this.sessionId });
        } catch (error) {
          lastError = error;
          if (error.status && error.status < 500) break; // the service will not take it back
          continue;
        }
        if (!resumed.TokenValue) {
          lastError = new Error("the service has ended the session");
          break;
        }
        try {
          await this.connect(resumed.TokenValue, resumed.StreamUrl, true);
          return;
        } catch (error) {
          lastError = error;
          // A WebSocket that will not open is most often a proxy in the way: say so now
          // rather than after the whole retry budget.
          const diagnosis = await this.diagnose();
          if (diagnosis) return this.fail(`Error: Failed to open session. ${diagnosis}`);
        }
      }
      const diagnosis = await this.diagnose();
      this.fail(`Error: Failed to open session. ${diagnosis || lastError?.message || ""}`.trim());
    } finally {
      this.reconnecting = false;
    }
  }

  // Why would the WebSocket not open? Ask the server what it saw of a probe upgrade: a
  // proxy that strips or refuses Upgrade is the usual cause, and it has a known fix.
  async diagnose() {
    const host = this.api.base.host;
    const fix = `Allow WebSocket (HTTP Upgrade) connections to ${host} in the proxy or firewall between this browser and Hatchway.`;
    const probe = crypto.randomUUID();
    const url = new URL(`api/ws-probe?probe=${probe}`, this.api.base);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const opened = await new Promise((resolve) => {
      const socket = new WebSocket(url);
      const timer = setTimeout(() => socket.close(), 5000);
      socket.onopen = () => {
        clearTimeout(timer);
        socket.close();
        resolve(true);
      };
      socket.onclose = () => {
        clearTimeout(timer);
        resolve(false);
      };
    });
    if (opened) return "";
    let seen;
    try {
      seen = (await this.api.request(`api/ws-probe/${probe}`)).seen;
    } catch (error) {
      return `The Hatchway server could not be reached: ${error.reason || error.message}`;
    }
    if (seen === "stripped" || seen === "plain") {
      return `The WebSocket upgrade was blocked: the request reached Hatchway without its Upgrade header, so a proxy on the way removed it. ${fix}`;
    }
    return `The WebSocket upgrade was blocked: the request never reached Hatchway, so a proxy or firewall on the way refused it. ${fix}`;
  }

  // --- the protocol loop ---------------------------------------------------------------

  // Runs one session operation, then writes what it produced and handles its events.
  run(operation) {
    if (!this.session) return Promise.resolve();
    const done = Promise.resolve(operation(now()))
      .catch((error) => this.notice(`Protocol error: ${error.message}`))
      .then(() => this.flush());
    return done;
  }

  flush() {
    const session = this.session;
    for (const frame of session.dataToSend()) {
      if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(frame);
      // Otherwise the frame stays unacknowledged and goes again after the resume.
    }
    let event;
    while ((event = session.nextEvent())) this.handle(event);
    if (this.wakeSender && (session.sendCapacity > 0 || this.ended)) {
      const wake = this.wakeSender;
      this.wakeSender = null;
      wake();
    }
    clearTimeout(this.timer);
    const due = session.nextTimeout();
    if (due !== null && due !== undefined && !this.ended) {
      this.timer = setTimeout(() => this.run((t) => session.tick(t)), Math.max(0, (due - now()) * 1000));
    }
  }

  handle(event) {
    switch (event.type) {
      case "output":
      case "stderr":
        this.term.write(event.data);
        break;
      case "sessionStarted":
        if (event.customerMessage) this.notice(event.customerMessage);
        this.run((t) => this.session.sendSize(this.term.cols, this.term.rows, t));
        break;
      case "kmsDataKeyNeeded":
        this.provideDataKey(event);
        break;
      case "exitCode":
        this.exitCode = event.code;
        break;
      case "ended":
        this.end(event.output);
        break;
      case "failed":
        this.fail(`Error: the session failed: ${event.reason}`);
        break;
      default:
        break;
    }
  }

  async provideDataKey(event) {
    let key;
    try {
      key = await this.api.call("TrentService.GenerateDataKey", {
        KeyId: event.keyId,
        NumberOfBytes: 64,
        EncryptionContext: event.encryptionContext,
      });
    } catch (error) {
      const reason = `Error calling KMS GenerateDataKey API: ${error.type || "Error"}: ${error.reason || error.message}`;
      return this.run((t) => this.session.refuseKms(reason, t));
    }
    return this.run((t) =>
      this.session.provideDataKey(fromBase64(key.CiphertextBlob), fromBase64(key.Plaintext), t),
    );
  }

  // --- input -------------------------------------------------------------------------

  // Keystrokes and pastes, in order. A paste larger than the session's input buffer waits
  // for room (it grows as the agent acknowledges), so nothing is dropped.
  input(data) {
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    this.pasting = this.pasting.then(() => this.send(bytes));
  }

  async send(bytes) {
    let offset = 0;
    while (offset < bytes.length && this.session && !this.ended) {
      const room = this.session.sendCapacity;
      if (room <= 0) {
        // The buffer is full until the agent acknowledges: flush() wakes us when it has.
        await new Promise((resolve) => (this.wakeSender = resolve));
        continue;
      }
      const piece = bytes.subarray(offset, offset + room);
      offset += piece.length;
      await this.run((t) => this.session.sendInput(piece, t));
    }
  }

  // --- the end ---------------------------------------------------------------------

  end(output) {
    if (this.ended) return;
    this.ended = true;
    const code = this.exitCode !== null && this.exitCode !== undefined ? `, exit code ${this.exitCode}` : "";
    if (output) this.term.write(`\r\n${output.replace(/\r?\n/g, "\r\n")}`);
    this.term.write(`\r\n\r\n${DIM}── Session ${this.sessionId} ended${code} ──${RESET}\r\n`);
    this.stop();
  }

  fail(message) {
    if (this.ended) return;
    this.ended = true;
    this.term.write(`\r\n\x1b[31m${message}${RESET}\r\n`);
    this.stop();
  }

  stop() {
    clearTimeout(this.timer);
    this.wakeSender?.(); // a paste waiting for room gives up: the session is over
    this.socket?.close(1000);
    this.socket = null;
    this.onEnd();
  }

  // The user closed the tab: end the session at the service, not just the WebSocket.
  close() {
    const live = !this.ended && this.sessionId;
    this.ended = true;
    this.stop();
    this.resizeObserver.disconnect();
    if (live) this.api.call("AmazonSSM.TerminateSession", { SessionId: this.sessionId }).catch(() => {});
    this.term.dispose();
  }
}
