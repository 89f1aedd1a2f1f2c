import { randomBytes } from 'node:crypto';
import type { BusRecord, OutgoingRecord } from '../bus/types.ts';
import { channelKey as keyOf } from '../channels/records.ts';
import { bodyFrame } from '../connection/sse-frame.ts';
import type { Logger } from '../logger.ts';
import { rateLimitedWarn } from '../rate-limited-log.ts';
import { diffViews, mergeView, RemoteStatements, type ClusterView } from './cluster-view.ts';
import {
  decodeStatement,
  encodeStatement,
  MAX_MEMBERS_PER_STATEMENT,
  memberKey,
  statementKey,
  type PresenceIdentity,
  type PresenceMember,
  type PresenceStatement,
} from './statement.ts';
import { PresenceTracker } from './tracker.ts';

/**
 * Presence over the whole cluster (README, "Presence"): who holds streams on each channel of a
 * kind with `presence` on. Each replica
 * - tracks its own streams (PresenceTracker: members with a leave grace, anonymous counts);
 * - publishes one statement per channel it holds (src/presence/statement.ts) on the presence
 *   topic when its members change, coalesced per `intervalMs`, and restates every channel it
 *   holds every `restateMs`;
 * - reads every replica's statements and drops those not restated within 3 × `restateMs`;
 * - sends its streams of a channel `event: presence` frames: a snapshot when a stream opens,
 *   then deltas (joined, left, counts) at most once per `intervalMs` per channel, one frame
 *   built per channel and written to each of its streams; a crowded channel (more than
 *   `crowdStreams` streams here) gets them at most once per `crowdIntervalMs`.
 * Presence frames carry no `id:` (they never move a client's Last-Event-ID) and are never kept
 * in the history: a resumed stream gets a fresh snapshot, never old deltas.
 */

/** Where presence frames go: an SSE connection (src/connection/sse-connection.ts). */
export interface PresenceSink {
  write(frame: Buffer): void;
}

/** A channel presence is tracked on: its kind's name and its own. */
export interface PresenceChannel {
  kind: string;
  name: string;
}

/** What `GET /rooms/:room/presence` answers (without the channel field). */
export interface PresenceSummary {
  /** Listed members (identities), over the cluster. */
  count: number;
  /** Anonymous streams, over the cluster. */
  anonymous: number;
  /** Earliest first, then by name. */
  members: PresenceMember[];
}

export interface PresenceServiceOptions {
  /** The presence topic (compacted). */
  topic: string;
  /** This process's id in statements; default a random one (never reused by a restart). */
  replicaId?: string;
  /** Changes are published, and deltas sent, at most once per this (ms). */
  intervalMs: number;
  /**
   * A channel with more than this many streams on this replica is crowded: its deltas go out at
   * most once per `crowdIntervalMs` instead. A delta costs one write per stream, so a crowded
   * room whose count churns would otherwise cost as much as an event per interval, for good.
   * The precedent is PubNub's "Announce Max" (default 20 occupants), beyond which presence
   * switches to "interval mode" (one occupancy event per "Interval", default 10 s).
   */
  crowdStreams: number;
  /**
   * A crowded channel's streams get a delta at most once per this (ms, at least `intervalMs`),
   * counted from its last delta (or its first stream here: a room filled at once gets none before); changes meanwhile are carried, netted, by the next one.
   */
  crowdIntervalMs: number;
  /** Every channel held is restated this often (ms); statements older than 3× this expire. */
  restateMs: number;
  /** A member whose last stream closed stays this long (ms): longer than the client's reconnect delay. */
  leaveGraceMs: number;
  /** Writes a record to the bus; resolves once acknowledged (a failure is retried on the next interval). */
  publish: (record: OutgoingRecord) => Promise<unknown>;
  logger: Logger;
  now?: () => number;
  /**
   * Runs `each` over a channel's streams for a delta: by default all at once; the gateway passes
   * the hub's `sliced` (src/hub/hub.ts), so a delta to a crowded room is written in slices with
   * the fan-outs instead of holding the event loop for the whole room.
   */
  forEachSink?: (sinks: Iterable<PresenceSink>, each: (sink: PresenceSink) => void) => void;
}

