/**
 * `npm run bench:publish-cost`: the CPU one request costs the server, the gateway beside a bare
 * Fastify app (bench/baselines/bare-fastify.ts: the same publish route, body schema and reply
 * schema, publishing to the same embedded bus, and nothing else), both measured in one run.
 *
 * For each server and each request kind (a publish to a room nobody streams, a 404), after a
 * warm-up, BENCH_PUBLISH_REQUESTS requests are sent over BENCH_PUBLISH_CONNECTIONS keep-alive
 * connections with BENCH_PUBLISH_DEPTH requests pipelined on each (HTTP/1.1: the server answers
 * them in order, one after the other), and the server process's CPU time (user + system, from
 * /proc/<pid>/stat) over those requests is divided by their number. Servers take turns,
 * BENCH_PUBLISH_ROUNDS times, and the median per server is reported: the machine is shared, so
 * compare the ratio within one run, not the absolute figures across runs.
 *
 * The gateway runs as production does (`node dist/server.js`, built first unless
 * BENCH_SKIP_BUILD=1), LOG_LEVEL=warn, with its rate limiting, auth plugin and metrics on; the
 * BENCH_GATEWAY_DIST names another build to measure (a `dist/` directory), and a server
 * `gateway:<dist directory>` in BENCH_SERVERS adds one beside it (before/after in one run); the
 * per-address limits are raised (as in `npm run bench`) so that the load, from one address, is
 * not refused. `--cpu-prof` also runs one more round of the gateway under V8's profiler and
 * prints where the time goes (self time by function, and by package).
 *
 * Prints a table, then the whole result as JSON on stdout; progress on stderr.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { sampleProcess } from './procfs.ts';
import { summariseProfile } from './profile-summary.ts';
import { freePort } from '../scripts/ports.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CACHE = join(ROOT, 'node_modules', '.cache', 'kafka-sse-gateway-bench');
const profile = process.argv.includes('--cpu-prof') || process.env.BENCH_CPU_PROF === '1';

function envNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  return raw === undefined || raw === '' ? fallback : Number(raw);
}

const settings = {
  requests: envNumber('BENCH_PUBLISH_REQUESTS', 20_000),
  warmup: envNumber('BENCH_PUBLISH_WARMUP', 5_000),
  connections: envNumber('BENCH_PUBLISH_CONNECTIONS', 4),
  depth: envNumber('BENCH_PUBLISH_DEPTH', 16),
  rounds: envNumber('BENCH_PUBLISH_ROUNDS', 3),
  rooms: envNumber('BENCH_PUBLISH_ROOMS', 2_000),
  textBytes: envNumber('BENCH_PAYLOAD_BYTES', 64),
  servers: (process.env.BENCH_SERVERS ?? 'gateway,bare-fastify').split(',').filter(Boolean),
  kinds: (process.env.BENCH_PUBLISH_KINDS ?? 'publish,404').split(',').filter(Boolean),
};

const log = (message: string): void => {
  process.stderr.write(`[publish-cost ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
};

const children = new Set<ChildProcess>();
function stopAll(): void {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}
process.once('exit', stopAll);


/** The baseline as one plain ES module (no TypeScript loader in the measured process, as for the gateway's dist/). */
function bareFastifyModule(): string {
  mkdirSync(CACHE, { recursive: true });
  const outfile = join(CACHE, 'bare-fastify.mjs');
  const result = spawnSync(
    join(ROOT, 'node_modules', '.bin', 'esbuild'),
    [join(ROOT, 'bench', 'baselines', 'bare-fastify.ts'), '--bundle', '--platform=node', '--format=esm', '--packages=external', `--outfile=${outfile}`, '--log-level=warning'],
    { stdio: 'inherit' },
  );
  if (result.status !== 0) throw new Error('bundling bench/baselines/bare-fastify.ts failed');
  return outfile;
}

