/**
 * The block's DOM: the elements of templates/hastexo_student.html, and what
 * the learner sees of the lab's state (progress bar, overlay with one action
 * button, notices, read-only badge, full screen, which screen is shown).
 *
 * Text from the server or the gateway is only ever set with textContent.
 */
import { gettext as _ } from './i18n.js';

export const NOTICE_MS = 8000;

const ELEMENTS = {
  lab: 'hastexo-lab',
  screen: 'hastexo-screen',
  terminal: 'hastexo-terminal',
  desktop: 'hastexo-desktop',
  progress: 'hastexo-progress',
  progressBar: 'hastexo-progress-bar',
  phase: 'hastexo-phase',
  overlay: 'hastexo-overlay',
  message: 'hastexo-message',
  notice: 'hastexo-notice',
  readonlyBadge: 'hastexo-readonly-badge',
  reset: 'hastexo-reset',
  resume: 'hastexo-resume',
  retry: 'hastexo-retry',
  reconnect: 'hastexo-reconnect',
  fullscreen: 'hastexo-fullscreen',
  portSelect: 'hastexo-port',
  desktopTools: 'hastexo-desktop-tools',
  keys: 'hastexo-keys',
  clipboardToggle: 'hastexo-clipboard-toggle',
  clipboard: 'hastexo-clipboard',
  clipboardText: 'hastexo-clipboard-text',
  clipboardSend: 'hastexo-clipboard-send',
  checkButton: 'hastexo-check-button',
  checkStatus: 'hastexo-check-status',
  checkResult: 'hastexo-check-result',
  checkMessage: 'hastexo-check-message',
  checkHints: 'hastexo-check-hints',
};

const OVERLAY_BUTTONS = ['resume', 'retry', 'reconnect'];

export class LabView {
  constructor(element) {
    this.element = element;
    this.root = element.querySelector('.hastexo-xblock') || element;
    this.ui = {};
    for (const [name, cls] of Object.entries(ELEMENTS)) {
      this.ui[name] = this.root.querySelector('.' + cls);
    }
    this.noticeTimer = null;
    this.noticeKind = null;
    this.listeners = [];
  }

  /** addEventListener, undone by dispose(). */
  listen(target, types, fn, options = false) {
    if (!target) {
      return;
    }
    for (const type of [].concat(types)) {
      target.addEventListener(type, fn, options);
      this.listeners.push([target, type, fn, options]);
    }
  }

  /** Call `fn` when `button` (a name in ELEMENTS) is clicked. */
  onClick(name, fn) {
    this.listen(this.ui[name], 'click', (ev) => {
      ev.preventDefault();
      fn();
    });
  }

  setReadOnly(readOnly) {
    if (this.ui.readonlyBadge) {
      this.ui.readonlyBadge.hidden = !readOnly;
    }
    if (this.ui.lab && readOnly) {
      this.ui.lab.classList.add('hastexo-read-only');
    }
  }

  setScreenBackground(color) {
    this.root.style.setProperty('--hastexo-screen-bg', color);
  }

  /** The lab's state: launching, connected, idle, error or ended (data-state on the block, for CSS and tests). */
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

  /** Which screen shows the lab: 'terminal' or 'desktop'. */
  showScreen(kind) {
    const { terminal, desktop, desktopTools, clipboard } = this.ui;
    if (terminal) {
      terminal.hidden = kind !== 'terminal';
    }
    if (desktop) {
      desktop.hidden = kind !== 'desktop';
    }
    if (desktopTools) {
      desktopTools.hidden = kind !== 'desktop';
    }
    if (clipboard && kind !== 'desktop') {
      clipboard.hidden = true;
    }
    this.root.setAttribute('data-screen', kind);
  }

  setProgress(progress, text) {
    const pct = Math.round(Math.min(1, Math.max(0, Number(progress) || 0)) * 100);
    const { progress: bar, progressBar, phase } = this.ui;
    if (bar) {
      bar.setAttribute('aria-valuenow', String(pct));
      bar.setAttribute('aria-valuetext', text ? text + ' (' + pct + '%)' : pct + '%');
    }
    if (progressBar) {
      progressBar.style.width = pct + '%';
    }
    if (phase && text) {
      phase.textContent = text;
    }
  }

  /** Cover the screen with `message` and the one button named `buttonName` (resume, retry, reconnect). */
  showOverlay(message, buttonName) {
    const { overlay, message: messageEl, lab } = this.ui;
    if (!overlay) {
      return;
    }
    const hadFocus = lab && lab.contains(document.activeElement);
    overlay.hidden = false;
    if (messageEl) {
      messageEl.textContent = message;
    }
    let target = null;
    for (const name of OVERLAY_BUTTONS) {
      if (this.ui[name]) {
        this.ui[name].hidden = name !== buttonName;
        if (name === buttonName) {
          target = this.ui[name];
        }
      }
    }
    // Keep keyboard users in the lab area: the screen is now covered.
    if (hadFocus && target) {
      target.focus();
    }
  }

  hideOverlay() {
    if (this.ui.overlay) {
      this.ui.overlay.hidden = true;
    }
  }

  /** A passing message in the toolbar; `kind` lets a later clearNotice(kind) remove only its own. */
  showNotice(text, kind = null) {
    const notice = this.ui.notice;
    if (!notice || !text) {
      return;
    }
    notice.textContent = text;
    notice.title = text;
    notice.hidden = false;
    this.noticeKind = kind;
    clearTimeout(this.noticeTimer);
    this.noticeTimer = setTimeout(() => this.clearNotice(), NOTICE_MS);
  }

  clearNotice(kind = null) {
    if (!this.ui.notice || (kind && kind !== this.noticeKind)) {
      return;
    }
    clearTimeout(this.noticeTimer);
    this.noticeTimer = null;
    this.noticeKind = null;
    this.ui.notice.hidden = true;
    this.ui.notice.textContent = '';
  }

  /** Offer full screen for the lab area (when the block allows it and the browser can); `onChange` after each switch. */
  enableFullscreen(onChange) {
    const { fullscreen, lab } = this.ui;
    if (!fullscreen || !lab || !document.fullscreenEnabled) {
      return;
    }
    fullscreen.hidden = false;
    this.onClick('fullscreen', () => {
      if (document.fullscreenElement === lab) {
        document.exitFullscreen().catch(() => {});
      } else {
        lab.requestFullscreen().catch(() => this.showNotice(_('Full screen mode is not available.'), 'fullscreen'));
      }
    });
    this.listen(document, 'fullscreenchange', () => {
      fullscreen.textContent = document.fullscreenElement === lab ? _('Exit full screen') : _('Full screen');
      onChange();
    });
  }

  dispose() {
    clearTimeout(this.noticeTimer);
    for (const [target, type, fn, options] of this.listeners) {
      target.removeEventListener(type, fn, options);
    }
    this.listeners = [];
  }
}
