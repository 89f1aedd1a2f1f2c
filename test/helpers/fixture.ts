import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Where a fixture registers its own cleanup: the test's `t` (cleaned up when that test ends) or
 * tap's root `t` (when the file ends). Every fixture in test/helpers takes one as its first
 * argument, so a test never writes a teardown for what a fixture opened.
 */
export interface Teardowns {
  teardown(fn: () => unknown): void;
}

/** A fresh directory under the OS temp dir, removed with its contents when `t` ends. */
export function tempDir(t: Teardowns, prefix = 'kafka-sse-gateway-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
