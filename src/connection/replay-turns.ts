/**
 * Turns on the event loop for the replays of one replica (one process): together they write for
 * at most `sliceMs` per turn of the event loop, one replay at a time, in the order they asked,
 * and for at most `share` of the wall-clock time in all.
 *
 * Why shared: each replay giving the loop back every few ms is not enough when ten replays run
 * at once: their slices ran one after the other in the same turn, and live events (the
 * consumer's batches, the hub's fan-outs) waited behind all of them (bench deep-resume: live p99
 * 1 s while ten clients replayed 20,000 events each). With one budget per turn, a live event
 * waits for at most one slice, however many replays run; the replays share what is left of
 * the CPU, first come first served, each getting the turn back after the others (round robin).
 *
 * Why a share of the clock as well: a slice per turn still gives the replays nearly the whole
 * loop (and, through the broker and the clients they keep busy, most of a small machine) as long
 * as they have work: live events then wait behind a slice, a fetch's decoding or a garbage
 * collection in almost every turn (bench deep-resume 2026-12-01: the loop 97 % busy while ten
 * replays ran, live p99 4× the undisturbed one). The share is a token bucket filled by the clock:
 * the replays may hold the loop for `share` × the time elapsed, measured as the wall time they
 * actually held it, saved up to `share` × `BURST_WINDOW_MS`. When it is spent they wait on a
 * timer for the clock to earn the next slice. A timer that fires late (a starved machine) loses
 * nothing: the tokens are counted from the clock, not from the timer, so what a late timer held
 * back is spent in the next slices (one per turn, live events between them); this is what fixed
 * rests after every slice lacked (bench run 8: they stretched, and no replay of ten finished).
 * Charging wall time, not CPU time, is deliberate: on a starved machine a slice that was
 * descheduled costs more, and the replays slow down with the machine instead of the live stream.
 *
 * Work-conserving within the share: when no other replay waits, the holder keeps the turn for as
 * long as the slice lasts, and a replay that enters while the loop is otherwise idle starts at once.
 */
export class ReplayTurns {
  readonly #sliceMs: number;
  readonly #share: number;
  readonly #capacityMs: number;
  readonly #now: () => number;
  readonly #waiting: Array<() => void> = [];
  /** A replay holds the turn: it may write until the slice is used. */
  #held = false;
  /** When the current holder got the turn (ms on `now`): its hold is charged when it leaves. */
  #heldSince = 0;
  /** When the current slice began (performance.now(), ms). */
  #sliceStart = -Infinity;
  /** How long the current slice may last: `sliceMs`, or less when the bucket holds less. */
  #sliceLimit = 0;
  #nextTurnScheduled = false;
  /** The bucket: ms of loop time the replays may still hold (negative: a debt the clock repays first). */
  #tokens: number;
  #refilledAt: number;

  /**
   * `sliceMs`: the replays' budget per turn of the event loop (ms); `now`: the clock, in ms;
   * `share`: the fraction of wall-clock time (0 < share ≤ 1) they may hold the loop in all,
   * 1 = no limit but the slices.
   * @throws RangeError for a share outside (0, 1] or a slice that is not positive.
   */
  constructor(sliceMs: number, now: () => number = () => performance.now(), share = 1) {
    if (!(share > 0 && share <= 1)) throw new RangeError(`share must be in (0, 1], got ${share}`);
    if (!(sliceMs > 0)) throw new RangeError(`sliceMs must be positive, got ${sliceMs}`);
    this.#sliceMs = sliceMs;
    this.#share = share;
    this.#now = now;
    // At least one whole slice can be saved up, so a lone replay's slices are never cut short.
    this.#capacityMs = Math.max(sliceMs, share * BURST_WINDOW_MS);
    this.#tokens = this.#capacityMs;
    this.#refilledAt = now();
  }

  /** Replays waiting for a turn (not counting the one holding it). */
  get waiting(): number {
    return this.#waiting.length;
  }

  /** Whether this turn's slice is used: the holder leaves (and enters again to go on). */
  get used(): boolean {
    return this.#now() - this.#sliceStart > this.#sliceLimit;
  }

  /**
   * Resolves once the caller holds the turn: at once when nobody holds or waits and the slice
   * has budget left; otherwise after the replays ahead of it, in this turn or a later one.
   * Every `enter` must be followed by one `leave`; between them the holder must not wait for
   * anything (it leaves first), and checks `used` at short intervals, leaving when it is.
   */
  enter(): Promise<void> {
    if (!this.#held && this.#waiting.length === 0) {
      // No slice in this turn yet: one starts now, if the bucket allows.
      if (!this.#nextTurnScheduled) this.#startSlice();
      if (!this.used) {
        this.#hold();
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
    if (this.#held) this.#charge(this.#now() - this.#heldSince);
    this.#held = false;
    this.#handOn();
  }

  #hold(): void {
    this.#held = true;
    this.#heldSince = this.#now();
  }

  /** Takes `ms` of held time out of the bucket, after adding what the clock earned since the last refill. */
  #charge(ms: number): void {
    this.#refill();
    this.#tokens -= ms;
  }

  #refill(): void {
    const now = this.#now();
    this.#tokens = Math.min(this.#capacityMs, this.#tokens + (now - this.#refilledAt) * this.#share);
    this.#refilledAt = now;
  }

  #handOn(): void {
    if (this.#held || this.#waiting.length === 0) return;
    if (this.used) {
      this.#scheduleNextTurn();
      return;
    }
    this.#hold();
    this.#waiting.shift()!();
  }

  /** Starts this turn's slice: as long as the bucket allows, up to `sliceMs`; an empty bucket makes an already used slice (the next turn waits on a timer). */
  #startSlice(): void {
    this.#refill();
    this.#sliceStart = this.#now();
    this.#sliceLimit = this.#tokens > 0 ? Math.min(this.#sliceMs, this.#tokens) : -1;
    // The slice ends with this turn: the next one starts after pending I/O (live events, new connections).
    this.#scheduleNextTurn();
  }

