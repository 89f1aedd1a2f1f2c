import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import t from 'tap';
import { until } from './helpers/sse-client.ts';
import { freePort } from './helpers/server-process.ts';

/**
 * `npm run kafka -- --port N` (scripts/kafka/run.ts): a broker on a fixed port. Its own file:
 * starting a broker takes most of a test file's time budget on a busy machine.
 */

// Through tsx's loader, as `npm run kafka` runs it, in one Node process (the tsx CLI adds a second).
const TSX = [process.execPath, '--import', 'tsx'] as const;
const root = new URL('..', import.meta.url).pathname;

function run(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(TSX[0], [...TSX.slice(1), 'scripts/kafka/run.ts', ...args], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('exit', (code) => resolve({ code, stderr }));
  });
}


t.test('npm run kafka -- --port N listens on that port, and refuses a port in use', async (t) => {
  const busy = createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  t.teardown(() => busy.close());
  const busyPort = (busy.address() as { port: number }).port;
  const refused = await run(['--port', String(busyPort)]);
  t.equal(refused.code, 1);
  t.match(refused.stderr, new RegExp(`port ${busyPort} is in use`));
  t.equal((await run(['--port', 'x'])).code, 2, 'a port that is no number');

  const port = await freePort();
  const child = spawn(TSX[0], [...TSX.slice(1), 'scripts/kafka/run.ts', '--port', String(port)], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  t.teardown(async () => {
    if (child.exitCode === null) child.kill('SIGTERM');
    await exited;
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  await until(() => stdout.includes('KAFKA_BROKERS=') || child.exitCode !== null, 120_000, `Kafka on port ${port}`);
  t.equal(stdout.trim(), `KAFKA_BROKERS=127.0.0.1:${port}`, stderr);
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'stops cleanly on SIGTERM');
});
