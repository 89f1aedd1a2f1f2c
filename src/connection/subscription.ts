import type { RangeReader, RangeResult } from '../bus/types.ts';
import { ArrayRecordPage } from '../bus/record-page.ts';
import { ReplaySlots, ReplayTurns, type ReplayTicket } from './replay-turns.ts';
import { positionKey, type CursorCodec, type CursorEntry, type TopicSlot } from './cursor.ts';
import { channelKey } from '../channels/records.ts';
import type { ChannelKind } from '../channels/kind.ts';
import { partitionForKey } from '../bus/partitioner.ts';
import type { Dispatcher } from '../dispatch/dispatcher.ts';
import type { RecentEvents, StoredEvent } from '../hub/recent-events.ts';
import type { Hub, HubBatch, HubEvent, Subscriber } from '../hub/hub.ts';
import { bodyFrame, positionFrame, withId } from './sse-frame.ts';

/**
 * One stream's subscription: where it starts (live, a resume cursor, or a point in time),
 * the replay of what it missed (from memory, else from Kafka, page after page on the same
 * connection), and the hand-over to live events without a gap or a duplicate.
 *
 * The hand-over works because the dispatcher is synchronous: subscribing to the hub and
 * reading the replica's position happen in the same turn, so every event at or past that
 * position arrives live, and everything before it comes from the replay. Live events that
 * arrive while an asynchronous replay runs wait in a bounded queue, and anything already
 * delivered (by offset, per partition) is skipped: a client resuming on a replica that is
 * behind the one it left sees no event twice. When the queue would overflow (a long replay
 * while the room is busy), the queued events are dropped instead of the client: once the
 * replay reaches the position taken at the start, it takes the replica's position again (in
 * one turn with emptying the queue, as at the start) and replays the dropped events too, from
 * memory or Kafka, before going live.
 */

/** A channel as a request names it: its kind's name (`room`, `ticker`, a declared kind) and its own. */
export interface ChannelRef {
  kind: string;
  name: string;
}

export type StartFrom = { kind: 'live' } | { kind: 'cursor'; id: string } | { kind: 'time'; timestamp: number };

/**
 * Why a stream's start position could not be honoured (sent as `event: reset`): `invalid-id`
 * not an id we signed; `expired` older than Kafka's retention (or the history, on the embedded
 * bus); `unknown-position` the id has no position for one of the stream's channels;
 * `beyond-end` past the end of the partition in Kafka itself (topic recreated, embedded bus
 * restarted, an offset that never existed); `since-unavailable` `?since=` reaches back further
 * than history and Kafka.
 */
/** Why a stream's requested position cannot be honoured: the `reason` of its `reset` event (README, "Resume"). */
export const RESET_REASONS = ['invalid-id', 'expired', 'unknown-position', 'beyond-end', 'since-unavailable', 'unavailable'] as const;
export type ResetReason = (typeof RESET_REASONS)[number];

/**
 * Why a stream ended, for its end-of-stream log line: the client went away, it fell too far
 * behind (`overflow`: its socket buffer; `queue-full`: live events held during its replay), the
 * replica drains, the token expired, a resume page was sent (the client reconnects for the
 * rest), the stream failed to start.
 */
export type StreamEndReason = 'client-left' | 'overflow' | 'drain' | 'auth-expired' | 'kafka-unavailable' | 'start-failed';

export interface SubscriptionSink {
  /**
   * Writes `frame`, which holds `events` SSE events. `conflateKey` is set on events of a conflating kind (tickers), which
   * a client that is behind may skip for a newer one: then only `latest` (the frame of the last
   * event in `frame`, when it holds several) needs keeping.
   */
  write(frame: Buffer, events?: number, conflateKey?: string, latest?: Buffer): void;
  /** Ends the stream (after `lastFrame`); the client reconnects and resumes from its last id. */
  end(lastFrame?: Buffer, reason?: StreamEndReason): void;
  /** Resolves once the client has taken what was written: a replay goes at the client's pace. */
  whenWritable?(): Promise<void>;
  /** Whether the client has not taken what was written so far (`whenWritable` would wait). */
  backedUp?(): boolean;
}

