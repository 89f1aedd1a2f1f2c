import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { loadConfig, type Config } from './config.ts';
import type { EventBus } from './bus/types.ts';
import gateway from '../plugins/gateway.ts';
import errors from '../plugins/errors.ts';
import cors from '../plugins/cors.ts';
import eventStream from '../plugins/event-stream.ts';
import healthRoutes from '../routes/health.ts';
import eventRoutes from '../routes/events.ts';
import publishRoutes from '../routes/publish.ts';

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
  };
}

/** Builds the gateway without listening: tests call it, `server.ts` listens. */
export async function buildApp(options: BuildAppOptions = {}): Promise<FastifyInstance> {
  const config = options.config ?? loadConfig();
  const app = Fastify({
    logger: options.logger ?? loggerOptions(config),
    bodyLimit: config.bodyLimitBytes,
    requestIdHeader: 'x-request-id',
    return503OnClosing: true,
  }).withTypeProvider<TypeBoxTypeProvider>();

  await app.register(gateway, { config, ...(options.bus ? { bus: options.bus } : {}) });
  await app.register(errors);
  await app.register(cors);
  await app.register(eventStream);
  await app.register(healthRoutes);
  await app.register(eventRoutes);
  await app.register(publishRoutes);
  return app;
}
