import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, type Teardowns } from './fixture.ts';
import { until } from './sse-client.ts';

/** Debian's haproxy (`npm test` installs it where it can; tests needing it skip with the reason otherwise). */
export const HAPROXY = '/usr/sbin/haproxy';

/**
 * HAProxy running `config` (the whole configuration file's text; it must bind 127.0.0.1:`port`
 * and pass `/readyz` to a backend), in the foreground as a child process, stopped when `t` ends.
 * Resolves with its base URL once a `/readyz` through it answers 200; rejects with HAProxy's
 * own message if it exits first (a configuration it refuses), or after 20 s.
 */
export async function startHaproxy(t: Teardowns, config: string, port: number): Promise<{ url: string }> {
  const file = join(tempDir(t, 'haproxy-'), 'haproxy.cfg');
  writeFileSync(file, config);
  const child = spawn(HAPROXY, ['-f', file, '-db'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  t.teardown(async () => {
    if (child.exitCode === null) child.kill('SIGTERM');
    await exited;
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const url = `http://127.0.0.1:${port}`;
  await until(
    async () => {
      if (child.exitCode !== null) throw new Error(`haproxy exited: ${stderr}`);
      return (await fetch(`${url}/readyz`).catch(() => undefined))?.status === 200;
    },
    20_000,
    'haproxy to pass requests on',
  );
  return { url };
}
