/**
 * The learner's lab in one block: the controller that ties the modules
 * together. It launches (or resumes) the lab through the status poller,
 * connects the terminal or the desktop to the gateway with a fresh ticket,
 * follows the reconnect policy on every close, pauses when the learner is
 * idle, sends keepalives while the learner works, and runs progress checks.
 *
 * States (data-state on the block): launching, connected, idle, error, ended.
 */
import { makeApi } from './api.js';
import { CheckPanel } from './checks.js';
import { normalizeConfig } from './config.js';
import { DesktopView } from './desktop.js';
import { gettext as _, interpolate, ngettext } from './i18n.js';
import { StatusPoller } from './poller.js';
import { CLOSE } from './protocol.js';
import { GatewaySocket, ReconnectPolicy } from './socket.js';
import { TerminalView } from './terminal.js';
import { LabView } from './view.js';

const ACTIVITY_EVENTS = ['keydown', 'mousemove', 'mousedown', 'click', 'touchstart', 'wheel'];
const PROTOCOLS = ['ssh', 'vnc', 'rdp'];

/** The learner-facing reason for a close the browser must not retry. */
function giveUpMessage(code) {
  if (code === CLOSE.IDENTITY_CHANGED) {
    return _('Your lab could not be verified, so the connection was refused. Reset the lab or contact support.');
  }
  if (code === CLOSE.UNSUPPORTED || code === CLOSE.PORT_NOT_OFFERED) {
    return _('This connection to your lab is not available.');
  }
  return _('Could not connect to your lab.');
}

export class HastexoLab {
  constructor(runtime, element, rawConfig) {
    this.element = element;
    this.config = normalizeConfig(rawConfig);
    this.view = new LabView(element);
    this.ui = this.view.ui;
    this.post = makeApi(runtime, element);
    // No screen in hidden mode (the template leaves the lab area out): launched and kept alive, never shown.
    this.hidden = this.config.hidden || !this.ui.terminal;
    this.destroyed = false;
    this.wasAttached = false;
    this.labUp = false;
    // A desktop lab's selector can ask for a terminal of the same lab instead (get_ticket {terminal: true}).
    this.wantTerminal = false;
    this.idle = false;
    this.lastActivity = Date.now();
    this.lastAutoResume = 0;
    this.focusOnConnect = false;
    this.ticketErrors = 0;
    this.lastGatewayError = '';
    this.connectGeneration = 0;
    this.socket = null;
    this.session = null; // the screen connected now: this.terminal or this.desktop
    this.terminal = null;
    this.desktop = null;
    this.reconnectTimer = null;
    this.policy = new ReconnectPolicy();
    this.poller = new StatusPoller({
      request: (flags) => this.post('get_user_stack_status', flags),
      onResult: (result) => this.onStatus(result),
      onRequestError: () => this.view.showNotice(_('Could not check on your lab. Retrying…'), 'poll'),
      maxMs: this.config.timeouts.status,
    });
    this.checks = new CheckPanel(
      {
        button: this.ui.checkButton,
        status: this.ui.checkStatus,
        result: this.ui.checkResult,
        message: this.ui.checkMessage,
        hints: this.ui.checkHints,
      },
      this.post,
      { maxMs: this.config.timeouts.check, onActivity: () => this.markActivity() },
    );
  }

  /* ---- lifecycle ---- */

  start() {
    this.wasAttached = this.view.root.isConnected;
    this.setupUi();
    this.view.listen(document, ACTIVITY_EVENTS, () => this.markActivity(), { capture: true, passive: true });
    this.keepaliveTimer = setInterval(() => this.sendKeepalive(), this.config.timeouts.keepalive);
    const tickMs = Math.min(5000, Math.max(250, Math.floor(this.config.timeouts.idle / 4)));
    this.tickTimer = setInterval(() => this.tick(), tickMs);
    this.beginLaunch({ initialize: true });
    if (this.config.checkOnLoad) {
      this.checks.load();
    }
  }

