/**
 * `npm run bench:presence`: what presence costs on Kafka (README, "Presence"). Two gateway
 * replicas on KAFKA_BROKERS, fresh topics; BENCH_PRESENCE_STREAMS named streams (each its own
 * identity, `?name=`) spread over BENCH_PRESENCE_ROOMS rooms and both replicas. Phases:
 *
 *   join    every stream opens (at most BENCH_PRESENCE_PENDING connecting at once), until every
 *           replica's route lists every member;
 *   steady  nobody comes or goes for BENCH_PRESENCE_DURATION_S: restatements only;
 *   churn   BENCH_PRESENCE_CHURN of the streams (a fraction) leave every second and as many new
 *           identities join, for BENCH_PRESENCE_DURATION_S;
 *   leave   every stream closes; until every replica's route says the rooms are empty.
 *
 * Per phase: the presence topic's records/s and bytes/s (key + value, read by a consumer of the
 * topic), and the `presence` frames/s and bytes/s the streams received. The topic's traffic
 * should follow the rooms (changed per interval, restated per PRESENCE_RESTATE_MS), not the
 * streams. `--quick` (or BENCH_QUICK=1): a smoke run with 500 streams over 10 rooms.
 *
 * Prints a table, then the whole result as JSON on stdout; progress on stderr. Every process it
 * starts is killed when it ends; the run is bounded by BENCH_MAX_S.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { request, type ClientRequest } from 'node:http';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { Kafka, logLevel } from 'kafkajs';
import { SseParser } from '../src/client/sse-parser.ts';
import { freePort } from '../scripts/ports.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const quick = process.argv.includes('--quick') || process.env.BENCH_QUICK === '1';

function envNumber(name: string, full: number, smoke: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return quick ? smoke : full;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name} must be a non-negative number, got ${raw}`);
  return value;
}

const settings = {
  streams: envNumber('BENCH_PRESENCE_STREAMS', 10_000, 500),
  rooms: envNumber('BENCH_PRESENCE_ROOMS', 100, 10),
  durationS: envNumber('BENCH_PRESENCE_DURATION_S', 30, 5),
  churn: envNumber('BENCH_PRESENCE_CHURN', 0.05, 0.05),
  pending: envNumber('BENCH_PRESENCE_PENDING', 200, 100),
  maxSeconds: envNumber('BENCH_MAX_S', 600, 180),
  intervalMs: envNumber('PRESENCE_INTERVAL_MS', 1000, 1000),
  restateMs: envNumber('PRESENCE_RESTATE_MS', 10_000, 10_000),
};

const log = (message: string): void => {
  process.stderr.write(`[presence ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
};

const children = new Set<ChildProcess>();
const streams = new Set<ClientRequest>();
function stopAll(): void {
  for (const stream of streams) stream.destroy();
  for (const child of children) child.kill('SIGKILL');
}
process.on('exit', stopAll);
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(1));
setTimeout(() => {
  log(`BENCH_MAX_S (${settings.maxSeconds} s) reached: stopping`);
  process.exit(1);
}, settings.maxSeconds * 1000).unref();


async function startReplica(env: Record<string, string>): Promise<string> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', 'server.ts'], {
    cwd: ROOT,
    env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', NODE_ENV: 'production' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.add(child);
  const url = `http://127.0.0.1:${port}`;
  for (let waited = 0; ; waited += 250) {
    if (child.exitCode !== null) throw new Error(`replica exited (${child.exitCode})`);
    if ((await fetch(`${url}/readyz`).then((response) => response.status, () => 0)) === 200) return url;
    if (waited > 90_000) throw new Error(`${url} not ready after 90 s`);
    await sleep(250);
  }
}

/** What the streams received: `presence` frames and their bytes. */
const received = { frames: 0, bytes: 0 };
/** What the presence topic carried. */
const topic = { records: 0, bytes: 0 };

/** Opens a stream; resolves once its response started. */
function openStream(url: string): Promise<ClientRequest> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, headers: { accept: 'text/event-stream' } }, (response) => {
      const parser = new SseParser();
      response.on('data', (chunk: Buffer) => {
        for (const message of parser.feed(chunk)) {
          if (message.event !== 'presence') continue;
          received.frames += 1;
          received.bytes += Buffer.byteLength(message.data);
        }
      });
      response.on('error', () => undefined);
      resolve(req);
    });
    req.on('error', reject);
    req.on('close', () => streams.delete(req));
    streams.add(req);
    req.end();
  });
}

/** Runs `tasks` with at most `limit` in flight. */
async function pooled<T>(tasks: Array<() => Promise<T>>, limit: number): Promise<T[]> {
  const results: T[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, tasks.length) }, async () => {
      while (next < tasks.length) {
        const index = next++;
        results[index] = await tasks[index]!();
      }
    }),
  );
  return results;
}

/** Polls every replica's presence route for every room until each replica's total member count passes `done`. */
async function untilCounts(replicas: readonly string[], done: (total: number) => boolean): Promise<void> {
  for (;;) {
    const totals = await Promise.all(
      replicas.map(async (url) => {
        const views = await Promise.all(
          Array.from({ length: settings.rooms }, (_, room) => fetch(`${url}/rooms/room-${room}/presence`).then((response) => response.json() as Promise<{ count: number }>)),
        );
        return views.reduce((total, view) => total + view.count, 0);
      }),
    );
    if (totals.every(done)) return;
    await sleep(250);
  }
}

