import fp from 'fastify-plugin';
import rateLimit from '@fastify/rate-limit';
import type { FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * preHandlers for publish routes: `perIp` first (before any token is verified), then
     * auth, then `perIdentity` (keyed by the authenticated publisher; skipped without one).
     */
    publishRateLimit: { perIp: preHandlerAsyncHookHandler; perIdentity: preHandlerAsyncHookHandler };
  }
}

class RateLimitedError extends Error {
  readonly statusCode = 429;
  override name = 'RateLimitedError';
}

type Limiter = (request: FastifyRequest) => Promise<
  { isAllowed: true } | { isAllowed: false; isExceeded: boolean; max: number; remaining: number; ttlInSeconds: number }
>;

/**
 * Publishing limits (@fastify/rate-limit, in-memory per replica): a fixed window of
 * RATE_LIMIT_WINDOW_MS per client IP and per identity. Over the limit: 429 with Retry-After.
 * Streams are not rate-limited here: they are capped per identity by the auth plugin.
 */
export default fp(
  async (app) => {
    const { publishRatePerIp, publishRatePerIdentity, rateLimitWindowMs } = app.config.auth;
    await app.register(rateLimit, { global: false, timeWindow: rateLimitWindowMs });

    // Two limiters on one request: createRateLimit (unlike rateLimit()) does not mark the
    // request as limited, so the second one still runs.
    // A request without a key (no identity) is not limited by that limiter: it is let through
    // before the library is asked (its check awaits the key generator and an allow-list).
    const limiter = (max: number, key: (request: FastifyRequest) => string | null): preHandlerAsyncHookHandler => {
      const check = app.createRateLimit({
        max,
        timeWindow: rateLimitWindowMs,
        keyGenerator: (request: FastifyRequest) => key(request) ?? '',
      }) as unknown as Limiter;
      return async (request: FastifyRequest, reply: FastifyReply) => {
        if (key(request) === null) return;
        const result = await check(request);
        if (result.isAllowed) return;
        reply.header('x-ratelimit-limit', result.max).header('x-ratelimit-remaining', result.remaining);
        if (!result.isExceeded) return;
        const retryAfter = String(Math.max(1, result.ttlInSeconds));
        request.log.info({ max: result.max, retryAfter }, 'publish rate-limited');
        reply.header('retry-after', retryAfter);
        throw new RateLimitedError(`rate limit exceeded, retry in ${retryAfter} s`);
      };
    };

    app.decorate('publishRateLimit', {
      perIp: limiter(publishRatePerIp, (request) => `ip:${request.ip}`),
      perIdentity: limiter(publishRatePerIdentity, (request) => {
        const identity = request.publisher?.identity;
        return identity === null || identity === undefined ? null : `id:${identity}`;
      }),
    });
  },
  { name: 'rate-limit', fastify: '5.x', dependencies: ['gateway', 'auth'] },
);