/**
 * How many replayed events (or Kafka records of a page) go between two checks of the client's
 * pace and of the replay's turn; their frames go out in one write (one syscall per event was the
 * biggest cost of a replay: bench deep-resume profile).
 */
const REPLAY_STRIDE = 32;
/**
 * Longest stretch (ms) the replica's replays, all together, write before giving the event loop
 * back: a client that keeps up never makes `whenWritable` wait, and ten deep replays written
 * back to back held live streams up for seconds (bench deep-resume).
 */
export const REPLAY_SLICE_MS = 4;
/** The turns of streams whose context brings none (tests): one process-wide budget, every turn. */
const defaultReplayTurns = new ReplayTurns(REPLAY_SLICE_MS);

export interface SubscriptionContext {
  hub: Hub;
  history: RecentEvents;
  dispatcher: Dispatcher;
  codec: CursorCodec;
  rangeReader: RangeReader | undefined;
  /** Most events of one page of a replay from Kafka (pages follow one another on the same stream). */
  maxReplayEvents: number;
  /** Most live events held while a replay runs; past it they are dropped and replayed after (from memory or Kafka). */
  maxPendingEvents: number;
  /** A replay starting further back than this tells the client `lag`, then `live`. */
  lagThresholdMs: number;
  /** How many replays of the replica may read Kafka past their first page at once (REPLAY_MAX_CONCURRENT); default: no limit. */
  replaySlots?: ReplaySlots;
  /**
   * The replica's replays' turns on the event loop, shared by all its streams (slices of
   * REPLAY_SLICE_MS, REPLAY_SHARE_PERCENT of the loop at most); default: one process-wide set of
   * turns with the whole share (tests).
   */
  replayTurns?: ReplayTurns;
  now?: () => number;
}

/**
 * One channel followed on one partition. A channel lives on one partition, but until this
 * replica has seen where (a declared kind written by a partitioner other than murmur2), it is
 * followed on every partition of its topic: one track each, narrowed when a resume id says.
 */
interface Track {
  /** Unique per track: the channel key and the partition. */
  id: string;
  /** The channel key (hub, history). */
  key: string;
  kind: ChannelKind;
  name: string;
  slot: TopicSlot;
  partition: number;
  /** The channel's partition is not known: this is one of several tracks of the channel. */
  guessed: boolean;
}

export interface SubscriptionOutcome {
  resumedFrom: 'live' | 'memory' | 'kafka';
  resets: ResetReason[];
  replayed: number;
}


/**
 * The partitions a stream of one channel reads: the one its records were seen on, or Kafka's
 * default partitioner's for its key (`murmur2` kinds); else (`any` kinds before the channel's
 * first record) every partition of its topic, each a `guessed` track until one shows records.
 */
function partitionsRead(dispatcher: Dispatcher, kind: ChannelKind, key: string, name: string): { partitions: number[]; guessed: boolean } {
  const count = Math.max(1, dispatcher.partitionCount(kind.slot));
  const learned = dispatcher.partitionOf(key);
  if (learned !== undefined) return { partitions: [learned], guessed: false };
  if (kind.partitioning === 'murmur2') return { partitions: [partitionForKey(name, count)], guessed: false };
  return { partitions: Array.from({ length: count }, (_, partition) => partition), guessed: count > 1 };
}

export class Subscription {
  readonly #context: SubscriptionContext;
  #tracks: Track[];
  /** Slots of kinds whose events a client that is behind may skip for newer ones (`slowClients: conflate`). */
  #conflating: Set<TopicSlot> | undefined;
  readonly #sink: SubscriptionSink;
  readonly #cursor = new Map<string, CursorEntry>();
  /** Live events held while the replay runs; null once live. */
  #pending: HubEvent[] | null = [];
  /** The queue overflowed during the replay: live events are dropped until the replay catches up with them. */
  #overflowed = false;
  /** The cursor entry when the stream reads one partition: live batches then go out as shared. */
  #single: CursorEntry | undefined;
  #unsubscribes: Array<() => void> = [];
  #closed = false;
  /** Reasons told so far; made at the first (most streams have none: an idle stream holds no empty set). */
  #resets: Set<ResetReason> | undefined;
  /** Decided at the first replayed event: whether the replay is framed by `lag` and `live`. */
  #lagging: boolean | null = null;
  /** This stream's place among the replica's deep replays (`replaySlots`), kept for its life: its age. */
  #ticket: ReplayTicket | undefined;
  /** Whether it holds one of the deep replays' slots, or waits for one. */
  #slot: 'none' | 'waiting' | 'held' = 'none';
  /** The partition (topic:partition) its deep replay reads: what its slot is for. */
  #slotPartition = '';
  /** The replica's replays' turns on the event loop (`SubscriptionContext.replayTurns`). */
  readonly #turns: ReplayTurns;

