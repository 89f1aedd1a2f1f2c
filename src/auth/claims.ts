import { isValidPattern, matchesAny } from './patterns.ts';

/** A channel as auth sees it: its kind's name and its own name. */
export interface Channel {
  kind: string;
  name: string;
}

/** A kind as claims know it: its name, and the claim listing the channels a holder may read (src/channels/kind.ts). */
export interface ClaimKind {
  name: string;
  claim: string;
}

/** The built-ins' claims: `rooms` and `tickers`. Bare `publish` and `moderate` entries mean rooms. */
export const BUILT_IN_CLAIM_KINDS: readonly ClaimKind[] = [
  { name: 'room', claim: 'rooms' },
  { name: 'ticker', claim: 'tickers' },
];
const DEFAULT_KIND = 'room';

/** What a verified token says about its holder. */
export interface Claims {
  /** `sub`: the identity streams are counted against and publishes are attributed to. */
  subject: string;
  /** `name`, else `sub`: what others see as the chat `user`. */
  displayName: string;
  /** Per kind name: channel names or trailing-`*` patterns the holder may read (the kind's claim). */
  read: Record<string, string[]>;
  /** Per kind name: what the holder may publish to (`publish`: `kind:PATTERN`, a bare entry is a room). */
  publish: Record<string, string[]>;
  /**
   * Per kind name: `moderate` entries, channels where the holder may delete (and edit) anyone's
   * message, as well as post there (`room:NAME` or a bare room name or pattern).
   */
  moderate: Record<string, string[]>;
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
export function parseClaims(payload: unknown, kinds: readonly ClaimKind[] = BUILT_IN_CLAIM_KINDS): ClaimsResult {
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
  const read: Record<string, string[]> = {};
  for (const kind of kinds) {
    const entries = patternList(record, kind.claim);
    if (typeof entries === 'string') return { ok: false, reason: entries };
    read[kind.name] = entries;
  }
  const known = new Set(kinds.map((kind) => kind.name));
  const publish = kindPatterns(record, 'publish', known, 'a name, a pattern or KIND:PATTERN (e.g. ticker:BTC)');
  if (typeof publish === 'string') return { ok: false, reason: publish };
  const moderate = kindPatterns(record, 'moderate', new Set([DEFAULT_KIND]), 'a room name, a trailing-* pattern or room:NAME');
  if (typeof moderate === 'string') return { ok: false, reason: moderate };
  return {
    ok: true,
    claims: {
      subject: sub,
      displayName: typeof name === 'string' ? name : sub,
      read,
      publish,
      moderate,
      expiresAt: typeof exp === 'number' ? exp * 1000 : null,
    },
  };
}

/** `claim`'s entries by kind: `KIND:PATTERN` for a kind in `kinds`, a bare entry for rooms; a message naming the claim for anything else. */
function kindPatterns(payload: Record<string, unknown>, claim: string, kinds: ReadonlySet<string>, expected: string): Record<string, string[]> | string {
  const entries = stringList(payload, claim);
  if (typeof entries === 'string') return entries;
  const byKind: Record<string, string[]> = {};
  for (const entry of entries) {
    const colon = entry.indexOf(':');
    const kind = colon < 0 ? DEFAULT_KIND : entry.slice(0, colon);
    const pattern = colon < 0 ? entry : entry.slice(colon + 1);
    if (!kinds.has(kind) || !isValidPattern(pattern)) return `"${claim}" has an entry that is not ${expected}`;
    (byKind[kind] ??= []).push(pattern);
  }
  return byKind;
}

export function maySubscribe(claims: Claims, channel: Channel): boolean {
  return matchesAny(claims.read[channel.kind] ?? [], channel.name);
}

export function mayPublish(claims: Claims, channel: Channel): boolean {
  return matchesAny(claims.publish[channel.kind] ?? [], channel.name);
}

/** Whether the token's `moderate` claim covers the channel: its holder may delete and edit anyone's messages there. */
export function mayModerate(claims: Claims, channel: Channel): boolean {
  return matchesAny(claims.moderate[channel.kind] ?? [], channel.name);
}

/** Per kind name: channel names or trailing-`*` patterns anyone may read (PUBLIC_ROOMS, PUBLIC_TICKERS, a declaration's `access.public`). */
export type PublicChannels = Readonly<Record<string, readonly string[]>>;

export function isPublic(publicChannels: PublicChannels, channel: Channel): boolean {
  return matchesAny(publicChannels[channel.kind] ?? [], channel.name);
}
