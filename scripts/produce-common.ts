import { parseArgs } from 'node:util';
import { Kafka, logLevel, Partitioners, type Producer } from 'kafkajs';
import { loadConfig, type Config } from '../src/config.ts';
import { topicExists } from '../src/bus/kafka-connection.ts';

/**
 * Shared by the demo producers (`npm run produce:chat`, `npm run produce:ticker`): they write
 * straight to Kafka, as an upstream service would. They check first that the topic exists (the
 * gateway creates it; the brokers it is tested with do not auto-create topics), print progress
 * every few seconds and a summary at the end, and explain a setup mistake in one line instead of
 * a stack trace.
 */

export interface ProducerSpec {
  /** The script's name, as in `npm run <name>`. */
  name: string;
  /** What it produces, for `--help`. */
  description: string;
  /** The comma-separated option listing the Kafka keys (rooms or symbols). */
  keys: { option: string; default: string; what: string };
  /** The topic it writes to, from the gateway's configuration. */
  topic: (config: Config) => string;
}

export interface ProducerRun {
  config: Config;
  producer: Producer;
  topic: string;
  rate: number;
  count: number;
  keys: string[];
  stop(): Promise<void>;
}

const PROGRESS_EVERY_MS = 5000;

/** Exits with `message` on stderr (no stack trace): these are setup mistakes, not bugs. */
function fail(name: string, message: string, code = 1): never {
  process.stderr.write(`${name}: ${message}\n`);
  process.exit(code);
}

function usage(spec: ProducerSpec): string {
  return [
    `usage: KAFKA_BROKERS=host:port npm run ${spec.name} -- [--rate N] [--count N] [--${spec.keys.option} A,B]`,
    '',
    spec.description,
    '',
    '  --rate N        records per second (default 5)',
    '  --count N       stop after N records (default 0: until Ctrl-C)',
    `  ${`--${spec.keys.option} A,B`.padEnd(16)}comma-separated ${spec.keys.what} (default ${spec.keys.default})`,
    '  -h, --help      this text',
    '',
    'KAFKA_BROKERS (npm run kafka prints it), CHAT_TOPIC and TICKER_TOPIC are read as the gateway reads them.',
    'Start a gateway on the same Kafka first: it creates the topics.',
    '',
  ].join('\n');
}

/** Parses the command line, connects, and checks the topic; exits with a one-line reason when it cannot. */
export async function startProducer(spec: ProducerSpec): Promise<ProducerRun> {
  const { name } = spec;
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      options: {
        rate: { type: 'string', default: '5' },
        count: { type: 'string', default: '0' },
        [spec.keys.option]: { type: 'string', default: spec.keys.default },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    fail(name, `${(error as Error).message}\n\n${usage(spec)}`, 2);
  }
  if (values.help === true) {
    process.stdout.write(usage(spec));
    process.exit(0);
  }
  let config: Config;
  try {
    // The gateway's settings give the topics; producers seal no event ids, so the cursor secret the
    // gateway requires with Kafka does not matter here.
    config = loadConfig({ CURSOR_SECRET: 'producers-seal-no-event-ids', ...process.env });
  } catch (error) {
    fail(name, (error as Error).message, 2);
  }
  if (config.kafkaBrokers === null) fail(name, 'set KAFKA_BROKERS (npm run kafka prints it)', 2);
  const rate = Number(values.rate);
  const count = Number(values.count);
  if (!(rate > 0) || !(Number.isInteger(count) && count >= 0)) fail(name, '--rate must be > 0 and --count a whole number >= 0 (0 = until stopped)', 2);
  const keys = String(values[spec.keys.option]).split(',').filter((item) => item !== '');
  if (keys.length === 0) fail(name, `--${spec.keys.option} names no ${spec.keys.what}`, 2);
  const topic = spec.topic(config);

  // Few retries: a broker that is not there should say so within seconds, not after minutes.
  const kafka = new Kafka({ clientId: name, brokers: config.kafkaBrokers, logLevel: logLevel.NOTHING, retry: { retries: 2 } });
  const admin = kafka.admin();
  try {
    await admin.connect();
    if (!(await topicExists(admin, topic))) {
      fail(name, `topic "${topic}" does not exist on ${config.kafkaBrokers.join(',')}: start a gateway first (it creates the topics)`);
    }
  } catch (error) {
    fail(name, `cannot reach Kafka at ${config.kafkaBrokers.join(',')} (${(error as Error).message}): is it running? (npm run kafka)`);
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
  const producer = kafka.producer({ idempotent: true, createPartitioner: Partitioners.DefaultPartitioner });
  try {
    await producer.connect();
  } catch (error) {
    fail(name, `cannot connect the producer to ${config.kafkaBrokers.join(',')}: ${(error as Error).message}`);
  }
  process.stderr.write(
    `${name}: ${rate}/s to topic ${topic} on ${config.kafkaBrokers.join(',')} for ${keys.join(',')}${count > 0 ? `, ${count} records` : ', until Ctrl-C'}\n`,
  );
  return { config, producer, topic, rate, count, keys, stop: () => producer.disconnect() };
}

/**
 * Calls `tick(n)` `rate` times a second until `count` (0: until SIGINT/SIGTERM), printing
 * progress every few seconds, then a summary, and disconnects. A record Kafka refuses ends the
 * run with its reason (exit code 1).
 */
export async function runAtRate(name: string, run: ProducerRun, tick: (n: number) => Promise<void>): Promise<void> {
  let stopped = false;
  const stop = () => {
    stopped = true;
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const interval = 1000 / run.rate;
  const started = Date.now();
  let sent = 0;
  let failure: Error | undefined;
  const elapsed = () => (Date.now() - started) / 1000;
  const progress = setInterval(() => {
    process.stderr.write(`${name}: ${sent} sent in ${elapsed().toFixed(0)} s (${(sent / elapsed()).toFixed(1)}/s)\n`);
  }, PROGRESS_EVERY_MS);
  try {
    for (let n = 0; !stopped && (run.count === 0 || n < run.count); n++) {
      await tick(n);
      sent += 1;
      const wait = started + (n + 1) * interval - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    }
  } catch (error) {
    failure = error as Error;
  } finally {
    clearInterval(progress);
    await run.stop().catch(() => undefined);
  }
  const seconds = elapsed();
  process.stderr.write(`${name}: done: ${sent} records to ${run.topic} in ${seconds.toFixed(1)} s (${(sent / Math.max(seconds, 0.001)).toFixed(1)}/s)\n`);
  if (failure !== undefined) fail(name, `Kafka refused a record: ${failure.message}`);
}
