import type { Logger } from './logger.ts';

/**
 * Logs the first occurrence at once and then at most one line per interval with the number
 * suppressed meanwhile, so a flood of bad records cannot flood the logs.
 */
export function rateLimitedWarn(logger: Logger, intervalMs = 10_000): (context: object, message: string) => void {
  let lastLoggedAt = -Infinity;
  let suppressed = 0;
  return (context, message) => {
    const now = Date.now();
    if (now - lastLoggedAt < intervalMs) {
      suppressed += 1;
      return;
    }
    logger.warn({ ...context, suppressedSinceLast: suppressed }, message);
    lastLoggedAt = now;
    suppressed = 0;
  };
}
