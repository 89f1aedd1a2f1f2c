import { spawn } from 'node:child_process';
import t from 'tap';
import { testsAtATime } from './helpers/one-process.ts';
import { kafkaTopics, requiredKafkaBrokers, startGateway, uniqueName } from './helpers/gateway.ts';
import { openStream } from './helpers/sse-client.ts';

/**
 * The demo producers, run through tsx's loader as `npm run produce:…` runs them (one Node process
 * each, `node --import tsx`, rather than the tsx CLI's two), with what they print.
 */

const root = new URL('..', import.meta.url).pathname;

interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(script: string, args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<Finished> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], { cwd: root, env: { ...process.env, KAFKA_BROKERS: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${script} did not finish in ${timeoutMs} ms: ${stderr}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const brokers = requiredKafkaBrokers().join(',');

testsAtATime(3);

t.test('the producers answer --help', async (t) => {
  const scripts = ['scripts/produce-chat.ts', 'scripts/produce-ticker.ts'];
  // Independent processes: run at once, checked in order.
  const [helps, wrong] = await Promise.all([
    Promise.all(scripts.map((script) => run(script, ['--help']))),
    run('scripts/produce-chat.ts', ['--rate', 'fast'], { KAFKA_BROKERS: brokers }),
  ]);
  for (const [index, help] of helps.entries()) {
    t.equal(help.code, 0, `${scripts[index]} --help exits 0`);
    t.match(help.stdout, /^usage: KAFKA_BROKERS=host:port npm run produce:/);
    t.match(help.stdout, /--rate N/);
    t.match(help.stdout, /start a gateway on the same Kafka first/i);
  }
  t.equal(wrong.code, 2);
  t.match(wrong.stderr, /--rate must be > 0/);
});

t.test('a producer run before any gateway says to start one, without a stack trace', async (t) => {
  const [missing, noBroker] = await Promise.all([
    run('scripts/produce-chat.ts', ['--count', '1'], { KAFKA_BROKERS: brokers, CHAT_TOPIC: uniqueName('no-such-topic') }),
    run('scripts/produce-ticker.ts', ['--count', '1'], { KAFKA_BROKERS: '127.0.0.1:1' }),
  ]);
  t.equal(missing.code, 1);
  t.match(missing.stderr, /start a gateway first \(it creates the topics\)/);
  t.notMatch(missing.stderr, /\n\s+at /, 'no stack trace');
  t.equal(noBroker.code, 1);
  t.match(noBroker.stderr, /cannot reach Kafka at 127\.0\.0\.1:1/);
  t.notMatch(noBroker.stderr, /\n\s+at /, 'no stack trace');
});

t.test('a producer run prints its plan and a summary, and its records reach the gateway', async (t) => {
  const topics = kafkaTopics();
  const gateway = await startGateway(t, { kafkaBrokers: brokers.split(','), ...topics });
  const room = uniqueName('room');
  const stream = await openStream(t, `${gateway.url}/events/${room}`);
  const produced = await run('scripts/produce-chat.ts', ['--count', '3', '--rate', '50', '--rooms', room], { KAFKA_BROKERS: brokers, CHAT_TOPIC: topics.chatTopic });
  t.equal(produced.code, 0, produced.stderr);
  t.match(produced.stderr, new RegExp(`produce:chat: 50/s to topic ${topics.chatTopic} .* for ${room}, 3 records`));
  t.match(produced.stderr, new RegExp(`produce:chat: done: 3 records to ${topics.chatTopic} in `));
  const events = await stream.waitForEvents(3);
  t.same(events.map((event) => event.event), ['message', 'message', 'message']);
});
