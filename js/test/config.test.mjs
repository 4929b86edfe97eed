// The init args' normalisation, the desktop's key combinations and the handler client's cookie reading.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { getCookie, HandlerError, makeApi } from '../../hastexo_xblock/static/js/src/api.js';
import { fontFamily, fontSizePx, normalizeConfig } from '../../hastexo_xblock/static/js/src/config.js';
import { comboEvents, createdWebSocket, guacamoleCloseCode, KEY_COMBOS } from '../../hastexo_xblock/static/js/src/desktop.js';
import { closeAction } from '../../hastexo_xblock/static/js/src/protocol.js';

describe('configuration from the init args', () => {
  it('defaults what is missing or of the wrong type', () => {
    const c = normalizeConfig({ js_timeouts: { status: -1, idle: 'x' }, port: '22', protocol: 'telnet', desktop: 5 });
    assert.equal(c.timeouts.status, 15000);
    assert.equal(c.timeouts.idle, 3600000);
    assert.equal(c.port, null);
    assert.equal(c.protocol, 'ssh');
    assert.equal(c.desktop.resizeMethod, 'display-update');
    assert.equal(c.desktop.novncUrl, null);
    assert.equal(normalizeConfig({ protocol: 'vnc', desktop: { resize_method: 'reconnect' } }).desktop.resizeMethod, 'reconnect');
  });

  it('keeps a font setting from breaking out of the CSS value', () => {
    assert.equal(fontFamily('Fira Code'), '"Fira Code", monospace');
    assert.equal(fontFamily('a"; } body { x'), '"a; } body { x", monospace');
    assert.equal(fontFamily('monospace'), 'monospace');
    assert.equal(fontSizePx('12'), 16);
    assert.equal(fontSizePx('500'), 48);
    assert.equal(fontSizePx('abc'), 13);
  });
});

describe('desktop keys', () => {
  it('presses each combination in order and releases it in reverse', () => {
    assert.deepEqual(comboEvents('ctrl-alt-del'), [
      [0xffe3, 'ControlLeft', true], [0xffe9, 'AltLeft', true], [0xffff, 'Delete', true],
      [0xffff, 'Delete', false], [0xffe9, 'AltLeft', false], [0xffe3, 'ControlLeft', false],
    ]);
    assert.deepEqual(comboEvents('no-such-combo'), []);
    for (const name of Object.keys(KEY_COMBOS)) {
      const events = comboEvents(name);
      assert.equal(events.filter((e) => e[2]).length, events.filter((e) => !e[2]).length, name);
    }
  });

  it('maps the end of a Guacamole session to a close code the reconnect policy knows', () => {
    assert.equal(closeAction(guacamoleCloseCode(null)), 'reconnect');
    assert.equal(closeAction(guacamoleCloseCode({ code: 0x0301 })), 'new_ticket');
    assert.equal(closeAction(guacamoleCloseCode({ code: 0x0207 })), 'reconnect');
  });
});

describe('the Guacamole tunnel\'s websocket', () => {
  it('is caught while the tunnel connects, and the page\'s WebSocket is back afterwards', () => {
    class Native {
      static OPEN = 1;
      constructor(url, protocol) {
        this.url = url;
        this.protocol = protocol;
      }
    }
    const scope = { WebSocket: Native };
    let made = null;
    const raw = createdWebSocket(() => {
      made = new scope.WebSocket('wss://gw/ws?ticket=t', 'guacamole');
      assert.equal(scope.WebSocket.OPEN, 1);
    }, scope);
    assert.equal(raw, made);
    assert.ok(raw instanceof Native);
    assert.equal(raw.protocol, 'guacamole');
    assert.equal(scope.WebSocket, Native);
    assert.throws(() => createdWebSocket(() => { throw new Error('x'); }, scope));
    assert.equal(scope.WebSocket, Native);
  });
});

describe('handler calls', () => {
  it('reads the CSRF cookie', () => {
    assert.equal(getCookie('csrftoken', 'a=1; csrftoken=abc%3D; b=2'), 'abc=');
    assert.equal(getCookie('csrftoken', 'xcsrftoken=no'), null);
    assert.equal(getCookie('csrftoken', ''), null);
  });

  it('posts JSON with the token and reports the server error as text, or status 0 when the network failed', async () => {
    const calls = [];
    const runtime = { handlerUrl: (el, name) => `/h/${name}` };
    const ok = makeApi(runtime, null, {
      cookies: () => 'csrftoken=t0k',
      fetchImpl: async (url, init) => {
        calls.push([url, init]);
        return { ok: false, status: 409, json: async () => ({ error: '<b>not running</b>' }) };
      },
    });
    await assert.rejects(ok('get_ticket', { a: 1 }), (error) => {
      assert.ok(error instanceof HandlerError);
      assert.equal(error.status, 409);
      assert.equal(error.message, '<b>not running</b>');
      return true;
    });
    assert.equal(calls[0][0], '/h/get_ticket');
    assert.equal(calls[0][1].headers['X-CSRFToken'], 't0k');
    assert.equal(calls[0][1].body, '{"a":1}');
    const down = makeApi(runtime, null, { cookies: () => '', fetchImpl: async () => { throw new TypeError('offline'); } });
    await assert.rejects(down('keepalive', {}), (error) => error.status === 0);
  });
});