interface Server {
  name: string;
  port: number;
  child: ChildProcess;
  cpuSeconds(): number;
  /** CPU seconds of the process's main thread (JavaScript) alone; the rest is GC helpers, libuv's pool… */
  mainThreadCpuSeconds(): number;
  stop(): Promise<void>;
}

async function startServer(name: string, options: { cpuProfileDir?: string } = {}): Promise<Server> {
  const port = await freePort();
  const env: NodeJS.ProcessEnv = { ...process.env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', NODE_ENV: 'production' };
  delete env.KAFKA_BROKERS;
  const nodeArgs = options.cpuProfileDir ? ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfileDir}`] : [];
  let script: string;
  if (name === 'gateway' || name.startsWith('gateway:')) {
    // The load comes from one address: the per-address guards would refuse it.
    Object.assign(env, { MAX_STREAMS_PER_IP: '1000000', PUBLISH_RATE_PER_IP: '1000000', PUBLISH_RATE_PER_IDENTITY: '1000000' });
    const dist = name.startsWith('gateway:') ? name.slice('gateway:'.length) : (process.env.BENCH_GATEWAY_DIST ?? join(ROOT, 'dist'));
    script = join(dist, 'server.js');
  } else if (name === 'bare-fastify') {
    script = bareFastifyModule();
  } else {
    throw new Error(`unknown server ${name} (gateway, gateway:<dist directory>, bare-fastify)`);
  }
  const child = spawn(process.execPath, [...nodeArgs, script], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  children.add(child);
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}`);
    const status = await fetch(`http://127.0.0.1:${port}/readyz`).then((response) => response.status, () => 0);
    // The bare app has no /readyz: its 404 says it listens.
    if (status === 200 || (name === 'bare-fastify' && status === 404)) break;
    if (Date.now() > deadline) throw new Error(`${name} did not start`);
    await sleep(100);
  }
  return {
    name,
    port,
    child,
    cpuSeconds: () => sampleProcess(child.pid!).cpuSeconds,
    mainThreadCpuSeconds: () => threadCpuSeconds(child.pid!, child.pid!),
    stop: async () => {
      child.kill('SIGTERM');
      const exited = new Promise((resolve) => child.once('exit', resolve));
      const timer = setTimeout(() => child.kill('SIGKILL'), options.cpuProfileDir ? 20_000 : 5_000);
      await exited;
      clearTimeout(timer);
      children.delete(child);
    },
  };
}