interface PhaseResult {
  phase: string;
  seconds: number;
  topicRecordsPerS: number;
  topicBytesPerS: number;
  presenceFramesPerS: number;
  presenceBytesPerS: number;
}

async function measure(phase: string, run: () => Promise<void>): Promise<PhaseResult> {
  const before = { ...topic, ...{ frames: received.frames, framesBytes: received.bytes } };
  const startedAt = performance.now();
  await run();
  const seconds = (performance.now() - startedAt) / 1000;
  const result = {
    phase,
    seconds: Math.round(seconds * 10) / 10,
    topicRecordsPerS: Math.round((topic.records - before.records) / seconds),
    topicBytesPerS: Math.round((topic.bytes - before.bytes) / seconds),
    presenceFramesPerS: Math.round((received.frames - before.frames) / seconds),
    presenceBytesPerS: Math.round((received.bytes - before.framesBytes) / seconds),
  };
  log(`${phase}: ${JSON.stringify(result)}`);
  return result;
}

async function main(): Promise<void> {
  const brokers = process.env.KAFKA_BROKERS?.split(',');
  if (brokers === undefined) throw new Error('KAFKA_BROKERS is required (npm run kafka starts a local broker)');
  const suffix = randomBytes(4).toString('hex');
  const chatTopic = `bench-presence-chat-${suffix}`;
  const presenceTopic = `${chatTopic}.presence`;
  const env = {
    KAFKA_BROKERS: brokers.join(','),
    CHAT_TOPIC: chatTopic,
    TICKER_TOPIC: `bench-presence-ticker-${suffix}`,
    CURSOR_SECRET: 'bench-presence-cursor-secret-0123',
    MAX_STREAMS_PER_IP: '1000000',
    MAX_STREAMS: '1000000',
    PRESENCE_INTERVAL_MS: String(settings.intervalMs),
    PRESENCE_RESTATE_MS: String(settings.restateMs),
  };
  log(`settings ${JSON.stringify(settings)}`);
  const replicas = await Promise.all([startReplica(env), startReplica(env)]);
  log(`replicas ready: ${replicas.join(', ')}`);

  const kafka = new Kafka({ clientId: 'bench-presence', brokers, logLevel: logLevel.NOTHING });
  const consumer = kafka.consumer({ groupId: `bench-presence-${suffix}` });
  await consumer.connect();
  // From the beginning: the topic is this run's own, so every record is one of this run's.
  await consumer.subscribe({ topic: presenceTopic, fromBeginning: true });
  const joined = new Promise<void>((resolve) => consumer.on(consumer.events.GROUP_JOIN, () => resolve()));
  await consumer.run({
    eachMessage: async ({ message }) => {
      topic.records += 1;
      topic.bytes += (message.key?.length ?? 0) + (message.value?.length ?? 0);
    },
  });
  await joined;

  let serial = 0;
  const open: ClientRequest[] = [];
  const newStream = (): Promise<ClientRequest> => {
    const index = serial++;
    const room = `room-${index % settings.rooms}`;
    return openStream(`${replicas[index % replicas.length]}/events/${room}?name=user-${index}`);
  };

  const results: PhaseResult[] = [];
  results.push(await measure('join', async () => {
    open.push(...(await pooled(Array.from({ length: settings.streams }, () => newStream), settings.pending)));
    // Until every replica lists every member: the joins have gone through the topic.
    await untilCounts(replicas, (total) => total === settings.streams);
  }));
  results.push(await measure('steady', () => sleep(settings.durationS * 1000)));
  results.push(await measure('churn', async () => {
    const perSecond = Math.max(1, Math.round(settings.streams * settings.churn));
    for (let second = 0; second < settings.durationS; second++) {
      const tick = sleep(1000);
      for (let i = 0; i < perSecond && open.length > 0; i++) open.splice(Math.floor(Math.random() * open.length), 1)[0]!.destroy();
      open.push(...(await pooled(Array.from({ length: perSecond }, () => newStream), settings.pending)));
      await tick;
    }
  }));
  results.push(await measure('leave', async () => {
    for (const stream of open.splice(0)) stream.destroy();
    await untilCounts(replicas, (total) => total === 0);
  }));
  await consumer.disconnect();

  console.log('| phase | s | topic records/s | topic bytes/s | presence frames/s (all streams) | presence bytes/s |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const row of results) console.log(`| ${row.phase} | ${row.seconds} | ${row.topicRecordsPerS} | ${row.topicBytesPerS} | ${row.presenceFramesPerS} | ${row.presenceBytesPerS} |`);
  console.log(JSON.stringify({ settings, quick, results }, null, 2));
}

main().then(
  () => {
    stopAll();
    process.exit(0);
  },
  (error: unknown) => {
    log(`failed: ${(error as Error).stack ?? String(error)}`);
    stopAll();
    process.exit(1);
  },
);
