import type { StoredEvent } from './recent-events.ts';

/**
 * The local fan-out point of one replica. Keyed by channel: one entry per active room or
 * symbol holding its subscribers, so publishing touches only that channel's subscribers and
 * twenty thousand connections never mean twenty thousand listeners on one emitter.
 *
 * Streams of one channel get their events in batches: everything published for the channel
 * until `flush()` (the dispatcher flushes once per batch of consumed records) reaches each of
 * them in one call, with one frame for the whole batch, built once and shared. Under load a
 * subscriber then costs one socket write per batch instead of one per event. Streams of several
 * channels get each event at once, in publish order: their ids hold one position per partition,
 * and channels sharing a partition must interleave in partition order.
 */

/** A live event: what the history keeps, plus the frame streams of its one channel share. */
export interface HubEvent extends StoredEvent {
  /**
   * The whole frame for streams of this one channel: its `id:` is the same for all of them,
   * so it is built once, on first use, and shared.
   */
  readonly frame: Buffer;
}

/** The events of one channel published since the last flush, in order (one partition). */
export class HubBatch {
  readonly events: HubEvent[] = [];
  #frame: Buffer | undefined;

  constructor(readonly channel: string) {}

  get first(): HubEvent {
    return this.events[0]!;
  }

  get last(): HubEvent {
    return this.events[this.events.length - 1]!;
  }

  /** Every event's shared frame back to back: what a stream of this channel alone is sent. */
  get frame(): Buffer {
    if (this.#frame === undefined) {
      this.#frame = this.events.length === 1 ? this.first.frame : Buffer.concat(this.events.map((event) => event.frame));
    }
    return this.#frame;
  }
}

/** Receives what is shared by every subscriber of the channel; must not modify it. */
export type Subscriber = { deliverBatch(batch: HubBatch): void } | { deliverEvent(event: HubEvent): void };

type BatchSubscriber = Subscriber & { deliverBatch(batch: HubBatch): void };
type EachSubscriber = Subscriber & { deliverEvent(event: HubEvent): void };

interface ChannelSubscribers {
  batched: Set<BatchSubscriber>;
  each: Set<EachSubscriber>;
  size: number;
}

/**
 * Work over many streams under way, done a step at a time: a batch's fan-out to its channel's
 * streams, or a frame every stream of a set is sent (`sliced`). `step` does the next item's part
 * and returns false when none is left; `finished` runs once after that.
 */
interface SlicedJob {
  step: () => boolean;
  finished?: () => void;
  /** Steps per round-robin turn: a channel's events get `deliveriesPerChannelTurn`, other work (`sliced`) a sixteenth of it. */
  turn: number;
}

/**
 * How many times longer a turn of events' delivery is than a turn of other per-stream work
 * (`sliced`: presence deltas, heartbeats, ending expired streams). Events are what streams are
 * for: a presence delta to ten thousand streams (a write each, ~150 ms of work) queued when an
 * event arrives would otherwise delay that event's fan-out by as much as its own length
 * (bench latency: the connect phase's last delta in the window gave p99.9 of 160–250 ms against
 * 40 without it). Other work still advances every round, so it is never starved.
 */
const EVENTS_FIRST = 16;

export interface HubOptions {
  /**
   * Longest stretch (ms) one flush's fan-out may hold the event loop before the rest continues
   * on a later turn (default 8): a room of ten thousand streams must not stall every other room,
   * the consumer's heartbeats, or new connections.
   */
  sliceMs?: number;
  /**
   * Deliveries to one channel before the turn moves on to the next channel's (round robin;
   * default 64: a big room's turn is ~1–2 ms of writes, so small rooms' events interleave often;
   * bench big-room: the small rooms' p99 beside a 10,000-stream room 25–35 ms against 28–44 with
   * 256, the big room's deliveries per CPU-second the same within noise).
   */
  deliveriesPerChannelTurn?: number;
  /** The clock (tests). */
  now?: () => number;
  /**
   * Told of an error thrown by one delivery (a subscriber's or a `sliced` job's): that item is
   * skipped, the rest of the work goes on. Default: none (the error is dropped).
   */
  onError?: (error: unknown) => void;
}

/** A job's step over `remaining`: `each` of the next item, false once there is none. */
function stepsOver<T>(remaining: Iterator<T>, each: (item: T) => void): () => boolean {
  return () => {
    const next = remaining.next();
    if (next.done === true) return false;
    each(next.value);
    return true;
  };
}

/** The clock is read once per this many deliveries: reading it costs more than a delivery. */
const CLOCK_STRIDE = 32;

