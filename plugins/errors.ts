import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import fp from 'fastify-plugin';
import type { FastifyError } from 'fastify';
import { BusUnavailableError } from '../src/bus/types.ts';

/** An error the error handler answers with this status and message (for 4xx from route code). */
export function httpError(statusCode: number, message: string): Error & { statusCode: number } {
  return Object.assign(new Error(message), { statusCode });
}

function body(statusCode: number, message: string) {
  return { statusCode, error: STATUS_CODES[statusCode] ?? 'Error', message };
}

const MISSING_HOST = 'an HTTP/1.1 request needs a Host header';
const UNSUPPORTED_EXPECTATION = 'Expect: only "100-continue" is supported';

/**
 * Every error leaves as JSON `{ statusCode, error, message }`. Client mistakes keep Fastify's
 * message (it names the offending field); server-side failures never echo internals. That
 * includes the two refusals Node's HTTP server makes before Fastify sees a request: an HTTP/1.1
 * request without `Host` (RFC 9112 3.2: 400; app.ts turns Node's own check off, this hook makes
 * it) and an `Expect` other than `100-continue` (RFC 9110 10.1.1: 417, Node's
 * `checkExpectation` event). Both close the connection, as Node does.
 */
export default fp(
  async (app) => {
    // The first onRequest hook (before CORS and auth), and synchronous: every request passes here.
    app.addHook('onRequest', (request, reply, done) => {
      const { raw } = request;
      if (raw.httpVersionMajor !== 1 || raw.httpVersionMinor !== 1 || raw.headers.host !== undefined) return done();
      reply.header('connection', 'close');
      done(httpError(400, MISSING_HOST));
    });
    app.server.on('checkExpectation', (request: IncomingMessage, response: ServerResponse) => {
      const payload = JSON.stringify(body(417, UNSUPPORTED_EXPECTATION));
      app.log.debug({ statusCode: 417, reason: UNSUPPORTED_EXPECTATION, method: request.method }, 'request refused');
      response.writeHead(417, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(payload), connection: 'close' });
      response.end(payload);
    });
    app.setErrorHandler((error: FastifyError, request, reply) => {
      if (error instanceof BusUnavailableError) {
        request.log.warn({ reason: error.message }, 'publish refused: bus unavailable');
        return reply.code(503).header('Retry-After', '5').send(body(503, error.message));
      }
      const statusCode = error.statusCode !== undefined && error.statusCode >= 400 ? error.statusCode : 500;
      if (statusCode >= 500) {
        request.log.error({ err: error }, 'request failed');
        return reply.code(statusCode).send(body(statusCode, 'internal error'));
      }
      return reply.code(statusCode).send(body(statusCode, error.message));
    });
    app.setNotFoundHandler((request, reply) => {
      const path = (request.url.split('?')[0] ?? '').slice(0, 200);
      return reply.code(404).send(body(404, `no route ${request.method} ${path}`));
    });
  },
  { name: 'errors', fastify: '5.x' },
);