  #scheduleNextTurn(): void {
    if (this.#nextTurnScheduled) return;
    this.#nextTurnScheduled = true;
    this.#refill();
    if (this.#tokens > 0) {
      setImmediate(this.#onTurn);
      return;
    }
    // Spent: the next slice comes when the clock has earned it (at least a millisecond's worth).
    const waitMs = Math.max(1, Math.ceil((Math.min(1, this.#sliceMs) - this.#tokens) / this.#share));
    setTimeout(this.#onTurn, waitMs);
  }

  readonly #onTurn = (): void => {
    this.#nextTurnScheduled = false;
    if (this.#waiting.length === 0) {
      // Nobody waits: the next `enter` starts a fresh slice.
      this.#sliceStart = -Infinity;
      this.#sliceLimit = 0;
      return;
    }
    this.#startSlice();
    this.#handOn();
  };
}

/**
 * How much of the replays' share may be saved up while they wait or are absent (ms of wall
 * time, times the share): enough that a timer firing late on a starved machine loses nothing,
 * small enough that the replays never take the loop for long at a stretch (they spend savings
 * one slice per turn anyway).
 */
const BURST_WINDOW_MS = 200;

/** One replay's place with `ReplaySlots`: its age decides who goes first. */
export interface ReplayTicket {
  readonly age: number;
}

/**
 * The deep replays of one replica (those that need more than one page from Kafka): at most
 * `max` at once, the others wait, oldest first. A replay waiting here holds nothing: its stream
 * stays open (the shared heartbeat timer writes comments to it), its live events wait in its
 * bounded queue as during any replay, and it goes on where it stood once a slot is free.
 *
 * Why: ten replays at once each hold a page of records (and the fetched batches behind them)
 * for as long as their turns take to write it; with a share of the clock, that is long enough
 * for the pages to be promoted and collected in major garbage collections that hold live events
 * (bench deep-resume 2026-12-01, run of 07:38: 160 ms of one). Fewer at once hold fewer pages,
 * and the first of them are done sooner instead of all ten at the end.
 *
 * A replay whose client does not take its bytes gives its slot up while it waits for the client
 * (`release`, then `acquire` again with the same ticket: ahead of younger ones), so clients that
 * stop reading never hold the others up.
 */
export class ReplaySlots {
  readonly #max: number;
  #active = 0;
  #nextAge = 0;
  /** Waiting replays, oldest first. */
  readonly #waiting: Array<{ age: number; resolve: (held: boolean) => void }> = [];

  /** `max`: most deep replays at once (≥ 1). @throws RangeError otherwise. */
  constructor(max: number) {
    if (!(Number.isInteger(max) && max >= 1)) throw new RangeError(`max must be a whole number ≥ 1, got ${max}`);
    this.#max = max;
  }

  /** Replays waiting for a slot. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /** Replays holding a slot. */
  get active(): number {
    return this.#active;
  }

  /** A new replay's ticket: younger than every one issued before. */
  ticket(): ReplayTicket {
    return { age: this.#nextAge++ };
  }

  /**
   * Resolves true once `ticket` holds a slot: at once when one is free and no older replay
   * waits; false when it stopped waiting (`cancel`). Every true must be followed by one `release`.
   */
  acquire(ticket: ReplayTicket): Promise<boolean> {
    if (this.#active < this.#max && (this.#waiting[0]?.age ?? Infinity) > ticket.age) {
      this.#active += 1;
      return Promise.resolve(true);
    }
    return new Promise<boolean>((resolve) => {
      const at = this.#waiting.findIndex((entry) => entry.age > ticket.age);
      const entry = { age: ticket.age, resolve };
      if (at < 0) this.#waiting.push(entry);
      else this.#waiting.splice(at, 0, entry);
    });
  }

  /** Takes a waiting `ticket` out of the line (its stream closed): its `acquire` resolves false. */
  cancel(ticket: ReplayTicket): void {
    const at = this.#waiting.findIndex((entry) => entry.age === ticket.age);
    if (at < 0) return;
    const [entry] = this.#waiting.splice(at, 1);
    entry!.resolve(false);
  }

  /** Gives a slot back: the oldest waiting replay gets it. */
  release(): void {
    this.#active -= 1;
    while (this.#active < this.#max && this.#waiting.length > 0) {
      this.#active += 1;
      this.#waiting.shift()!.resolve(true);
    }
  }
}
