/**
 * Child processes of the chaos run (gateway replicas, HAProxy), each under a bash watchdog so
 * that none outlives the runner, even when the runner is killed with SIGKILL.
 *
 * The watchdog starts the real process, writes its pid to a file (so kill -9 and SIGTERM reach
 * the process itself, not the wrapper), polls the runner's pid every second and SIGKILLs the
 * child once the runner is gone. The wrapper exits with the child's status (128 + signal when
 * it died of one), so the runner sees a replica's real exit code.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, rmSync } from 'node:fs';
import { freePort as anyFreePort } from '../ports.ts';
import { setTimeout as sleep } from 'node:timers/promises';

const WATCHDOG = `
RUNNER=$1; PID_FILE=$2; shift 2
"$@" &
CPID=$!
echo "$CPID" > "$PID_FILE"
trap 'kill -TERM "$CPID" 2>/dev/null' TERM INT HUP
(
  while kill -0 "$CPID" 2>/dev/null; do
    if ! kill -0 "$RUNNER" 2>/dev/null; then kill -KILL "$CPID" 2>/dev/null; exit 0; fi
    sleep 1
  done
) &
POLLER=$!
while :; do
  wait "$CPID"; RC=$?
  kill -0 "$CPID" 2>/dev/null || break
done
kill "$POLLER" 2>/dev/null
exit "$RC"
`;

/** Every process started here and still running: killed synchronously when the runner exits. */
const live = new Set<Supervised>();
let exitHook = false;

function installExitHook(): void {
  if (exitHook) return;
  exitHook = true;
  process.on('exit', () => {
    for (const proc of live) proc.killSync();
  });
}

/** How a supervised process ended: its exit code (128 + n for signal n) and when. */
export interface Exit {
  code: number;
  at: number;
}

/** One process under a watchdog; `pid` is the real process's (not the wrapper's). */
export class Supervised {
  readonly exited: Promise<Exit>;
  pid: number | undefined;
  exit: Exit | undefined;
  private readonly wrapper: ChildProcess;

  private constructor(
    readonly name: string,
    wrapper: ChildProcess,
    private readonly pidFile: string,
  ) {
    this.wrapper = wrapper;
    live.add(this);
    this.exited = new Promise<Exit>((resolve) => {
      wrapper.once('exit', (code, signal) => {
        live.delete(this);
        this.exit = { code: code ?? (signal === 'SIGKILL' ? 137 : 143), at: Date.now() };
        rmSync(this.pidFile, { force: true });
        resolve(this.exit);
      });
    });
    wrapper.once('error', () => undefined);
  }

  /** Starts `command args` with `env`, stdout and stderr appended to `logFile`. */
  static async start(name: string, command: string, args: string[], env: NodeJS.ProcessEnv, logFile: string, pidFile: string, cwd?: string): Promise<Supervised> {
    installExitHook();
    rmSync(pidFile, { force: true });
    const fd = openSync(logFile, 'a');
    // detached: its own process group, so a Ctrl-C at the terminal reaches only the runner,
    // which then stops everything in order.
    const wrapper = spawn('bash', ['-c', WATCHDOG, 'chaos-watchdog', String(process.pid), pidFile, command, ...args], {
      stdio: ['ignore', fd, fd],
      env,
      detached: true,
      ...(cwd === undefined ? {} : { cwd }),
    });
    closeSync(fd);
    const proc = new Supervised(name, wrapper, pidFile);
    for (let i = 0; i < 250 && proc.exit === undefined; i++) {
      try {
        const pid = Number(readFileSync(pidFile, 'utf8').trim());
        if (pid > 0) {
          proc.pid = pid;
          break;
        }
      } catch {
        // not written yet
      }
      await sleep(20);
    }
    if (proc.pid === undefined && proc.exit === undefined) {
      proc.killSync();
      throw new Error(`${name}: the watchdog did not report a pid`);
    }
    return proc;
  }

  get running(): boolean {
    return this.exit === undefined;
  }

  /** Sends `signal` to the process itself. */
  signal(signal: NodeJS.Signals): void {
    if (this.pid === undefined || !this.running) return;
    try {
      process.kill(this.pid, signal);
    } catch {
      // already gone
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves with how it ended. */
  async stop(graceMs = 5000): Promise<Exit> {
    if (!this.running) return this.exit!;
    this.signal('SIGTERM');
    const ended = await Promise.race([this.exited, sleep(graceMs).then(() => undefined)]);
    if (ended) return ended;
    this.killSync();
    return this.exited;
  }

  killSync(): void {
    for (const pid of [this.pid, this.wrapper.pid]) {
      if (pid === undefined) continue;
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
}

/** Kills every supervised process still running (SIGKILL) and waits for them. */
export async function killAll(): Promise<void> {
  const running = [...live];
  for (const proc of running) proc.killSync();
  await Promise.all(running.map((proc) => Promise.race([proc.exited, sleep(3000)])));
}

/** A free TCP port on 127.0.0.1 (distinct within one run). */
const handedOut = new Set<number>();
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await anyFreePort();
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

/**
 * The HAProxy configuration of `deploy/haproxy.cfg` for local addresses: every setting as
 * deployed (timeouts, balance, health checks), only the `bind` and `server` lines replaced (and
 * `maxconn`, only when this machine's open-files limit cannot hold it; `replaced` says so).
 * Throws when the file no longer has the shape this relies on, rather than silently testing
 * something else.
 */
export function localHaproxyConfig(
  deployed: string,
  bindPort: number,
  servers: Array<{ name: string; port: number }>,
  fdLimit: number,
): { config: string; replaced: string[] } {
  const lines = deployed.split('\n');
  const out: string[] = [];
  const replaced: string[] = [];
  let binds = 0;
  let serversWritten = false;
  let section = '';
  for (const line of lines) {
    const trimmed = line.trim();
    if (/^[a-z]/.test(line)) section = trimmed.split(/\s+/)[0]!;
    const maxconn = /^maxconn\s+(\d+)$/.exec(trimmed);
    if (section === 'global' && maxconn && Number(maxconn[1]) * 2 + 100 > fdLimit) {
      // HAProxy needs about two descriptors per connection and refuses to start when the
      // process may not open that many (containers often cap RLIMIT_NOFILE): keep the
      // deployed ceiling where it fits, lower it where it cannot. The run uses a few hundred.
      const fitting = Math.floor((fdLimit - 100) / 2);
      out.push(`  maxconn ${fitting}`);
      replaced.push(`global maxconn ${maxconn[1]} → ${fitting} (the open-files limit here is ${fdLimit})`);
    } else if (/^bind\s/.test(trimmed)) {
      binds += 1;
      out.push(`  bind 127.0.0.1:${bindPort}`);
    } else if (/^server\s/.test(trimmed)) {
      if (serversWritten) continue;
      serversWritten = true;
      const options = trimmed.split(/\s+/).slice(3).join(' ');
      for (const server of servers) out.push(`  server ${server.name} 127.0.0.1:${server.port} ${options}`.trimEnd());
    } else {
      out.push(line);
    }
  }
  if (binds !== 1 || !serversWritten) throw new Error('deploy/haproxy.cfg: expected one `bind` line and `server` lines to replace');
  return { config: out.join('\n'), replaced };
}
