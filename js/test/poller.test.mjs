// The status polling policy (static/js/src/poller.js), with a manual clock.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { interpretStatus, PollSchedule, StatusPoller, withJitter } from '../../hastexo_xblock/static/js/src/poller.js';
import { ManualClock, settle } from './clock.mjs';

/** A poller whose status handler answers from `answers` (a value, or an Error to throw), recording each request. */
function harness(answers, { maxMs = 15000, random = () => 0.5 } = {}) {
  const clock = new ManualClock();
  const requests = [];
  const results = [];
  const errors = [];
  const poller = new StatusPoller({
    request: async (flags) => {
      requests.push({ at: clock.now, flags });
      const answer = answers.length > 1 ? answers.shift() : answers[0];
      if (answer instanceof Error) {
        throw answer;
      }
      return answer;
    },
    onResult: (result) => results.push(result),
    onRequestError: (error) => errors.push(error),
    maxMs,
    random,
    timers: clock,
  });
  return { clock, poller, requests, results, errors };
}

const waiting = (progress = 0.1) => ({ status: 'CREATE_IN_PROGRESS', pending: true, progress });
const up = { status: 'CREATE_COMPLETE', up: true, phase_text: 'ready' };

describe('status polling', () => {
  it('asks at once with the flags given, then without them, so a page launches or resets at most once', async () => {
    const { clock, poller, requests } = harness([waiting(), waiting(), up]);
    poller.start({ initialize: true, reset: true });
    await settle();
    assert.deepEqual(requests, [{ at: 0, flags: { initialize: true, reset: true } }]);
    await clock.advance(60000);
    assert.equal(requests.length, 3);
    for (const r of requests.slice(1)) {
      assert.deepEqual(r.flags, { initialize: false, reset: false });
    }
  });

  it('waits 1 s, then 1.5x longer each time, never more than the status timeout', async () => {
    const { clock, poller, requests } = harness([waiting()], { maxMs: 5000 });
    poller.start({ initialize: true });
    await clock.advance(30000);
    const gaps = requests.slice(1).map((r, i) => r.at - requests[i].at);
    assert.deepEqual(gaps.slice(0, 6), [1000, 1500, 2250, 3375, 5000, 5000]);
  });

  it('spreads polls by at most 20 % either way and never beyond the bounds', () => {
    for (const random of [0, 0.25, 0.999999]) {
      const schedule = new PollSchedule({ maxMs: 4000, random: () => random });
      const delays = Array.from({ length: 10 }, () => schedule.next());
      assert.ok(delays[0] <= 1000 && delays[0] >= 800, String(delays));
      assert.ok(delays.every((d) => d <= 4000 && d >= 800), String(delays));
    }
    assert.equal(withJitter(1000, () => 0), 800);
    assert.equal(withJitter(1000, () => 0.5), 1000);
  });

  it('stops polling once the lab is up, failed or suspended', async () => {
    for (const last of [up, { failed: true, error_msg: 'no capacity' }, { suspended: true }]) {
      const { clock, poller, requests, results } = harness([waiting(), last]);
      poller.start({ initialize: true });
      await clock.advance(120000);
      assert.equal(requests.length, 2);
      assert.deepEqual(results.map((r) => r.kind).slice(-1)[0] !== 'waiting', true);
      assert.deepEqual(clock.delays, []);
    }
  });

  it('repeats a failed request with the same flags (the launch is still asked for) and reports each failure', async () => {
    const { clock, poller, requests, errors, results } = harness([new Error('network'), new Error('502'), up]);
    poller.start({ initialize: true });
    await clock.advance(10000);
    assert.deepEqual(requests.map((r) => r.flags.initialize), [true, true, true]);
    assert.equal(errors.length, 2);
    assert.equal(results.at(-1).kind, 'up');
  });

  it('ignores an answer that arrives after the poll was stopped or restarted', async () => {
    let release;
    const clock = new ManualClock();
    const results = [];
    const poller = new StatusPoller({
      request: (flags) => (flags.reset ? Promise.resolve(waiting(0.5)) : new Promise((resolve) => { release = resolve; })),
      onResult: (r) => results.push(r),
      maxMs: 15000,
      timers: clock,
    });
    poller.start({ initialize: true });
    poller.start({ initialize: true, reset: true }); // the learner clicked "Reset" meanwhile
    await settle();
    release(up);
    await settle();
    assert.deepEqual(results.map((r) => r.kind), ['waiting']);
    poller.stop();
    await clock.advance(60000);
    assert.deepEqual(results.map((r) => r.kind), ['waiting']);
  });
});

describe('status answers', () => {
  it('maps the handler JSON to what the page does', () => {
    assert.equal(interpretStatus(up).kind, 'up');
    assert.equal(interpretStatus({ failed: true, up: true, error_msg: 'x' }).kind, 'failed');
    assert.equal(interpretStatus({ suspended: true, pending: true }).kind, 'waiting'); // a resume is under way
    assert.equal(interpretStatus({ suspended: true }).kind, 'suspended');
    assert.equal(interpretStatus({ progress: 7 }).progress, 1);
    assert.equal(interpretStatus({ progress: 'x' }).progress, 0);
    assert.equal(interpretStatus(null).kind, 'waiting');
    assert.equal(interpretStatus({ failed: true, error_msg: { html: 1 } }).message, ''); // strings only
  });
});
