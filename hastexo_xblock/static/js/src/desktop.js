/**
 * The lab's graphical desktop: noVNC for stack_protocol vnc, guacamole-common-js for rdp.
 *
 * Both libraries are vendored under static/vendor/ (ES modules built by
 * static/vendor/build.sh) and imported on demand, from the URLs the block
 * passes in its init args, so terminal labs never load them.
 *
 * - VNC: noVNC's RFB on the gateway's websocket (binary frames). The gateway
 *   answers the VNC server's authentication itself; the browser offers none
 *   and never sees a password. The picture is scaled to the unit.
 *   lab_resize_method 'display-update' resizes the remote desktop to the unit
 *   (SetDesktopSize, noVNC's resizeSession); 'reconnect' asks for the unit's
 *   size once per connection and reconnects when the unit changes size.
 * - RDP: a Guacamole client on the gateway's websocket ('guacamole'
 *   subprotocol); the gateway does the handshake with guacd.
 * - Clipboard both ways through a text area (browsers block direct access to
 *   the system clipboard); keys browsers keep for themselves
 *   (Ctrl+Alt+Del, Ctrl+W, Alt+Tab, …) from a menu.
 * - Read-only: noVNC's viewOnly and no input handlers here; the gateway
 *   drops input from read-only tickets whatever the browser does.
 */
import { gettext as _ } from './i18n.js';

const RESIZE_SETTLE_MS = 600;
/** How long after connecting noVNC may still send the first (and, with 'reconnect', only) SetDesktopSize. */
const FIRST_RESIZE_MS = 1500;

// keysyms (X11) and key codes of the keys the "Send keys" menu offers.
const K = {
  ctrl: [0xffe3, 'ControlLeft'],
  alt: [0xffe9, 'AltLeft'],
  super: [0xffeb, 'MetaLeft'],
  del: [0xffff, 'Delete'],
  tab: [0xff09, 'Tab'],
  esc: [0xff1b, 'Escape'],
  f4: [0xffc1, 'F4'],
  f11: [0xffc8, 'F11'],
  w: [0x0077, 'KeyW'],
  t: [0x0074, 'KeyT'],
  n: [0x006e, 'KeyN'],
  q: [0x0071, 'KeyQ'],
};

/** The combinations of the "Send keys" menu (the <option> values in the template). */
export const KEY_COMBOS = Object.freeze({
  'ctrl-alt-del': ['ctrl', 'alt', 'del'],
  'ctrl-w': ['ctrl', 'w'],
  'ctrl-t': ['ctrl', 't'],
  'ctrl-n': ['ctrl', 'n'],
  'ctrl-q': ['ctrl', 'q'],
  'alt-tab': ['alt', 'tab'],
  'alt-f4': ['alt', 'f4'],
  super: ['super'],
  escape: ['esc'],
  f11: ['f11'],
});

/** The key events of combination `name`: [keysym, code, down], pressed in order, released in reverse. */
export function comboEvents(name) {
  const keys = (KEY_COMBOS[name] || []).map((key) => K[key]);
  return [
    ...keys.map(([keysym, code]) => [keysym, code, true]),
    ...keys.slice().reverse().map(([keysym, code]) => [keysym, code, false]),
  ];
}

export class DesktopView {
  /**
   * `ui`: the LabView's elements (desktop, keys, clipboard*, …);
   * hooks: onActivity(), onResizeReconnect(), onNotice(text), listen(target, type, fn).
   */
  constructor(ui, config, hooks) {
    this.ui = ui;
    this.container = ui.desktop;
    this.config = config;
    this.hooks = hooks;
    this.modules = {};
    this.rfb = null;
    this.guac = null;
    this.connectedSize = null;
    this.resizeTimer = null;
    this.observer = new ResizeObserver(() => this.containerResized());
    this.observer.observe(this.container);
    this.setupTools();
  }

  /** Import the library for `protocol` once; throws an Error with a learner-safe message. */
  async load(protocol) {
    const key = protocol === 'rdp' ? 'guacamole' : 'novnc';
    if (this.modules[key]) {
      return;
    }
    const url = protocol === 'rdp' ? this.config.desktop.guacamoleUrl : this.config.desktop.novncUrl;
    try {
      if (!url) {
        throw new Error('no URL');
      }
      this.modules[key] = await import(/* webpackIgnore: true */ url);
    } catch {
      throw new Error(_('The desktop could not be loaded. Please reload the page.'));
    }
  }

