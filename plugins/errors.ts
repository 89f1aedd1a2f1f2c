import { STATUS_CODES } from 'node:http';
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

/**
 * Every error leaves as JSON `{ statusCode, error, message }`. Client mistakes keep Fastify's
 * message (it names the offending field); server-side failures never echo internals.
 */
export default fp(
  async (app) => {
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
