// The reconnect policy and the gateway socket (static/js/src/socket.js): what the browser does after each close.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';

import { CLOSE, closeAction } from '../../hastexo_xblock/static/js/src/protocol.js';
import {
  GatewaySocket, MAX_RECONNECT_ATTEMPTS, ReconnectPolicy,
} from '../../hastexo_xblock/static/js/src/socket.js';
import { ManualClock } from './clock.mjs';

const definition = JSON.parse(readFileSync(
  new URL('../../hastexo_xblock/static/js/gateway-protocol.json', import.meta.url), 'utf8',
));
const codesWith = (action) => Object.values(definition.close_codes).filter((c) => c.action === action).map((c) => c.code);

describe('close codes come from the protocol definition shared with the gateway', () => {
  it('maps every code of gateway-protocol.json to its action', () => {
    for (const [name, entry] of Object.entries(definition.close_codes)) {
      assert.equal(CLOSE[name], entry.code);
      assert.equal(closeAction(entry.code), entry.action, name);
    }
  });

  it('never retries an impostor host or a permanent refusal', () => {
    assert.deepEqual(codesWith('give_up').sort(), [1008, 1009, 4011, 4400, 4403]);
    for (const code of codesWith('give_up')) {
      const policy = new ReconnectPolicy();
      const decision = policy.afterClose(code);
      assert.equal(decision.action, 'give_up', String(code));
      assert.equal(decision.exhausted, false);
      assert.equal(policy.attempts, 0);
    }
  });

  it('treats a code it does not know (1006: handshake or network failed) as a lost connection', () => {
    assert.equal(closeAction(1006), 'reconnect');
    assert.equal(new ReconnectPolicy().afterClose(1006).action, 'retry');
  });
});

describe('reconnect policy', () => {
  it('reconnects with doubling delays (1 s, 2 s, 4 s …, at most 30 s), then gives up after the last attempt', () => {
    const policy = new ReconnectPolicy({ random: () => 0.5 });
    const delays = [];
    for (;;) {
      const decision = policy.afterClose(CLOSE.CONNECT_FAILED);
      if (decision.action !== 'retry') {
        assert.deepEqual(decision, { action: 'give_up', code: CLOSE.CONNECT_FAILED, exhausted: true });
        break;
      }
      delays.push(decision.delayMs);
    }
    assert.equal(delays.length, MAX_RECONNECT_ATTEMPTS);
    assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  });

  it('jitters each delay by at most 20 % and never beyond 30 s', () => {
    for (const random of [0, 0.999999]) {
      const policy = new ReconnectPolicy({ random: () => random });
      const delays = Array.from({ length: 8 }, () => policy.afterFailure().delayMs);
      assert.ok(delays[0] >= 800 && delays[0] <= 1200, String(delays));
      assert.ok(delays.every((d) => d <= 30000), String(delays));
    }
  });

  it('starts counting afresh after a stable connection or a learner action', () => {
    const policy = new ReconnectPolicy({ random: () => 0.5 });
    policy.afterClose(1006);
    policy.afterClose(1006);
    assert.equal(policy.afterClose(1006).delayMs, 4000);
    policy.reset();
    assert.equal(policy.afterClose(1006).delayMs, 1000);
  });

  it('asks for a new ticket at once after a refused one, a bounded number of times', () => {
    const policy = new ReconnectPolicy();
    for (let i = 1; i <= MAX_RECONNECT_ATTEMPTS; i += 1) {
      assert.deepEqual(policy.afterClose(CLOSE.BAD_TICKET), { action: 'retry', code: 4001, delayMs: 0, attempt: i });
    }
    assert.equal(policy.afterClose(CLOSE.BAD_TICKET).action, 'give_up');
  });

  it('checks the lab status when the lab is not running or went down, and shows the end of a session', () => {
    for (const code of codesWith('check_status')) {
      assert.equal(new ReconnectPolicy().afterClose(code).action, 'check_status');
    }
    assert.equal(new ReconnectPolicy().afterClose(CLOSE.NORMAL).action, 'ended');
  });

  it('follows a "suspended" status message when the close itself only says the connection was lost', () => {
    assert.equal(new ReconnectPolicy().afterClose(1006, CLOSE.STACK_DOWN).action, 'check_status');
    assert.equal(new ReconnectPolicy().afterClose(CLOSE.IDENTITY_CHANGED, CLOSE.STACK_DOWN).action, 'give_up');
  });
});

/** A WebSocket double: the test plays the gateway's side. */
class FakeWebSocket extends EventTarget {
  static OPEN = 1;
  constructor(url, protocols) {
    super();
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.sent = [];
    this.closedWith = null;
    FakeWebSocket.last = this;
  }

  send(data) {
    this.sent.push(data);
  }

  close(code) {
    this.closedWith = code;
    this.readyState = 3;
  }

  serverOpen() {
    this.readyState = 1;
    this.dispatchEvent(new Event('open'));
  }

  serverSends(data) {
    const ev = new Event('message');
    ev.data = data;
    this.dispatchEvent(ev);
  }

  serverCloses(code) {
    this.readyState = 3;
    const ev = new Event('close');
    ev.code = code;
    this.dispatchEvent(ev);
  }
}

function openSocket(handlers = {}) {
  const clock = new ManualClock();
  const events = [];
  const record = (name) => (...args) => events.push([name, ...args]);
  const socket = new GatewaySocket('wss://gw/ws?ticket=t', {
    onOpen: record('open'), onData: record('data'), onStatus: record('status'), onError: record('error'),
    onClose: record('close'), onStable: record('stable'), ...handlers,
  }, { WebSocketImpl: FakeWebSocket, timers: clock, protocols: ['binary'] });
  return { socket, ws: FakeWebSocket.last, clock, events };
}

describe('gateway socket', () => {
  it('passes binary frames on, reads control messages, and reports the close with the hint a status gave', () => {
    const { ws, events } = openSocket();
    assert.deepEqual(ws.protocols, ['binary']);
    ws.serverOpen();
    const bytes = new Uint8Array([104, 105]).buffer;
    ws.serverSends(bytes);
    ws.serverSends('{"type": "error", "message": "<b>lab</b> unreachable"}');
    ws.serverSends('not json');
    ws.serverSends('[1, 2]');
    ws.serverSends('{"type": "status", "status": "suspended"}');
    ws.serverCloses(1006);
    assert.deepEqual(events, [
      ['open'], ['data', bytes], ['error', '<b>lab</b> unreachable'], ['status', 'suspended'], ['close', 1006, CLOSE.STACK_DOWN],
    ]);
  });

  it('pings while open and says when the connection has been stable', async () => {
    const { ws, clock, events } = openSocket();
    ws.serverOpen();
    await clock.advance(25000);
    assert.deepEqual(ws.sent, ['{"type":"ping"}']);
    assert.ok(events.some(([name]) => name === 'stable'));
    ws.serverCloses(1012);
    await clock.advance(100000);
    assert.equal(ws.sent.length, 1);
    assert.deepEqual(clock.delays, []);
  });

  it('after close() from the page, reports nothing more and closes normally', async () => {
    const { socket, ws, clock, events } = openSocket();
    ws.serverOpen();
    socket.close();
    assert.equal(ws.closedWith, CLOSE.NORMAL);
    ws.serverCloses(1006);
    ws.serverSends(new ArrayBuffer(1));
    await clock.advance(60000);
    assert.deepEqual(events, [['open']]);
    socket.send(new Uint8Array([1]));
    assert.deepEqual(ws.sent, []);
  });
});