  destroy() {
    if (this.destroyed) {
      return;
    }
    this.destroyed = true;
    this.checks.cancel();
    this.poller.stop();
    this.cancelReconnect();
    this.closeSession();
    clearInterval(this.keepaliveTimer);
    clearInterval(this.tickTimer);
    this.view.dispose();
    for (const screen of [this.terminal, this.desktop]) {
      if (screen) {
        screen.dispose();
      }
    }
    this.terminal = null;
    this.desktop = null;
  }

  // Housekeeping: notice when the block left the page (the learner moved to another unit) and when the learner went idle.
  tick() {
    if (this.destroyed) {
      return;
    }
    if (this.view.root.isConnected) {
      this.wasAttached = true;
    } else if (this.wasAttached) {
      this.destroy();
      return;
    }
    if ((this.view.state === 'launching' || this.view.state === 'connected') && this.learnerIdle()) {
      this.enterIdle();
    }
  }

  setupUi() {
    const view = this.view;
    view.setScreenBackground(this.config.theme.background);
    view.setReadOnly(this.config.readOnly);
    view.onClick('reset', () => this.confirmReset());
    view.onClick('checkButton', () => this.checks.start());
    view.onClick('resume', () => this.resume());
    view.onClick('retry', () => this.beginLaunch({ initialize: true, userAction: true }));
    view.onClick('reconnect', () => {
      this.policy.reset();
      this.focusOnConnect = true;
      this.connect();
    });
    if (this.ui.portSelect) {
      this.ui.portSelect.value = this.config.port === null ? '' : String(this.config.port);
      view.listen(this.ui.portSelect, 'change', () => this.selectPort(this.ui.portSelect.value));
    }
    if (this.config.fullscreen) {
      view.enableFullscreen(() => {
        if (this.session) {
          this.session.fit();
        }
      });
    }
  }

  /* ---- what the learner sees ---- */

  showError(message) {
    this.poller.stop();
    this.cancelReconnect();
    this.closeSession();
    this.labUp = false;
    this.view.setState('error');
    this.view.showOverlay(message || _('Something went wrong with your lab.'), 'retry');
  }

  showEnded() {
    this.cancelReconnect();
    this.closeSession();
    this.view.setState('ended');
    this.view.showOverlay(_('The session ended.'), 'reconnect');
  }

  enterIdle() {
    this.idle = true;
    this.labUp = false; // stops keepalives
    this.poller.stop();
    this.cancelReconnect();
    this.closeSession();
    this.view.setState('idle');
    this.view.showOverlay(_('Your lab is paused.'), 'resume');
  }

  resume() {
    this.lastActivity = Date.now();
    this.beginLaunch({ initialize: true, userAction: true });
  }

  confirmReset() {
    if (!window.confirm(_('This deletes your lab and everything in it and starts a new one. Continue?'))) {
      return;
    }
    this.lastActivity = Date.now();
    this.beginLaunch({ initialize: true, reset: true, userAction: true });
  }

  /* ---- activity, idle and keepalive ---- */

  markActivity() {
    this.lastActivity = Date.now();
    // A hidden lab has no "Resume" button: resume on activity instead (at most once per status interval).
    if (this.hidden && this.idle && !this.destroyed
        && this.lastActivity - this.lastAutoResume > this.config.timeouts.status) {
      this.lastAutoResume = this.lastActivity;
      this.beginLaunch({ initialize: true });
    }
  }

  learnerIdle() {
    return Date.now() - this.lastActivity >= this.config.timeouts.idle;
  }

  sendKeepalive() {
    if (this.destroyed || !this.labUp || this.idle || this.learnerIdle()) {
      return;
    }
    this.post('keepalive', {}).catch(() => {
      // Not fatal: the next keepalive or status poll tells.
    });
  }

  /* ---- launching ---- */

  beginLaunch({ initialize = true, reset = false, userAction = false } = {}) {
    if (this.destroyed) {
      return;
    }
    this.cancelReconnect();
    this.closeSession();
    this.idle = false;
    this.labUp = false;
    if (userAction) {
      this.ticketErrors = 0;
      this.focusOnConnect = true;
      this.policy.reset();
    }
    this.view.setState('launching');
    this.view.setProgress(0, reset ? _('Resetting your lab…') : _('Launching your lab…'));
    this.poller.start({ initialize, reset });
  }

