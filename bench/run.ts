/**
 * `npm run bench`: the gateway (embedded bus and Kafka) and two reference servers (the talk's
 * architecture, Nchan) under identical load, side by side in one run. Prints a table with
 * ratios, then the whole result as JSON on stdout; progress goes to stderr.
 *
 * Scenarios (BENCH_SCENARIOS, comma-separated):
 *   saturation  BENCH_SUBSCRIBERS streams over BENCH_ROOMS rooms, 64-byte payloads, publishers
 *               posting as fast as every subscriber keeps up (each room at most BENCH_WINDOW
 *               events ahead of its slowest subscriber) for BENCH_DURATION_S seconds.
 *   idle        BENCH_IDLE_STREAMS idle streams: time to establish, RSS per stream.
 *   latency     BENCH_SUBSCRIBERS streams, BENCH_LATENCY_DELIVERIES deliveries/s (published at a
 *               fixed rate: straight to Kafka for gateway-kafka, over HTTP otherwise):
 *               publish→deliver percentiles, lost, duplicated.
 *   ingest      gateway-kafka only: BENCH_INGEST_RECORDS records produced straight to Kafka while
 *               the gateway is paused (SIGSTOP), then the time it takes to consume them all.
 *   deep-resume gateway-kafka only (not in the default list): clients resuming with an old id
 *               across a gap of BENCH_DEEP_GAP_EVENTS events in their room (+ BENCH_DEEP_OTHER_EVENTS
 *               in other rooms of its partition) produced straight to Kafka: one client's replay
 *               time, then the live stream's latency for BENCH_LIVE_SUBSCRIBERS other streams
 *               before, during and after BENCH_DEEP_CLIENTS replays at once.
 *   big-room    (not in the default list) BENCH_SMALL_ROOMS rooms of BENCH_SMALL_ROOM_SUBSCRIBERS
 *               streams, without and then with one room of BENCH_BIG_ROOM_SUBSCRIBERS, events on
 *               every room at a fixed rate: the small rooms' latency, the big room's deliveries
 *               per CPU-second, the gateway's event-loop delay from /metrics.
 *   many-rooms  (not in the default list) BENCH_MANY_ROOMS rooms of BENCH_MANY_ROOM_SUBSCRIBERS
 *               streams, BENCH_MANY_ROOM_RATE events/s on every room (straight to Kafka for
 *               gateway-kafka, over HTTP otherwise), each room at most BENCH_WINDOW events ahead
 *               of its slowest subscriber: deliveries per CPU-second beside Nchan's, events
 *               taken in per CPU-second.
 * Servers (BENCH_SERVERS): gateway-memory, gateway-kafka, talk, nchan.
 * `--quick` (or BENCH_QUICK=1) shrinks everything to a smoke run of well under a minute per server.
 *
 * Every process this starts is killed when it ends, on failure too, and the whole run is bounded
 * by BENCH_MAX_S.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { Kafka, logLevel, type Producer } from 'kafkajs';
import { sampleGroup, sampleProcess } from './procfs.ts';
import { summariseProfile } from './profile-summary.ts';
import { insideGaps, longestStretches, type LoopGap } from './profile-stretches.ts';
import { partitionForKey } from '../src/bus/partitioner.ts';
import { freePort } from '../scripts/ports.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BENCH = join(ROOT, 'bench');
const quick = process.argv.includes('--quick') || process.env.BENCH_QUICK === '1';
const profile = process.argv.includes('--cpu-prof') || process.env.BENCH_CPU_PROF === '1';

function envNumber(name: string, full: number, smoke: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return quick ? smoke : full;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number, got ${raw}`);
  return value;
}

const settings = {
  subscribers: envNumber('BENCH_SUBSCRIBERS', 10_000, 500),
  rooms: envNumber('BENCH_ROOMS', 10, 10),
  durationS: envNumber('BENCH_DURATION_S', 20, 5),
  warmupS: envNumber('BENCH_WARMUP_S', 3, 1),
  window: envNumber('BENCH_WINDOW', 8, 8),
  payloadBytes: envNumber('BENCH_PAYLOAD_BYTES', 64, 64),
  idleStreams: envNumber('BENCH_IDLE_STREAMS', 19_000, 1_000),
  latencyDeliveries: envNumber('BENCH_LATENCY_DELIVERIES', 20_000, 1_000),
  ingestRecords: envNumber('BENCH_INGEST_RECORDS', 200_000, 20_000),
  connsPerWorker: envNumber('BENCH_CONNS_PER_WORKER', 9_500, 9_500),
  /** Connects each load worker keeps in flight while opening its streams (a reconnect storm: as many as it has). */
  maxPending: envNumber('BENCH_MAX_PENDING', 200, 200),
  maxSeconds: envNumber('BENCH_MAX_S', 1_500, 300),
  servers: (process.env.BENCH_SERVERS ?? 'gateway-memory,gateway-kafka,talk,nchan').split(',').filter(Boolean),
  scenarios: (process.env.BENCH_SCENARIOS ?? 'saturation,idle,latency,ingest').split(',').filter(Boolean),
  gatewayDir: process.env.BENCH_GATEWAY_DIR ?? ROOT,
  // deep-resume
  deepGapEvents: envNumber('BENCH_DEEP_GAP_EVENTS', 20_000, 3_000),
  deepOtherEvents: envNumber('BENCH_DEEP_OTHER_EVENTS', 20_000, 3_000),
  deepClients: envNumber('BENCH_DEEP_CLIENTS', 10, 3),
  deepRepeats: envNumber('BENCH_DEEP_REPEATS', 3, 1),
  // Records per produce request for the gap: one record batch per request and partition, and a
  // consumer decodes a record batch whole (Kafka returns it whole even past the fetch limits).
  // 100 records (~10 KB) is about a Java producer's default batch.size (16 KB); runs before
  // 2026-12-01 01:30 used 5,000 (~500 KB batches).
  deepProduceBatch: envNumber('BENCH_DEEP_PRODUCE_BATCH', 100, 100),
  liveSubscribers: envNumber('BENCH_LIVE_SUBSCRIBERS', 1_000, 200),
  liveRate: envNumber('BENCH_LIVE_RATE', 5, 5),
  phaseS: envNumber('BENCH_PHASE_S', 10, 3),
  // big-room
  bigRoomSubscribers: envNumber('BENCH_BIG_ROOM_SUBSCRIBERS', 10_000, 1_000),
  bigRoomRate: envNumber('BENCH_BIG_ROOM_RATE', 2, 2),
  smallRooms: envNumber('BENCH_SMALL_ROOMS', 99, 20),
  smallRoomSubscribers: envNumber('BENCH_SMALL_ROOM_SUBSCRIBERS', 10, 10),
  smallRoomRate: envNumber('BENCH_SMALL_ROOM_RATE', 5, 5),
  bigRoomRepeats: envNumber('BENCH_BIG_ROOM_REPEATS', 1, 1),
  // many-rooms
  manyRooms: envNumber('BENCH_MANY_ROOMS', 2_000, 200),
  manyRoomSubscribers: envNumber('BENCH_MANY_ROOM_SUBSCRIBERS', 2, 2),
  // Events/s per room, the same offered load for every server. 4 × 2,000 rooms = 8,000 HTTP
  // publishes/s, which the bench's Node HTTP publisher sustains on a shared 2-core machine
  // (~9,800/s was its most, at ~0.9 cores), so Nchan's figure is not capped by its feed; a rate
  // nobody keeps up with (say 1000) makes it a saturation run, bounded by BENCH_WINDOW.
  manyRoomRate: envNumber('BENCH_MANY_ROOM_RATE', 4, 4),
};

const log = (message: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
};

// ---------------------------------------------------------------------------------------------
// Process bookkeeping: everything started here is stopped here.

const children = new Set<ChildProcess>();
const cleanups: Array<() => Promise<void>> = [];

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

function killChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    // Servers run in a process group of their own (nginx has a worker under its master).
    if ((child as ChildProcess & { benchGroup?: boolean }).benchGroup) {
      process.kill(-child.pid, signal);
    } else child.kill(signal);
  } catch {
    /* already gone */
  }
}

function killEverything(): void {
  for (const child of children) killChild(child);
}
process.on('exit', killEverything);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    log(`${signal}: stopping everything`);
    killEverything();
    process.exit(130);
  });
}
const overall = setTimeout(() => {
  log(`BENCH_MAX_S=${settings.maxSeconds} reached: stopping everything`);
  killEverything();
  process.exit(2);
}, settings.maxSeconds * 1000);
overall.unref();

async function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true;
  return await Promise.race([
    new Promise<boolean>((resolve) => child.once('exit', () => resolve(true))),
    sleep(ms).then(() => false),
  ]);
}


// ---------------------------------------------------------------------------------------------
// The load client (bench/sse-load.c), compiled once into node_modules/.cache.

function loadClientBinary(): string {
  const source = join(BENCH, 'sse-load.c');
  const dir = join(ROOT, 'node_modules', '.cache', 'kafka-sse-gateway-bench');
  const binary = join(dir, 'sse-load');
  if (existsSync(binary) && statSync(binary).mtimeMs > statSync(source).mtimeMs) return binary;
  mkdirSync(dir, { recursive: true });
  const result = spawnSync('gcc', ['-O2', '-Wall', '-o', binary, source], { stdio: 'inherit' });
  if (result.status !== 0) throw new Error('compiling bench/sse-load.c failed (is gcc installed?)');
  return binary;
}

interface RoomCounters {
  name: string;
  open: number;
  unique: number;
  dups: number;
  gaps: number;
  other: number;
  minLast: number;
  maxLast: number;
}
interface Mark {
  tUs: number;
  events: number;
  bytes: number;
  established: number;
  failed: number;
  closed: number;
  httpErrors: number;
  rooms: RoomCounters[];
  hist: Array<[number, number]>;
}

class LoadWorker {
  readonly child: ChildProcess;
  connected: Promise<{ established: number; failed: number; httpErrors: number; ms: number }>;
  minLast: number[] = [];
  events = 0;
  closed = 0;
  #marks: Array<(mark: Mark) => void> = [];

  constructor(binary: string, args: string[], onProgress: () => void) {
    this.child = track(spawn(binary, args, { stdio: ['pipe', 'pipe', 'inherit'] }));
    let resolveConnected!: (value: { established: number; failed: number; httpErrors: number; ms: number }) => void;
    let rejectConnected!: (error: Error) => void;
    this.connected = new Promise((resolve, reject) => {
      resolveConnected = resolve;
      rejectConnected = reject;
    });
    this.child.once('exit', (code) => rejectConnected(new Error(`load worker exited with ${code}`)));
    // A rejection nobody awaited yet must not crash the run: connected is awaited later.
    this.connected.catch(() => undefined);
    const lines = createInterface({ input: this.child.stdout! });
    lines.on('line', (line) => {
      // any: the worker's JSON lines are typed by their "type" field right here.
      const message = JSON.parse(line) as any;
      if (message.type === 'connected') resolveConnected(message);
      else if (message.type === 'progress') {
        this.minLast = message.minLast;
        this.events = message.events;
        this.closed = message.closed;
        onProgress();
      } else if (message.type === 'mark') this.#marks.shift()?.(message as Mark);
    });
  }

