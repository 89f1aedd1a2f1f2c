import { spawn } from 'node:child_process';
import { freePort } from '../../scripts/ports.ts';
import type { Teardowns } from './fixture.ts';
import { TEST_SERVER_ENTRY_ENV } from '../../scripts/test-tools.ts';
import { until } from './sse-client.ts';

export interface ServerProcess {
  url: string;
  port: number;
  /** Resolves with the exit code once the process has exited. */
  exited: Promise<number | null>;
  kill(signal: NodeJS.Signals): void;
  /** What the process wrote to stderr and stdout so far (its log lines). */
  output(): string;
  /** Sends SIGTERM and resolves once the process has exited: its exit code, and how long it took (ms). */
  terminate(): Promise<{ code: number | null; tookMs: number }>;
}

/** A free TCP port on 127.0.0.1 (scripts/ports.ts), for the tests that import it from here. */
export { freePort };

/**
 * Node's arguments that start the server: under `npm test` the server compiled for the run
 * (scripts/test.ts), started with plain Node as `npm start` starts dist/server.js; run directly
 * (`npx tap file`), the sources through tsx as `npm run dev` does. Spawn with `process.execPath`
 * in the project root.
 */
export function serverArgs(): string[] {
  const built = process.env[TEST_SERVER_ENTRY_ENV];
  return built ? [built] : ['--import', 'tsx', 'server.ts'];
}

/**
 * This process's environment without tap's own module hooks (NODE_OPTIONS): a server runs as
 * users run it, and each hook taxes every module it loads.
 */
export function serverEnv(): NodeJS.ProcessEnv {
  const { NODE_OPTIONS: _tapHooks, ...inherited } = process.env;
  return inherited;
}

/**
 * The real server in a child process with `env` on top of this one's, listening on 127.0.0.1;
 * resolves once `/readyz` answers 200. Killed with SIGKILL at teardown if still running.
 * Started as `serverArgs()` says.
 */
export async function spawnServer(t: Teardowns, env: Record<string, string>): Promise<ServerProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, serverArgs(), {
    env: { ...serverEnv(), PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', NODE_ENV: 'production', CURSOR_SECRET: 'test-cursor-secret-0123456789', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.teardown(() => child.kill('SIGKILL'));
  const url = `http://127.0.0.1:${port}`;
  let exitedEarly = false;
  void exited.then(() => (exitedEarly = true));
  await until(
    async () => {
      if (exitedEarly) throw new Error(`the server exited before it was ready:\n${output}`);
      return (await fetch(`${url}/readyz`).then((response) => response.status, () => 0)) === 200;
    },
    60000,
    `${url}/readyz`,
  );
  const terminate = async () => {
    const signalledAt = Date.now();
    child.kill('SIGTERM');
    const code = await exited;
    return { code, tookMs: Date.now() - signalledAt };
  };
  return { url, port, exited, kill: (signal) => child.kill(signal), output: () => output, terminate };
}
