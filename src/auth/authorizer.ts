import type { ApiKeys } from './api-keys.ts';
import { BUILT_IN_CLAIM_KINDS, isPublic, mayModerate, mayPublish, maySubscribe, parseClaims, type Channel, type ClaimKind, type Claims, type PublicChannels } from './claims.ts';
import { bearerToken, findToken, type TokenCarriers } from './token-source.ts';
import { rejectionReason } from './verify-errors.ts';

/**
 * Who may read and who may publish, decided without any HTTP framework: the Fastify plugin
 * turns a refusal into a 401/403 reply. 401 means "no usable token" (the client should get a
 * fresh one), 403 means "a good token that does not grant this".
 */

/** Verifies a token's signature and standard claims, resolving to its payload; throws with a `code`. */
export type VerifyToken = (token: string) => Promise<unknown>;

export interface AuthPolicy {
  enabled: boolean;
  cookieName: string;
  publicChannels: PublicChannels;
  /** The kinds and the claims listing their readable channels (default: the built-ins'). */
  claimKinds?: readonly ClaimKind[];
  /** Refuse tokens without `exp` (RFC 7519 §4.1.4): they would authorise forever. */
  requireExpiry: boolean;
}

export type Refusal = { ok: false; statusCode: 401 | 403; reason: string };
export type Decision<T> = { ok: true; value: T } | Refusal;

export interface SubscriptionGrant {
  /** The token's `sub`; null when auth is off or every channel is public and no valid token came. */
  identity: string | null;
  /** The token's `name` (else its `sub`): who the stream is in a room's presence; null with no identity. */
  displayName?: string | null;
  /** When the stream must end (the token's `exp`), or null. */
  expiresAt: number | null;
}

export interface Publisher {
  /** `sub` of the token, `service:<name>` for an API key, null when auth is off. */
  identity: string | null;
  /** The chat `user` others see; null when the body's `user` stands (auth off, or a service). */
  displayName: string | null;
  service: string | null;
  /** The token's `moderate` claim covers the channel (a room): its holder may modify anyone's message there. */
  moderator: boolean;
}

function refuse(statusCode: 401 | 403, reason: string): Refusal {
  return { ok: false, statusCode, reason };
}

function describe(channel: Channel): string {
  return `${channel.kind} "${channel.name}"`;
}

async function verifiedClaims(policy: AuthPolicy, verify: VerifyToken, token: string): Promise<Decision<Claims>> {
  let payload: unknown;
  try {
    payload = await verify(token);
  } catch (error) {
    return refuse(401, rejectionReason((error as { code?: unknown } | null)?.code));
  }
  const parsed = parseClaims(payload, policy.claimKinds ?? BUILT_IN_CLAIM_KINDS);
  if (!parsed.ok) return refuse(401, parsed.reason);
  if (policy.requireExpiry && parsed.claims.expiresAt === null) return refuse(401, 'token has no "exp" claim; this gateway requires tokens that expire');
  return { ok: true, value: parsed.claims };
}

export async function decideSubscription(
  policy: AuthPolicy,
  verify: VerifyToken,
  carriers: TokenCarriers,
  channels: readonly Channel[],
): Promise<Decision<SubscriptionGrant>> {
  if (!policy.enabled) return { ok: true, value: { identity: null, expiresAt: null } };
  const lookup = findToken(carriers, policy.cookieName);
  const restricted = channels.filter((channel) => !isPublic(policy.publicChannels, channel));

  if (restricted.length === 0) {
    // Public channels only: a stale cookie must not lock anyone out of them, so a bad token
    // is ignored here; a good one still names who holds the stream.
    if (!lookup.found) return { ok: true, value: { identity: null, expiresAt: null } };
    const claims = await verifiedClaims(policy, verify, lookup.token);
    return { ok: true, value: { identity: claims.ok ? claims.value.subject : null, displayName: claims.ok ? claims.value.displayName : null, expiresAt: null } };
  }

  if (!lookup.found) return refuse(401, lookup.malformed ?? 'missing token');
  const claims = await verifiedClaims(policy, verify, lookup.token);
  if (!claims.ok) return claims;
  const denied = restricted.filter((channel) => !maySubscribe(claims.value, channel));
  if (denied.length > 0) {
    return refuse(403, `token does not grant ${denied.slice(0, 5).map(describe).join(', ')}${denied.length > 5 ? ', …' : ''}`);
  }
  return { ok: true, value: { identity: claims.value.subject, displayName: claims.value.displayName, expiresAt: claims.value.expiresAt } };
}

export interface PublishCarriers {
  authorization?: string | undefined;
  apiKey?: string | undefined;
}

export async function decidePublish(
  policy: AuthPolicy,
  verify: VerifyToken,
  apiKeys: ApiKeys,
  carriers: PublishCarriers,
  channel: Channel,
  /** `moderation`: the request modifies a message (a delete): a `moderate` grant for the room admits it too. */
  options: { moderation?: boolean } = {},
): Promise<Decision<Publisher>> {
  // Development (no tokens, no keys): anyone may publish. Once either is configured, never nothing.
  if (!policy.enabled && apiKeys.size === 0) return { ok: true, value: { identity: null, displayName: null, service: null, moderator: false } };
  if (carriers.apiKey !== undefined && carriers.apiKey !== '') {
    const service = apiKeys.serviceFor(carriers.apiKey);
    if (service === null) return refuse(401, 'invalid API key');
    return { ok: true, value: { identity: `service:${service}`, displayName: null, service, moderator: false } };
  }
  if (!policy.enabled) return refuse(401, 'missing API key: send X-API-Key (SERVICE_API_KEYS is set)');
  const lookup = bearerToken(carriers.authorization);
  if (!lookup.found) return refuse(401, lookup.malformed ?? 'missing token: send Authorization: Bearer <token> or X-API-Key');
  const claims = await verifiedClaims(policy, verify, lookup.token);
  if (!claims.ok) return claims;
  const moderator = mayModerate(claims.value, channel);
  // A moderator may delete in its rooms without a `publish` grant; posting still needs one.
  if (!mayPublish(claims.value, channel) && !(options.moderation === true && moderator)) {
    return refuse(403, `token does not grant publishing to ${describe(channel)}`);
  }
  return { ok: true, value: { identity: claims.value.subject, displayName: claims.value.displayName, service: null, moderator } };
}

/**
 * Whether `publisher` (as `decidePublish` admitted it for the message's room) may delete or edit
 * a message whose `author` header is `author` (null: the message belongs to nobody). Allowed:
 * anyone with auth off (development: `identity` null), a service key, a token whose `moderate`
 * claim covers the room, and the token whose `sub` is the author. Anyone else: 403.
 */
export function decideModification(publisher: Publisher, author: string | null): Decision<void> {
  if (publisher.identity === null || publisher.service !== null || publisher.moderator) return { ok: true, value: undefined };
  if (author !== null && author === publisher.identity) return { ok: true, value: undefined };
  return refuse(403, 'only the message\'s author, a moderator of the room (token claim "moderate") or a service may modify it');
}