  mark(): Promise<Mark> {
    return new Promise((resolve) => {
      this.#marks.push(resolve);
      this.child.stdin!.write('mark\n');
    });
  }

  async stop(): Promise<void> {
    this.child.stdin!.end('quit\n');
    if (!(await waitExit(this.child, 3000))) killChild(this.child);
  }
}

class LoadClient {
  workers: LoadWorker[] = [];
  #progressWaiters: Array<() => void> = [];
  #onProgress = (): void => {
    const waiters = this.#progressWaiters;
    this.#progressWaiters = [];
    for (const resolve of waiters) resolve();
  };

  /**
   * `options.path`: the request path template (`%s` = the room; e.g. with `?lastEventId=`);
   * `options.srcBase`: the last byte of the first worker's source address (127.0.0.<srcBase>,
   * then +1 per worker), so several clients of one run do not share source ports.
   */
  constructor(binary: string, port: number, rooms: string[], streams: number, options: { path?: string; srcBase?: number } = {}) {
    const workerCount = Math.max(1, Math.ceil(streams / settings.connsPerWorker));
    const srcBase = options.srcBase ?? 2;
    let offset = 0;
    for (let i = 0; i < workerCount; i++) {
      const conns = Math.floor(streams / workerCount) + (i < streams % workerCount ? 1 : 0);
      const args = ['--port', String(port), '--conns', String(conns), '--rooms', rooms.join(','), '--offset', String(offset)];
      args.push('--src', `127.0.0.${2 + ((srcBase - 2 + i) % 250)}`, '--max-pending', String(settings.maxPending), '--deadline-s', String(settings.maxSeconds));
      if (options.path !== undefined) args.push('--path', options.path);
      this.workers.push(new LoadWorker(binary, args, this.#onProgress));
      offset += conns;
    }
  }

  async connected(): Promise<{ established: number; failed: number; httpErrors: number; ms: number }> {
    const results = await Promise.all(this.workers.map((worker) => worker.connected));
    return {
      established: results.reduce((sum, r) => sum + r.established, 0),
      failed: results.reduce((sum, r) => sum + r.failed, 0),
      httpErrors: results.reduce((sum, r) => sum + r.httpErrors, 0),
      ms: Math.max(...results.map((r) => r.ms)),
    };
  }

  /** Lowest last-seen sequence number of each room over every open stream. */
  minLast(roomIndex: number): number {
    let min = Infinity;
    for (const worker of this.workers) {
      const value = worker.minLast[roomIndex];
      if (value !== undefined && value >= 0) min = Math.min(min, value);
    }
    return min === Infinity ? 0 : min;
  }

  /** Resolves at the next progress report of any worker (every 50 ms). */
  nextProgress(): Promise<void> {
    return new Promise((resolve) => this.#progressWaiters.push(resolve));
  }

  async mark(): Promise<Mark> {
    const marks = await Promise.all(this.workers.map((worker) => worker.mark()));
    const hist = new Map<number, number>();
    for (const mark of marks) for (const [bucket, count] of mark.hist) hist.set(bucket, (hist.get(bucket) ?? 0) + count);
    const rooms = marks[0]!.rooms.map((room, index) => {
      const all = marks.map((mark) => mark.rooms[index]!);
      return {
        name: room.name,
        open: all.reduce((sum, r) => sum + r.open, 0),
        unique: all.reduce((sum, r) => sum + r.unique, 0),
        dups: all.reduce((sum, r) => sum + r.dups, 0),
        gaps: all.reduce((sum, r) => sum + r.gaps, 0),
        other: all.reduce((sum, r) => sum + r.other, 0),
        minLast: Math.min(...all.filter((r) => r.minLast >= 0).map((r) => r.minLast)),
        maxLast: Math.max(...all.map((r) => r.maxLast)),
      };
    });
    const sum = (key: 'events' | 'bytes' | 'established' | 'failed' | 'closed' | 'httpErrors'): number =>
      marks.reduce((total, mark) => total + mark[key], 0);
    return {
      tUs: Math.max(...marks.map((mark) => mark.tUs)),
      events: sum('events'),
      bytes: sum('bytes'),
      established: sum('established'),
      failed: sum('failed'),
      closed: sum('closed'),
      httpErrors: sum('httpErrors'),
      rooms,
      hist: [...hist.entries()].sort((a, b) => a[0] - b[0]),
    };
  }

  cpuSeconds(): number {
    return this.workers.reduce((sum, worker) => sum + (worker.child.pid ? sampleProcess(worker.child.pid).cpuSeconds : 0), 0);
  }

  async stop(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.stop()));
  }
}

/** p50, p99 and max of durations in ms (rounded to 0.1 ms); null for none. */
function msPercentiles(samples: readonly number[]): { count: number; p50: number; p99: number; max: number } | null {
  if (samples.length === 0) return null;
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number): number => round(sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!, 1);
  return { count: sorted.length, p50: at(0.5), p99: at(0.99), max: round(sorted[sorted.length - 1]!, 1) };
}

function percentiles(hist: Array<[number, number]>): { count: number; p50: number; p99: number; p999: number; max: number } | null {
  const count = hist.reduce((sum, [, n]) => sum + n, 0);
  if (count === 0) return null;
  const at = (q: number): number => {
    const rank = Math.ceil(q * count);
    let seen = 0;
    for (const [upperUs, n] of hist) {
      seen += n;
      if (seen >= rank) return upperUs / 1000;
    }
    return hist[hist.length - 1]![0] / 1000;
  };
  return { count, p50: at(0.5), p99: at(0.99), p999: at(0.999), max: hist[hist.length - 1]![0] / 1000 };
}

// ---------------------------------------------------------------------------------------------
// Servers under test

type ServerName = 'gateway-memory' | 'gateway-kafka' | 'talk' | 'nchan';

interface RunningServer {
  name: ServerName;
  port: number;
  pid: number;
  /** The process group to measure (every process of the server). */
  sample(): { cpuSeconds: number; kernelSeconds: number; rssBytes: number };
  stop(): Promise<void>;
}

let kafka: { brokers: string[]; stop(): Promise<void> } | undefined;
let chatTopic = '';

async function ensureKafka(): Promise<string[]> {
  if (kafka) return kafka.brokers;
  if (process.env.KAFKA_BROKERS) {
    kafka = { brokers: process.env.KAFKA_BROKERS.split(','), stop: async () => undefined };
  } else {
    log('starting a Kafka broker (scripts/kafka/kafka.ts)…');
    const { startKafka } = await import('../scripts/kafka/kafka.ts');
    const cluster = await startKafka();
    kafka = cluster;
    cleanups.push(() => cluster.stop());
  }
  chatTopic = `bench-chat-${Date.now().toString(36)}`;
  return kafka.brokers;
}

function nchanModule(): string {
  const candidates = ['/usr/lib/nginx/modules/ngx_nchan_module.so', '/usr/share/nginx/modules/ngx_nchan_module.so'];
  const found = candidates.find((path) => existsSync(path));
  if (found && existsSync('/usr/sbin/nginx')) return found;
  log('installing nginx + libnginx-mod-nchan with apt-get (first run only)…');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env, timeout: 180_000 });
  const install = spawnSync('apt-get', ['install', '-y', '-qq', 'nginx-light', 'libnginx-mod-nchan'], { stdio: 'inherit', env, timeout: 300_000 });
  const after = candidates.find((path) => existsSync(path));
  if (install.status !== 0 || !after) throw new Error('could not install libnginx-mod-nchan');
  return after;
}

