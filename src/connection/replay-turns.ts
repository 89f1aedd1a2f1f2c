/**
 * Turns on the event loop for the replays of one replica (one process): together they write for
 * at most `sliceMs` per turn of the event loop, one replay at a time, in the order they asked.
 *
 * Why shared: each replay giving the loop back every few ms is not enough when ten replays run
 * at once: their slices ran one after the other in the same turn, and live events (the
 * consumer's batches, the hub's fan-outs) waited behind all of them (bench deep-resume: live p99
 * 1 s while ten clients replayed 20,000 events each). With one budget per turn, a live event
 * waits for at most one slice, however many replays run; the replays share what is left of
 * the CPU, first come first served, each getting the turn back after the others (round robin).
 *
 * Work-conserving: when no other replay waits, the holder keeps the turn for as long as the
 * budget lasts, and a replay that enters while the loop is otherwise idle starts at once.
 */
export class ReplayTurns {
  readonly #sliceMs: number;
  readonly #now: () => number;
  readonly #waiting: Array<() => void> = [];
  /** A replay holds the turn: it may write until the slice is used. */
  #held = false;
  /** When the current slice began (performance.now(), ms). */
  #sliceStart = -Infinity;
  #nextTurnScheduled = false;

  /** `sliceMs`: the replays' budget per turn of the event loop; `now`: the clock, in ms. */
  constructor(sliceMs: number, now: () => number = () => performance.now()) {
    this.#sliceMs = sliceMs;
    this.#now = now;
  }

  /** Replays waiting for a turn (not counting the one holding it). */
  get waiting(): number {
    return this.#waiting.length;
  }

  /** Whether this turn's slice is used: the holder leaves (and enters again to go on). */
  get used(): boolean {
    return this.#now() - this.#sliceStart > this.#sliceMs;
  }

  /**
   * Resolves once the caller holds the turn: at once when nobody holds or waits and the slice
   * has budget left; otherwise after the replays ahead of it, in this turn or a later one.
   * Every `enter` must be followed by one `leave`; between them the holder must not wait for
   * anything (it leaves first), and checks `used` at short intervals, leaving when it is.
   */
  enter(): Promise<void> {
    if (!this.#held && this.#waiting.length === 0) {
      // No slice in this turn yet: one starts now.
      if (!this.#nextTurnScheduled) this.#startSlice();
      if (!this.used) {
        this.#held = true;
        return Promise.resolve();
      }
    }
    return new Promise<void>((resolve) => {
      this.#waiting.push(resolve);
      this.#scheduleNextTurn();
    });
  }

  /** Gives the turn up (the holder waits for something else now, or is done): the next waiting replay goes on if this slice has budget left, else next turn. */
  leave(): void {
    this.#held = false;
    this.#handOn();
  }

  #handOn(): void {
    if (this.#held || this.#waiting.length === 0) return;
    if (this.used) {
      this.#scheduleNextTurn();
      return;
    }
    this.#held = true;
    this.#waiting.shift()!();
  }

  #startSlice(): void {
    this.#sliceStart = this.#now();
    // The slice ends with this turn: the next one starts after pending I/O (live events, new connections).
    this.#scheduleNextTurn();
  }

  #scheduleNextTurn(): void {
    if (this.#nextTurnScheduled) return;
    this.#nextTurnScheduled = true;
    setImmediate(this.#onTurn);
  }

  readonly #onTurn = (): void => {
    this.#nextTurnScheduled = false;
    if (this.#waiting.length === 0) {
      // Nobody waits: the next `enter` starts a fresh slice.
      this.#sliceStart = -Infinity;
      return;
    }
    this.#startSlice();
    this.#handOn();
  };
}