  setupTools() {
    const { keys, clipboardToggle, clipboard, clipboardSend, clipboardText } = this.ui;
    const listen = this.hooks.listen;
    if (this.config.readOnly) {
      for (const el of [keys, clipboardSend]) {
        if (el) {
          el.hidden = true;
        }
      }
    }
    listen(keys, 'change', () => {
      const name = keys.value;
      keys.value = '';
      this.sendCombo(name);
    });
    listen(clipboardToggle, 'click', (ev) => {
      ev.preventDefault();
      clipboard.hidden = !clipboard.hidden;
      clipboardToggle.setAttribute('aria-expanded', clipboard.hidden ? 'false' : 'true');
      if (!clipboard.hidden && clipboardText) {
        clipboardText.focus();
      }
    });
    listen(clipboardSend, 'click', (ev) => {
      ev.preventDefault();
      this.paste(clipboardText ? clipboardText.value : '');
    });
  }

  /* ---- VNC ---- */

  /** Show the desktop from `ws` (a WebSocket to the gateway, possibly still connecting). */
  attachVnc(ws) {
    const RFB = this.modules.novnc.default;
    this.container.replaceChildren();
    const rfb = new RFB(this.container, ws, { shared: true });
    rfb.viewOnly = this.config.readOnly;
    rfb.scaleViewport = true;
    rfb.clipViewport = false;
    rfb.focusOnClick = !this.config.readOnly;
    rfb.background = this.config.theme.background;
    // 'reconnect': the unit's size once per connection. noVNC asks for it as soon as the server says it can
    // resize (ExtendedDesktopSize, in the first update after 'connect'); later changes reconnect (fit()).
    rfb.resizeSession = true;
    if (this.config.desktop.resizeMethod === 'reconnect') {
      rfb.addEventListener('connect', () => {
        setTimeout(() => {
          rfb.resizeSession = false;
        }, FIRST_RESIZE_MS);
      });
    }
    rfb.addEventListener('clipboard', (ev) => this.received(ev.detail && ev.detail.text));
    this.rfb = rfb;
  }

  /* ---- RDP ---- */

  /**
   * Show the desktop over a Guacamole tunnel to `url` (the gateway URL with
   * its ticket). Returns the session's socket-like handle ({isOpen, send,
   * sendJSON, close}); `handlers` are GatewaySocket's (onOpen, onClose(code), onError).
   */
  attachRdp(url, handlers) {
    const Guacamole = this.modules.guacamole.default;
    const [base, query] = url.split('?', 2);
    const tunnel = new Guacamole.WebSocketTunnel(base);
    const client = new Guacamole.Client(tunnel);
    const display = client.getDisplay();
    const element = display.getElement();
    element.tabIndex = 0;
    element.classList.add('hastexo-guacamole');
    this.container.replaceChildren(element);
    display.onresize = () => this.scaleGuacamole();
    if (!this.config.readOnly) {
      const mouse = new Guacamole.Mouse(element);
      mouse.onEach(['mousedown', 'mouseup', 'mousemove'], (ev) => client.sendMouseState(ev.state, true));
      const keyboard = new Guacamole.Keyboard(element);
      keyboard.onkeydown = (keysym) => {
        client.sendKeyEvent(1, keysym);
        return false;
      };
      keyboard.onkeyup = (keysym) => client.sendKeyEvent(0, keysym);
      this.keyboard = keyboard;
    }
    let open = false;
    let closed = false;
    let lastStatus = null;
    client.onerror = (status) => {
      lastStatus = status;
      if (status && typeof status.message === 'string' && status.message && handlers.onError) {
        handlers.onError(status.message);
      }
    };
    client.onclipboard = (stream, mimetype) => {
      if (!/^text\//.test(mimetype)) {
        return;
      }
      const reader = new Guacamole.StringReader(stream);
      let text = '';
      reader.ontext = (chunk) => {
        text += chunk;
      };
      reader.onend = () => this.received(text);
    };
    // The gateway's close code says what to do next (gateway-protocol.json); the Guacamole tunnel keeps only a
    // status derived from it, so the page listens on the tunnel's websocket for the code itself.
    let raw = null;
    let closeCode = null;
    let reported = false;
    const report = () => {
      if (!reported) {
        reported = true;
        handlers.onClose(closeCode ?? guacamoleCloseCode(lastStatus), null);
      }
    };
    const ended = () => {
      if (closed) {
        return;
      }
      closed = true;
      if (raw && raw.readyState !== 3) { // the server's close frame may still be on its way
        raw.addEventListener('close', () => setTimeout(report, 0));
        setTimeout(report, CLOSE_WAIT_MS);
      } else {
        setTimeout(report, 0);
      }
    };
    client.onstatechange = (state) => {
      if (state === Guacamole.Client.State.CONNECTED && !open) { // after the first frame (sync)
        open = true;
        handlers.onOpen();
      } else if (state === Guacamole.Client.State.DISCONNECTED) {
        ended();
      }
    };
    // The client itself does not notice when the tunnel closes without an error instruction.
    tunnel.onstatechange = (state) => {
      if (state === Guacamole.Tunnel.State.CLOSED) {
        ended();
      }
    };
    const { width, height } = this.size();
    raw = createdWebSocket(() => client.connect(`${query || ''}&width=${width}&height=${height}&dpi=96`));
    if (raw) {
      raw.addEventListener('close', (ev) => {
        closeCode = ev.code || null;
      });
    }
    this.guac = client;
    return {
      get isOpen() {
        return open && !closed;
      },
      send() {},
      sendJSON() {},
      close() {
        closed = true;
        client.disconnect();
      },
    };
  }

