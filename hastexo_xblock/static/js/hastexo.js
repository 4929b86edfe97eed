/*
 * hastexo XBlock: learner view.
 *
 * Launches (or resumes) the learner's lab through the block's JSON handlers,
 * shows launch progress, and connects an xterm.js terminal to the lab gateway
 * over a websocket. Everything is scoped to the block's element, so several
 * blocks can share a page. The only global is window.HastexoXBlock, which the
 * XBlock runtime calls as HastexoXBlock(runtime, element, config).
 *
 * Requires (loaded before this file): vendor/xterm/xterm.js (window.Terminal)
 * and vendor/xterm/addon-fit.js (window.FitAddon.FitAddon).
 *
 * Server-provided text (error_msg, phase_text, gateway messages) is only ever
 * inserted with textContent.
 */
(function () {
  'use strict';

  // The block's own catalog (i18n_js_namespace, loaded before this file), else the page's, else English.
  const i18n = window.HastexoXBlockI18N || window;
  const _ = (s) => (i18n.gettext ? i18n.gettext(s) : s);
  const ngettext = (singular, plural, n) => (
    i18n.ngettext ? i18n.ngettext(singular, plural, n) : (n === 1 ? singular : plural)
  );
  const interpolate = (fmt, values) => fmt.replace(/%\((\w+)\)s/g, (match, key) => (
    Object.prototype.hasOwnProperty.call(values, key) ? String(values[key]) : match
  ));

  // Websocket close codes used by the lab gateway.
  const CLOSE_NORMAL = 1000;
  const CLOSE_BAD_TICKET = 4001;
  const CLOSE_NOT_UP = 4004;
  const CLOSE_SUSPENDED = 4010;

  const POLL_START_MS = 1000;
  const CHECK_POLL_START_MS = 250;
  const POLL_FACTOR = 1.5;
  const JITTER = 0.2;
  const RECONNECT_BASE_MS = 1000;
  const RECONNECT_MAX_MS = 30000;
  const MAX_RECONNECT_ATTEMPTS = 8;
  const RESIZE_DEBOUNCE_MS = 150;
  const PING_INTERVAL_MS = 25000;
  // A connection that stays open this long resets the reconnect backoff.
  const STABLE_CONNECTION_MS = 10000;
  const REQUEST_TIMEOUT_MS = 60000;
  const NOTICE_MS = 8000;
  const ACTIVITY_EVENTS = ['keydown', 'mousemove', 'click', 'touchstart'];

  // color_scheme is "<foreground>-<background>".
  const COLOR_SCHEMES = {
    'white-black': {
      foreground: '#ffffff', background: '#000000',
      cursor: '#ffffff', cursorAccent: '#000000', selectionBackground: 'rgba(255, 255, 255, 0.3)',
    },
    'black-white': {
      foreground: '#000000', background: '#ffffff',
      cursor: '#000000', cursorAccent: '#ffffff', selectionBackground: 'rgba(0, 0, 0, 0.25)',
    },
    'gray-black': {
      foreground: '#b0b0b0', background: '#000000',
      cursor: '#b0b0b0', cursorAccent: '#000000', selectionBackground: 'rgba(176, 176, 176, 0.3)',
    },
    'green-black': {
      foreground: '#00ff00', background: '#000000',
      cursor: '#00ff00', cursorAccent: '#000000', selectionBackground: 'rgba(0, 255, 0, 0.3)',
    },
  };
  const DEFAULT_SCHEME = 'white-black';

  const GENERIC_FONTS = [
    'monospace', 'ui-monospace', 'serif', 'sans-serif', 'system-ui', 'cursive', 'fantasy',
  ];

  /* ---------------------------------------------------------------- helpers */

  function positive(value, fallback) {
    const n = Number(value);
    return Number.isFinite(n) && n > 0 ? n : fallback;
  }

  function withJitter(ms) {
    return Math.round(ms * (1 - JITTER + 2 * JITTER * Math.random()));
  }

  function getCookie(name) {
    const prefix = name + '=';
    const parts = document.cookie ? document.cookie.split(';') : [];
    for (let i = 0; i < parts.length; i += 1) {
      const part = parts[i].trim();
      if (part.startsWith(prefix)) {
        try {
          return decodeURIComponent(part.slice(prefix.length));
        } catch (e) {
          return part.slice(prefix.length);
        }
      }
    }
    return null;
  }

  // A CSS font-family list from the configured font name, with a monospace
  // fallback. Names that aren't plain identifiers are quoted.
  function fontFamily(name) {
    const families = String(name || '')
      .split(',')
      .map((part) => part.trim())
      .filter(Boolean)
      .map((part) => {
        if (/^(["']).*\1$/.test(part) || /^[A-Za-z][\w-]*$/.test(part)) {
          return part;
        }
        return '"' + part.replace(/["\\]/g, '') + '"';
      });
    if (!families.some((f) => GENERIC_FONTS.indexOf(f.toLowerCase()) !== -1)) {
      families.push('monospace');
    }
    return families.join(', ');
  }

  // The configured font size is in points (as in the original XBlock's
  // terminal settings); xterm.js wants CSS pixels.
  function fontSizePx(points) {
    const pt = parseFloat(points);
    if (!Number.isFinite(pt) || pt <= 0) {
      return 13;
    }
    return Math.min(48, Math.max(8, Math.round(pt * 4 / 3)));
  }

  function normalizeConfig(raw) {
    const c = raw || {};
    const t = c.js_timeouts || {};
    const term = c.terminal || {};
    const scheme = Object.prototype.hasOwnProperty.call(COLOR_SCHEMES, term.color_scheme)
      ? term.color_scheme : DEFAULT_SCHEME;
    return {
      timeouts: {
        status: positive(t.status, 15000),
        keepalive: positive(t.keepalive, 30000),
        idle: positive(t.idle, 3600000),
        check: positive(t.check, 5000),
      },
      fontFamily: fontFamily(term.font_name || 'monospace'),
      fontSize: fontSizePx(term.font_size),
      // A custom scheme (the original's Guacamole format) arrives as a theme the server made: #rrggbb only.
      theme: term.theme && typeof term.theme === 'object'
        ? Object.assign({}, COLOR_SCHEMES[DEFAULT_SCHEME], term.theme) : COLOR_SCHEMES[scheme],
      readOnly: !!c.read_only,
      hidden: !!c.hidden,
      fullscreen: !!c.enable_fullscreen,
      hasTests: !!c.has_tests,
      port: Number.isInteger(c.port) ? c.port : null,
      // The learner's last check is fetched, never carried in the init args (its hints are their text).
      checkOnLoad: !!c.check_on_load,
    };
  }

  class HandlerError extends Error {
    constructor(message, status) {
      super(message || _('The request failed.'));
      this.name = 'HandlerError';
      this.status = status || 0; // 0: network error or timeout
    }
  }

  /* ------------------------------------------------------------ controller */

  class HastexoLab {
    constructor(runtime, element, config) {
      this.runtime = runtime;
      this.element = element;
      this.config = normalizeConfig(config);
      this.root = element.querySelector('.hastexo-xblock') || element;

      const q = (cls) => this.root.querySelector('.' + cls);
      this.ui = {
        lab: q('hastexo-lab'),
        screen: q('hastexo-screen'),
        terminal: q('hastexo-terminal'),
        progress: q('hastexo-progress'),
        progressBar: q('hastexo-progress-bar'),
        phase: q('hastexo-phase'),
        overlay: q('hastexo-overlay'),
        message: q('hastexo-message'),
        notice: q('hastexo-notice'),
        readonlyBadge: q('hastexo-readonly-badge'),
        reset: q('hastexo-reset'),
        resume: q('hastexo-resume'),
        retry: q('hastexo-retry'),
        reconnect: q('hastexo-reconnect'),
        fullscreen: q('hastexo-fullscreen'),
        portSelect: q('hastexo-port'),
        checkButton: q('hastexo-check-button'),
        checkStatus: q('hastexo-check-status'),
        checkResult: q('hastexo-check-result'),
        checkMessage: q('hastexo-check-message'),
        checkHints: q('hastexo-check-hints'),
      };
      // No terminal in hidden mode (the template leaves the lab area out).
      this.hidden = this.config.hidden || !this.ui.terminal;

      this.state = null;
      this.destroyed = false;
      this.wasAttached = false;
      this.labUp = false;
      this.idle = false;
      this.lastActivity = Date.now();
      this.lastAutoResume = 0;
      this.focusOnConnect = false;

      this.pollGen = 0;
      this.pollTimer = null;
      this.pollDelay = 0;

      this.ws = null;
      this.wsGen = 0;
      this.reconnectTimer = null;
      this.reconnectAttempts = 0;
      this.ticketErrors = 0;
      this.closeHint = null;
      this.lastGatewayError = '';
      this.pingTimer = null;
      this.stableTimer = null;

      this.term = null;
      this.fitAddon = null;
      this.resizeObserver = null;
      this.fitFrame = null;
      this.resizeTimer = null;
      this.lastSentSize = '';
      this.encoder = new TextEncoder();

      this.checkGen = 0;
      this.checkTimer = null;

      this.keepaliveTimer = null;
      this.tickTimer = null;
      this.noticeTimer = null;
      this.noticeKind = null;
      this.listeners = [];
    }

    /* ---- lifecycle ---- */

    start() {
      this.wasAttached = this.root.isConnected;
      this.setupUi();
      this.listen(document, ACTIVITY_EVENTS, () => this.markActivity());
      this.keepaliveTimer = setInterval(() => this.sendKeepalive(), this.config.timeouts.keepalive);
      const tickMs = Math.min(5000, Math.max(250, Math.floor(this.config.timeouts.idle / 4)));
      this.tickTimer = setInterval(() => this.tick(), tickMs);
      this.beginLaunch({ initialize: true });
      if (this.config.checkOnLoad) {
        this.pollCheck(++this.checkGen);
      }
    }

    destroy() {
      if (this.destroyed) {
        return;
      }
      this.destroyed = true;
      this.cancelCheckPoll();
      this.cancelPoll();
      this.cancelReconnect();
      this.closeSocket();
      clearInterval(this.keepaliveTimer);
      clearInterval(this.tickTimer);
      clearTimeout(this.noticeTimer);
      clearTimeout(this.resizeTimer);
      if (this.fitFrame !== null) {
        cancelAnimationFrame(this.fitFrame);
      }
      this.listeners.forEach(([target, type, fn, opts]) => target.removeEventListener(type, fn, opts));
      this.listeners = [];
      if (this.resizeObserver) {
        this.resizeObserver.disconnect();
      }
      if (this.term) {
        this.term.dispose();
        this.term = null;
      }
    }

    listen(target, types, fn, opts) {
      const options = opts === undefined ? { capture: true, passive: true } : opts;
      [].concat(types).forEach((type) => {
        target.addEventListener(type, fn, options);
        this.listeners.push([target, type, fn, options]);
      });
    }

    // Periodic housekeeping: notice when the block left the page (e.g. the
    // learner moved to another unit) and when the learner went idle.
    tick() {
      if (this.destroyed) {
        return;
      }
      if (this.root.isConnected) {
        this.wasAttached = true;
      } else if (this.wasAttached) {
        this.destroy();
        return;
      }
      if ((this.state === 'launching' || this.state === 'connected') && this.learnerIdle()) {
        this.enterIdle();
      }
    }

    /* ---- UI ---- */

    setupUi() {
      const ui = this.ui;
      this.root.style.setProperty('--hastexo-screen-bg', this.config.theme.background);
      if (ui.readonlyBadge) {
        ui.readonlyBadge.hidden = !this.config.readOnly;
      }
      if (ui.lab && this.config.readOnly) {
        ui.lab.classList.add('hastexo-read-only');
      }
      const click = (button, fn) => {
        if (button) {
          this.listen(button, 'click', (ev) => {
            ev.preventDefault();
            fn();
          }, false);
        }
      };
      click(ui.reset, () => this.confirmReset());
      click(ui.checkButton, () => this.startCheck());
      if (ui.portSelect) {
        ui.portSelect.value = this.config.port === null ? '' : String(this.config.port);
        this.listen(ui.portSelect, 'change', () => this.selectPort(ui.portSelect.value), false);
      }
      click(ui.resume, () => this.resume());
      click(ui.retry, () => {
        this.reconnectAttempts = 0;
        this.beginLaunch({ initialize: true, userAction: true });
      });
      click(ui.reconnect, () => {
        this.reconnectAttempts = 0;
        this.focusOnConnect = true;
        this.connect();
      });
      if (ui.fullscreen && ui.lab && this.config.fullscreen && document.fullscreenEnabled) {
        ui.fullscreen.hidden = false;
        click(ui.fullscreen, () => this.toggleFullscreen());
        this.listen(document, 'fullscreenchange', () => {
          ui.fullscreen.textContent = document.fullscreenElement === ui.lab
            ? _('Exit full screen') : _('Full screen');
          this.scheduleFit();
        }, false);
      }
    }

    setState(state) {
      this.state = state;
      this.root.setAttribute('data-state', state);
      if (this.element !== this.root) {
        this.element.setAttribute('data-state', state);
      }
      if (state === 'launching' || state === 'connected') {
        this.hideOverlay();
      }
    }

    setProgress(progress, text) {
      const value = Math.min(1, Math.max(0, Number(progress) || 0));
      const pct = Math.round(value * 100);
      if (this.ui.progress) {
        this.ui.progress.setAttribute('aria-valuenow', String(pct));
        this.ui.progress.setAttribute('aria-valuetext', text ? text + ' (' + pct + '%)' : pct + '%');
      }
      if (this.ui.progressBar) {
        this.ui.progressBar.style.width = pct + '%';
      }
      if (this.ui.phase && text) {
        this.ui.phase.textContent = text;
      }
    }

    showOverlay(message, buttonName) {
      const ui = this.ui;
      if (!ui.overlay) {
        return;
      }
      const hadFocus = ui.lab && ui.lab.contains(document.activeElement);
      ui.overlay.hidden = false;
      if (ui.message) {
        ui.message.textContent = message;
      }
      let target = null;
      ['resume', 'retry', 'reconnect'].forEach((name) => {
        if (ui[name]) {
          ui[name].hidden = name !== buttonName;
          if (name === buttonName) {
            target = ui[name];
          }
        }
      });
      // Keep keyboard users in the lab area: the terminal is now covered.
      if (hadFocus && target) {
        target.focus();
      }
    }

    hideOverlay() {
      if (this.ui.overlay) {
        this.ui.overlay.hidden = true;
      }
    }

    showNotice(text, kind) {
      const notice = this.ui.notice;
      if (!notice || !text) {
        return;
      }
      notice.textContent = text;
      notice.title = text;
      notice.hidden = false;
      this.noticeKind = kind || null;
      clearTimeout(this.noticeTimer);
      this.noticeTimer = setTimeout(() => this.clearNotice(), NOTICE_MS);
    }

    clearNotice(kind) {
      if (!this.ui.notice || (kind && kind !== this.noticeKind)) {
        return;
      }
      clearTimeout(this.noticeTimer);
      this.noticeTimer = null;
      this.noticeKind = null;
      this.ui.notice.hidden = true;
      this.ui.notice.textContent = '';
    }

    showError(message) {
      this.cancelPoll();
      this.cancelReconnect();
      this.closeSocket();
      this.labUp = false;
      this.setState('error');
      this.showOverlay(message || _('Something went wrong with your lab.'), 'retry');
    }

    showEnded() {
      this.cancelReconnect();
      this.closeSocket();
      this.setState('ended');
      this.showOverlay(_('The session ended.'), 'reconnect');
    }

    enterIdle() {
      this.idle = true;
      this.labUp = false; // stops keepalives
      this.cancelPoll();
      this.cancelReconnect();
      this.closeSocket();
      this.setState('idle');
      this.showOverlay(_('Your lab is paused.'), 'resume');
    }

    resume() {
      this.lastActivity = Date.now();
      this.beginLaunch({ initialize: true, userAction: true });
    }

    confirmReset() {
      const question = _('This deletes your lab and everything in it and starts a new one. Continue?');
      if (!window.confirm(question)) {
        return;
      }
      this.lastActivity = Date.now();
      this.beginLaunch({ initialize: true, reset: true, userAction: true });
    }

    toggleFullscreen() {
      const lab = this.ui.lab;
      if (document.fullscreenElement === lab) {
        document.exitFullscreen().catch(() => {});
      } else if (lab.requestFullscreen) {
        lab.requestFullscreen().catch(() => {
          this.showNotice(_('Full screen mode is not available.'), 'fullscreen');
        });
      }
    }

    /* ---- activity, idle and keepalive ---- */

    markActivity() {
      this.lastActivity = Date.now();
      // A hidden lab has no "Resume" button: resume on activity instead
      // (at most once per status interval).
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
        // Not fatal: the next keepalive or status poll will tell.
      });
    }

    /* ---- handler calls ---- */

    async post(handler, body) {
      const url = this.runtime.handlerUrl(this.element, handler);
      const headers = {
        'Content-Type': 'application/json',
        Accept: 'application/json',
        'X-Requested-With': 'XMLHttpRequest',
      };
      const csrf = getCookie('csrftoken');
      if (csrf) {
        headers['X-CSRFToken'] = csrf;
      }
      const controller = typeof AbortController === 'function' ? new AbortController() : null;
      const timer = controller ? setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS) : null;
      try {
        let response;
        try {
          response = await fetch(url, {
            method: 'POST',
            credentials: 'same-origin',
            headers,
            body: JSON.stringify(body || {}),
            signal: controller ? controller.signal : undefined,
          });
        } catch (e) {
          throw new HandlerError(_('Could not reach the server.'), 0);
        }
        let data = null;
        try {
          data = await response.json();
        } catch (e) {
          data = null;
        }
        if (!response.ok) {
          const message = data && typeof data.error === 'string' ? data.error : '';
          throw new HandlerError(message, response.status);
        }
        return data && typeof data === 'object' ? data : {};
      } finally {
        if (timer !== null) {
          clearTimeout(timer);
        }
      }
    }

    /* ---- ports ---- */

    // Switch the connection to another of the lab's ports, without a reload.
    async selectPort(value) {
      const select = this.ui.portSelect;
      const previous = this.config.port === null ? '' : String(this.config.port);
      select.disabled = true;
      try {
        const data = await this.post('set_port', { port: value === '' ? null : Number(value) });
        this.config.port = Number.isInteger(data.port) ? data.port : null;
      } catch (err) {
        select.value = previous;
        this.showNotice(err.message || _('Could not switch to that port.'), 'port');
        return;
      } finally {
        select.disabled = false;
      }
      if (this.labUp && !this.hidden && !this.destroyed) {
        this.reconnectAttempts = 0;
        this.focusOnConnect = true;
        this.connect();
      }
    }

    /* ---- progress checks ---- */

    async startCheck() {
      if (this.destroyed) {
        return;
      }
      this.markActivity();
      const gen = ++this.checkGen;
      this.checkPolls = 0;
      this.setChecking(true, _('Checking your progress…'));
      let data;
      try {
        data = await this.post('check_progress', {});
      } catch (err) {
        if (gen === this.checkGen && !this.destroyed) {
          this.setChecking(false, '');
          this.showCheckError(err.message || _('Your progress could not be checked.'));
        }
        return;
      }
      if (gen === this.checkGen && !this.destroyed) {
        this.handleCheck(data, gen);
      }
    }

    cancelCheckPoll() {
      this.checkGen += 1;
      clearTimeout(this.checkTimer);
      this.checkTimer = null;
    }

    async pollCheck(gen) {
      let data;
      try {
        data = await this.post('check_status', {});
      } catch (err) {
        if (gen !== this.checkGen || this.destroyed) {
          return;
        }
        if (err.status === 0) {
          // The network hiccuped: keep waiting for the result.
          this.checkTimer = setTimeout(() => this.pollCheck(gen), this.config.timeouts.check);
          return;
        }
        this.setChecking(false, '');
        this.showCheckError(err.message || _('Your progress could not be checked.'));
        return;
      }
      if (gen === this.checkGen && !this.destroyed) {
        this.handleCheck(data, gen);
      }
    }

    handleCheck(d, gen) {
      const status = String(d.status || '');
      if (status === 'pending' || status === 'running') {
        this.setChecking(true, _('Checking your progress…'));
        clearTimeout(this.checkTimer);
        // Most checks take well under a second: ask soon, then back off to
        // the configured interval.
        this.checkPolls = (this.checkPolls || 0) + 1;
        const delay = Math.min(this.config.timeouts.check, CHECK_POLL_START_MS * Math.pow(2, this.checkPolls - 1));
        this.checkTimer = setTimeout(() => this.pollCheck(gen), delay);
        return;
      }
      this.checkPolls = 0;
      this.setChecking(false, '');
      if (status === 'done') {
        this.showCheckResult(d);
      } else if (status === 'error') {
        this.showCheckError(typeof d.error_msg === 'string' && d.error_msg
          ? d.error_msg : _('Your progress could not be checked.'));
      }
    }

    setChecking(busy, text) {
      const ui = this.ui;
      if (ui.checkButton) {
        ui.checkButton.disabled = busy;
        ui.checkButton.setAttribute('aria-busy', busy ? 'true' : 'false');
      }
      if (ui.checkStatus) {
        ui.checkStatus.textContent = text;
      }
    }

    // Everything here comes from the server or a test script: text only.
    renderCheck(message, hints, kind) {
      const ui = this.ui;
      if (!ui.checkResult) {
        return;
      }
      ui.checkResult.classList.remove('hastexo-check-complete', 'hastexo-check-failed');
      if (kind) {
        ui.checkResult.classList.add(kind);
      }
      if (ui.checkMessage) {
        ui.checkMessage.textContent = message;
      }
      if (ui.checkHints) {
        ui.checkHints.replaceChildren(...hints.map((hint) => {
          const item = document.createElement('li');
          item.textContent = hint;
          return item;
        }));
      }
      ui.checkResult.hidden = false;
    }

    showCheckResult(d) {
      const hints = Array.isArray(d.hints) ? d.hints.filter((h) => typeof h === 'string' && h) : [];
      const total = Number(d.total);
      const passed = Number(d.pass);
      let kind = null;
      if (Number.isFinite(total) && total > 0) {
        kind = passed >= total ? 'hastexo-check-complete' : 'hastexo-check-failed';
      }
      const message = typeof d.message === 'string' && d.message ? d.message : _('Your progress has been checked.');
      this.renderCheck(message, hints, kind);
    }

    showCheckError(message) {
      this.renderCheck(message, [], 'hastexo-check-failed');
    }

    /* ---- status polling ---- */

    beginLaunch({ initialize = true, reset = false, userAction = false } = {}) {
      if (this.destroyed) {
        return;
      }
      this.cancelPoll();
      this.cancelReconnect();
      this.closeSocket();
      this.idle = false;
      this.labUp = false;
      if (userAction) {
        this.ticketErrors = 0;
        this.focusOnConnect = true;
      }
      this.setState('launching');
      this.setProgress(0, reset ? _('Resetting your lab…') : _('Launching your lab…'));
      this.pollDelay = 0;
      const gen = ++this.pollGen;
      this.pollStatus({ initialize: !!initialize, reset: !!reset }, gen);
    }

    cancelPoll() {
      this.pollGen += 1;
      clearTimeout(this.pollTimer);
      this.pollTimer = null;
    }

    schedulePoll(flags, gen) {
      const max = this.config.timeouts.status;
      const first = !this.pollDelay;
      this.pollDelay = first
        ? Math.min(POLL_START_MS, max)
        : Math.min(this.pollDelay * POLL_FACTOR, max);
      const delay = Math.min(withJitter(this.pollDelay), first ? Math.min(POLL_START_MS, max) : max);
      this.pollTimer = setTimeout(() => {
        this.pollTimer = null;
        this.pollStatus(flags, gen);
      }, delay);
    }

    async pollStatus(flags, gen) {
      let status;
      try {
        status = await this.post('get_user_stack_status', flags);
      } catch (err) {
        if (gen !== this.pollGen || this.destroyed) {
          return;
        }
        // Keep trying (with the same request) and tell the learner.
        this.showNotice(_('Could not check on your lab. Retrying…'), 'poll');
        this.schedulePoll(flags, gen);
        return;
      }
      if (gen !== this.pollGen || this.destroyed) {
        return;
      }
      this.clearNotice('poll');
      this.handleStatus(status, gen);
    }

    handleStatus(s, gen) {
      const phaseText = typeof s.phase_text === 'string' && s.phase_text ? s.phase_text : '';
      if (typeof s.notice === 'string' && s.notice) {
        this.showNotice(s.notice, 'server');  // e.g. the lab usage limit's warning; text, never HTML
      }
      if (s.failed) {
        const msg = typeof s.error_msg === 'string' && s.error_msg ? s.error_msg : '';
        this.showError(msg || _('Your lab could not be started.'));
        return;
      }
      if (s.up) {
        this.labUp = true;
        this.setProgress(1, phaseText || _('Your lab is ready.'));
        this.onLabUp();
        return;
      }
      if (s.suspended && !s.pending) {
        this.enterIdle();
        return;
      }
      this.setProgress(s.progress, phaseText || _('Launching your lab…'));
      this.schedulePoll({ initialize: false, reset: false }, gen);
    }

    onLabUp() {
      if (this.hidden) {
        // Launched and kept alive, but never shown.
        this.setState('connected');
        return;
      }
      this.reconnectAttempts = 0;
      this.connect();
    }

    /* ---- websocket ---- */

    cancelReconnect() {
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = null;
    }

    closeSocket() {
      this.wsGen += 1;
      this.stopPing();
      this.clearStableTimer();
      const ws = this.ws;
      this.ws = null;
      if (ws) {
        ws.onopen = null;
        ws.onmessage = null;
        ws.onerror = null;
        ws.onclose = null;
        try {
          if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) {
            ws.close(CLOSE_NORMAL);
          }
        } catch (e) {
          // ignore
        }
      }
    }

    async connect() {
      if (this.destroyed || this.hidden) {
        return;
      }
      this.cancelReconnect();
      this.closeSocket();
      const gen = this.wsGen;
      if (!this.ensureTerminal()) {
        return;
      }
      if (this.state !== 'launching') {
        this.setState('launching');
      }
      this.setProgress(1, this.reconnectAttempts
        ? _('Reconnecting to your lab…') : _('Connecting to your lab…'));

      // A ticket is single use and short-lived: get a fresh one for every
      // attempt and don't keep it around.
      let ticket;
      try {
        ticket = await this.post('get_ticket', {});
      } catch (err) {
        if (gen !== this.wsGen || this.destroyed) {
          return;
        }
        if (err.status >= 400 && err.status < 500) {
          // Most likely the lab isn't up (any more): check on it once, and
          // give up if that doesn't help.
          this.ticketErrors += 1;
          if (this.ticketErrors <= 1) {
            this.beginLaunch({ initialize: true });
          } else {
            this.showError(err.message || _('Could not connect to your lab.'));
          }
          return;
        }
        this.scheduleReconnect();
        return;
      }
      if (gen !== this.wsGen || this.destroyed) {
        return;
      }
      const url = ticket && ticket.url;
      if (typeof url !== 'string' || !/^wss?:\/\//i.test(url)) {
        this.showError(_('Could not connect to your lab.'));
        return;
      }
      let ws;
      try {
        ws = new WebSocket(url);
      } catch (e) {
        this.scheduleReconnect();
        return;
      }
      ws.binaryType = 'arraybuffer';
      this.ws = ws;
      this.closeHint = null;
      this.lastGatewayError = '';
      ws.onopen = () => {
        if (gen === this.wsGen) {
          this.onSocketOpen();
        }
      };
      ws.onmessage = (ev) => {
        if (gen === this.wsGen) {
          this.onSocketMessage(ev);
        }
      };
      ws.onerror = () => {
        // A close event always follows; handled there.
      };
      ws.onclose = (ev) => {
        if (gen === this.wsGen) {
          this.onSocketClose(ev);
        }
      };
    }

    onSocketOpen() {
      this.setState('connected');
      this.clearNotice('socket');
      // The ticket was accepted, so the lab is up.
      this.ticketErrors = 0;
      this.clearStableTimer();
      this.stableTimer = setTimeout(() => {
        this.stableTimer = null;
        this.reconnectAttempts = 0;
      }, STABLE_CONNECTION_MS);
      this.lastSentSize = '';
      this.fitTerminal();
      this.sendResize();
      this.startPing();
      if (this.focusOnConnect && this.term) {
        this.focusOnConnect = false;
        this.term.focus();
      }
    }

    clearStableTimer() {
      clearTimeout(this.stableTimer);
      this.stableTimer = null;
    }

    onSocketMessage(ev) {
      if (typeof ev.data === 'string') {
        this.onControlMessage(ev.data);
        return;
      }
      if (ev.data instanceof ArrayBuffer && this.term) {
        this.term.write(new Uint8Array(ev.data));
      }
    }

    onControlMessage(text) {
      let msg;
      try {
        msg = JSON.parse(text);
      } catch (e) {
        return;
      }
      if (!msg || typeof msg !== 'object') {
        return;
      }
      if (msg.type === 'status') {
        const status = String(msg.status || '');
        if (status === 'connected') {
          this.clearNotice('socket');
        } else if (status === 'suspended' || status === 'deleted') {
          this.closeHint = CLOSE_SUSPENDED;
        }
      } else if (msg.type === 'error') {
        const message = typeof msg.message === 'string' ? msg.message : '';
        if (message) {
          this.lastGatewayError = message;
          this.showNotice(message, 'socket');
        }
      }
    }

    onSocketClose(ev) {
      this.ws = null;
      this.wsGen += 1;
      this.stopPing();
      this.clearStableTimer();
      let code = ev.code;
      if (this.closeHint && [CLOSE_NORMAL, CLOSE_BAD_TICKET, CLOSE_NOT_UP].indexOf(code) === -1) {
        code = this.closeHint;
      }
      switch (code) {
        case CLOSE_NORMAL:
          this.showEnded();
          break;
        case CLOSE_BAD_TICKET:
          // Retry at once with a new ticket (bounded by the attempt limit).
          this.reconnectAttempts += 1;
          if (this.reconnectAttempts > MAX_RECONNECT_ATTEMPTS) {
            this.showError(this.lastGatewayError || _('Could not connect to your lab.'));
          } else {
            this.connect();
          }
          break;
        case CLOSE_NOT_UP:
        case CLOSE_SUSPENDED:
          this.labUp = false;
          if (this.learnerIdle()) {
            this.enterIdle();
          } else {
            this.beginLaunch({ initialize: true });
          }
          break;
        default:
          this.scheduleReconnect();
      }
    }

    scheduleReconnect() {
      if (this.destroyed) {
        return;
      }
      if (this.learnerIdle()) {
        this.enterIdle();
        return;
      }
      if (this.reconnectAttempts >= MAX_RECONNECT_ATTEMPTS) {
        this.showError(this.lastGatewayError || _('The connection to your lab was lost.'));
        return;
      }
      const base = Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * Math.pow(2, this.reconnectAttempts));
      const delay = Math.min(RECONNECT_MAX_MS, withJitter(base));
      this.reconnectAttempts += 1;
      const seconds = Math.max(1, Math.round(delay / 1000));
      this.setState('launching');
      this.setProgress(1, interpolate(ngettext(
        'Connection lost. Reconnecting in %(seconds)s second…',
        'Connection lost. Reconnecting in %(seconds)s seconds…',
        seconds,
      ), { seconds }));
      this.cancelReconnect();
      this.reconnectTimer = setTimeout(() => {
        this.reconnectTimer = null;
        this.connect();
      }, delay);
    }

    socketOpen() {
      return this.ws && this.ws.readyState === WebSocket.OPEN;
    }

    sendJSON(obj) {
      if (this.socketOpen()) {
        this.ws.send(JSON.stringify(obj));
      }
    }

    startPing() {
      this.stopPing();
      this.pingTimer = setInterval(() => this.sendJSON({ type: 'ping' }), PING_INTERVAL_MS);
    }

    stopPing() {
      clearInterval(this.pingTimer);
      this.pingTimer = null;
    }

    /* ---- terminal ---- */

    ensureTerminal() {
      if (this.term) {
        return true;
      }
      const TerminalCtor = window.Terminal;
      const FitCtor = window.FitAddon && window.FitAddon.FitAddon;
      if (typeof TerminalCtor !== 'function' || !this.ui.terminal) {
        this.showError(_('The terminal could not be loaded. Please reload the page.'));
        return false;
      }
      const readOnly = this.config.readOnly;
      const term = new TerminalCtor({
        fontFamily: this.config.fontFamily,
        fontSize: this.config.fontSize,
        theme: this.config.theme,
        disableStdin: readOnly,
        cursorBlink: !readOnly,
        cursorInactiveStyle: 'outline',
        scrollback: 5000,
      });
      if (typeof FitCtor === 'function') {
        this.fitAddon = new FitCtor();
        term.loadAddon(this.fitAddon);
      }
      term.open(this.ui.terminal);
      term.onData((data) => this.sendInput(data));
      term.onBinary((data) => this.sendBinary(data));
      term.onResize(() => this.scheduleResizeSend());
      this.term = term;

      if (typeof ResizeObserver === 'function') {
        this.resizeObserver = new ResizeObserver(() => this.scheduleFit());
        this.resizeObserver.observe(this.ui.terminal);
      } else {
        this.listen(window, 'resize', () => this.scheduleFit(), false);
      }
      this.fitTerminal();
      return true;
    }

    sendInput(data) {
      this.markActivity();
      if (this.config.readOnly || !this.socketOpen()) {
        return;
      }
      this.ws.send(this.encoder.encode(data));
    }

    // onBinary data is a string of byte values (e.g. some mouse reports).
    sendBinary(data) {
      this.markActivity();
      if (this.config.readOnly || !this.socketOpen()) {
        return;
      }
      const bytes = new Uint8Array(data.length);
      for (let i = 0; i < data.length; i += 1) {
        bytes[i] = data.charCodeAt(i) & 0xff;
      }
      this.ws.send(bytes);
    }

    scheduleFit() {
      if (this.fitFrame !== null || this.destroyed) {
        return;
      }
      this.fitFrame = requestAnimationFrame(() => {
        this.fitFrame = null;
        this.fitTerminal();
      });
    }

    fitTerminal() {
      if (!this.term || !this.fitAddon) {
        return;
      }
      try {
        this.fitAddon.fit();
      } catch (e) {
        // Not laid out (e.g. display: none): try again on the next resize.
      }
    }

    scheduleResizeSend() {
      clearTimeout(this.resizeTimer);
      this.resizeTimer = setTimeout(() => {
        this.resizeTimer = null;
        this.sendResize();
      }, RESIZE_DEBOUNCE_MS);
    }

    sendResize() {
      if (!this.term || !this.socketOpen()) {
        return;
      }
      const cols = this.term.cols;
      const rows = this.term.rows;
      const size = cols + 'x' + rows;
      if (size === this.lastSentSize) {
        return;
      }
      this.lastSentSize = size;
      this.sendJSON({ type: 'resize', cols, rows });
    }
  }

  /* ----------------------------------------------------------- entry point */

  const instances = new WeakMap();

  function HastexoXBlock(runtime, element, config) {
    const el = element && element.jquery ? element[0] : element;
    if (!el) {
      return;
    }
    const previous = instances.get(el);
    if (previous) {
      previous.destroy();
    }
    const lab = new HastexoLab(runtime, el, config);
    instances.set(el, lab);
    lab.start();
  }

  window.HastexoXBlock = HastexoXBlock;
}());
