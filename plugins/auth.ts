import { readFileSync } from 'node:fs';
import fp from 'fastify-plugin';
import fastifyJwt from '@fastify/jwt';
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction, onRequestHookHandler, preHandlerAsyncHookHandler } from 'fastify';
import { ApiKeys } from '../src/auth/api-keys.ts';
import {
  decideModification,
  decidePublish,
  decideSubscription,
  type AuthPolicy,
  type Publisher,
  type Refusal,
  type SubscriptionGrant,
  type VerifyToken,
} from '../src/auth/authorizer.ts';
import type { Channel } from '../src/auth/claims.ts';
import { parsePublicKeyFile, secretKey, selectKey, type VerificationKey } from '../src/auth/keys.ts';
import { StreamQuota } from '../src/auth/stream-quota.ts';
import { bearerToken, findToken } from '../src/auth/token-source.ts';

/** Where a GET request keeps its reply for `authorizeSubscription` (see the onRoute hook below). */
const kStreamReply = Symbol('streamReply');

declare module 'fastify' {
  interface FastifyRequest {
    /** Internal to the auth plugin: the request's reply, on GET routes. */
    [kStreamReply]?: FastifyReply | null;
    /**
     * Resolves when the request may stream these channels, else throws a 401/403 (or 429
     * over the per-identity stream cap). Holds one of the identity's stream slots until the
     * response closes. Stream routes call it before opening the stream, and end the stream at
     * `expiresAt`. `{ stream: false }`: a read of the channels that is no stream (their
     * presence): the same right, no stream slot held.
     */
    authorizeSubscription(channels: readonly Channel[], options?: { stream?: boolean }): Promise<SubscriptionGrant>;
    /** Set by `app.authorizePublishing(kind)` on publish routes. */
    publisher: Publisher | null;
  }
  interface FastifyInstance {
    authEnabled: boolean;
    /** Operator routes (/status, /metrics) need a service API key: true whenever tokens or keys are configured. */
    operatorKeyRequired: boolean;
    /** Open streams per identity (acquire/count); `authorizeSubscription` already uses it. */
    streamQuota: StreamQuota;
    /**
     * A preHandler for a publish route whose `param` path parameter (default `channel`) names the channel of kind `kind`.
     * `moderation`: the route modifies a message (delete, edit): a `moderate` grant admits too.
     */
    authorizePublishing(kind: string, options?: { moderation?: boolean; param?: string }): preHandlerAsyncHookHandler;
    /**
     * Throws a 403 unless the request's publisher (set by `authorizePublishing`) may delete or
     * edit a message whose author is `author` (its `author` header; null: nobody's). See
     * `decideModification` in src/auth/authorizer.ts for the rule.
     */
    authorizeModification(request: FastifyRequest, author: string | null): void;
  }
}

class AuthError extends Error {
  constructor(readonly statusCode: number, message: string) {
    super(message);
    this.name = 'AuthError';
  }
}

/**
 * Whether a request may be authorised by its cookie: it comes from this gateway's own origin or
 * one listed in CORS_ORIGINS (a wildcard does not count). Browsers send `Origin` on cross-origin
 * EventSource requests and `Sec-Fetch-Site` on every request (Fetch spec, "Sec-Fetch-Site"); a
 * request with neither is not a browser acting for a page, so it cannot be a cross-site one.
 */
function cookieTrusted(request: FastifyRequest, listedOrigins: readonly string[]): boolean {
  const origin = request.headers.origin;
  if (origin !== undefined) {
    // "null": a sandboxed frame or a file: page — never this gateway's own.
    if (origin === 'null') return false;
    return listedOrigins.includes(origin) || origin === `${request.protocol}://${request.host}`;
  }
  const site = request.headers['sec-fetch-site'];
  return site === undefined || site === 'same-origin' || site === 'none';
}

function refusal(reply: FastifyReply | undefined, { statusCode, reason }: Refusal): AuthError {
  // RFC 6750: a 401 says how to authenticate.
  if (statusCode === 401) reply?.header('www-authenticate', 'Bearer realm="kafka-sse-gateway"');
  return new AuthError(statusCode, reason);
}

function loadKeys(secret: string | null, keyFile: string | null): VerificationKey[] {
  if (secret !== null) return [secretKey(secret)];
  if (keyFile === null) return [];
  let content: string;
  try {
    content = readFileSync(keyFile, 'utf8');
  } catch (error) {
    throw new Error(`JWT_PUBLIC_KEY_FILE ${keyFile} cannot be read: ${(error as Error).message}`);
  }
  try {
    return parsePublicKeyFile(content);
  } catch (error) {
    throw new Error(`JWT_PUBLIC_KEY_FILE ${keyFile}: ${(error as Error).message}`);
  }
}

function tokenError(code: string): Error {
  return Object.assign(new Error(code), { code });
}

