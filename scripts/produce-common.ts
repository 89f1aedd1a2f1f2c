import { parseArgs } from 'node:util';
import { Kafka, logLevel, Partitioners } from 'kafkajs';
import { loadConfig } from '../src/config.ts';

/** Shared by the demo producers: they write straight to Kafka, as an upstream service would. */
/** `keys` names the comma-separated option listing the Kafka keys (rooms or symbols). */
export async function startProducer(name: string, keys: { option: string; default: string }) {
  const { values } = parseArgs({
    options: {
      rate: { type: 'string', default: '5' },
      count: { type: 'string', default: '0' },
      [keys.option]: { type: 'string', default: keys.default },
    },
  });
  // The gateway's settings give the topics; producers seal no event ids, so the cursor secret the
  // gateway requires with Kafka does not matter here.
  const config = loadConfig({ CURSOR_SECRET: 'producers-seal-no-event-ids', ...process.env });
  if (config.kafkaBrokers === null) {
    process.stderr.write(`${name}: set KAFKA_BROKERS (npm run kafka prints it)\n`);
    process.exit(1);
  }
  const rate = Number(values.rate);
  const count = Number(values.count);
  if (!(rate > 0) || !(count >= 0)) {
    process.stderr.write(`${name}: --rate must be > 0 and --count >= 0 (0 = until stopped)\n`);
    process.exit(1);
  }
  const kafka = new Kafka({ clientId: name, brokers: config.kafkaBrokers, logLevel: logLevel.WARN });
  const producer = kafka.producer({ idempotent: true, createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  const items = String(values[keys.option]).split(',').filter((item) => item !== '');
  return { config, producer, rate, count, keys: items, stop: () => producer.disconnect() };
}

/** Calls `tick(n)` `rate` times a second until `count` (0: until SIGINT/SIGTERM), then disconnects. */
export async function runAtRate(run: { rate: number; count: number; stop(): Promise<void> }, tick: (n: number) => Promise<void>) {
  let stopped = false;
  const stop = () => {
    stopped = true;
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const interval = 1000 / run.rate;
  const started = Date.now();
  for (let n = 0; !stopped && (run.count === 0 || n < run.count); n++) {
    await tick(n);
    const wait = started + (n + 1) * interval - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  }
  await run.stop();
}