async function waitHttp(url: string, ok: (status: number) => boolean, child: ChildProcess, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${url}: the server exited (${child.exitCode ?? child.signalCode})`);
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
      await response.arrayBuffer();
      if (ok(response.status)) return;
    } catch {
      /* not listening yet */
    }
    await sleep(100);
  }
  throw new Error(`${url} not ready within ${timeoutMs} ms`);
}

function groupSpawn(command: string, args: string[], env: NodeJS.ProcessEnv, logFile: string): ChildProcess {
  const child = spawn(command, args, { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  (child as ChildProcess & { benchGroup?: boolean }).benchGroup = true;
  let output = '';
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString()).slice(-20_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  child.once('exit', () => writeFileSync(logFile, output));
  return track(child);
}

async function startServer(name: ServerName, options: { cpuProfileDir?: string } = {}): Promise<RunningServer> {
  const port = await freePort();
  const logDir = mkdtempSync(join(tmpdir(), `bench-${name}-`));
  const baseEnv = { ...process.env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', NODE_ENV: 'production' };
  let child: ChildProcess;
  let readyUrl = `http://127.0.0.1:${port}/readyz`;
  let ready = (status: number): boolean => status === 200;
  if (name === 'gateway-memory' || name === 'gateway-kafka') {
    const env: NodeJS.ProcessEnv = {
      ...baseEnv,
      INSTANCE_ID: `bench-${process.pid}-${Date.now().toString(36)}`,
      // The load comes from a handful of local addresses: the per-address guards against abuse
      // would refuse it (the baselines have none).
      MAX_STREAMS_PER_IP: '1000000',
      PUBLISH_RATE_PER_IP: '1000000',
      PUBLISH_RATE_PER_IDENTITY: '1000000',
    };
    delete env.KAFKA_BROKERS;
    if (name === 'gateway-kafka') {
      env.KAFKA_BROKERS = (await ensureKafka()).join(',');
      env.CURSOR_SECRET ??= 'bench-cursor-secret-0123456789';
      env.CHAT_TOPIC = chatTopic;
      env.TICKER_TOPIC = `${chatTopic}-ticker`;
    }
    // Profiled: the loop's held stretches are recorded beside the profile (bench/loop-gaps.mjs).
    const nodeArgs = options.cpuProfileDir ? ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfileDir}`, '--import', join(BENCH, 'loop-gaps.mjs')] : [];
    if (options.cpuProfileDir) env.LOOP_GAPS_FILE = join(options.cpuProfileDir, 'loop-gaps.json');
    child = groupSpawn(process.execPath, [...nodeArgs, join(settings.gatewayDir, 'dist', 'server.js')], env, join(logDir, 'server.log'));
  } else if (name === 'talk') {
    child = groupSpawn(process.execPath, ['--import', 'tsx', join(BENCH, 'baselines', 'talk.ts')], baseEnv, join(logDir, 'server.log'));
    readyUrl = `http://127.0.0.1:${port}/healthz`;
    ready = (status) => status === 404;
  } else {
    const module = nchanModule();
    const conf = readFileSync(join(BENCH, 'baselines', 'nginx-nchan.conf'), 'utf8')
      .replaceAll('__PORT__', String(port))
      .replaceAll('__PREFIX__', logDir)
      .replaceAll('__MODULE__', module);
    writeFileSync(join(logDir, 'nginx.conf'), conf);
    child = groupSpawn('nginx', ['-p', logDir, '-c', join(logDir, 'nginx.conf')], baseEnv, join(logDir, 'server.log'));
    readyUrl = `http://127.0.0.1:${port}/healthz`;
  }
  const pid = child.pid!;
  try {
    await waitHttp(readyUrl, ready, child);
  } catch (error) {
    killChild(child);
    throw new Error(`${name} did not start (logs in ${logDir}): ${(error as Error).message}`);
  }
  return {
    name,
    port,
    pid,
    sample: () => sampleGroup(pid),
    stop: async () => {
      // SIGTERM first so a profiled gateway writes its profile; SIGKILL if it takes too long.
      killChild(child, 'SIGTERM');
      if (!(await waitExit(child, options.cpuProfileDir ? 20_000 : 3_000))) killChild(child);
      await waitExit(child, 3000);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Publishers

function payload(seq: number): string {
  const publishedUs = Math.round((performance.timeOrigin + performance.now()) * 1000);
  const marker = `#S${seq}#T${publishedUs}#`;
  return marker.padEnd(settings.payloadBytes, 'x');
}

const httpAgent = new Agent({ keepAlive: true, maxSockets: 64 });

function postHttp(port: number, path: string, body: string, contentType: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path, method: 'POST', agent: httpAgent, headers: { 'content-type': contentType, 'content-length': Buffer.byteLength(body) } },
      (res) => {
        res.resume();
        res.once('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.setTimeout(30_000, () => req.destroy(new Error('publish timed out')));
    req.once('error', reject);
    req.end(body);
  });
}

/** Publishes seq to a room over HTTP in the server's own request shape. Resolves when acknowledged. */
function httpPublisher(server: RunningServer): (room: string, seq: number) => Promise<boolean> {
  return async (room, seq) => {
    const text = payload(seq);
    const path = `/rooms/${room}/messages`;
    const status =
      server.name === 'nchan'
        ? // Nchan forwards the body as it is: post the same JSON the gateway sends its subscribers.
          await postHttp(server.port, path, JSON.stringify({ room, id: `m${seq}`, user: 'bench', text, ts: Date.now() }), 'application/json')
        : await postHttp(server.port, path, JSON.stringify({ user: 'bench', text }), 'application/json');
    return status >= 200 && status < 300;
  };
}

let kafkaProducer: Producer | undefined;
/**
 * How long each of the bench producer's sends took to be acknowledged (ms, acks=-1), since the
 * latency scenario last cleared it: a stall of the broker shows here as well as in the
 * gateway's latency, and not in Nchan's (fed over HTTP).
 */
const kafkaAckMs: number[] = [];
async function kafkaPublisher(): Promise<(room: string, seq: number) => Promise<boolean>> {
  const brokers = await ensureKafka();
  if (!kafkaProducer) {
    kafkaProducer = new Kafka({ clientId: 'bench', brokers, logLevel: logLevel.NOTHING }).producer({ allowAutoTopicCreation: false });
    await kafkaProducer.connect();
    const producer = kafkaProducer;
    cleanups.push(() => producer.disconnect());
  }
  const producer = kafkaProducer;
  return async (room, seq) => {
    const sentAt = performance.now();
    await producer.send({
      topic: chatTopic,
      acks: -1,
      messages: [{ key: room, value: JSON.stringify({ id: `m${seq}`, user: 'bench', text: payload(seq) }), headers: { 'event-type': 'message' } }],
    });
    kafkaAckMs.push(performance.now() - sentAt);
    return true;
  };
}

// ---------------------------------------------------------------------------------------------
// Scenarios

const roomNames = (prefix: string): string[] => Array.from({ length: settings.rooms }, (_, i) => `${prefix}${i}`);

function lossAndDuplicates(final: Mark, published: number[]): { expected: number; received: number; lost: number; duplicated: number; gapsSeen: number } {
  let expected = 0;
  let received = 0;
  let duplicated = 0;
  let gapsSeen = 0;
  final.rooms.forEach((room, index) => {
    expected += room.open * published[index]!;
    received += room.unique;
    duplicated += room.dups;
    gapsSeen += room.gaps;
  });
  return { expected, received, lost: Math.max(0, expected - received), duplicated, gapsSeen };
}

async function drain(client: LoadClient, published: number[], timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (published.every((count, index) => client.minLast(index) >= count)) return true;
    await Promise.race([client.nextProgress(), sleep(200)]);
  }
  return false;
}

async function withServerAndClient<T>(
  name: ServerName,
  streams: number,
  roomPrefix: string,
  body: (
    server: RunningServer,
    client: LoadClient,
    rooms: string[],
    connect: { established: number; failed: number; httpErrors: number; ms: number },
    rssBefore: number,
    /** Server CPU seconds before the streams were opened, and just after they all were (`kernel`: the kernel's part of each). */
    cpu: { before: number; connected: number; kernelBefore: number; kernelConnected: number },
  ) => Promise<T>,
  serverOptions: { cpuProfileDir?: string } = {},
): Promise<T> {
  const server = await startServer(name, serverOptions);
  let client: LoadClient | undefined;
  try {
    await sleep(500);
    const before = server.sample();
    const rooms = roomNames(roomPrefix);
    client = new LoadClient(loadClientBinary(), server.port, rooms, streams);
    const connect = await client.connected();
    const connected = server.sample();
    log(`${name}: ${connect.established}/${streams} streams in ${connect.ms.toFixed(0)} ms (${connect.failed} failed)`);
    return await body(server, client, rooms, connect, before.rssBytes, {
      before: before.cpuSeconds,
      connected: connected.cpuSeconds,
      kernelBefore: before.kernelSeconds,
      kernelConnected: connected.kernelSeconds,
    });
  } finally {
    await client?.stop();
    await server.stop();
  }
}

async function saturation(name: ServerName, cpuProfileDir?: string): Promise<Record<string, unknown>> {
  return await withServerAndClient(
    name,
    settings.subscribers,
    'sat',
    async (server, client, rooms, connect) => {
      const publish = httpPublisher(server);
      const published = rooms.map(() => 0);
      let publishErrors = 0;
      let running = true;
      const loops = rooms.map(async (room, index) => {
        while (running) {
          // Stay at most `window` events ahead of the slowest subscriber of the room.
          if (published[index]! - client.minLast(index) >= settings.window) {
            await Promise.race([client.nextProgress(), sleep(100)]);
            continue;
          }
          const seq = published[index]! + 1;
          try {
            if (await publish(room, seq)) published[index] = seq;
            else publishErrors += 1;
          } catch {
            publishErrors += 1;
            await sleep(50);
          }
        }
      });
      await sleep(settings.warmupS * 1000);
      const startMark = await client.mark();
      const serverStart = server.sample();
      const clientCpuStart = client.cpuSeconds();
      const publisherCpuStart = process.cpuUsage();
      await sleep(settings.durationS * 1000);
      const publisherCpu = process.cpuUsage(publisherCpuStart);
      const endMark = await client.mark();
      const serverEnd = server.sample();
      const clientCpuEnd = client.cpuSeconds();
      running = false;
      await Promise.all(loops);
      const drained = await drain(client, published, 10_000);
      const final = await client.mark();
      const seconds = (endMark.tUs - startMark.tUs) / 1e6;
      const deliveriesPerSecond = (endMark.events - startMark.events) / seconds;
      const serverCores = (serverEnd.cpuSeconds - serverStart.cpuSeconds) / seconds;
      const result = {
        server: name,
        streams: connect.established,
        connectFailed: connect.failed,
        seconds: round(seconds, 2),
        published: published.reduce((a, b) => a + b, 0),
        publishErrors,
        deliveriesPerSecond: Math.round(deliveriesPerSecond),
        serverCpuCores: round(serverCores, 3),
        deliveriesPerServerCpuSecond: Math.round(deliveriesPerSecond / Math.max(serverCores, 0.01)),
        serverRssMB: round(serverEnd.rssBytes / 2 ** 20, 1),
        clientCpuCores: round((clientCpuEnd - clientCpuStart) / seconds, 3),
        publisherCpuCores: round((publisherCpu.user + publisherCpu.system) / 1e6 / seconds, 3),
        latencyMs: percentiles(endMark.hist),
        streamsClosedByServer: final.closed,
        drained,
        ...lossAndDuplicates(final, published),
      };
      log(`${name} saturation: ${result.deliveriesPerSecond} deliveries/s at ${result.serverCpuCores} cores = ${result.deliveriesPerServerCpuSecond}/CPU-s`);
      return result;
    },
    cpuProfileDir ? { cpuProfileDir } : {},
  );
}

async function idle(name: ServerName, cpuProfileDir?: string): Promise<Record<string, unknown>> {
  return await withServerAndClient(name, settings.idleStreams, 'idle', async (server, _client, _rooms, connect, rssBefore, cpu) => {
    await sleep(3000);
    const after = server.sample();
    const result = {
      server: name,
      streams: connect.established,
      connectFailed: connect.failed,
      establishMs: round(connect.ms, 0),
      // What opening a stream costs the server, whatever share of the cores it got (the wall
      // time to establish is mostly scheduling on a loaded machine; this is not).
      serverCpuMicrosPerStream: round(((cpu.connected - cpu.before) * 1e6) / Math.max(connect.established, 1), 0),
      // The kernel's part of it (accepting, reading the request, writing the first bytes): the
      // rest is the server's own user-space work.
      serverKernelMicrosPerStream: round(((cpu.kernelConnected - cpu.kernelBefore) * 1e6) / Math.max(connect.established, 1), 0),
      rssBeforeMB: round(rssBefore / 2 ** 20, 1),
      rssAfterMB: round(after.rssBytes / 2 ** 20, 1),
      rssPerStreamKB: round((after.rssBytes - rssBefore) / 1024 / Math.max(connect.established, 1), 2),
      rssTotalPerStreamKB: round(after.rssBytes / 1024 / Math.max(connect.established, 1), 2),
    };
    log(`${name} idle: ${result.streams} streams in ${result.establishMs} ms (${result.serverCpuMicrosPerStream} µs server CPU each, ${result.serverKernelMicrosPerStream} of it in the kernel), ${result.rssPerStreamKB} KB/stream`);
    return result;
  }, cpuProfileDir ? { cpuProfileDir } : {});
}

