/**
 * The lab's status polling: ask the block's status handler until the lab is
 * up, has failed or is suspended, with short, growing intervals.
 *
 * Policy (tested in js/test/poller.test.mjs):
 * - the first request goes out at once, with the caller's flags
 *   ({initialize, reset}); later ones with both false, so one page load
 *   launches (or resets) at most once;
 * - a request that fails (network, 5xx) is repeated with the same flags, so
 *   a launch that never reached the server is still asked for;
 * - intervals start at 1 s and grow by 1.5× up to the status timeout
 *   (js_timeouts.status), each with ±20 % jitter so that a class of learners
 *   who opened the unit together do not poll in step;
 * - answers to a poll that was stopped or restarted are ignored.
 */

export const POLL_START_MS = 1000;
export const POLL_FACTOR = 1.5;
export const JITTER = 0.2;

/** `ms` moved by up to ±`jitter` (a fraction), rounded. `random` returns [0, 1). */
export function withJitter(ms, random = Math.random, jitter = JITTER) {
  return Math.round(ms * (1 - jitter + 2 * jitter * random()));
}

/** The growing intervals between status polls. */
export class PollSchedule {
  constructor({ maxMs, startMs = POLL_START_MS, factor = POLL_FACTOR, random = Math.random } = {}) {
    this.maxMs = maxMs;
    this.startMs = Math.min(startMs, maxMs);
    this.factor = factor;
    this.random = random;
    this.current = 0;
  }

  reset() {
    this.current = 0;
  }

  /** The delay before the next poll, in ms (never above maxMs; the first never above startMs). */
  next() {
    const first = !this.current;
    this.current = first ? this.startMs : Math.min(this.current * this.factor, this.maxMs);
    return Math.min(withJitter(this.current, this.random), first ? this.startMs : this.maxMs);
  }
}

/**
 * What a status answer means: `{kind, text, progress, message}` with kind
 * 'failed' (message: the server's learner-safe error, or ''), 'up',
 * 'suspended' or 'waiting' (progress 0..1); `notice` is a server notice
 * (e.g. the usage limit's warning) or ''. Text fields are strings, never HTML.
 */
export function interpretStatus(s) {
  const status = s && typeof s === 'object' ? s : {};
  const text = typeof status.phase_text === 'string' ? status.phase_text : '';
  const notice = typeof status.notice === 'string' ? status.notice : '';
  if (status.failed) {
    return { kind: 'failed', message: typeof status.error_msg === 'string' ? status.error_msg : '', text, notice };
  }
  if (status.up) {
    return { kind: 'up', text, notice };
  }
  if (status.suspended && !status.pending) {
    return { kind: 'suspended', text, notice };
  }
  const progress = Math.min(1, Math.max(0, Number(status.progress) || 0));
  return { kind: 'waiting', progress, text, notice };
}

/**
 * Polls `request(flags)` (a promise of the status JSON) and reports:
 * `onResult(result)` with interpretStatus's result for every answer,
 * `onRequestError(error)` for every failed request. Polling goes on while
 * the answer is 'waiting' or the request failed; `stop()` ends it.
 */
export class StatusPoller {
  constructor({ request, onResult, onRequestError, maxMs, random = Math.random, timers = globalThis }) {
    this.request = request;
    this.onResult = onResult;
    this.onRequestError = onRequestError || (() => {});
    this.schedule = new PollSchedule({ maxMs, random });
    this.timers = timers;
    this.generation = 0;
    this.timer = null;
  }

  get running() {
    return this.timer !== null || this.inFlight === this.generation;
  }

  /** Stop any poll and start one now with `flags`. */
  start(flags) {
    this.stop();
    this.schedule.reset();
    this.poll({ initialize: !!flags.initialize, reset: !!flags.reset }, this.generation);
  }

  stop() {
    this.generation += 1;
    if (this.timer !== null) {
      this.timers.clearTimeout(this.timer);
      this.timer = null;
    }
  }

  async poll(flags, generation) {
    this.inFlight = generation;
    let answer;
    try {
      answer = await this.request(flags);
    } catch (error) {
      if (generation !== this.generation) {
        return;
      }
      this.onRequestError(error);
      this.later(flags, generation);
      return;
    } finally {
      if (this.inFlight === generation) {
        this.inFlight = null;
      }
    }
    if (generation !== this.generation) {
      return;
    }
    const result = interpretStatus(answer);
    if (result.kind === 'waiting') {
      this.later({ initialize: false, reset: false }, generation);
    }
    this.onResult(result);
  }

  later(flags, generation) {
    const delay = this.schedule.next();
    this.timer = this.timers.setTimeout(() => {
      this.timer = null;
      if (generation === this.generation) {
        this.poll(flags, generation);
      }
    }, delay);
  }
}