/** CPU seconds (user + system) of one thread of a process, from /proc/<pid>/task/<tid>/stat. */
function threadCpuSeconds(pid: number, tid: number): number {
  try {
    const text = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** The bytes of request `index` of a kind, as a client would send them. */
function requestBytes(kind: string, index: number): Buffer {
  if (kind === '404') return Buffer.from(`GET /no/such/route/${index % 100} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
  if (kind === 'publish') {
    const body = JSON.stringify({ user: 'bench', text: `#${index}#`.padEnd(settings.textBytes, 'x') });
    return Buffer.from(
      `POST /rooms/room-${index % settings.rooms}/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  }
  throw new Error(`unknown request kind ${kind} (publish, 404)`);
}

const STATUS_LINE = Buffer.from('HTTP/1.1 ');

/**
 * Sends `total` requests over `settings.connections` connections, `settings.depth` in flight on
 * each, and resolves once every answer arrived, with the count of each status code seen.
 * Answers are counted by their status lines (the bodies here are short JSON without one).
 */
function drive(port: number, kind: string, total: number, offset: number): Promise<Record<string, number>> {
  const statuses: Record<string, number> = {};
  let next = 0;
  let answered = 0;
  const sockets: Socket[] = [];
  return new Promise((resolve, reject) => {
    for (let c = 0; c < settings.connections; c++) {
      const socket = connect(port, '127.0.0.1');
      socket.setNoDelay(true);
      let inFlight = 0;
      let carry: Buffer = Buffer.alloc(0);
      const refill = (): void => {
        const batch: Buffer[] = [];
        while (inFlight < settings.depth && next < total) {
          batch.push(requestBytes(kind, offset + next));
          next += 1;
          inFlight += 1;
        }
        if (batch.length > 0) socket.write(Buffer.concat(batch));
      };
      socket.once('connect', refill);
      socket.on('data', (chunk: Buffer) => {
        const data = carry.length > 0 ? Buffer.concat([carry, chunk]) : chunk;
        let from = 0;
        for (;;) {
          const at = data.indexOf(STATUS_LINE, from);
          if (at < 0 || at + STATUS_LINE.length + 3 > data.length) break;
          const status = data.toString('latin1', at + STATUS_LINE.length, at + STATUS_LINE.length + 3);
          statuses[status] = (statuses[status] ?? 0) + 1;
          inFlight -= 1;
          answered += 1;
          from = at + STATUS_LINE.length + 3;
        }
        // A status line cut by the chunk boundary is completed by the next chunk.
        carry = data.subarray(Math.max(from, data.length - (STATUS_LINE.length + 2)));
        if (answered >= total) {
          for (const s of sockets) s.destroy();
          resolve(statuses);
          return;
        }
        refill();
      });
      socket.once('error', reject);
      sockets.push(socket);
    }
  });
}

interface Measurement {
  server: string;
  kind: string;
  round: number;
  requests: number;
  statuses: Record<string, number>;
  cpuSeconds: number;
  wallMs: number;
  cpuMicrosPerRequest: number;
  /** Of which on the main (JavaScript) thread. */
  mainThreadCpuMicrosPerRequest: number;
}

async function measure(server: Server, kind: string, round: number, offset: number): Promise<Measurement> {
  await drive(server.port, kind, settings.warmup, offset);
  // Let the warm-up's garbage and timers settle before the measured stretch.
  await sleep(300);
  const cpuBefore = server.cpuSeconds();
  const mainBefore = server.mainThreadCpuSeconds();
  const started = performance.now();
  const statuses = await drive(server.port, kind, settings.requests, offset + settings.warmup);
  const wallMs = performance.now() - started;
  // The last answers' follow-up work (a bus batch, the onResponse hooks) belongs to them.
  await sleep(50);
  const cpuSeconds = server.cpuSeconds() - cpuBefore;
  const mainSeconds = server.mainThreadCpuSeconds() - mainBefore;
  return {
    server: server.name,
    kind,
    round,
    requests: settings.requests,
    statuses,
    cpuSeconds: Math.round(cpuSeconds * 100) / 100,
    wallMs: Math.round(wallMs),
    cpuMicrosPerRequest: Math.round((cpuSeconds * 1e6) / settings.requests),
    mainThreadCpuMicrosPerRequest: Math.round((mainSeconds * 1e6) / settings.requests),
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : Math.round((sorted[mid - 1]! + sorted[mid]!) / 2);
}

/** Self time by package (node_modules/<name>, the gateway's own files, node's internals). */
function byPackage(file: string): Array<{ package: string; selfPercent: number }> {
  const entries = summariseProfile(file, 100_000);
  const totals = new Map<string, number>();
  for (const entry of entries) {
    const location = entry.location;
    let key: string;
    if (location === '') key = entry.function.startsWith('(') ? entry.function : '(native)';
    else if (location.startsWith('node:')) key = 'node internals';
    else if (location.includes('node_modules/')) {
      const rest = location.slice(location.lastIndexOf('node_modules/') + 'node_modules/'.length).split('/');
      key = rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
    } else key = `gateway: ${location.replace(/^.*?dist\//, '').split(':')[0]}`;
    totals.set(key, (totals.get(key) ?? 0) + entry.selfPercent);
  }
  return [...totals.entries()].sort((a, b) => b[1] - a[1]).slice(0, 25).map(([name, percent]) => ({ package: name, selfPercent: Math.round(percent * 10) / 10 }));
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const loadAverageAtStart = loadavg().map((v) => Math.round(v * 100) / 100);
  log(`settings: ${JSON.stringify(settings)}`);
  if (settings.servers.includes('gateway') && process.env.BENCH_SKIP_BUILD !== '1') {
    log('building the gateway…');
    const build = spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' });
    if (build.status !== 0) throw new Error('the gateway build failed');
  }
  const measurements: Measurement[] = [];
  let offset = 0;
  const running = new Map<string, Server>();
  try {
    for (const name of settings.servers) running.set(name, await startServer(name));
    for (let round = 1; round <= settings.rounds; round++) {
      for (const kind of settings.kinds) {
        for (const name of settings.servers) {
          const result = await measure(running.get(name)!, kind, round, offset);
          offset += settings.warmup + settings.requests;
          log(`round ${round} ${kind} ${name}: ${result.cpuMicrosPerRequest} µs CPU/request, ${result.mainThreadCpuMicrosPerRequest} on the main thread (${JSON.stringify(result.statuses)}, ${result.wallMs} ms)`);
          measurements.push(result);
        }
      }
    }
  } finally {
    for (const server of running.values()) await server.stop();
  }

  const summary: Array<Record<string, unknown>> = [];
  for (const kind of settings.kinds) {
    const floor = median(measurements.filter((m) => m.kind === kind && m.server === 'bare-fastify').map((m) => m.cpuMicrosPerRequest));
    for (const name of settings.servers) {
      const values = measurements.filter((m) => m.kind === kind && m.server === name).map((m) => m.cpuMicrosPerRequest);
      const value = median(values);
      summary.push({ kind, server: name, cpuMicrosPerRequestMedian: value, rounds: values, vsBareFastify: floor > 0 ? Math.round((value / floor) * 100) / 100 : null });
    }
  }

  // One more round of each server under V8's profiler (startup included; see
  // `bench/profile-summary.ts --inclusive --within=parserOnIncoming` for the request path alone).
  const profiles: Record<string, unknown> = {};
  if (profile) {
    for (const name of settings.servers) {
      const dir = mkdtempSync(join(tmpdir(), `publish-cost-cpuprof-${name.replace(/[^A-Za-z0-9-]/g, "_")}-`));
      log(`profiling ${name} into ${dir}`);
      const server = await startServer(name, { cpuProfileDir: dir });
      try {
        for (const kind of settings.kinds) {
          await measure(server, kind, 0, offset);
          offset += settings.warmup + settings.requests;
        }
      } finally {
        await server.stop();
      }
      const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
      if (file) profiles[name] = { file: join(dir, file), top: summariseProfile(join(dir, file), 40), byPackage: byPackage(join(dir, file)) };
    }
  }

  const machine = {
    cpus: cpus().length,
    cpuModel: /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpus()[0]?.model,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    loadAverageAtStart,
    loadAverageAtEnd: loadavg().map((v) => Math.round(v * 100) / 100),
  };
  const lines = ['request | server | µs CPU per request (median) | rounds | × bare Fastify', '--- | --- | ---: | --- | ---:'];
  for (const row of summary) lines.push(`${row.kind} | ${row.server} | ${row.cpuMicrosPerRequestMedian} | ${(row.rounds as number[]).join(', ')} | ${row.vsBareFastify ?? ''}`);
  process.stdout.write(`${lines.join('\n')}\n\n`);
  for (const [name, result] of Object.entries(profiles)) {
    process.stdout.write(`${name} profile, self time by package:\n`);
    for (const row of (result as { byPackage: Array<{ package: string; selfPercent: number }> }).byPackage) process.stdout.write(`${row.selfPercent.toFixed(1).padStart(6)}%  ${row.package}\n`);
    process.stdout.write('\n');
  }
  process.stdout.write(`${JSON.stringify({ startedAt: startedAt.toISOString(), machine, settings, summary, measurements, profiles }, null, 2)}\n`);
}

try {
  await main();
} catch (error) {
  log(`failed: ${(error as Error).stack ?? error}`);
  process.exitCode = 1;
} finally {
  stopAll();
}
