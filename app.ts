import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { loadConfig, type Config } from './src/config.ts';
import type { EventBus } from './src/bus/types.ts';
import gateway from './plugins/gateway.ts';
import errors from './plugins/errors.ts';
import validation, { formatSchemaErrors, serializerFactory, validatorFactory } from './plugins/validation.ts';
import cors from './plugins/cors.ts';
import eventStream from './plugins/event-stream.ts';
import presence from './plugins/presence.ts';
import healthRoutes from './routes/health.ts';
import streamRoutes from './routes/streams.ts';
import roomRoutes from './routes/built-in/rooms.ts';
import presenceRoutes from './routes/presence.ts';
import tickerRoutes from './routes/built-in/tickers.ts';
import publishRoutes from './routes/publish.ts';
import docs from './plugins/docs.ts';
import metrics from './plugins/metrics.ts';
import statusRoutes from './routes/status.ts';
import chartHistory from './plugins/charts.ts';
import staticFiles from './plugins/static.ts';
import auth from './plugins/auth.ts';
import rateLimit from './plugins/rate-limit.ts';
import { redactTokenInUrl } from './src/auth/token-source.ts';
import requestLog, { RequestLogController } from './plugins/request-log.ts';

export interface BuildAppOptions {
  /** Defaults to the environment (`loadConfig()`). */
  config?: Config;
  /** Defaults to Kafka when `config.kafkaBrokers` is set, else the embedded bus. */
  bus?: EventBus;
  /** Fastify's logger option; defaults to pino at `config.logLevel`. */
  logger?: FastifyServerOptions['logger'];
}

export function loggerOptions(config: Config): FastifyServerOptions['logger'] {
  return {
    level: config.logLevel,
    redact: { paths: ['req.headers.authorization', 'req.headers.cookie', 'req.headers["x-api-key"]'], censor: '[redacted]' },
    // Fastify's request serializer, with `?token=` (EventSource's only way to send a token) redacted.
    serializers: {
      req: (request: FastifyRequest) => ({
        method: request.method,
        url: redactTokenInUrl(request.url),
        host: request.host,
        remoteAddress: request.ip,
        remotePort: request.socket?.remotePort,
      }),
    },
  };
}

/**
 * Config.trustProxy in Fastify's terms. A hop count becomes "the nearest N hops" (Fastify 5
 * itself now ignores X-Forwarded-For for a bare number): hop 0 is the socket's peer, so with 1
 * the client address is the one our load balancer appended, whatever the client wrote before it.
 */
export function fastifyTrustProxy(trust: Config['trustProxy']): FastifyServerOptions['trustProxy'] {
  if (typeof trust === 'number') return trust === 0 ? false : (_address: string, hop: number) => hop < trust;
  return trust;
}

/** Builds the gateway without listening: tests call it, `server.ts` listens. */
export async function buildApp(options: BuildAppOptions = {}): Promise<FastifyInstance> {
  const config = options.config ?? loadConfig();
  const app = Fastify({
    logger: options.logger ?? loggerOptions(config),
    bodyLimit: config.bodyLimitBytes,
    requestIdHeader: 'x-request-id',
    // Health probes log at debug (plugins/request-log.ts, which also logs 4xx reasons at debug).
    logController: new RequestLogController(),
    // While draining, a new stream is accepted and told to come back later (a 503 would make
    // EventSource give up for good); /readyz already tells the load balancer to look elsewhere.
    return503OnClosing: false,
    trustProxy: fastifyTrustProxy(config.trustProxy),
    // Slow or idle request senders are cut off; open event streams are not (they are responses).
    requestTimeout: config.requestTimeoutMs,
    http: {
      // Node checks request deadlines on a timer (every 30 s by default): a limit of 10 s would
      // then hold anywhere up to 40 s. Checking often is cheap: only connections with a request
      // still arriving are looked at, never open streams.
      connectionsCheckingInterval: Math.min(1000, Math.max(100, Math.floor(config.requestTimeoutMs / 4))),
      // The head must arrive within the same limit as the whole request (Node's default is 60 s).
      headersTimeout: config.requestTimeoutMs,
      requestTimeout: config.requestTimeoutMs,
      // Node would answer an HTTP/1.1 request without Host itself, 400 with an empty body:
      // plugins/errors.ts refuses it instead, with the gateway's JSON error.
      requireHostHeader: false,
    },
    keepAliveTimeout: config.keepAliveTimeoutMs,
    // Fastify bounds every plugin start and every close hook by this (10 s by default): the
    // drain alone takes up to DRAIN_WINDOW_MS (default 10 s), and a close cut short by it ends
    // in exit 1. Shutdown has its own bound, SHUTDOWN_TIMEOUT_MS (always above the window).
    pluginTimeout: Math.max(10_000, config.shutdownTimeoutMs),
    // JSON bodies are validated as sent (no coercion, no silent removal); errors name the field.
    // Route schemas compile once per process, not once per app (plugins/validation.ts).
    schemaController: { compilersFactory: { buildValidator: validatorFactory(), buildSerializer: serializerFactory() } },
    schemaErrorFormatter: formatSchemaErrors,
    // Fastify's own answers to a malformed URL quote the whole URL, `?token=` included.
    frameworkErrors: (error, _request, reply) => {
      const tooLong = error.code === 'FST_ERR_MAX_PARAM_LENGTH';
      const message = tooLong ? 'a URL parameter is too long' : 'malformed URL (invalid percent-encoding)';
      // The framework hands an untyped-route reply; its generic status type admits no number.
      return (reply as FastifyReply).code(tooLong ? 414 : 400).send({ statusCode: tooLong ? 414 : 400, error: tooLong ? 'URI Too Long' : 'Bad Request', message });
    },
  }).withTypeProvider<TypeBoxTypeProvider>();
  // Node reads this per connection; Fastify's `http` option would widen the server's types.
  (app.server as { maxHeaderSize?: number }).maxHeaderSize = config.maxHeaderBytes;

  await app.register(requestLog);
  await app.register(gateway, { config, ...(options.bus ? { bus: options.bus } : {}) });
  await app.register(errors);
  await app.register(validation);
  await app.register(cors);
  await app.register(auth);
  await app.register(rateLimit);
  // Before every route: the OpenAPI document lists only routes registered after it.
  await app.register(docs);
  // Before the streams, which join it; its onClose (goodbye statements) runs before the bus closes.
  await app.register(presence);
  await app.register(eventStream);
  await app.register(metrics);
  await app.register(chartHistory);
  await app.register(healthRoutes);
  // The built-in kinds' own routes, then what every kind gets from its declaration.
  await app.register(roomRoutes);
  await app.register(presenceRoutes);
  await app.register(tickerRoutes);
  await app.register(streamRoutes);
  await app.register(publishRoutes);
  await app.register(statusRoutes);
  await app.register(staticFiles);
  return app;
}