export class Hub {
  readonly #channels = new Map<string, ChannelSubscribers>();
  #batches = new Map<string, HubBatch>();
  /** Fan-outs and other per-stream work under way, served round robin within one budget per turn. */
  readonly #jobs: SlicedJob[] = [];
  /**
   * Per-event deliveries to streams of several channels, in publish order: one job among the
   * others (`#laneQueued` while it is), working through its events head first.
   */
  readonly #lane: Array<{ event: HubEvent; remaining: Iterator<EachSubscriber> }> = [];
  #laneQueued = false;
  /** Per channel with a fan-out under way: its later batches, which wait so each stream gets its batches in order. */
  readonly #waiting = new Map<string, HubBatch[]>();
  readonly #sliceMs: number;
  readonly #perChannelTurn: number;
  readonly #now: () => number;
  #continueScheduled = false;
  /** Whether the slice under way is a continuation (runs in a check phase of the event loop). */
  #inContinuation = false;
  #settledWaiters: Array<() => void> = [];
  readonly #onError: (error: unknown) => void;

  constructor(options: HubOptions = {}) {
    this.#sliceMs = options.sliceMs ?? 8;
    this.#perChannelTurn = options.deliveriesPerChannelTurn ?? 64;
    this.#now = options.now ?? (() => performance.now());
    this.#onError = options.onError ?? (() => undefined);
  }

  /** Returns the function that removes this subscription (idempotent). */
  subscribe(channel: string, subscriber: Subscriber): () => void {
    let subscribers = this.#channels.get(channel);
    if (subscribers === undefined) {
      subscribers = { batched: new Set(), each: new Set(), size: 0 };
      this.#channels.set(channel, subscribers);
    }
    const set: Set<Subscriber> = 'deliverBatch' in subscriber ? subscribers.batched : subscribers.each;
    if (!set.has(subscriber)) {
      set.add(subscriber);
      subscribers.size += 1;
    }
    return () => this.#unsubscribe(channel, subscriber);
  }

