/**
 * The lab's terminal: xterm.js (window.Terminal, vendored) with its fit
 * addon, sized to the unit.
 *
 * Input goes to `onInput(bytes)` (UTF-8) — never in read-only mode, where
 * xterm's stdin is disabled too; size changes go to `onResize(cols, rows)`,
 * debounced and only when the size really changed.
 */
import { gettext as _ } from './i18n.js';

const RESIZE_DEBOUNCE_MS = 150;

export class TerminalView {
  constructor(container, config, { onInput, onResize, onActivity }) {
    this.container = container;
    this.config = config;
    this.onInput = onInput;
    this.onResize = onResize;
    this.onActivity = onActivity || (() => {});
    this.term = null;
    this.fitAddon = null;
    this.observer = null;
    this.fitFrame = null;
    this.resizeTimer = null;
    this.lastSize = '';
    this.encoder = new TextEncoder();
  }

  /** Create the terminal once; throws an Error with a learner-safe message if xterm.js is missing. */
  open() {
    if (this.term) {
      return;
    }
    const TerminalCtor = window.Terminal;
    const FitCtor = window.FitAddon && window.FitAddon.FitAddon;
    if (typeof TerminalCtor !== 'function' || !this.container) {
      throw new Error(_('The terminal could not be loaded. Please reload the page.'));
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
    term.open(this.container);
    term.onData((data) => this.input(this.encoder.encode(data)));
    // onBinary data is a string of byte values (some mouse reports).
    term.onBinary((data) => this.input(Uint8Array.from(data, (ch) => ch.charCodeAt(0) & 0xff)));
    term.onResize(() => this.scheduleResizeReport());
    this.term = term;
    this.observer = new ResizeObserver(() => this.scheduleFit());
    this.observer.observe(this.container);
    this.fit();
  }

  input(bytes) {
    this.onActivity();
    if (!this.config.readOnly) {
      this.onInput(bytes);
    }
  }

  write(data) {
    if (this.term) {
      this.term.write(new Uint8Array(data));
    }
  }

  focus() {
    if (this.term) {
      this.term.focus();
    }
  }

  /** A new connection: report the size even if unchanged. */
  connected() {
    this.lastSize = '';
    this.fit();
    this.reportSize();
  }

  scheduleFit() {
    if (this.fitFrame !== null) {
      return;
    }
    this.fitFrame = requestAnimationFrame(() => {
      this.fitFrame = null;
      this.fit();
    });
  }

  fit() {
    if (!this.term || !this.fitAddon) {
      return;
    }
    try {
      this.fitAddon.fit();
    } catch {
      // Not laid out (display: none): the next resize fits it.
    }
  }

  scheduleResizeReport() {
    clearTimeout(this.resizeTimer);
    this.resizeTimer = setTimeout(() => {
      this.resizeTimer = null;
      this.reportSize();
    }, RESIZE_DEBOUNCE_MS);
  }

  reportSize() {
    if (!this.term) {
      return;
    }
    const size = this.term.cols + 'x' + this.term.rows;
    if (size !== this.lastSize && this.onResize(this.term.cols, this.term.rows)) {
      this.lastSize = size;
    }
  }

  dispose() {
    clearTimeout(this.resizeTimer);
    if (this.fitFrame !== null) {
      cancelAnimationFrame(this.fitFrame);
    }
    if (this.observer) {
      this.observer.disconnect();
    }
    if (this.term) {
      this.term.dispose();
      this.term = null;
    }
  }
}
