/**
 * The websocket to the lab gateway, and what to do when it closes.
 *
 * ReconnectPolicy is pure (no DOM, no timers): it maps a close code, through
 * the gateway protocol's one definition (protocol.js), to an action, and
 * keeps the bounded, growing backoff between attempts. GatewaySocket wraps
 * one WebSocket: control messages (JSON text frames), pings, and the close
 * code it reports, with the hint a preceding 'status' message gave.
 */
import { CLOSE, closeAction } from './protocol.js';
import { withJitter } from './poller.js';

export const RECONNECT_BASE_MS = 1000;
export const RECONNECT_MAX_MS = 30000;
export const MAX_RECONNECT_ATTEMPTS = 8;
export const PING_INTERVAL_MS = 25000;
/** A connection that stays open this long resets the backoff. */
export const STABLE_CONNECTION_MS = 10000;

/**
 * Decisions after a close or a failed attempt. Each decision is
 * `{action, delayMs, attempt, code}`, action one of:
 * - 'ended': the session ended normally (the shell exited): offer "Reconnect";
 * - 'give_up': show the error, do not retry (`exhausted` is true when the
 *   attempts ran out rather than the code forbidding a retry);
 * - 'check_status': the lab is not running: ask the status handler;
 * - 'retry': connect again (with a new ticket) after `delayMs`.
 */
export class ReconnectPolicy {
  constructor({
    baseMs = RECONNECT_BASE_MS, maxMs = RECONNECT_MAX_MS, maxAttempts = MAX_RECONNECT_ATTEMPTS, random = Math.random,
  } = {}) {
    this.baseMs = baseMs;
    this.maxMs = maxMs;
    this.maxAttempts = maxAttempts;
    this.random = random;
    this.attempts = 0;
  }

  /** Start counting afresh (a learner's click, a new launch, a stable connection). */
  reset() {
    this.attempts = 0;
  }

  /**
   * After the socket closed with `code`. `hint` is the close code a status
   * message announced before the close (STACK_DOWN after 'suspended' or
   * 'deleted'); it counts when the close itself says no more than "lost".
   */
  afterClose(code, hint = null) {
    let action = closeAction(code);
    if (hint !== null && action === 'reconnect') {
      action = closeAction(hint);
      code = hint;
    }
    switch (action) {
      case 'ended':
        return { action: 'ended', code };
      case 'give_up':
        return { action: 'give_up', code, exhausted: false };
      case 'check_status':
        return { action: 'check_status', code };
      case 'new_ticket':
        // The ticket was refused (expired on a slow network, used twice): a new one at once, a bounded number of times.
        this.attempts += 1;
        if (this.attempts > this.maxAttempts) {
          return { action: 'give_up', code, exhausted: true };
        }
        return { action: 'retry', code, delayMs: 0, attempt: this.attempts };
      default:
        return { ...this.afterFailure(), code };
    }
  }

  /** After an attempt that failed without a close code (the ticket request did not get through). */
  afterFailure() {
    if (this.attempts >= this.maxAttempts) {
      return { action: 'give_up', code: null, exhausted: true };
    }
    const base = Math.min(this.maxMs, this.baseMs * 2 ** this.attempts);
    const delayMs = Math.min(this.maxMs, withJitter(base, this.random));
    this.attempts += 1;
    return { action: 'retry', code: null, delayMs, attempt: this.attempts };
  }
}

/** The hint a gateway 'status' message gives about the coming close, or null. */
export function hintFromStatus(status) {
  return status === 'suspended' || status === 'deleted' ? CLOSE.STACK_DOWN : null;
}

/**
 * One websocket to the gateway. Handlers (all optional):
 * onOpen(), onData(ArrayBuffer), onStatus(status), onError(message) for the
 * gateway's error messages (learner-safe text), onClose(code, hint),
 * onStable() once the connection has stayed open STABLE_CONNECTION_MS.
 * Listeners are added with addEventListener, so a library that takes the
 * socket over (noVNC sets its own on* handlers) does not remove them.
 * `WebSocketImpl` and `timers` are there for tests.
 */
export class GatewaySocket {
  constructor(url, handlers = {}, {
    WebSocketImpl = globalThis.WebSocket, timers = globalThis, protocols = undefined,
    pingMs = PING_INTERVAL_MS, stableMs = STABLE_CONNECTION_MS,
  } = {}) {
    this.handlers = handlers;
    this.timers = timers;
    this.hint = null;
    this.closed = false;
    this.pingTimer = null;
    this.stableTimer = null;
    this.ws = protocols === undefined ? new WebSocketImpl(url) : new WebSocketImpl(url, protocols);
    this.ws.binaryType = 'arraybuffer';
    this.OPEN = WebSocketImpl.OPEN === undefined ? 1 : WebSocketImpl.OPEN;
    this.listeners = {
      open: () => this.opened(pingMs, stableMs),
      message: (ev) => this.message(ev),
      close: (ev) => this.finish(ev.code),
    };
    for (const [type, fn] of Object.entries(this.listeners)) {
      this.ws.addEventListener(type, fn);
    }
  }

  get isOpen() {
    return !this.closed && this.ws.readyState === this.OPEN;
  }

  opened(pingMs, stableMs) {
    if (this.closed) {
      return;
    }
    this.pingTimer = this.timers.setInterval(() => this.sendJSON({ type: 'ping' }), pingMs);
    this.stableTimer = this.timers.setTimeout(() => {
      this.stableTimer = null;
      this.call('onStable');
    }, stableMs);
    this.call('onOpen');
  }

  message(ev) {
    if (this.closed) {
      return;
    }
    if (typeof ev.data !== 'string') {
      this.call('onData', ev.data);
      return;
    }
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (!msg || typeof msg !== 'object') {
      return;
    }
    if (msg.type === 'status') {
      const status = String(msg.status || '');
      this.hint = hintFromStatus(status) ?? this.hint;
      this.call('onStatus', status);
    } else if (msg.type === 'error' && typeof msg.message === 'string' && msg.message) {
      this.call('onError', msg.message);
    }
  }

  finish(code) {
    if (this.closed) {
      return;
    }
    this.stopTimers();
    this.closed = true;
    this.call('onClose', code, this.hint);
  }

  call(name, ...args) {
    const fn = this.handlers[name];
    if (typeof fn === 'function') {
      fn(...args);
    }
  }

  stopTimers() {
    this.timers.clearInterval(this.pingTimer);
    this.timers.clearTimeout(this.stableTimer);
    this.pingTimer = null;
    this.stableTimer = null;
  }

  send(data) {
    if (this.isOpen) {
      this.ws.send(data);
    }
  }

  sendJSON(obj) {
    this.send(JSON.stringify(obj));
  }

  /** Close from this side; no handler is called afterwards. */
  close() {
    if (this.closed) {
      return;
    }
    this.closed = true;
    this.stopTimers();
    for (const [type, fn] of Object.entries(this.listeners)) {
      this.ws.removeEventListener(type, fn);
    }
    try {
      if (this.ws.readyState <= this.OPEN) {
        this.ws.close(CLOSE.NORMAL);
      }
    } catch {
      // already closing
    }
  }
}