export interface PresenceStats {
  statementsPublished: number;
  /** Bytes of the statements' keys and values. */
  statementBytes: number;
  publishFailures: number;
  statementsConsumed: number;
  /** Presence records that could not be read (counted and logged, never thrown). */
  recordsSkipped: number;
  /** Presence frames written (snapshots and deltas, one per stream). */
  framesWritten: number;
}

/** No local streams: the other replicas' statements merged alone. */
const NOBODY = { members: [], anonymous: 0 };

/**
 * Most members a snapshot lists (≈ 100 bytes each, so ≤ ~20 KB); `count` still counts them all,
 * and the route lists them all. Every stream opening pays for its snapshot: in a reconnect storm
 * into a crowded room (thousands of streams in seconds) a longer list would make opening a
 * stream cost per member, and the bytes written per stream, grow with the room.
 */
export const MAX_SNAPSHOT_MEMBERS = 200;

/** How many restatement periods a statement lives without being restated. */
export const EXPIRY_PERIODS = 3;

/** A random replica id: new on every process start, so a restart never speaks for its predecessor. */
export function newReplicaId(): string {
  return `r-${randomBytes(6).toString('hex')}`;
}

function splitKey(channelKey: string): PresenceChannel {
  const colon = channelKey.indexOf(':');
  return { kind: channelKey.slice(0, colon), name: channelKey.slice(colon + 1) };
}

/** A member as frames show it: `verified: false` only for a self-chosen name. */
function shown(member: PresenceMember, withSince: boolean): Record<string, unknown> {
  const entry: Record<string, unknown> = { sub: member.sub, name: member.name };
  if (withSince) entry.since = member.since;
  if (!member.verified) entry.verified = false;
  return entry;
}