  constructor(context: SubscriptionContext, channels: readonly ChannelRef[], sink: SubscriptionSink) {
    this.#context = context;
    this.#turns = context.replayTurns ?? defaultReplayTurns;
    this.#sink = sink;
    const { dispatcher } = context;
    // An exact-size copy (`slice`): the tracks live as long as the stream, and flatMap's array keeps room to grow.
    this.#tracks = channels.flatMap(({ kind: kindName, name }) => {
      const kind = dispatcher.registry.get(kindName);
      const { slot } = kind;
      if (kind.conflate) (this.#conflating ??= new Set()).add(slot);
      const key = channelKey(kind.name, name);
      const { partitions, guessed } = partitionsRead(dispatcher, kind, key, name);
      return partitions.map((partition): Track => ({ id: `${key}|${partition}`, key, kind, name, slot, partition, guessed }));
    }).slice();
  }

  /**
   * How many Kafka positions (topic, partition) a stream of `channels` follows, which is how
   * many entries its ids hold: what `tooManyPositions` (src/connection/cursor.ts) is asked
   * about before the stream opens. `resumingFrom`: the entries of the id the stream resumes
   * from, if any (a replica that has not seen a channel's records yet follows it on every
   * partition; the id says which one). Channels of unknown kinds must have been refused before.
   */
  static positionsFollowed(dispatcher: Dispatcher, channels: readonly ChannelRef[], resumingFrom?: readonly CursorEntry[]): number {
    const inId = resumingFrom === undefined ? undefined : new Set(resumingFrom.map((entry) => positionKey(entry.slot, entry.partition)));
    const seen = new Set<string>();
    for (const { kind: kindName, name } of channels) {
      const kind = dispatcher.registry.get(kindName);
      const { partitions, guessed } = partitionsRead(dispatcher, kind, channelKey(kind.name, name), name);
      let keys = partitions.map((partition) => positionKey(kind.slot, partition));
      // Resuming, a channel followed on every partition keeps those the id holds, when it holds
      // any (as `#startOffsets` does): what this replica has not learnt yet, the id has.
      if (guessed && inId !== undefined && keys.some((key) => inId.has(key))) keys = keys.filter((key) => inId.has(key));
      for (const key of keys) seen.add(key);
    }
    return seen.size;
  }

  get closed(): boolean {
    return this.#closed;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#releaseSlot();
    for (const unsubscribe of this.#unsubscribes) unsubscribe();
    this.#unsubscribes = [];
    this.#pending = null;
  }

  /**
   * Sends what the stream missed since `from`, then hands over to live events. Resolves once
   * live (or closed); a Kafka read that fails ends the stream, and the client resumes from the
   * id it last received.
   */
  async start(from: StartFrom): Promise<SubscriptionOutcome> {
    const { hub } = this.#context;
    const channelKeys = [...new Set(this.#tracks.map((track) => track.key))];
    const subscriber: Subscriber =
      channelKeys.length === 1
        ? { deliverBatch: (batch: HubBatch) => this.#onLive(batch.events, batch) }
        : { deliverEvent: (event: HubEvent) => this.#onLive([event], undefined) };
    this.#unsubscribes = channelKeys.map((key) => hub.subscribe(key, subscriber));
    // Same turn as subscribing: everything from here on arrives live.
    let targets = this.#positionsNow();
    const outcome: SubscriptionOutcome = { resumedFrom: 'live', resets: [], replayed: 0 };

    const starts = await this.#startOffsets(from, targets);
    if (this.#closed) return this.#outcome(outcome);

    // Channels sharing a partition share its cursor entry: it starts at the earliest of them.
    for (const track of this.#tracks) {
      const start = starts.get(track.id) ?? targets.get(track.id);
      if (start === undefined) continue;
      const key = positionKey(track.slot, track.partition);
      const entry = this.#cursor.get(key);
      if (entry === undefined || start < entry.next) this.#setEntry(key, { slot: track.slot, partition: track.partition, next: start });
    }
    for (const reason of this.#resets ?? []) this.#sink.write(bodyFrame('reset', JSON.stringify({ reason })));

    let froms = starts;
    for (;;) {
      const read = await this.#replayRound(froms, targets, outcome);
      if (this.#closed) return this.#outcome(outcome);
      if (!read) {
        // Kafka could not be read now: the client reconnects and continues from its last id.
        if (this.#cursor.size > 0) this.#sink.write(positionFrame(this.#cursorId(true)));
        this.#sink.end(undefined, 'kafka-unavailable');
        this.close();
        return this.#outcome(outcome);
      }
      if (!this.#overflowed) break;
      // Live events were dropped meanwhile: replay them as well, up to where the replica is now.
      // Emptying the queue and taking the position in one turn keeps the hand-over exact.
      this.#overflowed = false;
      this.#pending = [];
      targets = this.#positionsNow();
      froms = new Map();
      for (const track of this.#tracks) {
        const next = this.#cursor.get(positionKey(track.slot, track.partition))?.next;
        if (next !== undefined) froms.set(track.id, next);
      }
    }
    if (this.#cursor.size > 0) this.#sink.write(positionFrame(this.#cursorId(true)));
    const pending = this.#pending ?? [];
    this.#pending = null;
    for (const event of pending) this.#emit(event);
    if (this.#lagging === true) this.#sink.write(bodyFrame('live', '{}'));
    return this.#outcome(outcome);
  }

  #outcome(outcome: SubscriptionOutcome): SubscriptionOutcome {
    outcome.resets = this.#resets === undefined ? [] : [...this.#resets];
    return outcome;
  }

  /** The replica's position in each channel's partition now: from there on, events arrive live. */
  #positionsNow(): Map<string, number | undefined> {
    const { dispatcher } = this.#context;
    return new Map(this.#tracks.map((track) => [track.id, dispatcher.nextOffset(track.slot, track.partition)]));
  }

  /** Notes a reset to be told with the stream's start (`start` writes them). */
  #noteReset(reason: ResetReason): void {
    (this.#resets ??= new Set()).add(reason);
  }

  /** Tells the client (once per reason) that part of what it asked for cannot be sent. */
  #reset(reason: ResetReason): void {
    if (this.#resets?.has(reason)) return;
    this.#noteReset(reason);
    this.#sink.write(bodyFrame('reset', JSON.stringify({ reason })));
  }

  async #startOffsets(from: StartFrom, liveFrom: Map<string, number | undefined>): Promise<Map<string, number>> {
    const starts = new Map<string, number>();
    if (from.kind === 'cursor') {
      const entries = this.#context.codec.decode(from.id);
      if (entries === null) {
        this.#noteReset('invalid-id');
        return starts;
      }
      const byPosition = new Map(entries.map((entry) => [positionKey(entry.slot, entry.partition), entry.next]));
      const resumable = new Set<string>();
      for (const track of this.#tracks) {
        const next = byPosition.get(positionKey(track.slot, track.partition));
        if (next === undefined) continue;
        starts.set(track.id, next);
        resumable.add(track.key);
      }
      // A channel followed on every partition lives on one of those the id holds: the others
      // are dropped. A channel the id says nothing of cannot be resumed.
      this.#tracks = this.#tracks.filter((track) => starts.has(track.id) || !(track.guessed && resumable.has(track.key)));
      if (this.#tracks.some((track) => !starts.has(track.id))) this.#noteReset('unknown-position');
      await this.#dropPositionsPastTheEnd(starts, liveFrom);
    } else if (from.kind === 'time') {
      const { history, rangeReader, dispatcher } = this.#context;
      for (const track of this.#tracks) {
        const current = liveFrom.get(track.id);
        let offset = current === undefined ? null : history.offsetAtTime(track.key, track.slot, track.partition, from.timestamp, current);
        if (offset === null && rangeReader !== undefined) {
          offset = await rangeReader
            .offsetForTime(dispatcher.topicOf(track.slot), track.partition, from.timestamp)
            .catch(() => null);
        }
        if (offset === null) this.#noteReset('since-unavailable');
        else starts.set(track.id, offset);
      }
    }
    return starts;
  }

  /**
   * A position ahead of this replica is either one its consumer has not reached yet (it is
   * behind the replica the client left: live events are held back until past it) or one that
   * does not exist: past the partition's end in Kafka itself, or, on the embedded bus, past
   * anything it ever delivered. Those start live, after `reset`, instead of waiting for
   * offsets that may never come.
   */
  async #dropPositionsPastTheEnd(starts: Map<string, number>, liveFrom: Map<string, number | undefined>): Promise<void> {
    const { rangeReader, dispatcher } = this.#context;
    const ends = new Map<string, Promise<number | null>>();
    for (const track of this.#tracks) {
      const start = starts.get(track.id);
      const current = liveFrom.get(track.id);
      if (start === undefined || current === undefined || start <= current) continue;
      let beyond: boolean;
      if (rangeReader === undefined) {
        // The embedded bus hands every record to this dispatcher: nothing past its position was ever sent.
        beyond = true;
      } else if (rangeReader.endOffset === undefined) {
        beyond = false;
      } else {
        const key = positionKey(track.slot, track.partition);
        let end = ends.get(key);
        if (end === undefined) {
          // Kafka not answering: assume the replica is behind, as it would be then.
          end = rangeReader.endOffset(dispatcher.topicOf(track.slot), track.partition, start).catch(() => null);
          ends.set(key, end);
        }
        const high = await end;
        beyond = high !== null && start > high;
      }
      if (beyond) {
        starts.delete(track.id);
        this.#noteReset('beyond-end');
      }
    }
  }

  /**
   * Replays, partition by partition, each channel's events from `froms` up to `targets`.
   * Returns false when Kafka could not be read (the stream should end; its id keeps what was sent).
   */
  async #replayRound(froms: Map<string, number>, targets: Map<string, number | undefined>, outcome: SubscriptionOutcome): Promise<boolean> {
    const groups = new Map<string, Track[]>();
    for (const track of this.#tracks) {
      const from = froms.get(track.id);
      const to = targets.get(track.id);
      if (from === undefined || to === undefined || from >= to) continue;
      const key = positionKey(track.slot, track.partition);
      const group = groups.get(key);
      if (group === undefined) groups.set(key, [track]);
      else group.push(track);
    }
    for (const group of groups.values()) {
      const read = await this.#replayPartition(group, froms, targets.get(group[0]!.id)!, outcome);
      if (!read || this.#closed) return read;
    }
    return true;
  }

  /** The events of `group` (channels of one partition) from each one's start up to `to`, in offset order. */
  async #replayPartition(group: Track[], froms: Map<string, number>, to: number, outcome: SubscriptionOutcome): Promise<boolean> {
    const { history, rangeReader, dispatcher, maxReplayEvents } = this.#context;
    const { slot, partition } = group[0]!;
    // One track per channel in a partition: the channel's start there.
    const starts = new Map(group.map((track) => [track.key, froms.get(track.id) ?? Infinity]));
    const startOf = (channel: string) => starts.get(channel) ?? Infinity;
    const remembered: StoredEvent[] = [];
    let inMemory = true;
    for (const channel of group) {
      const events = history.range(channel.key, slot, partition, startOf(channel.key), to);
      if (events === null) {
        inMemory = false;
        break;
      }
      remembered.push(...events);
    }
    if (inMemory) {
      if (outcome.resumedFrom === 'live') outcome.resumedFrom = 'memory';
      if (group.length > 1) remembered.sort((a, b) => a.offset - b.offset);
      if (await this.#emitPaced(remembered.length, (index) => remembered[index]!, outcome)) this.#advance(slot, partition, to);
      return true;
    }
    if (rangeReader === undefined) {
      // The gap cannot be filled: the client is told to reload, and continues from here.
      this.#reset('expired');
      this.#advance(slot, partition, to);
      return true;
    }
    outcome.resumedFrom = 'kafka';
    const topic = dispatcher.topicOf(slot);
    const names = group.map((channel) => channel.name);
    const keys = new Set(group.map((channel) => channel.key));
    let cursor = Math.min(...group.map((channel) => startOf(channel.key)));
    let pages = 0;
    try {
      while (cursor < to) {
        // Past its first page a replay is deep: it waits for one of the replica's slots.
        if (pages > 0 && !(await this.#holdSlot(`${topic}:${partition}`))) return true;
        pages += 1;
        let page: RangeResult;
        try {
          page = await rangeReader.read(topic, partition, cursor, to, names.length === 1 ? names[0]! : names, maxReplayEvents, true);
        } catch {
          return false;
        }
        if (this.#closed) return true;
        if (page.expired) {
          this.#reset('expired');
          this.#advance(slot, partition, to);
          return true;
        }
        // Records are made one at a time from the page as their turn comes (src/bus/record-page.ts).
        const records = page.page ?? new ArrayRecordPage(page.records);
        const eventAt = (index: number): StoredEvent | null => {
          const stored = dispatcher.toStored(records.record(index));
          return stored !== null && keys.has(stored.channel) && stored.offset >= startOf(stored.channel) ? stored : null;
        };
        if (!(await this.#emitPaced(records.length, eventAt, outcome))) return true;
        const next = page.complete ? to : (page.next ?? (records.length === 0 ? cursor : records.offsetAt(records.length - 1) + 1));
        // A page that moved nothing forward would be asked for again and again.
        if (next <= cursor) return false;
        cursor = next;
        this.#advance(slot, partition, next);
        // The position moves on even through pages without an event of the stream: a reconnect continues from there.
        if (cursor < to) this.#sink.write(positionFrame(this.#cursorId(true)));
      }
    } finally {
      this.#releaseSlot();
    }
    return true;
  }

  /**
   * Holds one of the replica's deep-replay slots (REPLAY_MAX_CONCURRENT) for `partition`
   * (topic:partition), waiting for it behind older replays if need be. False when the stream
   * closed meanwhile.
   */
  async #holdSlot(partition: string): Promise<boolean> {
    const slots = this.#context.replaySlots;
    if (slots === undefined || this.#slot === 'held') return !this.#closed;
    this.#ticket ??= slots.ticket();
    this.#slot = 'waiting';
    this.#slotPartition = partition;
    const held = await slots.acquire(this.#ticket, partition);
    if (!held) return false;
    this.#slot = 'held';
    if (this.#closed) {
      this.#releaseSlot();
      return false;
    }
    return true;
  }

  /** Gives the stream's slot back, or stops waiting for one. */
  #releaseSlot(): void {
    const slots = this.#context.replaySlots;
    const state = this.#slot;
    this.#slot = 'none';
    if (slots === undefined || this.#ticket === undefined) return;
    if (state === 'held') slots.release(this.#slotPartition);
    else if (state === 'waiting') slots.cancel(this.#ticket);
  }

  /**
   * Writes replayed events at the client's pace, in turns with the replica's other replays
   * (`replayTurns`: together at most `REPLAY_SLICE_MS` per turn of the event loop, and their share of it), a stride's
   * events in one write. `eventAt(index)` (0 ≤ index < count) makes an item's event (null:
   * none), within the turn: decoding a page of Kafka records is replay work too. False when the
   * stream closed meanwhile.
   */
  async #emitPaced(count: number, eventAt: (index: number) => StoredEvent | null, outcome: SubscriptionOutcome): Promise<boolean> {
    let frames: Buffer[] = [];
    let key: string | undefined;
    const flush = (): void => {
      if (frames.length === 0) return;
      this.#sink.write(frames.length === 1 ? frames[0]! : Buffer.concat(frames), frames.length, key, frames.at(-1));
      frames = [];
    };
    await this.#turns.enter();
    let holding = true;
    try {
      for (let index = 0; index < count; index++) {
        if (this.#closed) return false;
        const event = eventAt(index);
        if (event !== null) {
          if (this.#lagging === null) {
            const behindMs = (this.#context.now?.() ?? Date.now()) - event.timestamp;
            this.#lagging = behindMs > this.#context.lagThresholdMs;
            if (this.#lagging) this.#sink.write(bodyFrame('lag', JSON.stringify({ behindMs })));
          }
          const frame = this.#frameOf(event);
          if (frame !== null) {
            // A write holds events of one conflation key (ticker prices of one symbol), as live batches do.
            const eventKey = this.#conflateKey(event);
            if (eventKey !== key) flush();
            key = eventKey;
            frames.push(frame);
          }
          outcome.replayed += 1;
        }
        if (index % REPLAY_STRIDE === REPLAY_STRIDE - 1) {
          flush();
          // Out of turn while waiting for the client, and the next waiting replay goes first.
          if (this.#sink.whenWritable !== undefined || this.#turns.waiting > 0 || this.#turns.used) {
            this.#turns.leave();
            holding = false;
            if (this.#sink.whenWritable !== undefined) {
              // A client that does not take its bytes does not hold a deep replay's slot meanwhile.
              const givenUp = this.#slot === 'held' && this.#sink.backedUp?.() === true;
              const partition = this.#slotPartition;
              if (givenUp) this.#releaseSlot();
              await this.#sink.whenWritable();
              if (this.#closed || (givenUp && !(await this.#holdSlot(partition)))) return false;
            }
            if (this.#closed) return false;
            await this.#turns.enter();
            holding = true;
          }
        }
      }
      flush();
    } finally {
      if (holding) this.#turns.leave();
    }
    return !this.#closed;
  }

  #onLive(events: readonly HubEvent[], batch: HubBatch | undefined): void {
    if (this.#pending === null) {
      if (batch !== undefined) this.#deliverBatch(batch);
      else for (const event of events) this.#emit(event);
      return;
    }
    // Dropped: the replay goes on past them (they are in the history and in Kafka).
    if (this.#overflowed) return;
    if (this.#pending.length + events.length > this.#context.maxPendingEvents) {
      this.#pending = [];
      this.#overflowed = true;
      return;
    }
    for (const event of events) this.#pending.push(event);
  }

  #deliverBatch(batch: HubBatch): void {
    const entry = this.#single;
    // A stream whose cursor is this one partition shows exactly the shared frames' ids: the
    // batch goes out as it is, one write, nothing built for this stream alone.
    if (entry !== undefined && batch.first.offset >= entry.next) {
      const { last } = batch;
      entry.next = last.offset + 1;
      this.#sink.write(batch.frame, batch.events.length, this.#conflateKey(last), last.frame);
      return;
    }
    for (const event of batch.events) this.#emit(event);
  }

  #emit(event: HubEvent | StoredEvent): void {
    const frame = this.#frameOf(event);
    if (frame !== null) this.#sink.write(frame, 1, this.#conflateKey(event));
  }

  /** The event's frame for this stream, its position moved past it; null when it was sent already. */
  #frameOf(event: HubEvent | StoredEvent): Buffer | null {
    const { slot, partition, offset } = event;
    const entry = this.#cursor.get(positionKey(slot, partition));
    if (entry !== undefined && offset < entry.next) return null;
    this.#advance(slot, partition, offset + 1);
    // With one partition the id is the one every stream shows: the event's shared frame.
    return this.#single !== undefined && 'frame' in event ? event.frame : withId(this.#cursorId(this.#single === undefined), event.body);
  }

  /** The key under which a client that is behind may skip this event for a newer one; undefined: never skipped. */
  #conflateKey(event: { slot: TopicSlot; channel: string }): string | undefined {
    return this.#conflating?.has(event.slot) === true ? event.channel : undefined;
  }

  /** Moves the stream's position in a partition forward (never back). */
  #advance(slot: TopicSlot, partition: number, next: number): void {
    const key = positionKey(slot, partition);
    const entry = this.#cursor.get(key);
    if (entry === undefined) this.#setEntry(key, { slot, partition, next });
    else if (next > entry.next) entry.next = next;
  }

  #setEntry(key: string, entry: CursorEntry): void {
    this.#cursor.set(key, entry);
    this.#single = this.#cursor.size === 1 ? entry : undefined;
  }

  /**
   * The stream's id now. `fresh` for ids that are not one event's own (a position, a
   * multi-channel stream's combined one): sealed anew each time, so that equal ids never tell a
   * stranger that nothing reached the partition meanwhile (activity of rooms they cannot read).
   */
  #cursorId(fresh = false): string {
    return this.#context.codec.encode(this.#cursor.values(), fresh);
  }
}
