import { isValidPattern, matchesAny } from './patterns.ts';

export type ChannelKind = 'room' | 'ticker';

export interface Channel {
  kind: ChannelKind;
  name: string;
}

/** What a verified token says about its holder. */
export interface Claims {
  /** `sub`: the identity streams are counted against and publishes are attributed to. */
  subject: string;
  /** `name`, else `sub`: what others see as the chat `user`. */
  displayName: string;
  rooms: string[];
  tickers: string[];
  publishRooms: string[];
  publishTickers: string[];
  /**
   * `moderate`: rooms (names or trailing-`*` patterns, `room:` prefix allowed) where the holder
   * may delete (and edit) anyone's message, as well as post there.
   */
  moderateRooms: string[];
  /** `exp` in milliseconds, or null for a token that does not expire. */
  expiresAt: number | null;
}

export type ClaimsResult = { ok: true; claims: Claims } | { ok: false; reason: string };

const MAX_ENTRIES = 1000;

function stringList(payload: Record<string, unknown>, claim: string): string[] | string {
  const value = payload[claim];
  if (value === undefined) return [];
  if (!Array.isArray(value) || value.length > MAX_ENTRIES) return `"${claim}" must be an array of at most ${MAX_ENTRIES} strings`;
  if (!value.every((entry): entry is string => typeof entry === 'string')) return `"${claim}" must contain strings only`;
  return value;
}

function patternList(payload: Record<string, unknown>, claim: string): string[] | string {
  const entries = stringList(payload, claim);
  if (typeof entries === 'string') return entries;
  const bad = entries.find((entry) => !isValidPattern(entry));
  return bad === undefined ? entries : `"${claim}" has an entry that is neither a name nor a trailing-* pattern`;
}

/**
 * Reads the gateway's claims from a verified JWT payload. A token whose claims are malformed
 * is refused as a whole rather than read partly: a half-understood grant is a wrong grant.
 * `publish` entries are room names/patterns, `room:NAME` or `ticker:SYMBOL` (pattern allowed);
 * `moderate` entries are room names/patterns (or `room:NAME`): rooms whose messages the holder
 * may delete and edit whoever wrote them.
 */
export function parseClaims(payload: unknown): ClaimsResult {
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
    return { ok: false, reason: 'token payload is not an object' };
  }
  const record = payload as Record<string, unknown>;
  const { sub, name, exp } = record;
  if (typeof sub !== 'string' || sub.length === 0 || sub.length > 256) {
    return { ok: false, reason: 'token has no "sub" (a string of 1 to 256 characters)' };
  }
  if (name !== undefined && (typeof name !== 'string' || name.length === 0 || name.length > 64)) {
    return { ok: false, reason: '"name" must be a string of 1 to 64 characters' };
  }
  if (exp !== undefined && (typeof exp !== 'number' || !Number.isFinite(exp))) {
    return { ok: false, reason: '"exp" must be a number' };
  }
  const rooms = patternList(record, 'rooms');
  const tickers = patternList(record, 'tickers');
  const publish = stringList(record, 'publish');
  const moderate = stringList(record, 'moderate');
  for (const problem of [rooms, tickers, publish, moderate]) if (typeof problem === 'string') return { ok: false, reason: problem };
  const moderateRooms = (moderate as string[]).map((entry) => (entry.startsWith('room:') ? entry.slice('room:'.length) : entry));
  if (!moderateRooms.every(isValidPattern)) return { ok: false, reason: '"moderate" has an entry that is neither a room name nor a trailing-* pattern' };

  const publishRooms: string[] = [];
  const publishTickers: string[] = [];
  for (const entry of publish as string[]) {
    const [target, pattern] = entry.startsWith('ticker:')
      ? [publishTickers, entry.slice('ticker:'.length)]
      : [publishRooms, entry.startsWith('room:') ? entry.slice('room:'.length) : entry];
    if (!isValidPattern(pattern)) return { ok: false, reason: '"publish" has an entry that is not a name, a pattern or ticker:SYMBOL' };
    target.push(pattern);
  }
  return {
    ok: true,
    claims: {
      subject: sub,
      displayName: typeof name === 'string' ? name : sub,
      rooms: rooms as string[],
      tickers: tickers as string[],
      publishRooms,
      publishTickers,
      moderateRooms,
      expiresAt: typeof exp === 'number' ? exp * 1000 : null,
    },
  };
}

export function maySubscribe(claims: Claims, channel: Channel): boolean {
  return matchesAny(channel.kind === 'room' ? claims.rooms : claims.tickers, channel.name);
}

export function mayPublish(claims: Claims, channel: Channel): boolean {
  return matchesAny(channel.kind === 'room' ? claims.publishRooms : claims.publishTickers, channel.name);
}

/** Whether the token's `moderate` claim covers the room: its holder may delete and edit anyone's messages there. */
export function mayModerate(claims: Claims, channel: Channel): boolean {
  return channel.kind === 'room' && matchesAny(claims.moderateRooms, channel.name);
}

export interface PublicChannels {
  rooms: readonly string[];
  tickers: readonly string[];
}

export function isPublic(publicChannels: PublicChannels, channel: Channel): boolean {
  return matchesAny(channel.kind === 'room' ? publicChannels.rooms : publicChannels.tickers, channel.name);
}