async function latency(name: ServerName): Promise<Record<string, unknown>> {
  return await withServerAndClient(name, settings.subscribers, 'lat', async (server, client, rooms, connect) => {
    const viaKafka = name === 'gateway-kafka';
    const publish = viaKafka ? await kafkaPublisher() : httpPublisher(server);
    const subscribersPerRoom = settings.subscribers / settings.rooms;
    const publishesPerSecond = settings.latencyDeliveries / subscribersPerRoom;
    const interval = 1000 / publishesPerSecond;
    const published = rooms.map(() => 0);
    const chains = rooms.map(() => Promise.resolve());
    let publishErrors = 0;
    await sleep(500);
    kafkaAckMs.length = 0;
    // Resets the gateway's loop-delay histogram; awaited, so that the scrape's own stall ends
    // before the measured window starts.
    const startMetrics = await gatewayMetrics(server);
    const startMark = await client.mark();
    const serverStart = server.sample();
    const clientCpuStart = client.cpuSeconds();
    const t0 = performance.now();
    const total = Math.floor(settings.durationS * publishesPerSecond);
    for (let k = 0; k < total; k++) {
      const due = t0 + k * interval;
      const wait = due - performance.now();
      if (wait > 1) await sleep(wait);
      const index = k % rooms.length;
      // One chain per room keeps each room's events in order.
      chains[index] = chains[index]!.then(async () => {
        const seq = published[index]! + 1;
        try {
          if (await publish(rooms[index]!, seq)) published[index] = seq;
          else publishErrors += 1;
        } catch {
          publishErrors += 1;
        }
      });
    }
    await Promise.all(chains);
    const drained = await drain(client, published, 10_000);
    const endMark = await client.mark();
    const serverEnd = server.sample();
    const endMetrics = await gatewayMetrics(server);
    const eventLoop = endMetrics === null ? null : eventLoopOf(endMetrics);
    const endToEnd = startMetrics === null || endMetrics === null ? null : endToEndBetween(endToEndOf(startMetrics), endToEndOf(endMetrics));
    const seconds = (endMark.tUs - startMark.tUs) / 1e6;
    const result = {
      server: name,
      publishedVia: viaKafka ? 'kafka' : 'http',
      streams: connect.established,
      targetDeliveriesPerSecond: settings.latencyDeliveries,
      deliveriesPerSecond: Math.round((endMark.events - startMark.events) / seconds),
      published: published.reduce((a, b) => a + b, 0),
      publishErrors,
      serverCpuCores: round((serverEnd.cpuSeconds - serverStart.cpuSeconds) / seconds, 3),
      clientCpuCores: round((client.cpuSeconds() - clientCpuStart) / seconds, 3),
      latencyMs: percentiles(endMark.hist),
      streamsClosedByServer: endMark.closed,
      drained,
      // Where a stall came from: the gateway's event loop (its longest delay), or the broker
      // (the bench producer's sends waiting for their acknowledgement).
      eventLoopDelayMs: eventLoop,
      kafkaAckMs: viaKafka ? msPercentiles(kafkaAckMs) : null,
      // The gateway's view: events handed to their streams within each bound (s) of their record timestamp.
      gatewayHandOverWithin: endToEnd,
      ...lossAndDuplicates(endMark, published),
    };
    const acks = result.kafkaAckMs === null ? '' : `, Kafka acks p99 ${result.kafkaAckMs?.p99} max ${result.kafkaAckMs?.max} ms`;
    log(`${name} latency: p99 ${result.latencyMs?.p99} ms, loop max ${eventLoop?.maxMs ?? '-'} ms${acks}, lost ${result.lost}, dup ${result.duplicated}`);
    return result;
  });
}

