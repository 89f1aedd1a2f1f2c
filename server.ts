import { createRequire } from 'node:module';
import closeWithGrace from 'close-with-grace';
import { buildApp, loggerOptions } from './app.ts';
import { ConfigError, likelyMistypedSettings, loadConfig, type Config } from './src/config.ts';
import { describeKafkaConnection, isUnrecoverableKafkaError } from './src/bus/kafka-connection.ts';
import { effectiveListenBacklog, readSomaxconn, SOMAXCONN_PATH } from './src/listen-backlog.ts';

function configOrExit(): Config {
  try {
    return loadConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    // No logger exists yet: the configuration that would set it up is what failed.
    process.stderr.write(`${error.message}\n`);
    process.exit(1);
  }
}

function isInstalled(name: string): boolean {
  try {
    createRequire(import.meta.url).resolve(name);
    return true;
  } catch {
    return false;
  }
}

const config = configOrExit();
// pino-pretty is a development dependency: an install without them (`npm ci --omit=dev`) logs JSON lines even on a terminal.
const pretty = process.stdout.isTTY && process.env.NODE_ENV !== 'production' && isInstalled('pino-pretty');
const base = loggerOptions(config);
const app = await buildApp({
  config,
  logger: pretty && typeof base === 'object' ? { ...base, transport: { target: 'pino-pretty' } } : base,
});

// A mistyped variable is otherwise ignored without a word, its default silently in effect.
for (const { variable, meant } of likelyMistypedSettings()) {
  app.log.warn({ variable, meant }, `unknown setting ${variable} ignored: did you mean ${meant}?`);
}

closeWithGrace({ delay: config.shutdownTimeoutMs, logger: app.log }, async ({ signal, err }) => {
  if (err) app.log.error({ err }, 'shutting down after an uncaught error');
  else app.log.info({ signal }, 'shutting down');
  await app.close();
});

await app.listen({ port: config.port, host: config.host, backlog: config.listenBacklog });

const backlog = effectiveListenBacklog(config.listenBacklog, readSomaxconn());
if (backlog.clipped) {
  app.log.warn(
    { requested: config.listenBacklog, effective: backlog.effective },
    `LISTEN_BACKLOG=${config.listenBacklog} is capped by the kernel at ${backlog.effective} (${SOMAXCONN_PATH}): ` +
      `raise net.core.somaxconn (sysctl -w net.core.somaxconn=${config.listenBacklog}) for the larger queue to take effect`,
  );
}

if (config.kafkaBrokers !== null) {
  const security = config.kafkaSecurity;
  app.log.info({ kafka: describeKafkaConnection(security) }, 'Kafka connection security');
  if (security.sasl?.mechanism === 'plain' && security.ssl === null) {
    app.log.warn('KAFKA_SASL_MECHANISM=plain without KAFKA_SSL sends the Kafka password in clear text');
  }
  if (security.failFast) exitOnUnrecoverableKafkaError();
}

/**
 * KAFKA_FAIL_FAST: the bus retries in the background forever (right for an unreachable
 * broker), but wrong credentials or a rejected certificate will not fix themselves: exit 1 so
 * the orchestrator reports the deployment as failed instead of a replica that never gets ready.
 */
function exitOnUnrecoverableKafkaError(): void {
  const timer = setInterval(() => {
    const { ready, reason } = app.bus.readiness();
    if (ready || app.isShuttingDown()) {
      clearInterval(timer);
      return;
    }
    if (reason === undefined || !isUnrecoverableKafkaError(reason)) return;
    clearInterval(timer);
    app.log.fatal({ reason }, 'Kafka refused the connection (KAFKA_FAIL_FAST is set): exiting');
    const forceExit = setTimeout(() => process.exit(1), 3000);
    forceExit.unref();
    app.close().finally(() => process.exit(1));
  }, 200);
}