  scaleGuacamole() {
    if (!this.guac) {
      return;
    }
    const display = this.guac.getDisplay();
    const { width, height } = this.size();
    if (display.getWidth() && display.getHeight()) {
      display.scale(Math.min(width / display.getWidth(), height / display.getHeight()));
    }
  }

  /* ---- both ---- */

  size() {
    return {
      width: Math.max(320, Math.round(this.container.clientWidth)),
      height: Math.max(200, Math.round(this.container.clientHeight)),
    };
  }

  connected() {
    this.connectedSize = this.size();
    if (this.guac) {
      this.scaleGuacamole();
    }
  }

  containerResized() {
    clearTimeout(this.resizeTimer);
    this.resizeTimer = setTimeout(() => {
      this.resizeTimer = null;
      this.fit();
    }, RESIZE_SETTLE_MS);
  }

  /** The unit (or full screen) changed size: follow lab_resize_method. */
  fit() {
    if (!this.connectedSize || this.container.hidden) {
      return;
    }
    const now = this.size();
    if (now.width === this.connectedSize.width && now.height === this.connectedSize.height) {
      return;
    }
    if (this.config.desktop.resizeMethod === 'reconnect') {
      this.connectedSize = now;
      this.hooks.onResizeReconnect();
    } else if (this.guac) {
      this.connectedSize = now;
      this.guac.sendSize(now.width, now.height);
      this.scaleGuacamole();
    }
    // VNC display-update: noVNC's resizeSession follows the container itself.
  }

  focus() {
    if (this.rfb) {
      this.rfb.focus();
    } else if (this.guac) {
      this.guac.getDisplay().getElement().focus();
    }
  }

  sendCombo(name) {
    if (this.config.readOnly) {
      return;
    }
    this.hooks.onActivity();
    for (const [keysym, code, down] of comboEvents(name)) {
      if (this.rfb) {
        this.rfb.sendKey(keysym, code, down);
      } else if (this.guac) {
        this.guac.sendKeyEvent(down ? 1 : 0, keysym);
      }
    }
    this.focus();
  }

  /** Text from the lab's clipboard: into the text area, for the learner to copy. */
  received(text) {
    if (typeof text === 'string' && this.ui.clipboardText) {
      this.ui.clipboardText.value = text;
    }
  }

  /** Put `text` on the lab's clipboard. */
  paste(text) {
    if (this.config.readOnly || !text) {
      return;
    }
    this.hooks.onActivity();
    if (this.rfb) {
      this.rfb.clipboardPasteFrom(text);
    } else if (this.guac) {
      const Guacamole = this.modules.guacamole.default;
      const writer = new Guacamole.StringWriter(this.guac.createClipboardStream('text/plain'));
      writer.sendText(text);
      writer.sendEnd();
    } else {
      return;
    }
    this.hooks.onNotice(_('Sent to the clipboard of your lab.'));
  }

  /** The session ended (or is being replaced): drop the client, keep the tools. */
  disconnect() {
    this.connectedSize = null;
    if (this.rfb) {
      this.rfb.disconnect();
      this.rfb = null;
    }
    if (this.guac) {
      this.guac.disconnect();
      this.guac = null;
    }
    if (this.keyboard) {
      this.keyboard.onkeydown = null;
      this.keyboard.onkeyup = null;
      this.keyboard = null;
    }
  }

  dispose() {
    this.disconnect();
    clearTimeout(this.resizeTimer);
    this.observer.disconnect();
  }
}

/** How long an ended Guacamole session waits for the gateway's close code. */
const CLOSE_WAIT_MS = 1000;

/** Run `fn` and return the WebSocket it created (guacamole-common-js's tunnel keeps its own private). */
export function createdWebSocket(fn, scope = globalThis) {
  const Native = scope.WebSocket;
  let created = null;
  function Capturing(url, protocols) {
    created = protocols === undefined ? new Native(url) : new Native(url, protocols);
    return created;
  }
  Capturing.prototype = Native.prototype;
  for (const name of ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED']) {
    Capturing[name] = Native[name];
  }
  scope.WebSocket = Capturing;
  try {
    fn();
  } finally {
    scope.WebSocket = Native;
  }
  return created;
}

/** A websocket-like close code for a Guacamole session's end, for the reconnect policy. */
export function guacamoleCloseCode(status) {
  const code = status && Number(status.code);
  if (!code) {
    return 1006; // lost: reconnect
  }
  if (code === 0x0301 || code === 0x0303) { // CLIENT_UNAUTHORIZED, CLIENT_FORBIDDEN: the ticket
    return 4001;
  }
  return 1011;
}
