import closeWithGrace from 'close-with-grace';
import { buildApp, loggerOptions } from './app.ts';
import { ConfigError, loadConfig, type Config } from './config.ts';

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

const config = configOrExit();
const pretty = process.stdout.isTTY && process.env.NODE_ENV !== 'production';
const base = loggerOptions(config);
const app = await buildApp({
  config,
  logger: pretty && typeof base === 'object' ? { ...base, transport: { target: 'pino-pretty' } } : base,
});

closeWithGrace({ delay: config.shutdownTimeoutMs, logger: app.log }, async ({ signal, err }) => {
  if (err) app.log.error({ err }, 'shutting down after an uncaught error');
  else app.log.info({ signal }, 'shutting down');
  await app.close();
});

await app.listen({ port: config.port, host: config.host });
