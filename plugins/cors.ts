import fp from 'fastify-plugin';
import cors from '@fastify/cors';
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import { httpError } from './errors.ts';

/**
 * Every method a route answers (PATCH: editing a message), so a browser's preflight for any of
 * them succeeds from an allowed origin.
 */
export const CORS_METHODS = ['GET', 'HEAD', 'POST', 'PATCH', 'DELETE', 'OPTIONS'];

/**
 * Response headers a script on an allowed origin may read besides the CORS-safelisted ones:
 * `Retry-After` (429, and 503 from publishing or a replica that cannot take a stream now),
 * `WWW-Authenticate` (401). A redirect's `Location` is followed by the browser itself, and the
 * rate limiter's `X-RateLimit-*` are not part of the documented API.
 */
export const CORS_EXPOSED_HEADERS = ['Retry-After', 'WWW-Authenticate'];

/**
 * An OPTIONS request is only ever a CORS preflight here: without `Origin` and
 * `Access-Control-Request-Method` it is refused with the gateway's JSON 400 (@fastify/cors's
 * own strict check answers `text/plain`, so it is turned off and done here, before it).
 */
function requirePreflightHeaders(request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction): void {
  // Synchronous: every request passes here, and only OPTIONS is looked at.
  if (request.method !== 'OPTIONS' || (request.headers.origin !== undefined && request.headers['access-control-request-method'] !== undefined)) return done();
  done(httpError(400, 'OPTIONS is answered only as a CORS preflight: send Origin and Access-Control-Request-Method'));
}

/** Browsers on other origins may read streams and publish only from the configured origins. */
export default fp(
  async (app) => {
    // Added before @fastify/cors registers its own onRequest hook, so it runs first.
    app.addHook('onRequest', requirePreflightHeaders);
    await app.register(cors, {
      origin: app.config.corsOrigins,
      methods: CORS_METHODS,
      allowedHeaders: ['Content-Type', 'Authorization', 'Last-Event-ID'],
      exposedHeaders: CORS_EXPOSED_HEADERS,
      maxAge: 600,
      // Cookies (a token for EventSource) only ever go to origins named in the allow-list.
      credentials: app.config.corsOrigins !== true,
      // requirePreflightHeaders does this check, answering JSON.
      strictPreflight: false,
    });
  },
  { name: 'cors', fastify: '5.x', dependencies: ['gateway'] },
);
