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
 * Work-conserving (at a share of 1): when no other replay waits, the holder keeps the turn for
 * as long as the budget lasts, and a replay that enters while the loop is otherwise idle starts
 * at once.
 *
 * With a `share` below 1 (REPLAY_SHARE_PERCENT), the replays also leave the loop to the live
 * streams for a while after each slice, so that together they take at most that share of its
 * time. Why: on a busy machine a slice every turn meant the replays' work (and the garbage and
 * the bytes it makes for the kernel and the clients) ran back to back with the live fan-outs,
 * and live events arriving meanwhile waited behind it (bench deep-resume, ten replays at once).
 * The pause follows the slice's wall time, which may include other work of the same turn: under
 * load the replays take somewhat less than their share, never more. A pause holds even on an
 * idle replica: catching up is never faster than the share allows.
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
  /** The replays' most share of the event loop's time, 0 < share ≤ 1 (1: every turn has a slice). */
  readonly #share: number;
  /** When the holder last gave the turn up (ms): the end of the replays' work in this slice. */
  #lastLeave = -Infinity;
  /** Before this (ms), no new slice starts: the replays' share is used (share < 1 only). */
  #earliest = -Infinity;

  /**
   * `sliceMs`: the replays' budget per turn of the event loop; `now`: the clock, in ms;
   * `share`: the replays' most share of the loop's time (0 < share ≤ 1): after a slice that wrote
   * for t ms, the next starts no sooner than t × (1 − share) / share ms later.
   * @throws RangeError for a share outside (0, 1].
   */
  constructor(sliceMs: number, now: () => number = () => performance.now(), share = 1) {
    if (!(share > 0 && share <= 1)) throw new RangeError(`share must be in (0, 1], got ${share}`);
    this.#sliceMs = sliceMs;
    this.#now = now;
    this.#share = share;
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
      if (!this.#nextTurnScheduled && this.#now() >= this.#earliest) this.#startSlice();
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
    this.#lastLeave = this.#now();
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
    if (this.#share < 1 && this.#sliceStart !== -Infinity) {
      const wrote = Math.max(0, this.#lastLeave - this.#sliceStart);
      this.#earliest = Math.max(this.#earliest, this.#lastLeave + (wrote * (1 - this.#share)) / this.#share);
    }
    if (this.#waiting.length === 0) {
      // Nobody waits: the next `enter` starts a fresh slice.
      this.#sliceStart = -Infinity;
      return;
    }
    const wait = this.#earliest - this.#now();
    if (wait >= 1) {
      // The share is used: the loop is the live streams' until then.
      this.#sliceStart = -Infinity;
      this.#nextTurnScheduled = true;
      // Never what keeps a process alive: a replay waiting here belongs to a stream, which does.
      setTimeout(this.#onTurn, wait).unref();
      return;
    }
    this.#startSlice();
    this.#handOn();
  };
}

/** One replay's place with `ReplaySlots`: its age decides who goes first. */
export interface ReplayTicket {
  readonly age: number;
}

/**
 * The deep replays of one replica (those that need more than one page from Kafka): they read
 * at most `max` partitions at once, the others wait, oldest first. Replays of a partition that
 * is being read already go on at once: a batch fetched for one of them serves every read of the
 * partition standing inside it (src/bus/kafka-range-reader.ts), so clients that resume from
 * about the same place (a replica went away) still cost one read of Kafka. A replay waiting
 * here holds nothing: its stream stays open (the shared heartbeat timer writes comments to it),
 * its live events wait in its bounded queue as during any replay, and it goes on where it stood
 * once its partition has a slot.
 *
 * Why: every replay under way holds a page of records (and the fetched batches behind them)
 * while its turns write it out, round robin with the others; ten at once kept enough alive
 * for long enough to be promoted, and the major garbage collections that followed held live
 * events (bench deep-resume 2026-12-01, second round: live p99 up to 59× the undisturbed one).
 * Fewer at once, with pages of 500 events (RESUME_MAX_EVENTS), kept it within 1.9–4.3×;
 * either alone did not. The first of them are also done sooner, instead of all at the end.
 *
 * A replay whose client does not take its bytes gives its place up while it waits for the
 * client (`release`, then `acquire` again with the same ticket: ahead of younger ones), so
 * clients that stop reading never hold the others up.
 */
export class ReplaySlots {
  readonly #max: number;
  /** Replays holding each partition being read (by `partition` key). */
  readonly #holders = new Map<string, number>();
  #nextAge = 0;
  /** Waiting replays, oldest first. */
  readonly #waiting: Array<{ age: number; partition: string; resolve: (held: boolean) => void }> = [];

  /** `max`: most partitions deep replays read at once (≥ 1). @throws RangeError otherwise. */
  constructor(max: number) {
    if (!(Number.isInteger(max) && max >= 1)) throw new RangeError(`max must be a whole number ≥ 1, got ${max}`);
    this.#max = max;
  }

  /** Replays waiting for a slot. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /** Partitions being read by deep replays. */
  get active(): number {
    return this.#holders.size;
  }

  /** A new replay's ticket: younger than every one issued before. */
  ticket(): ReplayTicket {
    return { age: this.#nextAge++ };
  }

  /**
   * Resolves true once `ticket` may read `partition` (any key naming one partition of one
   * topic): at once when the partition is being read already, or a slot is free and no older
   * replay waits; false when it stopped waiting (`cancel`). Every true must be followed by one
   * `release` of the same partition.
   */
  acquire(ticket: ReplayTicket, partition: string): Promise<boolean> {
    if (this.#mayRead(ticket.age, partition)) {
      this.#hold(partition);
      return Promise.resolve(true);
    }
    return new Promise<boolean>((resolve) => {
      const at = this.#waiting.findIndex((entry) => entry.age > ticket.age);
      const entry = { age: ticket.age, partition, resolve };
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

  /** A replay of `partition` is done with it (or waits for its client): its slot may go to the oldest waiting. */
  release(partition: string): void {
    const holders = (this.#holders.get(partition) ?? 1) - 1;
    if (holders > 0) this.#holders.set(partition, holders);
    else this.#holders.delete(partition);
    // Oldest first; each one let in may let in the waiting replays of its partition too.
    for (let index = 0; index < this.#waiting.length; ) {
      const entry = this.#waiting[index]!;
      if (this.#holders.has(entry.partition) || this.#holders.size < this.#max) {
        this.#waiting.splice(index, 1);
        this.#hold(entry.partition);
        entry.resolve(true);
        index = 0;
      } else index += 1;
    }
  }

  #mayRead(age: number, partition: string): boolean {
    if (this.#holders.has(partition)) return true;
    return this.#holders.size < this.#max && (this.#waiting[0]?.age ?? Infinity) > age;
  }

  #hold(partition: string): void {
    this.#holders.set(partition, (this.#holders.get(partition) ?? 0) + 1);
  }
}
