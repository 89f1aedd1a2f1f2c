import fp from 'fastify-plugin';
import { LogController, type FastifyBaseLogger, type FastifyReply, type FastifyRequest } from 'fastify';

/** Load balancers and orchestrators poll these every few seconds: at info they would drown the log. */
const PROBES = new Set(['/healthz', '/readyz']);

/** Whether `log` writes lines at `level` (pino's isLevelEnabled; a logger without it is asked to log). */
function enabled(log: FastifyBaseLogger, level: 'info' | 'debug'): boolean {
  const withCheck = log as FastifyBaseLogger & { isLevelEnabled?: (level: string) => boolean };
  return typeof withCheck.isLevelEnabled === 'function' ? withCheck.isLevelEnabled(level) : true;
}

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
    // Below info (the usual production setting is info, benchmarks run at warn) neither line is
    // written: skip the probe check, which builds the route's options object.
    if (!enabled(request.log, 'info')) return;
    if (isProbe(request)) request.log.debug({ req: request }, 'incoming request');
    else super.incomingRequest(request, reply, metadata);
  }

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply, metadata?: Record<string, unknown>): void {
    if (!error && !enabled(reply.log, 'info')) return;
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
    // Synchronous, and nothing read unless the line is written: it runs on every response.
    app.addHook('onSend', (request, reply, payload, done) => {
      const statusCode = reply.statusCode;
      if (statusCode >= 400 && statusCode < 500 && enabled(request.log, 'debug')) {
        let reason: unknown;
        try {
          reason = typeof payload === 'string' ? (JSON.parse(payload) as { message?: unknown }).message : undefined;
        } catch {
          // Not JSON: no reason to log but the status.
        }
        request.log.debug({ statusCode, reason }, 'request refused');
      }
      done(null, payload);
    });
  },
  { name: 'request-log', fastify: '5.x' },
);
