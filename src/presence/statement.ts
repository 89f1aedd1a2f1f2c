/**
 * The presence topic's record format (README, "Presence"). Every replica publishes, per channel
 * it holds streams on, one *statement* of who it holds there:
 *
 *     key   `<kind>:<channel>|<replica>`            e.g. `room:lobby|r-4f1c09a2b7`
 *     value {"kind":"room","channel":"lobby","replica":"r-4f1c09a2b7",
 *            "members":[{"sub":"u1","name":"Ann","verified":true,"since":1764561600000}],
 *            "anonymous":2,"at":1764561601000}
 *
 * The topic is compacted: the latest statement per key is all that matters. A statement with no
 * members and no anonymous streams says the replica holds nobody there any more. `replica` is
 * random per process start, so a restarted replica never speaks for what its predecessor held.
 * `at` (ms since the epoch, the writer's clock) dates the statement: readers drop statements
 * not restated within the expiry bound (3 × PRESENCE_RESTATE_MS).
 */

/** Who holds a stream: a verified token identity, or (auth off) a self-chosen name. */
export interface PresenceIdentity {
  /** The token's `sub`; null for a self-named stream (auth off, `?name=`). */
  sub: string | null;
  /** The token's `name` (else its `sub`), or the self-chosen name. */
  name: string;
  /** True for a token identity, false for a self-chosen name. */
  verified: boolean;
}

/** A member as statements and snapshots list it: `since` = when it joined, ms since the epoch. */
export interface PresenceMember extends PresenceIdentity {
  since: number;
}

export interface PresenceStatement {
  kind: string;
  channel: string;
  replica: string;
  members: PresenceMember[];
  anonymous: number;
  /** When the writer made it (ms since the epoch, its clock). */
  at: number;
  /**
   * Set in a replica's last statement when it shuts down (ms since the epoch): its members stay
   * listed until then at most, long enough for its drained clients to reconnect to another
   * replica (which then lists them itself) without being seen to leave and join again.
   */
  until?: number;
}

/**
 * Most members one statement lists: a statement is one Kafka record, and records are capped
 * (the broker's `message.max.bytes`, 1 MB by default; a member takes ≤ ~200 bytes). Members a
 * replica holds beyond this in one channel are counted as anonymous (README, "Presence").
 */
export const MAX_MEMBERS_PER_STATEMENT = 4000;
/** Longest identity field accepted from the topic (a token's `sub` may be 256 characters). */
const MAX_FIELD_LENGTH = 256;

/** The key two statements of one replica about one channel share (so compaction keeps the latest). */
export function statementKey(channelKey: string, replica: string): string {
  return `${channelKey}|${replica}`;
}

/** Members are told apart by `sub` when verified, by name when self-named: never a name posing as a sub. */
export function memberKey(identity: PresenceIdentity): string {
  return identity.verified ? `v:${identity.sub ?? ''}` : `n:${identity.name}`;
}

export function encodeStatement(statement: PresenceStatement): string {
  return JSON.stringify(statement);
}

const isShortString = (value: unknown): value is string => typeof value === 'string' && value.length > 0 && value.length <= MAX_FIELD_LENGTH;
const isCount = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

/**
 * A statement read from the topic, or the reason it is unusable (another writer, a bad
 * producer): presence records come from every replica, and a bad one is skipped, never thrown.
 */
export function decodeStatement(value: Buffer | null): { ok: true; statement: PresenceStatement } | { ok: false; reason: string } {
  if (value === null) return { ok: false, reason: 'no value (a tombstone)' };
  let data: unknown;
  try {
    data = JSON.parse(value.toString('utf8'));
  } catch {
    return { ok: false, reason: 'value is not JSON' };
  }
  if (typeof data !== 'object' || data === null) return { ok: false, reason: 'value is not an object' };
  const { kind, channel, replica, members, anonymous, at, until } = data as Record<string, unknown>;
  if (!isShortString(kind) || !isShortString(channel) || !isShortString(replica)) return { ok: false, reason: 'kind, channel or replica missing' };
  if (!isCount(anonymous) || !isCount(at)) return { ok: false, reason: 'anonymous or at is not a non-negative integer' };
  if (until !== undefined && !isCount(until)) return { ok: false, reason: 'until is not a non-negative integer' };
  if (!Array.isArray(members) || members.length > MAX_MEMBERS_PER_STATEMENT) return { ok: false, reason: 'members is not a list (of at most 4000)' };
  const checked: PresenceMember[] = [];
  for (const member of members as unknown[]) {
    if (typeof member !== 'object' || member === null) return { ok: false, reason: 'a member is not an object' };
    const { sub, name, verified, since } = member as Record<string, unknown>;
    if (typeof verified !== 'boolean' || !isShortString(name) || !isCount(since)) return { ok: false, reason: 'a member lacks name, verified or since' };
    if (verified ? !isShortString(sub) : sub !== null) return { ok: false, reason: 'a verified member needs a sub, a self-named one has none' };
    checked.push({ sub: sub as string | null, name, verified, since });
  }
  return { ok: true, statement: { kind, channel, replica, members: checked, anonymous, at, ...(until === undefined ? {} : { until }) } };
}

/**
 * A self-chosen name (`?name=`) is usable: 1 to 64 characters, none of them a control, format or
 * separator character except the plain space (no line or paragraph separators, no no-break or
 * other look-alike spaces), and no space at either end: two members must not look the same.
 */
export function isPresentableName(name: string): boolean {
  return name.length > 0 && name.length <= 64 && !/[\p{C}\p{Z}]/u.test(name.replaceAll(' ', '')) && name.trim() === name;
}