  #unsubscribe(channel: string, subscriber: Subscriber): void {
    const subscribers = this.#channels.get(channel);
    if (subscribers === undefined) return;
    const set: Set<Subscriber> = 'deliverBatch' in subscriber ? subscribers.batched : subscribers.each;
    if (set.delete(subscriber)) subscribers.size -= 1;
    if (subscribers.size === 0) this.#channels.delete(channel);
  }

  hasSubscribers(channel: string): boolean {
    return this.#channels.has(channel);
  }

  /**
   * Queues `event` for its channel's subscribers until the next `flush()`: the batched ones get
   * the channel's events of the flush as one batch, the per-event ones (streams of several
   * channels) each event; returns how many receive it. Nothing is queued for a channel nobody
   * watches.
   *
   * Per-event subscribers are served in one lane, strictly in publish order, whatever the
   * channel: their position holds one offset per partition, and an event of one channel arriving
   * after a later event of another on the same partition would be taken for one already
   * delivered. The lane takes its turns in the hub's slices like a fan-out, so ten thousand
   * such streams on a room do not hold the event loop for the whole room either.
   */
  publish(event: HubEvent): number {
    const subscribers = this.#channels.get(event.channel);
    if (subscribers === undefined) return 0;
    if (subscribers.each.size > 0) {
      this.#lane.push({ event, remaining: subscribers.each.values() });
      if (!this.#laneQueued) {
        this.#laneQueued = true;
        this.#jobs.push({ step: this.#laneStep, finished: () => (this.#laneQueued = false), turn: this.#perChannelTurn });
      }
    }
    if (subscribers.batched.size > 0) {
      let batch = this.#batches.get(event.channel);
      if (batch === undefined) {
        batch = new HubBatch(event.channel);
        this.#batches.set(event.channel, batch);
      }
      batch.events.push(event);
    }
    return subscribers.size;
  }

  /**
   * Hands every queued batch to the subscribers of its channel: in a slice of at most `sliceMs`
   * now (or, when a slice is already due on a later turn, in that one), the rest on later turns,
   * channels taking turns, so one big room never holds the event loop for long. Each stream
   * still gets its channel's batches in order (a channel's next batch waits for its previous
   * fan-out to finish).
   */
  flush(): void {
    if (this.#batches.size > 0) {
      const batches = this.#batches;
      this.#batches = new Map();
      for (const batch of batches.values()) {
        const waiting = this.#waiting.get(batch.channel);
        if (waiting !== undefined) waiting.push(batch);
        else if (this.#startFanOut(batch)) this.#waiting.set(batch.channel, []);
      }
    }
    // The per-event lane may have work without any batch (only streams of several channels).
    if (this.#jobs.length > 0) this.#fanOut();
  }

  /**
   * Runs `each` for every item of `items` within the hub's budget: in this turn as far as the
   * slice allows, the rest on later turns, round robin with the fan-outs (one budget for all,
   * events first: each turn of this work is 1/EVENTS_FIRST of a channel's).
   * For per-stream work that is not a channel's events (presence deltas, heartbeats): a room of
   * ten thousand streams must not hold the event loop for its whole length, whatever is sent.
   * `items` is iterated lazily: a Set's members removed meanwhile are skipped, added ones may
   * be reached (pass a copy when later members must not be). An error thrown by `each` goes to
   * `onError` and that item is skipped. `done` runs once every item has been seen: a periodic
   * caller starts its next pass only then, so passes never pile up behind a long fan-out.
   */
  sliced<T>(items: Iterable<T>, each: (item: T) => void, done?: () => void): void {
    const job: SlicedJob = { step: stepsOver(items[Symbol.iterator](), each), turn: Math.max(1, Math.floor(this.#perChannelTurn / EVENTS_FIRST)) };
    if (done !== undefined) job.finished = done;
    this.#jobs.push(job);
    this.#fanOut();
  }

  /** False when nobody watches the channel any more: nothing to do. */
  #startFanOut(batch: HubBatch): boolean {
    const subscribers = this.#channels.get(batch.channel);
    if (subscribers === undefined || subscribers.batched.size === 0) return false;
    // A live iterator over the channel's set: a stream that leaves is skipped, one that joins
    // meanwhile may still get this batch, which its subscription filters by offset.
    this.#jobs.push({
      step: stepsOver(subscribers.batched.values(), (subscriber) => subscriber.deliverBatch(batch)),
      finished: () => this.#finish(batch.channel),
      turn: this.#perChannelTurn,
    });
    return true;
  }

  /** The lane's next delivery: the head event's next stream, else the next event's; false once all are done. */
  readonly #laneStep = (): boolean => {
    while (this.#lane.length > 0) {
      const head = this.#lane[0]!;
      const next = head.remaining.next();
      if (next.done !== true) {
        next.value.deliverEvent(head.event);
        return true;
      }
      this.#lane.shift();
    }
    return false;
  };

  #fanOut(): void {
    if (this.#continueScheduled) return; // a slice is due on a later turn: work joins the queue
    const deadline = this.#now() + this.#sliceMs;
    let delivered = 0;
    while (this.#jobs.length > 0) {
      const job = this.#jobs.shift()!;
      let finished = false;
      for (let turn = 0; turn < job.turn; turn++) {
        let more: boolean;
        try {
          more = job.step();
        } catch (error) {
          // One stream's failure is that stream's: the others still get theirs, the queue goes on.
          this.#onError(error);
          more = true;
        }
        if (!more) {
          finished = true;
          break;
        }
        delivered += 1;
      }
      if (finished) job.finished?.();
      else this.#jobs.push(job);
      if (delivered >= CLOCK_STRIDE && this.#jobs.length > 0 && this.#now() >= deadline) {
        this.#scheduleContinue();
        return;
      }
    }
    const waiters = this.#settledWaiters;
    this.#settledWaiters = [];
    for (const resolve of waiters) resolve();
  }

  /** The channel's fan-out is done: its next waiting batch starts (behind the others under way). */
  #finish(channel: string): void {
    const waiting = this.#waiting.get(channel);
    while (waiting !== undefined && waiting.length > 0) {
      if (this.#startFanOut(waiting.shift()!)) return;
    }
    this.#waiting.delete(channel);
  }

  #scheduleContinue(): void {
    if (this.#continueScheduled) return;
    this.#continueScheduled = true;
    // One slice per turn of the event loop, with its timers and I/O (sockets draining, new
    // records, new connections) in between. A continuation runs in a check phase (setImmediate);
    // scheduled from there, the next one comes a turn later. A slice that ran in the I/O or
    // timers phase (a flush, a heartbeat tick) would be followed by its continuation in the
    // same turn's check phase, back to back (bench big-room: 20–30 ms stretches for 8 ms
    // slices): hop once more.
    if (this.#inContinuation) setImmediate(this.#continue);
    else setImmediate(() => setImmediate(this.#continue));
  }

  readonly #continue = (): void => {
    this.#continueScheduled = false;
    this.#inContinuation = true;
    try {
      this.#fanOut();
    } finally {
      this.#inContinuation = false;
    }
  };

  /** Resolves once every batch flushed and every `sliced` job queued so far is done (tests). */
  settled(): Promise<void> {
    if (this.#jobs.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#settledWaiters.push(resolve));
  }

  /** Whether a fan-out or a `sliced` job is under way (continuing on a later turn). */
  get busy(): boolean {
    return this.#jobs.length > 0;
  }

  get channelCount(): number {
    return this.#channels.size;
  }

  subscriberCount(channel: string): number {
    return this.#channels.get(channel)?.size ?? 0;
  }
}
