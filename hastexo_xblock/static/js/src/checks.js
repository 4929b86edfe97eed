/**
 * "Check progress": start a check, poll its status, show the result.
 *
 * Most checks take well under a second, so the first status request goes
 * out after 250 ms and the interval doubles up to js_timeouts.check. A
 * network failure keeps waiting; any other failure shows the server's
 * message. Everything shown comes from the server or a test script the
 * learner may have written: text only (textContent), never HTML.
 */
import { gettext as _ } from './i18n.js';

export const CHECK_POLL_START_MS = 250;

/** The delay before status poll number `n` (1, 2, …), capped at `maxMs`. */
export function checkPollDelay(n, maxMs) {
  return Math.min(maxMs, CHECK_POLL_START_MS * 2 ** (n - 1));
}

export class CheckPanel {
  /**
   * `ui`: {button, status, result, message, hints} elements (any may be
   * missing); `post`: the api's post; `onActivity`: called on a click.
   */
  constructor(ui, post, { maxMs, onActivity }) {
    this.ui = ui;
    this.post = post;
    this.maxMs = maxMs;
    this.onActivity = onActivity || (() => {});
    this.generation = 0;
    this.timer = null;
    this.polls = 0;
  }

  /**
   * Fetch and show the learner's last check (one that finished while they were away). The page is
   * rendered without it: its hints are what the learner's own scripts printed.
   */
  load() {
    this.poll(++this.generation);
  }

  async start() {
    this.onActivity();
    this.cancel();
    const generation = this.generation;
    this.polls = 0;
    this.setBusy(true, _('Checking your progress…'));
    let data;
    try {
      data = await this.post('check_progress', {});
    } catch (error) {
      if (generation === this.generation) {
        this.setBusy(false, '');
        this.showError(error.message || _('Your progress could not be checked.'));
      }
      return;
    }
    if (generation === this.generation) {
      this.handle(data, generation);
    }
  }

  cancel() {
    this.generation += 1;
    clearTimeout(this.timer);
    this.timer = null;
  }

  async poll(generation) {
    let data;
    try {
      data = await this.post('check_status', {});
    } catch (error) {
      if (generation !== this.generation) {
        return;
      }
      if (error.status === 0) {
        this.timer = setTimeout(() => this.poll(generation), this.maxMs);  // the network hiccuped
        return;
      }
      this.setBusy(false, '');
      this.showError(error.message || _('Your progress could not be checked.'));
      return;
    }
    if (generation === this.generation) {
      this.handle(data, generation);
    }
  }

  handle(d, generation) {
    const status = String((d && d.status) || '');
    if (status === 'pending' || status === 'running') {
      this.setBusy(true, _('Checking your progress…'));
      clearTimeout(this.timer);
      this.polls += 1;
      this.timer = setTimeout(() => this.poll(generation), checkPollDelay(this.polls, this.maxMs));
      return;
    }
    this.polls = 0;
    this.setBusy(false, '');
    if (status === 'done') {
      this.showResult(d);
    } else if (status === 'error') {
      this.showError(typeof d.error_msg === 'string' && d.error_msg ? d.error_msg : _('Your progress could not be checked.'));
    }
  }

  setBusy(busy, text) {
    const { button, status } = this.ui;
    if (button) {
      button.disabled = busy;
      button.setAttribute('aria-busy', busy ? 'true' : 'false');
    }
    if (status) {
      status.textContent = text;
    }
  }

  render(message, hints, kind) {
    const { result, message: messageEl, hints: hintsEl } = this.ui;
    if (!result) {
      return;
    }
    result.classList.remove('hastexo-check-complete', 'hastexo-check-failed');
    if (kind) {
      result.classList.add(kind);
    }
    if (messageEl) {
      messageEl.textContent = message;
    }
    if (hintsEl) {
      hintsEl.replaceChildren(...hints.map((hint) => {
        const item = document.createElement('li');
        item.textContent = hint;
        return item;
      }));
    }
    result.hidden = false;
  }

  showResult(d) {
    const hints = Array.isArray(d.hints) ? d.hints.filter((h) => typeof h === 'string' && h) : [];
    const total = Number(d.total);
    const passed = Number(d.pass);
    let kind = null;
    if (Number.isFinite(total) && total > 0) {
      kind = passed >= total ? 'hastexo-check-complete' : 'hastexo-check-failed';
    }
    const message = typeof d.message === 'string' && d.message ? d.message : _('Your progress has been checked.');
    this.render(message, hints, kind);
  }

  showError(message) {
    this.render(message, [], 'hastexo-check-failed');
  }
}
