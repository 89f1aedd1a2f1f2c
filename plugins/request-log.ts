import fp from 'fastify-plugin';
import { LogController, type FastifyReply, type FastifyRequest } from 'fastify';

/** Load balancers and orchestrators poll these every few seconds: at info they would drown the log. */
const PROBES = new Set(['/healthz', '/readyz']);

function isProbe(request: FastifyRequest): boolean {
  const path = request.routeOptions?.url ?? request.url.split('?')[0];
  return path !== undefined && PROBES.has(path);
}

/**
 * Fastify's request log lines ("incoming request", "request completed"), at `debug` instead of
 * `info` for health probes. Passed to Fastify as `logController` (app.ts).
 */
export class RequestLogController extends LogController {
  override incomingRequest(request: FastifyRequest, reply: FastifyReply, metadata?: Record<string, unknown>): void {
    if (isProbe(request)) request.log.debug({ req: request }, 'incoming request');
    else super.incomingRequest(request, reply, metadata);
  }

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply, metadata?: Record<string, unknown>): void {
    if (!error && isProbe(request)) reply.log.debug({ res: reply, responseTime: reply.elapsedTime }, 'request completed');
    else super.requestCompleted(error, request, reply, metadata);
  }
}

/**
 * A client error's reason (the `message` of its 4xx body) at `debug`: the error handler
 * (plugins/errors.ts) answers 4xx without logging, and at `info` a reason per refused request
 * would be noise. An event stream logs "incoming request" when it opens and "stream ended"
 * when it ends (plugins/event-stream.ts): its reply is hijacked, so it has no "request completed".
 */
export default fp(
  async (app) => {
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
  },
  { name: 'request-log', fastify: '5.x' },
);
