import t from 'tap';
import { spawnSync } from 'node:child_process';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { configRefusal } from '../helpers/config.ts';

t.test('defaults', async (t) => {
  const config = loadConfig({});
  t.equal(config.port, 3000);
  t.equal(config.host, '0.0.0.0');
  t.equal(config.kafkaBrokers, null);
  t.equal(config.topicPartitions, 6);
  t.equal(config.chatTopic, 'chat');
});

t.test('values are parsed', async (t) => {
  const config = loadConfig({ PORT: '8080', KAFKA_BROKERS: ' 127.0.0.1:9092, [::1]:9093 ', LOG_LEVEL: 'debug', CORS_ORIGINS: 'https://a.example,http://localhost:5173' });
  t.equal(config.port, 8080);
  t.same(config.kafkaBrokers, ['127.0.0.1:9092', '[::1]:9093']);
  t.equal(config.logLevel, 'debug');
  t.same(config.corsOrigins, ['https://a.example', 'http://localhost:5173']);
});

t.test('a bad value is refused with the variable named', async (t) => {
  const bad: Array<[Record<string, string>, string]> = [
    [{ PORT: 'abc' }, 'PORT'],
    [{ PORT: '70000' }, 'PORT'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
    [{ KAFKA_BROKERS: 'nohostport' }, 'KAFKA_BROKERS'],
    [{ KAFKA_BROKERS: ',' }, 'KAFKA_BROKERS'],
    [{ TOPIC_PARTITIONS: '0' }, 'TOPIC_PARTITIONS'],
    [{ CHAT_TOPIC: 'bad topic' }, 'CHAT_TOPIC'],
    [{ CORS_ORIGINS: 'not an origin' }, 'CORS_ORIGINS'],
  ];
  for (const [env, variable] of bad) {
    const thrown = configRefusal(env);
    t.ok(thrown instanceof ConfigError, `${variable} refused`);
    t.match((thrown as Error).message, variable, `the message names ${variable}`);
  }
});

t.test('the server refuses to start on a bad value and says which', async (t) => {
  const result = spawnSync(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    env: { ...process.env, PORT: 'not-a-port' },
    encoding: 'utf8',
    timeout: 30000,
  });
  t.equal(result.status, 1);
  t.match(result.stderr, /PORT must be a whole number/);
});
