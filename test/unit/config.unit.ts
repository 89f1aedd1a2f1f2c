import t from 'tap';
import { ConfigError, likelyMistypedSettings, loadConfig } from '../../src/config.ts';
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
  const config = loadConfig({ PORT: '8080', KAFKA_BROKERS: ' 127.0.0.1:9092, [::1]:9093 ', CURSOR_SECRET: 'a-shared-secret-of-16+', LOG_LEVEL: 'debug', CORS_ORIGINS: 'https://a.example,http://localhost:5173' });
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
    [{ REPLAY_SHARE_PERCENT: '0' }, 'REPLAY_SHARE_PERCENT'],
    [{ REPLAY_SHARE_PERCENT: '101' }, 'REPLAY_SHARE_PERCENT'],
  ];
  for (const [env, variable] of bad) {
    const thrown = configRefusal(env);
    t.ok(thrown instanceof ConfigError, `${variable} refused`);
    t.match((thrown as Error).message, variable, `the message names ${variable}`);
  }
});

t.test('settings that contradict each other are refused, naming both variables', async (t) => {
  const auth = { JWT_SECRET: 's'.repeat(32) };
  const kafka = { KAFKA_BROKERS: '127.0.0.1:9092', CURSOR_SECRET: 'a-shared-secret-of-16+' };
  const contradictions: Array<[Record<string, string>, string, string]> = [
    [{ SHUTDOWN_TIMEOUT_MS: '5000', DRAIN_WINDOW_MS: '10000' }, 'SHUTDOWN_TIMEOUT_MS', 'DRAIN_WINDOW_MS'],
    [{ SHUTDOWN_TIMEOUT_MS: '8000' }, 'SHUTDOWN_TIMEOUT_MS', 'DRAIN_WINDOW_MS'],
    [{ SHUTDOWN_TIMEOUT_MS: '4000', DRAIN_WINDOW_MS: '1000' }, 'SHUTDOWN_TIMEOUT_MS', 'PUBLISH_TIMEOUT_MS'],
    [{ JWT_ISSUER: 'https://login.example' }, 'JWT_ISSUER', 'JWT_SECRET'],
    [{ JWT_AUDIENCE: 'gateway' }, 'JWT_AUDIENCE', 'JWT_PUBLIC_KEY_FILE'],
    [{ REQUIRE_TOKEN_EXP: 'false' }, 'REQUIRE_TOKEN_EXP', 'JWT_SECRET'],
    [{ MAX_STREAM_LIFETIME_MS: '60000' }, 'MAX_STREAM_LIFETIME_MS', 'JWT_SECRET'],
    [{ ...kafka, KAFKA_SSL: 'false', KAFKA_SSL_CA_FILE: '/ca.pem' }, 'KAFKA_SSL_CA_FILE', 'KAFKA_SSL'],
    [{ ...kafka, KAFKA_SSL_REJECT_UNAUTHORIZED: 'false' }, 'KAFKA_SSL_REJECT_UNAUTHORIZED', 'KAFKA_SSL'],
    [{ ...kafka, KAFKA_SASL_USERNAME: 'gw', KAFKA_SASL_PASSWORD: 'pw' }, 'KAFKA_SASL_USERNAME', 'KAFKA_SASL_MECHANISM'],
    [{ ...kafka, KAFKA_SASL_PASSWORD: 'pw' }, 'KAFKA_SASL_PASSWORD', 'KAFKA_SASL_MECHANISM'],
    [{ KAFKA_SASL_MECHANISM: 'plain', KAFKA_SASL_USERNAME: 'gw', KAFKA_SASL_PASSWORD: 'pw' }, 'KAFKA_SASL_MECHANISM', 'KAFKA_BROKERS'],
    [{ KAFKA_SSL: 'true' }, 'KAFKA_SSL', 'KAFKA_BROKERS'],
    [{ KAFKA_FAIL_FAST: 'true' }, 'KAFKA_FAIL_FAST', 'KAFKA_BROKERS'],
  ];
  for (const [env, first, second] of contradictions) {
    const thrown = configRefusal(env);
    t.ok(thrown instanceof ConfigError, `${JSON.stringify(env)} refused`);
    t.match((thrown as Error).message, first, `names ${first}`);
    t.match((thrown as Error).message, second, `names ${second}: "${(thrown as Error).message}"`);
  }
  // The same settings, consistent, load.
  const consistent: Array<Record<string, string>> = [
    { SHUTDOWN_TIMEOUT_MS: '12000', DRAIN_WINDOW_MS: '10000' },
    { SHUTDOWN_TIMEOUT_MS: '2000', DRAIN_WINDOW_MS: '1000', PUBLISH_TIMEOUT_MS: '1000' },
    { ...auth, JWT_ISSUER: 'https://login.example', JWT_AUDIENCE: 'gateway', SERVICE_API_KEYS: `pricing=${'k'.repeat(24)}` },
    { ...kafka, KAFKA_SSL: 'true', KAFKA_SSL_CA_FILE: '/ca.pem', KAFKA_SSL_REJECT_UNAUTHORIZED: 'false', KAFKA_FAIL_FAST: 'true' },
    { ...kafka, KAFKA_SASL_MECHANISM: 'plain', KAFKA_SASL_USERNAME: 'gw', KAFKA_SASL_PASSWORD: 'pw' },
  ];
  for (const env of consistent) t.equal(configRefusal(env), undefined, `${JSON.stringify(env)} loads`);
});

t.test('a variable one edit away from a known one is reported as likely mistyped', async (t) => {
  t.same(
    likelyMistypedSettings({ MAX_STREAM: '5', HEARTBEAT_MSS: '1', max_streams_per_ip: '3', LOGLEVEL: 'debug', PATH: '/bin', HOME: '/root', MAX_STREAMS: '9', PORT: '1' }),
    [
      { variable: 'MAX_STREAM', meant: 'MAX_STREAMS' },
      { variable: 'HEARTBEAT_MSS', meant: 'HEARTBEAT_MS' },
      { variable: 'max_streams_per_ip', meant: 'MAX_STREAMS_PER_IP' },
      { variable: 'LOGLEVEL', meant: 'LOG_LEVEL' },
    ],
  );
  t.same(likelyMistypedSettings({ KAFKA_SASL_PASSWORD: 'x', KAFKA_SSL_KEY_FILE: '/k', CURSOR_SECRET: 'x' }), [], 'variables read only in some branches are known too');
});

t.test('the replays\' share of the event loop: 30 % unless set', async (t) => {
  t.equal(loadConfig({}).replaySharePercent, 30);
  t.equal(loadConfig({ REPLAY_SHARE_PERCENT: '100' }).replaySharePercent, 100);
});