function ordered(members: Iterable<PresenceMember>): PresenceMember[] {
  return [...members].sort((a, b) => a.since - b.since || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

export class PresenceService {
  readonly replicaId: string;
  readonly expiryMs: number;
  readonly stats: PresenceStats = { statementsPublished: 0, statementBytes: 0, publishFailures: 0, statementsConsumed: 0, recordsSkipped: 0, framesWritten: 0 };
  readonly #options: PresenceServiceOptions;
  readonly #now: () => number;
  /** How a delta reaches a channel's streams (`PresenceServiceOptions.forEachSink`; default: all at once). */
  readonly #forEachSink: NonNullable<PresenceServiceOptions['forEachSink']>;
  readonly #tracker: PresenceTracker;
  readonly #remote: RemoteStatements;
  /** Local streams per channel. */
  readonly #sinks = new Map<string, Set<PresenceSink>>();
  /** Per channel with local streams: the view they were last told (snapshot or delta). */
  readonly #announced = new Map<string, ClusterView>();
  /** Per channel with local streams: when its last delta was sent (ms), for crowded channels' pace. */
  readonly #lastDeltaAt = new Map<string, number>();
  /**
   * Per channel: the streams that opened since its last delta, with the view their snapshot told
   * them and whether its members were those of `#announced`. The next delta is measured against
   * `#announced`: for a stream whose snapshot listed other members, a change undone in between
   * (a member leaving and coming back, or joining and leaving) would never reach it, so it gets
   * its own difference instead. Counts are absolute: a snapshot with the announced members but
   * other counts only needs the counts.
   */
  readonly #openedSince = new Map<string, Map<PresenceSink, { view: ClusterView; sameMembers: boolean }>>();
  /** Channels whose own statement is due (members changed). */
  #statementDue = new Set<string>();
  /** Channels whose cluster view may have changed since streams were last told. */
  #viewChanged = new Set<string>();
  #nextRestateAt: number;
  #timer: NodeJS.Timeout | null = null;
  #stopped = false;
  /** How long its last statements keep its members listed (ms): 0 until a drain begins (beginDrain). */
  #handoverMs = 0;
  readonly #pending = new Set<Promise<unknown>>();
  readonly #warnSkipped: (context: object, message: string) => void;
  readonly #warnPublish: (context: object, message: string) => void;

  constructor(options: PresenceServiceOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#forEachSink =
      options.forEachSink ??
      ((sinks, each) => {
        for (const sink of sinks) each(sink);
      });
    this.replicaId = options.replicaId ?? newReplicaId();
    this.expiryMs = EXPIRY_PERIODS * options.restateMs;
    this.#nextRestateAt = this.#now() + options.restateMs;
    this.#tracker = new PresenceTracker({
      graceMs: options.leaveGraceMs,
      now: this.#now,
      onChange: (key) => {
        this.#statementDue.add(key);
        this.#viewChanged.add(key);
      },
    });
    this.#remote = new RemoteStatements({ expiryMs: this.expiryMs });
    this.#warnSkipped = rateLimitedWarn(options.logger);
    this.#warnPublish = rateLimitedWarn(options.logger);
  }

  /** Starts the interval timer (publishing, deltas, expiry). */
  start(): void {
    if (this.#timer !== null || this.#stopped) return;
    this.#timer = setInterval(() => this.tick(), this.#options.intervalMs);
    this.#timer.unref();
  }

  /**
   * A stream holding `channels` opened for `identity` (null: anonymous). Writes its snapshot
   * frame of each channel to `sink` at once (before anything else the stream is sent, when
   * called right after the stream's preamble), then the channels' deltas until the returned
   * function is called (idempotent) when the stream ends.
   */
  join(streamChannels: readonly PresenceChannel[], identity: PresenceIdentity | null, sink: PresenceSink): () => void {
    // Both arrays live as long as the stream: exact-size (a filtered or pushed-to array keeps
    // room to grow, ~100 bytes each per idle stream).
    const channels = streamChannels.slice();
    const leaves = new Array<() => void>(channels.length);
    for (const [index, channel] of channels.entries()) {
      const key = keyOf(channel.kind, channel.name);
      // A member already in the channel on another replica (moved by a drain, a second tab) keeps its `since`.
      const since = identity === null ? undefined : mergeView(NOBODY, this.#remote.statementsOf(key)).members.get(memberKey(identity))?.since;
      leaves[index] = this.#tracker.join(key, identity, since);
      let sinks = this.#sinks.get(key);
      if (sinks === undefined) {
        sinks = new Set();
        this.#sinks.set(key, sinks);
        // Its streams are told the room by their snapshots: a room that fills up at once (a
        // reconnect storm into it) gets its first delta a crowd interval after its first stream, too.
        this.#lastDeltaAt.set(key, this.#now());
      }
      sinks.add(sink);
      const view = this.#view(key);
      // First stream here: what it is told now is what the next delta is measured against.
      const announced = this.#announced.get(key);
      if (announced === undefined) this.#announced.set(key, view);
      else {
        let opened = this.#openedSince.get(key);
        if (opened === undefined) {
          opened = new Map();
          this.#openedSince.set(key, opened);
        }
        const { joined, left } = diffViews(announced.members, view.members);
        opened.set(sink, { view, sameMembers: joined.length === 0 && left.length === 0 });
      }
      this.#write(sink, this.#snapshotFrame(channel, view));
    }
    let left = false;
    return () => {
      if (left) return;
      left = true;
      for (const leave of leaves) leave();
      for (const channel of channels) {
        const key = keyOf(channel.kind, channel.name);
        const sinks = this.#sinks.get(key);
        if (sinks === undefined) continue;
        sinks.delete(sink);
        this.#openedSince.get(key)?.delete(sink);
        if (sinks.size === 0) {
          this.#openedSince.delete(key);
          this.#sinks.delete(key);
          this.#announced.delete(key);
          this.#lastDeltaAt.delete(key);
        }
      }
    };
  }

  /** The channel's presence over the cluster, as of now. */
  summary(channel: PresenceChannel): PresenceSummary {
    const view = this.#view(keyOf(channel.kind, channel.name));
    return { count: view.members.size, anonymous: view.anonymous, members: ordered(view.members.values()) };
  }

  #view(key: string): ClusterView {
    return mergeView(
      { members: this.#tracker.membersOf(key)?.values() ?? [], anonymous: this.#tracker.anonymousOf(key) },
      this.#remote.statementsOf(key),
    );
  }

  /**
   * A stream's first presence frame: the members (the earliest MAX_SNAPSHOT_MEMBERS, with
   * `truncated: true` beyond: a snapshot must stay far below STREAM_MAX_BUFFERED_BYTES, or a
   * stream of a crowded room would be cut off the moment it opens), `count`, `anonymous`.
   */
  #snapshotFrame(channel: PresenceChannel, view: ClusterView): Buffer {
    const members = ordered(view.members.values());
    const listed = members.length > MAX_SNAPSHOT_MEMBERS ? members.slice(0, MAX_SNAPSHOT_MEMBERS) : members;
    return this.#frame(channel, {
      snapshot: true,
      members: listed.map((member) => shown(member, true)),
      ...(listed.length < members.length ? { truncated: true } : {}),
      count: view.members.size,
      anonymous: view.anonymous,
    });
  }

  #frame(channel: PresenceChannel, fields: Record<string, unknown>): Buffer {
    // The channel under its kind's name, as every event of the kind carries it (`room`).
    return bodyFrame('presence', JSON.stringify({ [channel.kind]: channel.name, ...fields }));
  }

  #write(sink: PresenceSink, frame: Buffer): void {
    this.stats.framesWritten += 1;
    sink.write(frame);
  }

  /** Presence records consumed from the topic (every replica's statements, this one's included). */
  readonly onRecords = (records: readonly BusRecord[]): void => {
    const now = this.#now();
    for (const record of records) {
      const decoded = decodeStatement(record.value);
      if (!decoded.ok) {
        this.stats.recordsSkipped += 1;
        this.#warnSkipped({ topic: record.topic, partition: record.partition, offset: record.offset, reason: decoded.reason }, 'skipped a presence record that cannot be read');
        continue;
      }
      this.stats.statementsConsumed += 1;
      const { statement } = decoded;
      // Its own members this replica knows first-hand (and sooner).
      if (statement.replica === this.replicaId) continue;
      const key = keyOf(statement.kind, statement.channel);
      if (this.#remote.apply(key, statement, now)) this.#viewChanged.add(key);
    }
  };

  /**
   * One interval's work (the timer calls it; tests may too): expire statements not restated in
   * time, send each changed channel's delta to its streams, publish due statements.
   */
  tick(now = this.#now()): void {
    if (this.#stopped) return;
    for (const key of this.#remote.expire(now)) this.#viewChanged.add(key);
    const changed = this.#viewChanged;
    this.#viewChanged = new Set();
    for (const key of changed) this.#sendDelta(key, now);
    if (now >= this.#nextRestateAt) {
      this.#nextRestateAt = now + this.#options.restateMs;
      for (const key of this.#tracker.channelKeys()) this.#statementDue.add(key);
    }
    const due = this.#statementDue;
    this.#statementDue = new Set();
    for (const key of due) this.#publishStatement(key, now);
  }

  #sendDelta(key: string, now: number): void {
    const sinks = this.#sinks.get(key);
    const before = this.#announced.get(key);
    if (sinks === undefined || before === undefined) return;
    const lastAt = this.#lastDeltaAt.get(key);
    if (sinks.size > this.#options.crowdStreams && lastAt !== undefined && now - lastAt < this.#options.crowdIntervalMs) {
      // Crowded: every delta is a write per stream. Still due: a later tick sends the net change
      // since what was last announced (and a stream opening meanwhile gets a current snapshot).
      this.#viewChanged.add(key);
      return;
    }
    const after = this.#view(key);
    const shared = this.#deltaFrame(key, before, after);
    const opened = this.#openedSince.get(key);
    this.#openedSince.delete(key);
    if (shared === null && opened === undefined) return;
    this.#announced.set(key, after);
    this.#lastDeltaAt.set(key, now);
    // One frame for the channel, shared by its streams: per stream, one write. A stream opened
    // since the last delta gets its difference from its own snapshot (`#openedSince`).
    let counts: Buffer | undefined;
    const own = new Map<ClusterView, Buffer | null>();
    const frameFor = (sink: PresenceSink): Buffer | null => {
      const told = opened?.get(sink);
      if (told === undefined) return shared;
      if (told.sameMembers) {
        if (shared !== null || told.view.anonymous === after.anonymous) return shared;
        counts ??= this.#frame(splitKey(key), { joined: [], left: [], count: after.members.size, anonymous: after.anonymous });
        return counts;
      }
      let frame = own.get(told.view);
      if (frame === undefined) {
        frame = this.#deltaFrame(key, told.view, after);
        own.set(told.view, frame);
      }
      return frame;
    };
    // The streams here now: one opening while the delta is still being written got a newer
    // snapshot, which this delta must not follow (closed ones ignore the write).
    this.#forEachSink([...sinks], (sink) => {
      const frame = frameFor(sink);
      if (frame !== null) this.#write(sink, frame);
    });
  }

  /** The delta frame from what a stream was told (`from`) to `to`; null when nothing changed. */
  #deltaFrame(key: string, from: ClusterView, to: ClusterView): Buffer | null {
    const { joined, left } = diffViews(from.members, to.members);
    if (joined.length === 0 && left.length === 0 && from.anonymous === to.anonymous) return null;
    return this.#frame(splitKey(key), {
      joined: ordered(joined).map((member) => shown(member, false)),
      left: ordered(left).map((member) => shown(member, false)),
      count: to.members.size,
      anonymous: to.anonymous,
    });
  }

  /** The replica's statement of the channel; `until`: its last one, its members listed until then at most (see stop). */
  #statement(key: string, now: number, until?: number): PresenceStatement {
    const { kind, name } = splitKey(key);
    const view = this.#tracker.view(key);
    const listed = view.members.length > MAX_MEMBERS_PER_STATEMENT ? ordered(view.members).slice(0, MAX_MEMBERS_PER_STATEMENT) : view.members;
    const statement: PresenceStatement = { kind, channel: name, replica: this.replicaId, members: listed, anonymous: view.anonymous + (view.members.length - listed.length), at: now };
    // Leaving: anonymous streams count where they reconnect; members stay listed for the hand-over.
    return until === undefined ? statement : { ...statement, anonymous: 0, until };
  }

  #publishStatement(key: string, now: number, until?: number): Promise<unknown> {
    const record: OutgoingRecord = { topic: this.#options.topic, key: statementKey(key, this.replicaId), value: encodeStatement(this.#statement(key, now, until)), headers: {} };
    const bytes = Buffer.byteLength(record.key) + Buffer.byteLength(record.value);
    const published = this.#options.publish(record).then(
      () => {
        this.stats.statementsPublished += 1;
        this.stats.statementBytes += bytes;
        // Emptiness told: the channel's entry can go (unless someone came back meanwhile).
        if (!this.#stopped) this.#tracker.forget(key);
      },
      (error: unknown) => {
        this.stats.publishFailures += 1;
        this.#warnPublish({ err: error, topic: this.#options.topic }, 'publishing a presence statement failed; retrying on the next interval');
        if (!this.#stopped) this.#statementDue.add(key);
      },
    );
    this.#pending.add(published);
    void published.finally(() => this.#pending.delete(published));
    return published;
  }

  /**
   * The replica starts draining: streams it ends are told to come back after up to `spreadMs`
   * more than usual (to any replica), so their members' grace is lengthened by that much, and
   * so is the hand-over of `stop`. Call before the drain.
   */
  beginDrain(spreadMs: number): void {
    this.#handoverMs = this.#options.leaveGraceMs + spreadMs;
    this.#tracker.setGraceMs(this.#handoverMs);
  }

  /**
   * Stops the timer and hands over: a last statement per channel it held lists the members it
   * still had (their streams ended by the drain, in grace) with `until` = now + the drain's
   * lengthened grace (`beginDrain`; 0 without a drain: they leave at once), the longest its
   * drained clients take to reconnect elsewhere. Other replicas keep them listed until then, or
   * list them themselves once they are back: a rolling restart is no leave and join. Members
   * that never come back leave at `until`, not after the expiry bound. Waits at most
   * `timeoutMs` for the statements. Call once its streams have ended.
   */
  async stop(timeoutMs: number): Promise<void> {
    if (this.#stopped) return;
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    const now = this.#now();
    const goodbyes = [...this.#tracker.channelKeys()].map((key) => this.#publishStatement(key, now, now + this.#handoverMs));
    this.#stopped = true;
    this.#tracker.close();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...goodbyes, ...this.#pending]), new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
  }

  /** State held, for /status and the bound's tests: local members, channels, other replicas' statements. */
  get state(): { localMembers: number; localChannels: number; remoteStatements: number; streamChannels: number } {
    return { localMembers: this.#tracker.memberCount, localChannels: this.#tracker.channelCount, remoteStatements: this.#remote.size, streamChannels: this.#sinks.size };
  }
}