async function ingest(): Promise<Record<string, unknown>> {
  const brokers = await ensureKafka();
  const server = await startServer('gateway-kafka');
  const admin = new Kafka({ clientId: 'bench-admin', brokers, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  let client: LoadClient | undefined;
  let paused = false;
  try {
    const metadata = await admin.fetchTopicMetadata({ topics: [chatTopic] });
    const partitions = metadata.topics[0]!.partitions.map((p) => p.partitionId).sort((a, b) => a - b);
    // One watcher stream per partition: a sentinel record produced last into each partition
    // arrives only once the gateway consumed everything before it there.
    const sentinelRooms = partitions.map((p) => `sentinel-p${p}`);
    client = new LoadClient(loadClientBinary(), server.port, sentinelRooms, sentinelRooms.length);
    await client.connected();
    const producer = new Kafka({ clientId: 'bench-ingest', brokers, logLevel: logLevel.NOTHING }).producer({ allowAutoTopicCreation: false });
    await producer.connect();
    try {
      process.kill(server.pid, 'SIGSTOP');
      paused = true;
      const producedAt = Date.now();
      const batch = 2000;
      const text = 'x'.repeat(settings.payloadBytes);
      const inFlight: Array<Promise<unknown>> = [];
      for (let sent = 0; sent < settings.ingestRecords; sent += batch) {
        const messages = [];
        for (let i = sent; i < Math.min(sent + batch, settings.ingestRecords); i++) {
          messages.push({ key: `ingest-${i % 1000}`, value: JSON.stringify({ id: `i${i}`, user: 'bench', text }), headers: { 'event-type': 'message' } });
        }
        inFlight.push(producer.send({ topic: chatTopic, acks: 1, messages }));
        if (inFlight.length >= 8) await inFlight.shift();
      }
      await Promise.all(inFlight);
      await producer.send({
        topic: chatTopic,
        acks: -1,
        messages: partitions.map((partition) => ({
          key: `sentinel-p${partition}`,
          partition,
          value: JSON.stringify({ id: `s${partition}`, user: 'bench', text: payload(1) }),
          headers: { 'event-type': 'message' },
        })),
      });
      const produceSeconds = (Date.now() - producedAt) / 1000;
      log(`ingest: produced ${settings.ingestRecords} records in ${produceSeconds.toFixed(1)} s with the gateway paused`);
      const cpuBefore = server.sample().cpuSeconds;
      const resumedAt = performance.now();
      process.kill(server.pid, 'SIGCONT');
      paused = false;
      const drained = await drain(client, partitions.map(() => 1), 120_000);
      const seconds = (performance.now() - resumedAt) / 1000;
      const cpu = server.sample().cpuSeconds - cpuBefore;
      const result = {
        server: 'gateway-kafka',
        records: settings.ingestRecords + partitions.length,
        partitions: partitions.length,
        produceSeconds: round(produceSeconds, 2),
        consumeSeconds: round(seconds, 3),
        drained,
        recordsPerSecond: Math.round((settings.ingestRecords + partitions.length) / seconds),
        serverCpuSeconds: round(cpu, 2),
        recordsPerServerCpuSecond: Math.round((settings.ingestRecords + partitions.length) / Math.max(cpu, 0.01)),
      };
      log(`ingest: ${result.recordsPerSecond} records/s (${result.recordsPerServerCpuSecond}/CPU-s), drained=${drained}`);
      return result;
    } finally {
      if (paused) process.kill(server.pid, 'SIGCONT');
      await producer.disconnect();
    }
  } finally {
    await client?.stop();
    await admin.disconnect();
    await server.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// Fixed-rate publishing over many rooms (deep-resume's live phase, big-room)

/**
 * Publishes `ratePerRoom[i]` events/s to `rooms[i]` until `stop()`; each room's events are
 * spread over the second (room i starts i/rooms of an interval late). Straight to Kafka for
 * gateway-kafka (`acks: -1`, one produce request at a time so each room's order holds: every
 * 10 ms tick the events due join the pending ones, and whatever is pending when the request in
 * flight is acknowledged goes out as the next one, as a producer's linger batches), over HTTP
 * otherwise (one ordered chain per room). `published[i]` is the last acknowledged sequence
 * number of room i.
 *
 * Until 2026-12-02 each tick's events were a request of their own, queued behind the earlier
 * ones: whenever produce requests took longer than the 10 ms tick (a busy broker on the shared
 * cores), the queue grew until `bound` held the rooms back, and that queueing, the bench's
 * own, was counted in the gateway's latency (many-rooms p99 166–932 ms against Nchan's 7–28,
 * docs/BENCHMARKS.md, fifth round).
 *
 * With `bound`, a room's next event is held back while the room is `bound.window` events ahead
 * of its slowest subscriber in `bound.client` (rooms in the same order): a server that cannot
 * keep up runs as fast as it delivers instead of letting queues (produce requests, HTTP chains)
 * grow without limit; the schedule is kept, so a room that catches up sends what was held back.
 */
function startRatePublisher(
  server: RunningServer,
  rooms: string[],
  ratePerRoom: number[],
  bound?: { client: LoadClient; window: number },
): { published: number[]; errors: () => number; ackMs: () => { p50: number; p99: number; max: number } | null; stop: () => Promise<void> } {
  const published = rooms.map(() => 0);
  // How long each produce request (or HTTP publish) took to be acknowledged: the publisher's part of the latency.
  let acks: number[] = [];
  const queued = rooms.map(() => 0);
  let errors = 0;
  let running = true;
  const viaKafka = server.name === 'gateway-kafka';
  const chains = rooms.map(() => Promise.resolve());
  const http = viaKafka ? undefined : httpPublisher(server);
  /** Kafka: events due and not yet sent, with their messages; `sending` while a produce request is in flight. */
  let pending: Array<{ index: number; seq: number; message: { key: string; value: string; headers: Record<string, string> } }> = [];
  let sending: Promise<void> | null = null;
  const sendPending = async (producer: Producer): Promise<void> => {
    while (pending.length > 0) {
      const batch = pending;
      pending = [];
      try {
        const sentAt = performance.now();
        await producer.send({ topic: chatTopic, acks: -1, messages: batch.map((item) => item.message) });
        acks.push(performance.now() - sentAt);
        for (const { index, seq } of batch) published[index] = seq;
      } catch {
        errors += batch.length;
      }
    }
    sending = null;
  };
  const loop = (async () => {
    const producer = viaKafka ? await sharedProducer() : undefined;
    const t0 = performance.now();
    while (running) {
      const elapsedS = (performance.now() - t0) / 1000;
      const due: Array<{ index: number; seq: number }> = [];
      rooms.forEach((_, index) => {
        const rate = ratePerRoom[index]!;
        const target = Math.floor(elapsedS * rate + index / rooms.length);
        const limit = bound ? Math.min(target, bound.client.minLast(index) + bound.window) : target;
        while (queued[index]! < limit) {
          queued[index]! += 1;
          due.push({ index, seq: queued[index]! });
        }
      });
      if (producer && due.length > 0) {
        for (const { index, seq } of due) {
          pending.push({
            index,
            seq,
            message: { key: rooms[index]!, value: JSON.stringify({ id: `m${seq}`, user: 'bench', text: payload(seq) }), headers: { 'event-type': 'message' } },
          });
        }
        sending ??= sendPending(producer);
      } else if (http) {
        for (const { index, seq } of due) {
          chains[index] = chains[index]!.then(async () => {
            try {
              const sentAt = performance.now();
              if (await http(rooms[index]!, seq)) published[index] = seq;
              else errors += 1;
              acks.push(performance.now() - sentAt);
            } catch {
              errors += 1;
            }
          });
        }
      }
      await sleep(10);
    }
  })();
  return {
    published,
    errors: () => errors,
    /** Acknowledgement times since the previous call. */
    ackMs: () => {
      const sorted = acks.sort((a, b) => a - b);
      acks = [];
      if (sorted.length === 0) return null;
      const at = (q: number): number => round(sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!, 1);
      return { p50: at(0.5), p99: at(0.99), max: round(sorted[sorted.length - 1]!, 1) };
    },
    stop: async () => {
      running = false;
      await loop;
      await sending;
      await Promise.all(chains);
    },
  };
}

async function sharedProducer(): Promise<Producer> {
  await kafkaPublisher();
  return kafkaProducer!;
}

/** The gateway's event-loop delay since the previous scrape (prom-client resets its histogram on every scrape), in ms. */
async function scrapeEventLoop(server: RunningServer): Promise<{ maxMs: number; p99Ms: number; meanMs: number } | null> {
  const text = await gatewayMetrics(server);
  return text === null ? null : eventLoopOf(text);
}

/**
 * The gateway's /metrics text, or null (not a gateway, or unreachable). A scrape holds the
 * gateway's loop (~30 ms with 10,000 streams): read every figure wanted from one.
 */
async function gatewayMetrics(server: RunningServer): Promise<string | null> {
  if (!server.name.startsWith('gateway')) return null;
  try {
    const response = await fetch(`http://127.0.0.1:${server.port}/metrics`, { signal: AbortSignal.timeout(5000) });
    return await response.text();
  } catch {
    return null;
  }
}

/** A sample's value in a /metrics text (the first series of that name); NaN when absent. */
function metricValue(text: string, name: string): number {
  return Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
}

/** The event-loop delay prom-client measured since its previous scrape, in ms. */
function eventLoopOf(text: string): { maxMs: number; p99Ms: number; meanMs: number } {
  const ms = (name: string): number => round(metricValue(text, name) * 1000, 1);
  return { maxMs: ms('nodejs_eventloop_lag_max_seconds'), p99Ms: ms('nodejs_eventloop_lag_p99_seconds'), meanMs: ms('nodejs_eventloop_lag_mean_seconds') };
}

/**
 * The gateway's own end-to-end histogram (record timestamp to the hand-over to its streams,
 * `sse_gateway_end_to_end_latency_seconds`): cumulative count per bucket bound (seconds). Two
 * scrapes bracket a window; their difference says whether a slow event was slow before the
 * gateway's fan-out (Kafka, the consumer) or after it.
 */
function endToEndOf(text: string): Map<string, number> {
  const buckets = new Map<string, number>();
  for (const match of text.matchAll(/^sse_gateway_end_to_end_latency_seconds_bucket\{le="([^"]+)"\} (\S+)$/gm)) buckets.set(match[1]!, Number(match[2]));
  return buckets;
}

/** Events handed over within each bucket bound (s) between two readings of `endToEndOf`. */
function endToEndBetween(start: Map<string, number>, end: Map<string, number>): Record<string, number> {
  return Object.fromEntries([...end].map(([le, count]) => [le, count - (start.get(le) ?? 0)]));
}

/**
 * The gateway's event-loop delay over a window: one scrape at the start (prom-client resets its
 * histogram on every scrape), one at the end. Only two, because a scrape itself holds the loop:
 * with ~11,000 streams, prom-client's default collectors list /proc/self/fd (`process_open_fds`)
 * and every handle (`nodejs_active_handles`), ~30 ms there; scraping every second put those
 * stalls into the small rooms' p99. The start scrape's own stall may fall into the window: its
 * duration seen from here is reported (`startScrapeMs`).
 */
function watchEventLoop(server: RunningServer): { stop: () => Promise<{ maxMs: number; p99Ms: number; meanMs: number; startScrapeMs: number; endScrapeMs: number } | null> } {
  const started = (async () => {
    const t0 = performance.now();
    await scrapeEventLoop(server);
    return performance.now() - t0;
  })();
  return {
    stop: async () => {
      const startScrapeMs = await started;
      const t0 = performance.now();
      const sample = await scrapeEventLoop(server);
      const endScrapeMs = performance.now() - t0;
      return sample ? { ...sample, startScrapeMs: round(startScrapeMs, 1), endScrapeMs: round(endScrapeMs, 1) } : null;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// deep-resume (gateway-kafka): replay speed of a deep gap, and the live stream meanwhile

/** The id of a fresh stream's first `event: position`: where a client joining now stands. */
async function streamPosition(port: number, room: string): Promise<string> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 10_000);
  try {
    const response = await fetch(`http://127.0.0.1:${port}/events/${room}`, { signal: controller.signal, headers: { accept: 'text/event-stream' } });
    const reader = response.body!.getReader();
    let text = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`stream of ${room} ended before its position`);
      text += Buffer.from(value).toString('utf8');
      const match = /(?:^|\n)id: ?([^\r\n]+)\r?\n/.exec(text);
      if (match) return match[1]!;
    }
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
}

/** Room names `${prefix}${k}` whose partition satisfies `accept`, as many as asked. */
function roomsOnPartitions(prefix: string, count: number, partitions: number, accept: (partition: number, chosen: number[]) => boolean): Array<{ room: string; partition: number }> {
  const chosen: Array<{ room: string; partition: number }> = [];
  for (let k = 0; chosen.length < count && k < 100_000; k++) {
    const room = `${prefix}${k}`;
    const partition = partitionForKey(room, partitions);
    if (accept(partition, chosen.map((c) => c.partition))) chosen.push({ room, partition });
  }
  return chosen;
}

interface ReplayTiming {
  room: string;
  seconds: number | null;
  eventsPerSecond: number | null;
  received: number;
  duplicated: number;
  gapsSeen: number;
  otherEvents: number;
  streamsClosedByServer: number;
}

/** One client resuming `room` with `id`: time from spawning the client to its last gap event (±50 ms progress reports). */
async function timeReplay(port: number, room: string, id: string, gap: number, srcBase: number, timeoutMs: number): Promise<ReplayTiming> {
  const client = new LoadClient(loadClientBinary(), port, [room], 1, { path: `/events/%s?lastEventId=${id}`, srcBase });
  const t0 = performance.now();
  try {
    let doneAt: number | null = null;
    const deadline = t0 + timeoutMs;
    while (performance.now() < deadline) {
      if (client.minLast(0) >= gap) {
        doneAt = performance.now();
        break;
      }
      if (client.workers.every((w) => w.closed > 0)) break;
      await Promise.race([client.nextProgress(), sleep(100)]);
    }
    const mark = await client.mark();
    const seconds = doneAt === null ? null : (doneAt - t0) / 1000;
    const stats = mark.rooms[0]!;
    return {
      room,
      seconds: seconds === null ? null : round(seconds, 3),
      eventsPerSecond: seconds === null ? null : Math.round(gap / seconds),
      received: stats.unique,
      duplicated: stats.dups,
      gapsSeen: stats.gaps,
      otherEvents: stats.other,
      streamsClosedByServer: mark.closed,
    };
  } finally {
    await client.stop();
  }
}

async function deepResume(cpuProfileDir?: string): Promise<Record<string, unknown>> {
  const brokers = await ensureKafka();
  const server = await startServer('gateway-kafka', cpuProfileDir ? { cpuProfileDir } : {});
  const admin = new Kafka({ clientId: 'bench-admin', brokers, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  const clients: LoadClient[] = [];
  let live: ReturnType<typeof startRatePublisher> | undefined;
  try {
    const metadata = await admin.fetchTopicMetadata({ topics: [chatTopic] });
    const partitionCount = metadata.topics[0]!.partitions.length;
    const tag = Date.now().toString(36);
    const gap = settings.deepGapEvents;
    // Room 0 (the single-client measurement) alone on its partition among the deep rooms, so its
    // partition's gap is exactly its own events plus the filler; the others on the other partitions.
    const deep = roomsOnPartitions(`deep-${tag}-`, settings.deepClients, partitionCount, (partition, chosen) =>
      chosen.length === 0 ? true : partition !== chosen[0] || partitionCount === 1,
    );
    const usedPartitions = [...new Set(deep.map((d) => d.partition))].sort((a, b) => a - b);
    const fillers = new Map<number, string[]>();
    for (const partition of usedPartitions) {
      fillers.set(partition, roomsOnPartitions(`fill-${tag}-p${partition}-`, 20, partitionCount, (p) => p === partition).map((r) => r.room));
    }
    // Where each deep room's client stands before the gap.
    const ids = new Map<string, string>();
    for (const { room } of deep) ids.set(room, await streamPosition(server.port, room));
    // Sentinels: one stream per partition, so we know when the gateway consumed the whole gap live.
    const sentinelRooms = usedPartitions.map((partition) => roomsOnPartitions(`sentinel-${tag}-`, 1, partitionCount, (p) => p === partition)[0]!.room);
    const sentinels = new LoadClient(loadClientBinary(), server.port, sentinelRooms, sentinelRooms.length, { srcBase: 60 });
    clients.push(sentinels);
    await sentinels.connected();

    const producer = new Kafka({ clientId: 'bench-deep', brokers, logLevel: logLevel.NOTHING }).producer({ allowAutoTopicCreation: false });
    await producer.connect();
    const producedAt = performance.now();
    let records = 0;
    const gapBytesByPartition = new Map<number, number>();
    try {
      for (const partition of usedPartitions) {
        const rooms = deep.filter((d) => d.partition === partition).map((d) => d.room);
        const filler = fillers.get(partition)!;
        let messages: Array<{ key: string; partition: number; value: string; headers: Record<string, string> }> = [];
        const flush = async (): Promise<void> => {
          if (messages.length === 0) return;
          // One request at a time: each room's order on its partition is the produce order.
          await producer.send({ topic: chatTopic, acks: 1, messages });
          records += messages.length;
          messages = [];
        };
        let fillerSeq = 0;
        let bytes = 0;
        for (let seq = 1; seq <= gap; seq++) {
          for (const room of rooms) {
            const value = JSON.stringify({ id: `d${seq}`, user: 'bench', text: payload(seq) });
            bytes += value.length;
            messages.push({ key: room, partition, value, headers: { 'event-type': 'message' } });
          }
          // The filler (other rooms on the same partition) interleaved with the gap.
          const others = Math.floor((seq * settings.deepOtherEvents) / gap) - Math.floor(((seq - 1) * settings.deepOtherEvents) / gap);
          for (let j = 0; j < others; j++) {
            fillerSeq += 1;
            const value = JSON.stringify({ id: `f${fillerSeq}`, user: 'bench', text: 'y'.repeat(settings.payloadBytes) });
            bytes += value.length;
            messages.push({ key: filler[fillerSeq % filler.length]!, partition, value, headers: { 'event-type': 'message' } });
          }
          if (messages.length >= settings.deepProduceBatch) await flush();
        }
        await flush();
        gapBytesByPartition.set(partition, bytes);
      }
      await producer.send({
        topic: chatTopic,
        acks: -1,
        messages: sentinelRooms.map((room, index) => ({ key: room, partition: usedPartitions[index]!, value: JSON.stringify({ id: 's1', user: 'bench', text: payload(1) }), headers: { 'event-type': 'message' } })),
      });
    } finally {
      await producer.disconnect();
    }
    const produceSeconds = (performance.now() - producedAt) / 1000;
    const consumed = await drain(sentinels, sentinelRooms.map(() => 1), 180_000);
    log(`deep-resume: produced ${records} records (${deep.length} rooms × ${gap} + filler) in ${produceSeconds.toFixed(1)} s; gateway caught up: ${consumed}`);

    // (a) One client alone, resuming room 0 across its gap, repeated.
    const first = deep[0]!;
    const single: ReplayTiming[] = [];
    for (let r = 0; r < settings.deepRepeats; r++) {
      const cpu0 = server.sample().cpuSeconds;
      const timing: ReplayTiming & { serverCpuSeconds?: number } = await timeReplay(server.port, first.room, ids.get(first.room)!, gap, 20, 60_000);
      // The gateway's CPU over the replay (it does nothing else meanwhile): scanning, decoding, writing.
      timing.serverCpuSeconds = round(server.sample().cpuSeconds - cpu0, 2);
      log(`deep-resume: one client, ${gap} events in ${timing.seconds} s (${timing.eventsPerSecond}/s)`);
      single.push(timing);
    }

    // (b) The live stream for other clients: undisturbed, while every deep client replays at once, undisturbed again.
    const liveRooms = Array.from({ length: settings.rooms }, (_, i) => `live-${tag}-${i}`);
    const liveClient = new LoadClient(loadClientBinary(), server.port, liveRooms, settings.liveSubscribers, { srcBase: 30 });
    clients.push(liveClient);
    const liveConnect = await liveClient.connected();
    live = startRatePublisher(server, liveRooms, liveRooms.map(() => settings.liveRate));
    await sleep(settings.warmupS * 1000);
    const phase = async (name: string, during: () => Promise<unknown>): Promise<Record<string, unknown>> => {
      const start = await liveClient.mark();
      live!.ackMs();
      const cpu0 = server.sample().cpuSeconds;
      const loop = watchEventLoop(server);
      const extra = await during();
      const eventLoop = await loop.stop();
      const end = await liveClient.mark();
      const seconds = (end.tUs - start.tUs) / 1e6;
      return {
        phase: name,
        seconds: round(seconds, 2),
        liveDeliveriesPerSecond: Math.round((end.events - start.events) / seconds),
        liveLatencyMs: percentiles(end.hist),
        serverCpuCores: round((server.sample().cpuSeconds - cpu0) / seconds, 3),
        eventLoopMs: eventLoop,
        publishAckMs: live!.ackMs(),
        loadAverage: loadavg().map((v) => round(v, 2)),
        ...(extra as Record<string, unknown> | undefined),
      };
    };
    const phases: Array<Record<string, unknown>> = [];
    phases.push(await phase('undisturbed (before)', () => sleep(settings.phaseS * 1000)));
    log(`deep-resume: live p99 undisturbed ${JSON.stringify((phases[0]!.liveLatencyMs as { p99: number } | null)?.p99)} ms`);
    phases.push(
      await phase(`${deep.length} deep replays at once`, async () => {
        const t0 = performance.now();
        const timings = await Promise.all(deep.map(({ room }, k) => timeReplay(server.port, room, ids.get(room)!, gap, 40 + k, 90_000)));
        const done = timings.map((t) => t.seconds).filter((s): s is number => s !== null).sort((a, b) => a - b);
        // Keep the window at least as long as the undisturbed ones.
        const spent = performance.now() - t0;
        if (spent < settings.phaseS * 1000) await sleep(settings.phaseS * 1000 - spent);
        return {
          replays: timings,
          replaysCompleted: done.length,
          replaySecondsMedian: done.length ? done[Math.floor(done.length / 2)] : null,
          replaySecondsMax: done.length ? done[done.length - 1] : null,
          replayEventsPerSecondAll: done.length === timings.length ? Math.round((gap * timings.length) / done[done.length - 1]!) : null,
        };
      }),
    );
    log(`deep-resume: live p99 with replays ${JSON.stringify((phases[1]!.liveLatencyMs as { p99: number } | null)?.p99)} ms`);
    // The live stream may be behind after the replays: the last phase starts once it caught up
    // with what was published when they ended (bounded), so it measures the undisturbed state again.
    const catchUpStart = performance.now();
    const caughtUp = await drain(liveClient, [...live.published], 30_000);
    const liveCatchUpSeconds = round((performance.now() - catchUpStart) / 1000, 2);
    phases.push(await phase('undisturbed (after)', () => sleep(settings.phaseS * 1000)));
    await live.stop();
    const drained = await drain(liveClient, live.published, 10_000);
    const final = await liveClient.mark();
    const p99 = (i: number): number | undefined => (phases[i]!.liveLatencyMs as { p99: number } | null)?.p99;
    const undisturbedP99 = p99(0) ?? 0;
    const singleDone = single.map((t) => t.seconds).filter((s): s is number => s !== null).sort((a, b) => a - b);
    const medianSeconds = singleDone.length ? singleDone[Math.floor(singleDone.length / 2)]! : null;
    const gapPartitionRecords = gap + settings.deepOtherEvents;
    const result = {
      server: 'gateway-kafka',
      partitions: partitionCount,
      gapEvents: gap,
      otherEventsOnPartition: settings.deepOtherEvents,
      gapBytesOnPartition: gapBytesByPartition.get(first.partition),
      recordsProduced: records,
      produceSeconds: round(produceSeconds, 2),
      deepRooms: deep.map((d) => `${d.room}@p${d.partition}`),
      single,
      singleSecondsMedian: medianSeconds,
      singleEventsPerSecondMedian: medianSeconds ? Math.round(gap / medianSeconds) : null,
      singleRecordsReadPerSecondMedian: medianSeconds ? Math.round(gapPartitionRecords / medianSeconds) : null,
      liveStreams: liveConnect.established,
      liveRooms: liveRooms.length,
      liveEventsPerSecondPerRoom: settings.liveRate,
      phases,
      // Against the phase before the replays (the one after is reported beside it).
      liveP99WithReplaysOverUndisturbed: p99(1) && undisturbedP99 ? round(p99(1)! / undisturbedP99, 2) : null,
      liveCaughtUpAfterReplays: caughtUp,
      liveCatchUpSeconds,
      liveDrained: drained,
      livePublishErrors: live.errors(),
      ...lossAndDuplicates(final, live.published),
    };
    log(`deep-resume: one client ${result.singleEventsPerSecondMedian} events/s (${medianSeconds} s); live p99 ratio ${result.liveP99WithReplaysOverUndisturbed}`);
    return result;
  } finally {
    await live?.stop().catch(() => undefined);
    for (const client of clients) await client.stop();
    await admin.disconnect();
    await server.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// big-room: one big room beside many small ones

async function bigRoomRun(name: ServerName, withBig: boolean, cpuProfileDir?: string): Promise<Record<string, unknown>> {
  const server = await startServer(name, cpuProfileDir ? { cpuProfileDir } : {});
  const clients: LoadClient[] = [];
  let publisher: ReturnType<typeof startRatePublisher> | undefined;
  try {
    await sleep(500);
    const tag = Date.now().toString(36);
    const smallRooms = Array.from({ length: settings.smallRooms }, (_, i) => `small-${tag}-${i}`);
    const bigRoom = `big-${tag}`;
    const small = new LoadClient(loadClientBinary(), server.port, smallRooms, smallRooms.length * settings.smallRoomSubscribers, { srcBase: 2 });
    clients.push(small);
    const big = withBig ? new LoadClient(loadClientBinary(), server.port, [bigRoom], settings.bigRoomSubscribers, { srcBase: 10 }) : undefined;
    if (big) clients.push(big);
    const smallConnect = await small.connected();
    const bigConnect = big ? await big.connected() : undefined;
    log(`${name} big-room (${withBig ? 'with' : 'without'} the big room): ${smallConnect.established} small + ${bigConnect?.established ?? 0} big streams`);
    const rooms = withBig ? [...smallRooms, bigRoom] : smallRooms;
    publisher = startRatePublisher(server, rooms, rooms.map((room) => (room === bigRoom ? settings.bigRoomRate : settings.smallRoomRate)));
    await sleep(settings.warmupS * 1000);
    const smallStart = await small.mark();
    const bigStart = big ? await big.mark() : undefined;
    const serverStart = server.sample();
    const clientCpuStart = small.cpuSeconds() + (big?.cpuSeconds() ?? 0);
    const loop = watchEventLoop(server);
    publisher.ackMs();
    await sleep(settings.durationS * 1000);
    const eventLoop = await loop.stop();
    const publishAckMs = publisher.ackMs();
    const smallEnd = await small.mark();
    const bigEnd = big ? await big.mark() : undefined;
    const serverEnd = server.sample();
    const clientCores = (small.cpuSeconds() + (big?.cpuSeconds() ?? 0) - clientCpuStart) / ((smallEnd.tUs - smallStart.tUs) / 1e6);
    await publisher.stop();
    const published = publisher.published;
    const smallPublished = published.slice(0, smallRooms.length);
    const smallDrained = await drain(small, smallPublished, 15_000);
    const bigDrained = big ? await drain(big, [published[smallRooms.length]!], 15_000) : true;
    const smallFinal = await small.mark();
    const bigFinal = big ? await big.mark() : undefined;
    const seconds = (smallEnd.tUs - smallStart.tUs) / 1e6;
    const serverCores = (serverEnd.cpuSeconds - serverStart.cpuSeconds) / seconds;
    const smallDeliveries = (smallEnd.events - smallStart.events) / seconds;
    const bigDeliveries = bigEnd && bigStart ? (bigEnd.events - bigStart.events) / seconds : 0;
    const result = {
      server: name,
      withBigRoom: withBig,
      smallRooms: smallRooms.length,
      smallStreams: smallConnect.established,
      bigRoomStreams: bigConnect?.established ?? 0,
      connectFailed: smallConnect.failed + (bigConnect?.failed ?? 0),
      seconds: round(seconds, 2),
      smallDeliveriesPerSecond: Math.round(smallDeliveries),
      bigRoomDeliveriesPerSecond: Math.round(bigDeliveries),
      serverCpuCores: round(serverCores, 3),
      deliveriesPerServerCpuSecond: Math.round((smallDeliveries + bigDeliveries) / Math.max(serverCores, 0.01)),
      clientCpuCores: round(clientCores, 3),
      smallLatencyMs: percentiles(smallEnd.hist),
      bigRoomLatencyMs: bigEnd ? percentiles(bigEnd.hist) : null,
      eventLoopMs: eventLoop,
      publishAckMs,
      loadAverage: loadavg().map((v) => round(v, 2)),
      publishErrors: publisher.errors(),
      drained: smallDrained && bigDrained,
      streamsClosedByServer: smallFinal.closed + (bigFinal?.closed ?? 0),
      small: lossAndDuplicates(smallFinal, smallPublished),
      big: bigFinal ? lossAndDuplicates(bigFinal, [published[smallRooms.length]!]) : null,
    };
    log(`${name} big-room ${withBig ? 'with' : 'without'}: small p99 ${result.smallLatencyMs?.p99} ms, big p99 ${result.bigRoomLatencyMs?.p99 ?? '-'} ms, loop max ${eventLoop?.maxMs ?? '-'} ms, ${result.serverCpuCores} cores`);
    return result;
  } finally {
    await publisher?.stop().catch(() => undefined);
    for (const client of clients) await client.stop();
    await server.stop();
  }
}

async function bigRoom(name: ServerName): Promise<Record<string, unknown>> {
  const runs: Array<Record<string, any>> = []; // any: result records read by field name below
  let profiled: Record<string, unknown> | undefined;
  for (let r = 0; r < settings.bigRoomRepeats; r++) {
    runs.push(await bigRoomRun(name, false));
    runs.push(await bigRoomRun(name, true));
  }
  if (profile && name.startsWith('gateway')) {
    // One more run with the big room, under the profiler: what holds the event loop, and how long.
    const dir = mkdtempSync(join(tmpdir(), 'bench-cpuprof-big-'));
    const run = await bigRoomRun(name, true, dir);
    const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
    profiled = { run, file: file ? join(dir, file) : null, top: file ? summariseProfile(join(dir, file), 15) : null, stretches: file ? longestStretches(join(dir, file), 5, 20) : null };
  }
  const without = runs.filter((r) => !r.withBigRoom);
  const withBig = runs.filter((r) => r.withBigRoom);
  const pairs = withBig.map((w, i) => {
    const o = without[i]!;
    const extraCores = w.serverCpuCores - o.serverCpuCores;
    return {
      smallP99Ratio: o.smallLatencyMs?.p99 ? round(w.smallLatencyMs?.p99 / o.smallLatencyMs.p99, 2) : null,
      // What the big room's deliveries cost beyond the small rooms' (the same small-room load in both runs).
      bigRoomDeliveriesPerExtraCpuSecond: extraCores > 0 ? Math.round(w.bigRoomDeliveriesPerSecond / extraCores) : null,
    };
  });
  return { server: name, bigRoomSubscribers: settings.bigRoomSubscribers, bigRoomRate: settings.bigRoomRate, smallRoomSubscribers: settings.smallRoomSubscribers, smallRoomRate: settings.smallRoomRate, runs, pairs, profiled };
}

// ---------------------------------------------------------------------------------------------
// many-rooms: thousands of small rooms, events taken in and handed out at a high rate

/** A counter of the gateway's /metrics (mirrored counters are set on scrape), or null (not a gateway, or unreachable). */
async function scrapeCounter(server: RunningServer, name: string): Promise<{ value: number; atMs: number } | null> {
  const text = await gatewayMetrics(server);
  const atMs = performance.now();
  const value = text === null ? NaN : metricValue(text, name);
  return Number.isFinite(value) ? { value, atMs } : null;
}

/**
 * BENCH_MANY_ROOMS rooms × BENCH_MANY_ROOM_SUBSCRIBERS streams, BENCH_MANY_ROOM_RATE events/s
 * on every room (startRatePublisher: straight to Kafka for gateway-kafka, the events due every
 * 10 ms in one produce request, `acks: -1`; over HTTP otherwise), bounded by BENCH_WINDOW per
 * room. The same offered load for every server, so deliveries per CPU-second compare the cost of
 * the same work; a server that cannot keep up shows it as deliveries/s under the target.
 */
async function manyRooms(name: ServerName): Promise<Record<string, unknown>> {
  // Profiled (`--cpu-prof`): the gateway runs under the profiler; the report names the file.
  const cpuProfileDir = profile && name.startsWith('gateway') ? mkdtempSync(join(tmpdir(), 'bench-cpuprof-many-')) : undefined;
  const server = await startServer(name, cpuProfileDir === undefined ? {} : { cpuProfileDir });
  let client: LoadClient | undefined;
  let publisher: ReturnType<typeof startRatePublisher> | undefined;
  try {
    await sleep(500);
    const tag = Date.now().toString(36);
    const rooms = Array.from({ length: settings.manyRooms }, (_, i) => `many-${tag}-${i}`);
    const streams = rooms.length * settings.manyRoomSubscribers;
    // Stream i watches room i mod rooms (sse-load.c): every room gets the same number of streams.
    client = new LoadClient(loadClientBinary(), server.port, rooms, streams, { srcBase: 2 });
    const connect = await client.connected();
    log(`${name} many-rooms: ${connect.established}/${streams} streams over ${rooms.length} rooms in ${connect.ms.toFixed(0)} ms (${connect.failed} failed)`);
    publisher = startRatePublisher(server, rooms, rooms.map(() => settings.manyRoomRate), { client, window: settings.window });
    await sleep(settings.warmupS * 1000);
    // The gateway's own count of records read from Kafka, scraped outside the CPU window (a
    // scrape costs the gateway CPU of its own).
    const consumedStart = await scrapeCounter(server, 'sse_gateway_records_consumed_total');
    const startMark = await client.mark();
    const serverStart = server.sample();
    const clientCpuStart = client.cpuSeconds();
    const publisherCpuStart = process.cpuUsage();
    publisher.ackMs();
    await sleep(settings.durationS * 1000);
    const publisherCpu = process.cpuUsage(publisherCpuStart);
    const endMark = await client.mark();
    const serverEnd = server.sample();
    const clientCpuEnd = client.cpuSeconds();
    const publishAckMs = publisher.ackMs();
    const consumedEnd = await scrapeCounter(server, 'sse_gateway_records_consumed_total');
    await publisher.stop();
    const drained = await drain(client, publisher.published, 30_000);
    const final = await client.mark();
    const seconds = (endMark.tUs - startMark.tUs) / 1e6;
    const deliveriesPerSecond = (endMark.events - startMark.events) / seconds;
    const serverCores = (serverEnd.cpuSeconds - serverStart.cpuSeconds) / seconds;
    const serverKernelCores = (serverEnd.kernelSeconds - serverStart.kernelSeconds) / seconds;
    // Events that reached the room's first subscriber in the window: what the server took in
    // and dispatched (the highest sequence number seen in each room, start to end).
    const eventsIn = endMark.rooms.reduce((sum, room, index) => sum + Math.max(0, room.maxLast) - Math.max(0, startMark.rooms[index]!.maxLast), 0);
    const eventsInPerSecond = eventsIn / seconds;
    const recordsConsumedPerSecond =
      consumedStart && consumedEnd ? (consumedEnd.value - consumedStart.value) / ((consumedEnd.atMs - consumedStart.atMs) / 1000) : null;
    const target = rooms.length * settings.manyRoomRate * settings.manyRoomSubscribers;
    const result = {
      server: name,
      publishedVia: name === 'gateway-kafka' ? 'kafka' : 'http',
      rooms: rooms.length,
      streams: connect.established,
      connectFailed: connect.failed,
      seconds: round(seconds, 2),
      eventsPerSecondPerRoom: settings.manyRoomRate,
      targetDeliveriesPerSecond: target,
      deliveriesPerSecond: Math.round(deliveriesPerSecond),
      // Under ~0.97 the server did not keep up with the offered load (the window held the publisher back).
      deliveredOverTarget: round(deliveriesPerSecond / target, 3),
      serverCpuCores: round(serverCores, 3),
      // The kernel's part of serverCpuCores (socket writes and reads); the rest is user space.
      serverKernelCores: round(serverKernelCores, 3),
      deliveriesPerServerCpuSecond: Math.round(deliveriesPerSecond / Math.max(serverCores, 0.01)),
      eventsInPerSecond: Math.round(eventsInPerSecond),
      eventsInPerServerCpuSecond: Math.round(eventsInPerSecond / Math.max(serverCores, 0.01)),
      // gateway only: records read from Kafka (or the embedded bus) per second, from its /metrics, and per gateway CPU-second.
      recordsConsumedPerSecond: recordsConsumedPerSecond === null ? null : Math.round(recordsConsumedPerSecond),
      recordsConsumedPerServerCpuSecond: recordsConsumedPerSecond === null ? null : Math.round(recordsConsumedPerSecond / Math.max(serverCores, 0.01)),
      serverRssMB: round(serverEnd.rssBytes / 2 ** 20, 1),
      clientCpuCores: round((clientCpuEnd - clientCpuStart) / seconds, 3),
      publisherCpuCores: round((publisherCpu.user + publisherCpu.system) / 1e6 / seconds, 3),
      latencyMs: percentiles(endMark.hist),
      publishAckMs,
      loadAverage: loadavg().map((v) => round(v, 2)),
      published: publisher.published.reduce((a, b) => a + b, 0),
      publishErrors: publisher.errors(),
      streamsClosedByServer: final.closed,
      drained,
      ...lossAndDuplicates(final, publisher.published),
      cpuProfileDir: cpuProfileDir ?? null,
    };
    log(`${name} many-rooms: ${result.deliveriesPerSecond} deliveries/s (target ${target}) at ${result.serverCpuCores} cores = ${result.deliveriesPerServerCpuSecond}/CPU-s; ${result.eventsInPerServerCpuSecond} events in/CPU-s; lost ${result.lost}, dup ${result.duplicated}`);
    return result;
  } finally {
    await publisher?.stop().catch(() => undefined);
    await client?.stop();
    await server.stop();
  }
}

function round(value: number, digits: number): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

// ---------------------------------------------------------------------------------------------
// Report

function table(rows: Array<Array<string | number>>): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => String(row[column] ?? '').length)));
  return rows.map((row) => row.map((cell, column) => String(cell ?? '').padStart(widths[column]!)).join('  ')).join('\n');
}

function ratio(a: number | undefined, b: number | undefined): string {
  return a && b ? `${(a / b).toFixed(2)}x` : '-';
}

// any: result rows are heterogeneous JSON records printed by field name.
function report(results: Record<string, any[]>): string {
  const out: string[] = [];
  const sat = results.saturation ?? [];
  if (sat.length) {
    const gateway = sat.find((r) => r.server === 'gateway-memory')?.deliveriesPerServerCpuSecond;
    out.push(`fan-out saturation: ${settings.subscribers} subscribers / ${settings.rooms} rooms, ${settings.payloadBytes}-byte payloads, ${settings.durationS} s`);
    out.push(
      table([
        ['server', 'streams', 'deliveries/s', 'server cores', 'deliveries/CPU-s', 'gateway-memory ÷ this', 'p50 ms', 'p99 ms', 'lost', 'dup', 'closed', 'client cores', 'publisher cores'],
        ...sat.map((r) => [r.server, r.streams, r.deliveriesPerSecond, r.serverCpuCores, r.deliveriesPerServerCpuSecond, ratio(gateway, r.deliveriesPerServerCpuSecond), r.latencyMs?.p50 ?? '-', r.latencyMs?.p99 ?? '-', r.lost, r.duplicated, r.streamsClosedByServer, r.clientCpuCores, r.publisherCpuCores]),
      ]),
    );
    out.push('');
  }
  const idleRows = results.idle ?? [];
  if (idleRows.length) {
    out.push(`idle streams: ${settings.idleStreams}`);
    out.push(
      table([
        ['server', 'streams', 'failed', 'establish ms', 'server CPU µs/stream', 'RSS before MB', 'RSS after MB', 'KB/stream (delta)', 'KB/stream (total)'],
        ...idleRows.map((r) => [r.server, r.streams, r.connectFailed, r.establishMs, r.serverCpuMicrosPerStream, r.rssBeforeMB, r.rssAfterMB, r.rssPerStreamKB, r.rssTotalPerStreamKB]),
      ]),
    );
    out.push('');
  }
  const lat = results.latency ?? [];
  if (lat.length) {
    out.push(`latency: ${settings.subscribers} subscribers, ${settings.latencyDeliveries} deliveries/s for ${settings.durationS} s`);
    out.push(
      table([
        ['server', 'via', 'deliveries/s', 'p50 ms', 'p99 ms', 'p99.9 ms', 'max ms', 'lost', 'dup', 'server cores', 'client cores'],
        ...lat.map((r) => [r.server, r.publishedVia, r.deliveriesPerSecond, r.latencyMs?.p50 ?? '-', r.latencyMs?.p99 ?? '-', r.latencyMs?.p999 ?? '-', r.latencyMs?.max ?? '-', r.lost, r.duplicated, r.serverCpuCores, r.clientCpuCores]),
      ]),
    );
    out.push('');
  }
  for (const r of results.ingest ?? []) {
    out.push(`ingest: ${r.records} records over ${r.partitions} partitions consumed in ${r.consumeSeconds} s = ${r.recordsPerSecond} records/s (${r.recordsPerServerCpuSecond} per gateway CPU-second)`);
  }
  for (const r of results['deep-resume'] ?? []) {
    out.push(`deep resume (gateway-kafka): ${r.gapEvents} events in the room + ${r.otherEventsOnPartition} in other rooms of its partition (${((r.gapBytesOnPartition ?? 0) / 2 ** 20).toFixed(1)} MB of values)`);
    out.push(`  one client: ${r.single.map((t: ReplayTiming) => `${t.seconds ?? 'not done'} s`).join(', ')}; median ${r.singleSecondsMedian} s = ${r.singleEventsPerSecondMedian} events/s (${r.singleRecordsReadPerSecondMedian} records/s read)`);
    out.push(
      table([
        ['phase', 'seconds', 'live deliveries/s', 'live p50 ms', 'live p99 ms', 'live max ms', 'server cores', 'loop max ms', 'replays done', 'replay s (median/max)'],
        ...r.phases.map((p: any) => [p.phase, p.seconds, p.liveDeliveriesPerSecond, p.liveLatencyMs?.p50 ?? '-', p.liveLatencyMs?.p99 ?? '-', p.liveLatencyMs?.max ?? '-', p.serverCpuCores, p.eventLoopMs?.maxMs ?? '-', p.replays ? `${p.replaysCompleted}/${p.replays.length}` : '', p.replays ? `${p.replaySecondsMedian}/${p.replaySecondsMax}` : '']),
      ]),
    );
    out.push(`  live p99 with replays ÷ undisturbed (before): ${r.liveP99WithReplaysOverUndisturbed}; live caught up ${r.liveCatchUpSeconds} s after the replays; live lost ${r.lost}, dup ${r.duplicated}`, '');
  }
  for (const r of results['big-room'] ?? []) {
    out.push(`big room beside small rooms (${r.server}): ${r.bigRoomSubscribers} subscribers at ${r.bigRoomRate} events/s beside small rooms of ${r.smallRoomSubscribers} at ${r.smallRoomRate} events/s`);
    out.push(
      table([
        ['big room', 'small p50 ms', 'small p99 ms', 'small max ms', 'big p50 ms', 'big p99 ms', 'deliveries/s', 'server cores', 'deliveries/CPU-s', 'loop max ms', 'lost', 'dup'],
        ...r.runs.map((x: any) => [x.withBigRoom ? `${x.bigRoomStreams} streams` : 'none', x.smallLatencyMs?.p50 ?? '-', x.smallLatencyMs?.p99 ?? '-', x.smallLatencyMs?.max ?? '-', x.bigRoomLatencyMs?.p50 ?? '-', x.bigRoomLatencyMs?.p99 ?? '-', x.smallDeliveriesPerSecond + x.bigRoomDeliveriesPerSecond, x.serverCpuCores, x.deliveriesPerServerCpuSecond, x.eventLoopMs?.maxMs ?? '-', x.small.lost + (x.big?.lost ?? 0), x.small.duplicated + (x.big?.duplicated ?? 0)]),
      ]),
    );
    out.push(`  ${r.pairs.map((p: any) => `small p99 with ÷ without ${p.smallP99Ratio}, big room ${p.bigRoomDeliveriesPerExtraCpuSecond} deliveries per extra CPU-second`).join('; ')}`, '');
  }
  const many = results['many-rooms'] ?? [];
  if (many.length) {
    out.push(`many rooms: ${settings.manyRooms} rooms × ${settings.manyRoomSubscribers} subscribers, ${settings.manyRoomRate} events/s per room (${settings.manyRooms * settings.manyRoomRate * settings.manyRoomSubscribers} deliveries/s offered), window ${settings.window}, ${settings.durationS} s`);
    out.push(
      table([
        ['server', 'via', 'streams', 'deliveries/s', 'of target', 'server cores', 'deliveries/CPU-s', 'this ÷ nchan', 'events in/s', 'events in/CPU-s', 'records consumed/CPU-s', 'p50 ms', 'p99 ms', 'lost', 'dup', 'closed', 'client cores', 'publisher cores'],
        ...many.map((r) => [r.server, r.publishedVia, r.streams, r.deliveriesPerSecond, r.deliveredOverTarget, r.serverCpuCores, r.deliveriesPerServerCpuSecond, r.deliveriesPerCpuSecondOverNchan === null ? '-' : `${r.deliveriesPerCpuSecondOverNchan}x`, r.eventsInPerSecond, r.eventsInPerServerCpuSecond, r.recordsConsumedPerServerCpuSecond ?? '-', r.latencyMs?.p50 ?? '-', r.latencyMs?.p99 ?? '-', r.lost, r.duplicated, r.streamsClosedByServer, r.clientCpuCores, r.publisherCpuCores]),
      ]),
    );
    out.push('');
  }
  if (results.profile?.length) {
    out.push('', 'gateway-memory CPU profile during saturation (top self time):');
    for (const entry of results.profile) out.push(`  ${entry.selfPercent.toFixed(1).padStart(5)}%  ${entry.function}  ${entry.location}`);
  }
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const startedAt = new Date();
  const loadAverageAtStart = loadavg().map((v) => round(v, 2));
  log(`settings: ${JSON.stringify(settings)}`);
  loadClientBinary();
  if (settings.servers.some((s) => s.startsWith('gateway')) && process.env.BENCH_SKIP_BUILD !== '1') {
    log(`building the gateway in ${settings.gatewayDir}…`);
    const build = spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: settings.gatewayDir, stdio: 'inherit' });
    if (build.status !== 0) throw new Error('the gateway build failed: fix it or set BENCH_GATEWAY_DIR to a tree that builds');
  }
  if (settings.servers.includes('nchan')) nchanModule();
  // any: heterogeneous result records (see report()).
  const results: Record<string, any[]> = {};
  const servers = settings.servers as ServerName[];
  const attempt = async (scenario: string, run: () => Promise<Record<string, unknown>>): Promise<void> => {
    try {
      (results[scenario] ??= []).push(await run());
    } catch (error) {
      log(`${scenario} failed: ${(error as Error).stack ?? error}`);
      (results.errors ??= []).push({ scenario, error: String((error as Error).message ?? error) });
    }
  };
  for (const scenario of settings.scenarios) {
    if (scenario === 'deep-resume') {
      // gateway-kafka only: a replay deeper than the history is read back from Kafka.
      if (servers.includes('gateway-kafka')) {
        log('deep-resume × gateway-kafka');
        // With --cpu-prof the gateway runs under the profiler here (its whole life: the gap's live consumption included).
        const dir = profile ? mkdtempSync(join(tmpdir(), 'bench-cpuprof-deep-')) : undefined;
        await attempt(scenario, () => deepResume(dir));
        const file = dir ? readdirSync(dir).find((f) => f.endsWith('.cpuprofile')) : undefined;
        if (dir && file) {
          results.deepResumeProfile = summariseProfile(join(dir, file), 25);
          results.deepResumeLongestStretches = [longestStretches(join(dir, file), 5, 50)];
          results.deepResumeProfileFile = [join(dir, file)];
          const gapsFile = join(dir, 'loop-gaps.json');
          if (existsSync(gapsFile)) results.deepResumeLoopHeld = [insideGaps(join(dir, file), JSON.parse(readFileSync(gapsFile, 'utf8')) as LoopGap[], 5)];
        }
      }
      continue;
    }
    for (const server of scenario === 'ingest' ? (['gateway-kafka'] as ServerName[]) : servers) {
      if (scenario === 'ingest' && !servers.includes('gateway-kafka')) continue;
      log(`${scenario} × ${server}`);
      if (scenario === 'saturation') await attempt(scenario, () => saturation(server));
      else if (scenario === 'idle') await attempt(scenario, () => idle(server));
      else if (scenario === 'latency') await attempt(scenario, () => latency(server));
      else if (scenario === 'ingest') await attempt(scenario, () => ingest());
      else if (scenario === 'big-room') await attempt(scenario, () => bigRoom(server));
      else if (scenario === 'many-rooms') await attempt(scenario, () => manyRooms(server));
    }
  }
  // Each server's deliveries per CPU-second against Nchan's in this run (the issue's yardstick).
  const nchanMany = results['many-rooms']?.find((r) => r.server === 'nchan')?.deliveriesPerServerCpuSecond as number | undefined;
  for (const r of results['many-rooms'] ?? []) r.deliveriesPerCpuSecondOverNchan = nchanMany ? round(r.deliveriesPerServerCpuSecond / nchanMany, 2) : null;
  if (profile && settings.scenarios.includes('saturation')) {
    const dir = mkdtempSync(join(tmpdir(), 'bench-cpuprof-'));
    log(`profiling gateway-memory under saturation into ${dir}`);
    await attempt('profiledSaturation', () => saturation('gateway-memory', dir));
    const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
    if (file) {
      results.profile = summariseProfile(join(dir, file), 15);
      results.profileFile = [join(dir, file)];
    }
  }
  if (profile && settings.scenarios.includes('idle')) {
    // What opening a stream costs: the gateway's whole life under the profiler, startup included
    // (bench/profile-summary.ts --inclusive separates the stream-opening path).
    const dir = mkdtempSync(join(tmpdir(), 'bench-cpuprof-idle-'));
    log(`profiling gateway-memory opening ${settings.idleStreams} idle streams into ${dir}`);
    await attempt('profiledIdle', () => idle('gateway-memory', dir));
    const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
    if (file) {
      results.idleProfile = summariseProfile(join(dir, file), 25);
      results.idleProfileFile = [join(dir, file)];
    }
  }
  const machine = {
    cpus: cpus().length,
    cpuModel: /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpus()[0]?.model,
    memoryGiB: round(totalmem() / 2 ** 30, 1),
    node: process.version,
    kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
    // The machine is shared: its load (1, 5, 15 min) at the start and the end of the run.
    loadAverageAtStart,
    loadAverageAtEnd: loadavg().map((v) => round(v, 2)),
  };
  process.stdout.write(`${report(results)}\n\n`);
  // The gateway's own settings given through the environment (its defaults otherwise), and which tree ran.
  const gatewayEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => /^(REPLAY_|RESUME_|HISTORY_|STREAM_|NODE_OPTIONS$)/.test(name)));
  process.stdout.write(`${JSON.stringify({ startedAt: startedAt.toISOString(), machine, settings, gatewayDir: settings.gatewayDir, gatewayEnv, results }, null, 2)}\n`);
}

try {
  await main();
} catch (error) {
  log(`failed: ${(error as Error).stack ?? error}`);
  process.exitCode = 1;
} finally {
  killEverything();
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  killEverything();
  process.exit();
}
