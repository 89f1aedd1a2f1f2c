import { readFileSync } from 'node:fs';

/** Where Linux exposes the cap it puts on every listen socket's backlog. */
export const SOMAXCONN_PATH = '/proc/sys/net/core/somaxconn';

/**
 * The kernel's cap on a listen backlog (`net.core.somaxconn`), or null where it cannot be read
 * (not Linux, a restricted /proc). Linux silently clips `listen(fd, backlog)` to it (listen(2),
 * "If the backlog argument is greater than the value in /proc/sys/net/core/somaxconn, then it is
 * silently capped to that value").
 */
export function readSomaxconn(path: string = SOMAXCONN_PATH): number | null {
  try {
    const value = Number(readFileSync(path, 'utf8').trim());
    return Number.isInteger(value) && value > 0 ? value : null;
  } catch {
    return null;
  }
}

/**
 * The backlog the listen socket really gets for `requested` (LISTEN_BACKLOG).
 *
 * @param somaxconn the kernel's cap (`readSomaxconn()`); null when unknown.
 * @returns `effective` = min(requested, somaxconn); `clipped` true when the kernel lowers it,
 *   which the server logs so an operator who raised LISTEN_BACKLOG knows to raise the sysctl too.
 */
export function effectiveListenBacklog(requested: number, somaxconn: number | null): { effective: number; clipped: boolean } {
  if (somaxconn === null || somaxconn >= requested) return { effective: requested, clipped: false };
  return { effective: somaxconn, clipped: true };
}
