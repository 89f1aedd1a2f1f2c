import type { LogFn } from 'pino';

/** The logging the domain needs: satisfied by pino and by Fastify's logger alike. */
export interface Logger {
  error: LogFn;
  warn: LogFn;
  info: LogFn;
  debug: LogFn;
  trace: LogFn;
  child(bindings: Record<string, unknown>): Logger;
}