  onStatus(result) {
    if (this.destroyed) {
      return;
    }
    this.view.clearNotice('poll');
    if (result.notice) {
      this.view.showNotice(result.notice, 'server'); // e.g. the lab usage limit's warning
    }
    switch (result.kind) {
      case 'failed':
        this.showError(result.message || _('Your lab could not be started.'));
        break;
      case 'up':
        this.labUp = true;
        this.view.setProgress(1, result.text || _('Your lab is ready.'));
        if (this.hidden) {
          this.view.setState('connected');
        } else {
          this.policy.reset();
          this.connect();
        }
        break;
      case 'suspended':
        this.enterIdle();
        break;
      default:
        this.view.setProgress(result.progress, result.text || _('Launching your lab…'));
    }
  }

  /* ---- ports ---- */

  // Switch the connection to another of the lab's ports (a terminal or a desktop), or to a terminal of a
  // desktop lab ('terminal': no port of its own, so the learner's stored port is kept), without a reload.
  async selectPort(value) {
    const select = this.ui.portSelect;
    const previous = this.wantTerminal ? 'terminal' : this.config.port === null ? '' : String(this.config.port);
    if (value === 'terminal') {
      this.wantTerminal = true;
    } else {
      select.disabled = true;
      try {
        const data = await this.post('set_port', { port: value === '' ? null : Number(value) });
        this.config.port = Number.isInteger(data.port) ? data.port : null;
        this.wantTerminal = false;
      } catch (error) {
        select.value = previous;
        this.view.showNotice(error.message || _('Could not switch to that port.'), 'port');
        return;
      } finally {
        select.disabled = false;
      }
    }
    if (this.labUp && !this.hidden && !this.destroyed) {
      this.policy.reset();
      this.focusOnConnect = true;
      this.connect();
    }
  }

  /* ---- the session: terminal or desktop over the gateway ---- */

  cancelReconnect() {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
  }

  closeSession() {
    this.connectGeneration += 1;
    if (this.socket) {
      this.socket.close();
      this.socket = null;
    }
    if (this.session && this.session.disconnect) {
      this.session.disconnect();
    }
    this.session = null;
  }

  async connect() {
    if (this.destroyed || this.hidden) {
      return;
    }
    this.cancelReconnect();
    this.closeSession();
    const generation = this.connectGeneration;
    if (this.view.state !== 'launching') {
      this.view.setState('launching');
    }
    this.view.setProgress(1, this.policy.attempts ? _('Reconnecting to your lab…') : _('Connecting to your lab…'));
    // A ticket is single use and short-lived: a fresh one for every attempt, never kept.
    let ticket;
    try {
      ticket = await this.post('get_ticket', this.wantTerminal ? { terminal: true } : {});
    } catch (error) {
      if (generation !== this.connectGeneration || this.destroyed) {
        return;
      }
      if (error.status >= 400 && error.status < 500) {
        // Most likely the lab is not up (any more): check on it once, and give up if that does not help.
        this.ticketErrors += 1;
        if (this.ticketErrors <= 1) {
          this.beginLaunch({ initialize: true });
        } else {
          this.showError(error.message || _('Could not connect to your lab.'));
        }
        return;
      }
      this.follow(this.policy.afterFailure());
      return;
    }
    if (generation !== this.connectGeneration || this.destroyed) {
      return;
    }
    const url = ticket && ticket.url;
    if (typeof url !== 'string' || !/^wss?:\/\//i.test(url)) {
      this.showError(_('Could not connect to your lab.'));
      return;
    }
    // The lab's protocol; a ticket answer that names one (a port with a protocol of its own) wins.
    const protocol = PROTOCOLS.includes(ticket.protocol) ? ticket.protocol : this.config.protocol;
    this.lastGatewayError = '';
    try {
      if (protocol === 'ssh') {
        this.openTerminal(url);
      } else {
        await this.openDesktop(url, protocol, generation);
      }
    } catch (error) {
      if (generation === this.connectGeneration && !this.destroyed) {
        this.showError(error.message);
      }
    }
  }

