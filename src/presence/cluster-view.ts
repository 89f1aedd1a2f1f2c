import { memberKey, type PresenceMember, type PresenceStatement } from './statement.ts';

/**
 * What the other replicas say they hold, from their statements on the presence topic: per
 * channel, the latest statement of each replica. A statement not restated within `expiryMs`
 * (3 × PRESENCE_RESTATE_MS) is dropped: its replica is gone (`kill -9`, a network partition)
 * without saying so. Freshness is judged by the statement's `at`, never later than the local
 * clock, so a statement read back from the topic at startup counts from when it was written,
 * not from when it was read: a restarted replica does not bring back members of one that died.
 */
export class RemoteStatements {
  /** Per channel, per replica: its latest statement and when it stops counting (ms since the epoch). */
  readonly #byChannel = new Map<string, Map<string, { statement: PresenceStatement; expiresAt: number }>>();
  readonly #expiryMs: number;
  #count = 0;

  constructor(options: { expiryMs: number }) {
    this.#expiryMs = options.expiryMs;
  }

  /**
   * Takes a statement of another replica about `channelKey`; returns whether the channel's
   * cluster view changed. Ignored when already expired, or older than the one held.
   */
  apply(channelKey: string, statement: PresenceStatement, now: number): boolean {
    // Not restated within the bound, it expires; a departing replica's last one (`until`) sooner.
    const expiresAt = Math.min(Math.min(statement.at, now) + this.#expiryMs, statement.until ?? Infinity);
    let replicas = this.#byChannel.get(channelKey);
    const held = replicas?.get(statement.replica);
    if (held !== undefined && held.statement.at > statement.at) return false;
    const empty = statement.members.length === 0 && statement.anonymous === 0;
    if (now >= expiresAt || empty) {
      if (held === undefined) return false;
      this.#remove(channelKey, statement.replica);
      return true;
    }
    if (replicas === undefined) {
      replicas = new Map();
      this.#byChannel.set(channelKey, replicas);
    }
    if (held === undefined) this.#count += 1;
    replicas.set(statement.replica, { statement, expiresAt });
    // A restatement of the same members changes nothing anyone sees.
    return held === undefined || !sameContent(held.statement, statement);
  }

  #remove(channelKey: string, replica: string): void {
    const replicas = this.#byChannel.get(channelKey);
    if (replicas?.delete(replica) === true) this.#count -= 1;
    if (replicas !== undefined && replicas.size === 0) this.#byChannel.delete(channelKey);
  }

  /** Drops statements not restated within the expiry bound, or past their `until`; returns the channels whose view changed. */
  expire(now: number): string[] {
    const changed: string[] = [];
    for (const [channelKey, replicas] of this.#byChannel) {
      for (const [replica, { expiresAt }] of replicas) {
        if (now >= expiresAt) {
          this.#remove(channelKey, replica);
          if (changed[changed.length - 1] !== channelKey) changed.push(channelKey);
        }
      }
    }
    return changed;
  }

  /** The statements held about the channel, one per replica. */
  statementsOf(channelKey: string): Iterable<PresenceStatement> {
    const replicas = this.#byChannel.get(channelKey);
    return replicas === undefined ? [] : [...replicas.values()].map((held) => held.statement);
  }

  /** Channels some other replica holds streams on. */
  channelKeys(): IterableIterator<string> {
    return this.#byChannel.keys();
  }

  /** Statements held (one per channel and replica). */
  get size(): number {
    return this.#count;
  }
}

function sameContent(a: PresenceStatement, b: PresenceStatement): boolean {
  if (a.anonymous !== b.anonymous || a.members.length !== b.members.length) return false;
  return a.members.every((member, index) => {
    const other = b.members[index]!;
    return member.sub === other.sub && member.name === other.name && member.verified === other.verified && member.since === other.since;
  });
}

/** A channel's presence over the whole cluster. */
export interface ClusterView {
  /** By member key: one entry per identity however many replicas and streams hold it; `since` the earliest. */
  members: Map<string, PresenceMember>;
  anonymous: number;
}

/** Merges this replica's own members with the other replicas' statements about one channel. */
export function mergeView(local: { members: Iterable<PresenceMember>; anonymous: number }, remote: Iterable<PresenceStatement>): ClusterView {
  const members = new Map<string, PresenceMember>();
  const add = (member: PresenceMember): void => {
    const key = memberKey(member);
    const known = members.get(key);
    if (known === undefined || member.since < known.since) members.set(key, member);
  };
  for (const member of local.members) add(member);
  let anonymous = local.anonymous;
  for (const statement of remote) {
    for (const member of statement.members) add(member);
    anonymous += statement.anonymous;
  }
  return { members, anonymous };
}

/** Who joined and who left between two views of a channel (by member key). */
export function diffViews(before: ReadonlyMap<string, PresenceMember>, after: ReadonlyMap<string, PresenceMember>): { joined: PresenceMember[]; left: PresenceMember[] } {
  const joined: PresenceMember[] = [];
  const left: PresenceMember[] = [];
  for (const [key, member] of after) if (!before.has(key)) joined.push(member);
  for (const [key, member] of before) if (!after.has(key)) left.push(member);
  return { joined, left };
}