/** The `alg` a token's header names; throws "malformed" when there is no readable header. */
function tokenAlgorithm(token: string): unknown {
  const header = token.slice(0, Math.max(0, token.indexOf('.')));
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(header, 'base64url').toString('utf8'));
  } catch {
    throw tokenError('FAST_JWT_MALFORMED');
  }
  if (typeof parsed !== 'object' || parsed === null) throw tokenError('FAST_JWT_MALFORMED');
  return (parsed as { alg?: unknown }).alg;
}

/**
 * Subscriber and publisher authentication. Off unless JWT_SECRET (HS256) or
 * JWT_PUBLIC_KEY_FILE (RS256/ES256, PEM or JWKS) is set; when off it says so loudly at
 * startup. Tokens are verified by @fastify/jwt (fast-jwt) with the algorithms of the
 * configured keys only: `none`, and HS256 against a public key, are refused.
 */
export default fp(
  async (app) => {
    const settings = app.config.auth;
    const keys = loadKeys(settings.jwtSecret, settings.jwtPublicKeyFile);
    const enabled = keys.length > 0;
    const policy: AuthPolicy = {
      enabled,
      cookieName: settings.cookieName,
      publicChannels: Object.fromEntries(app.channels.kinds.map((kind) => [kind.name, kind.publicPatterns])),
      claimKinds: app.channels.kinds.map(({ name, claim }) => ({ name, claim })),
      requireExpiry: settings.requireTokenExp,
    };
    const apiKeys = new ApiKeys(settings.serviceApiKeys);
    const streamQuota = new StreamQuota(settings.maxStreamsPerIdentity);
    const algorithms = [...new Set(keys.map((key) => key.algorithm))];
    const listedOrigins = app.config.corsOrigins === true ? [] : app.config.corsOrigins;

    let verify: VerifyToken = async () => {
      throw tokenError('AUTH_OFF');
    };
    if (enabled) {
      await app.register(fastifyJwt, {
        // The key is picked per token (by `kid` and `alg` in its header) among the configured ones.
        secret: async (decoded: { header: { kid?: unknown; alg?: unknown } }) => {
          const key = selectKey(keys, decoded.header);
          if (key === null) throw new Error('no configured key matches the token header');
          return key.material;
        },
        verify: {
          algorithms,
          ...(settings.jwtIssuer !== null ? { allowedIss: settings.jwtIssuer } : {}),
          ...(settings.jwtAudience !== null ? { allowedAud: settings.jwtAudience } : {}),
          requiredClaims: [...(settings.jwtIssuer !== null ? ['iss'] : []), ...(settings.jwtAudience !== null ? ['aud'] : [])],
          clockTolerance: 5,
          cache: 10000,
        },
      });
      verify = async (token) => {
        // Checked before any key lookup, so `none` and foreign algorithms get their own reason.
        if (!algorithms.includes(tokenAlgorithm(token) as never)) throw tokenError('FAST_JWT_INVALID_ALGORITHM');
        return app.jwt.verify(token);
      };
      app.log.info(
        { algorithms, keys: keys.length, publicRooms: settings.publicRooms, publicTickers: settings.publicTickers, serviceApiKeys: apiKeys.size },
        'auth is on: streams need a token unless their rooms are public, publishing needs a token or an API key',
      );
    } else {
      app.log.warn(
        'AUTH IS OFF: anyone can read every room and publish as anyone. Set JWT_SECRET or JWT_PUBLIC_KEY_FILE to require tokens.',
      );
    }

    // authorizeSubscription needs the reply to tie the stream slot to the response's lifetime:
    // kept on the request (a plain property, set by a synchronous hook) by the routes that call
    // it, the GET routes. Every request of every other route pays nothing for it.
    const replies = {
      get: (request: FastifyRequest): FastifyReply | undefined => request[kStreamReply] ?? undefined,
    };
    const rememberReply = (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void => {
      request[kStreamReply] = reply;
      done();
    };

    // Operator-only routes (`config: { admin: true }`: /status, and /metrics unless METRICS_PUBLIC):
    // whenever tokens or service keys are configured, they need a service key, as `X-API-Key` or
    // as a bearer token (what Prometheus' `authorization` scrape setting sends). One rule, no
    // combination of settings that leaves them open by accident; development (neither) stays open.
    const operatorKeyRequired = enabled || apiKeys.size > 0;
    const requireOperatorKey = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
      const apiKey = request.headers['x-api-key'];
      const bearer = bearerToken(request.headers.authorization);
      const presented = (Array.isArray(apiKey) ? apiKey[0] : apiKey) || (bearer.found ? bearer.token : undefined);
      if (presented === undefined || presented === '') {
        throw refusal(reply, { ok: false, statusCode: 401, reason: 'operator route: send a service API key (X-API-Key or Authorization: Bearer)' });
      }
      if (apiKeys.serviceFor(presented) === null) throw refusal(reply, { ok: false, statusCode: 401, reason: 'invalid API key' });
    };

    // Both hooks go on the routes that need them, when they are declared (every route is
    // registered after this plugin): a hook on every request would cost every publish and every
    // 404 a promise and a route-options lookup for nothing.
    app.addHook('onRoute', (route) => {
      const methods = Array.isArray(route.method) ? route.method : [route.method];
      const add = (hook: onRequestHookHandler): void => {
        const existing = route.onRequest === undefined ? [] : Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest];
        route.onRequest = [...existing, hook];
      };
      if (methods.includes('GET') || methods.includes('HEAD')) add(rememberReply);
      if (operatorKeyRequired && (route.config as { admin?: unknown } | undefined)?.admin === true) add(requireOperatorKey as onRequestHookHandler);
    });

    app.decorate('authEnabled', enabled);
    app.decorate('operatorKeyRequired', operatorKeyRequired);
    app.decorate('streamQuota', streamQuota);
    app.decorateRequest('publisher', null);
    // Declared up front, so every request object has the same shape.
    app.decorateRequest(kStreamReply, null);
    app.decorateRequest('authorizeSubscription', async function (this: FastifyRequest, channels: readonly Channel[], options: { stream?: boolean } = {}) {
      const request = this;
      const carriers = { authorization: request.headers.authorization, cookie: request.headers.cookie, url: request.url };
      // A cookie rides along on any request the browser makes, including one a page on another
      // origin starts: it authorises a stream only from this gateway's own origin or a listed one.
      const lookup = findToken(carriers, policy.cookieName);
      const cookieRefused = lookup.found && lookup.source === 'cookie' && !cookieTrusted(request, listedOrigins);
      const decision = await decideSubscription(policy, verify, cookieRefused ? { ...carriers, cookie: undefined } : carriers, channels);
      if (!decision.ok && cookieRefused) {
        request.log.info({ origin: request.headers.origin, site: request.headers['sec-fetch-site'] }, 'stream refused: auth cookie from another site');
        throw refusal(replies.get(request), {
          ok: false,
          statusCode: 403,
          reason: 'the auth cookie is accepted only from this gateway\'s own origin or one listed in CORS_ORIGINS; send the token as ?token= or a header',
        });
      }
      if (!decision.ok) {
        request.log.info({ statusCode: decision.statusCode, reason: decision.reason }, 'stream refused');
        throw refusal(replies.get(request), decision);
      }
      const { identity } = decision.value;
      if (options.stream === false) return decision.value;
      // A token's `exp` can lie far ahead (or be absent when allowed): an authenticated stream
      // still ends after MAX_STREAM_LIFETIME_MS, and its client comes back with a current token.
      if (identity !== null && settings.maxStreamLifetimeMs > 0) {
        const lifetimeEnd = Date.now() + settings.maxStreamLifetimeMs;
        decision.value.expiresAt = Math.min(decision.value.expiresAt ?? lifetimeEnd, lifetimeEnd);
      }
      if (identity !== null) {
        const release = streamQuota.acquire(identity);
        if (release === null) {
          request.log.info({ identity, max: streamQuota.maxPerIdentity }, 'stream refused: too many open streams');
          replies.get(request)?.header('retry-after', '5');
          throw new AuthError(429, `too many open streams for this identity (at most ${streamQuota.maxPerIdentity})`);
        }
        const response = replies.get(request)?.raw;
        if (response === undefined || response.destroyed) release();
        else response.once('close', release);
      }
      return decision.value;
    });

    app.decorate('authorizeModification', (request: FastifyRequest, author: string | null) => {
      const publisher = request.publisher;
      // A route that did not run authorizePublishing first is a programming error: refuse.
      const decision = publisher === null ? { ok: false as const, statusCode: 403 as const, reason: 'not authorised' } : decideModification(publisher, author);
      if (!decision.ok) {
        request.log.info({ statusCode: decision.statusCode, reason: decision.reason, identity: publisher?.identity }, 'modification refused');
        throw refusal(undefined, decision);
      }
    });

    app.decorate('authorizePublishing', (kind: string, options: { moderation?: boolean; param?: string } = {}): preHandlerAsyncHookHandler => {
      // The route parameter holding the channel name: `channel` on /streams routes, `room`, `symbol` on the built-ins' own.
      const param = options.param ?? 'channel';
      return async function (request, reply) {
        const name = (request.params as Record<string, string | undefined>)[param] ?? '';
        const apiKey = request.headers['x-api-key'];
        const decision = await decidePublish(
          policy,
          verify,
          apiKeys,
          { authorization: request.headers.authorization, apiKey: Array.isArray(apiKey) ? apiKey[0] : apiKey },
          { kind, name },
          options,
        );
        if (!decision.ok) {
          request.log.info({ statusCode: decision.statusCode, reason: decision.reason }, 'publish refused');
          throw refusal(reply, decision);
        }
        request.publisher = decision.value;
      };
    });
  },
  { name: 'auth', fastify: '5.x', dependencies: ['gateway'] },
);
