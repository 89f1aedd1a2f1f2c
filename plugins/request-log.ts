import fp from 'fastify-plugin';
import type { FastifyRequest } from 'fastify';

/** Load balancers and orchestrators poll these every few seconds: at info they would drown the log. */
const PROBES = new Set(['/healthz', '/readyz']);

function isProbe(request: FastifyRequest): boolean {
  const url = request.routeOptions.url;
  return url !== undefined && PROBES.has(url);
}

/**
 * Request logging in place of Fastify's own (`disableRequestLogging` in src/app.ts): the same
 * "incoming request" and "request completed" lines at `info`, except for health probes, which
 * log at `debug`; and a client error's reason (the `message` of its 4xx body) at `debug`. An
 * event stream logs "incoming request" when it opens and "stream ended" when it ends
 * (plugins/event-stream.ts): its reply is hijacked, so it has no "request completed".
 */
export default fp(
  async (app) => {
    app.addHook('onRequest', async (request) => {
      if (isProbe(request)) request.log.debug({ req: request }, 'incoming request');
      else request.log.info({ req: request }, 'incoming request');
    });

    app.addHook('onSend', async (request, reply, payload) => {
      const statusCode = reply.statusCode;
      if (statusCode < 400 || statusCode >= 500) return payload;
      let reason: unknown;
      try {
        reason = typeof payload === 'string' ? (JSON.parse(payload) as { message?: unknown }).message : undefined;
      } catch {
        // Not JSON: no reason to log but the status.
      }
      request.log.debug({ statusCode, reason }, 'request refused');
      return payload;
    });

    app.addHook('onResponse', async (request, reply) => {
      const line = { res: reply, responseTime: reply.elapsedTime };
      if (isProbe(request)) request.log.debug(line, 'request completed');
      else request.log.info(line, 'request completed');
    });
  },
  { name: 'request-log', fastify: '5.x' },
);
