/** A manual clock for the policies' timers: nothing runs until the test advances time. */
export class ManualClock {
  constructor() {
    this.now = 0;
    this.nextId = 1;
    this.pending = new Map();
  }

  setTimeout(fn, ms) {
    const id = this.nextId++;
    this.pending.set(id, { at: this.now + Math.max(0, ms), fn, every: null });
    return id;
  }

  setInterval(fn, ms) {
    const id = this.nextId++;
    this.pending.set(id, { at: this.now + ms, fn, every: ms });
    return id;
  }

  clearTimeout(id) {
    this.pending.delete(id);
  }

  clearInterval(id) {
    this.pending.delete(id);
  }

  /** Delays (ms from now) of the timers waiting. */
  get delays() {
    return [...this.pending.values()].map((t) => t.at - this.now).sort((a, b) => a - b);
  }

  /** Run every timer due within `ms`, in time order, letting promises settle after each. */
  async advance(ms) {
    const end = this.now + ms;
    for (;;) {
      await settle();
      const due = [...this.pending.entries()].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) {
        break;
      }
      const [id, timer] = due;
      this.now = timer.at;
      if (timer.every) {
        timer.at += timer.every;
      } else {
        this.pending.delete(id);
      }
      timer.fn();
      await settle();
    }
    this.now = end;
    await settle();
  }
}

/** Let pending promise callbacks run. */
export function settle() {
  return new Promise((resolve) => setImmediate(resolve));
}