  socketHandlers() {
    return {
      onOpen: () => this.sessionOpened(),
      onStatus: (status) => {
        if (status === 'connected') {
          this.view.clearNotice('socket');
        }
      },
      onError: (message) => {
        this.lastGatewayError = message;
        this.view.showNotice(message, 'socket');
      },
      onClose: (code, hint) => this.sessionClosed(code, hint),
      onStable: () => this.policy.reset(),
    };
  }

  openTerminal(url) {
    if (!this.terminal) {
      this.terminal = new TerminalView(this.ui.terminal, this.config, {
        onInput: (bytes) => this.socket && this.socket.send(bytes),
        onResize: (cols, rows) => {
          if (!this.socket || !this.socket.isOpen) {
            return false;
          }
          this.socket.sendJSON({ type: 'resize', cols, rows });
          return true;
        },
        onActivity: () => this.markActivity(),
      });
    }
    this.view.showScreen('terminal');
    this.terminal.open();
    const handlers = this.socketHandlers();
    handlers.onData = (data) => this.terminal && this.terminal.write(data);
    this.socket = new GatewaySocket(url, handlers);
    this.session = this.terminal;
  }

  async openDesktop(url, protocol, generation) {
    if (!this.desktop) {
      this.desktop = new DesktopView(this.ui, this.config, {
        onActivity: () => this.markActivity(),
        onResizeReconnect: () => {
          if (this.view.state === 'connected') {
            this.connect();
          }
        },
        onNotice: (text) => this.view.showNotice(text, 'desktop'),
        listen: (...args) => this.view.listen(...args),
      });
    }
    this.view.showScreen('desktop');
    await this.desktop.load(protocol);
    if (generation !== this.connectGeneration || this.destroyed) {
      return;
    }
    if (protocol === 'vnc') {
      // RFB in binary frames; 'binary' is the subprotocol noVNC and websockify agree on.
      this.socket = new GatewaySocket(url, this.socketHandlers(), { protocols: ['binary'] });
      this.desktop.attachVnc(this.socket.ws);
    } else {
      this.socket = this.desktop.attachRdp(url, this.socketHandlers());
    }
    this.session = this.desktop;
  }

  sessionOpened() {
    this.view.setState('connected');
    this.view.clearNotice('socket');
    this.ticketErrors = 0; // the ticket was accepted, so the lab is up
    if (this.session) {
      this.session.connected();
      if (this.focusOnConnect) {
        this.focusOnConnect = false;
        this.session.focus();
      }
    }
  }

  sessionClosed(code, hint) {
    this.socket = null;
    if (this.session && this.session.disconnect) {
      this.session.disconnect();
    }
    this.session = null;
    this.connectGeneration += 1;
    this.follow(this.policy.afterClose(code, hint));
  }

  /** Do what the reconnect policy decided. */
  follow(decision) {
    if (this.destroyed) {
      return;
    }
    switch (decision.action) {
      case 'ended':
        this.showEnded();
        return;
      case 'give_up':
        this.showError(this.lastGatewayError || (decision.exhausted
          ? _('The connection to your lab was lost.') : giveUpMessage(decision.code)));
        return;
      case 'check_status':
        this.labUp = false;
        if (this.learnerIdle()) {
          this.enterIdle();
        } else {
          this.beginLaunch({ initialize: true });
        }
        return;
      default:
        break;
    }
    if (this.learnerIdle()) {
      this.enterIdle();
      return;
    }
    if (!decision.delayMs) {
      this.connect();
      return;
    }
    const seconds = Math.max(1, Math.round(decision.delayMs / 1000));
    this.view.setState('launching');
    this.view.setProgress(1, interpolate(ngettext(
      'Connection lost. Reconnecting in %(seconds)s second…',
      'Connection lost. Reconnecting in %(seconds)s seconds…',
      seconds,
    ), { seconds }));
    this.cancelReconnect();
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.connect();
    }, decision.delayMs);
  }
}
