import t from 'tap';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { configRefusal } from '../helpers/config.ts';
import { describeKafkaConnection, isUnrecoverableKafkaError, kafkaConnectionOptions } from '../../src/bus/kafka-connection.ts';

t.test('security defaults: auth off, plaintext Kafka', async (t) => {
  const { auth, kafkaSecurity } = loadConfig({});
  t.equal(auth.jwtSecret, null);
  t.equal(auth.jwtPublicKeyFile, null);
  t.equal(auth.cookieName, 'token');
  t.same(auth.publicRooms, []);
  t.equal(auth.maxStreamsPerIdentity, 20);
  t.same(kafkaSecurity, { ssl: null, sasl: null, failFast: false });
  t.same(kafkaConnectionOptions(kafkaSecurity), {});
});

t.test('security values are parsed', async (t) => {
  const config = loadConfig({
    KAFKA_BROKERS: '127.0.0.1:9092',
    CURSOR_SECRET: 'a-shared-secret-of-16+',
    JWT_SECRET: 's'.repeat(32),
    PUBLIC_ROOMS: 'lobby, public-*',
    SERVICE_API_KEYS: `pricing=${'k'.repeat(24)}`,
    KAFKA_SASL_MECHANISM: 'SCRAM-SHA-512',
    KAFKA_SASL_USERNAME: 'gw',
    KAFKA_SASL_PASSWORD: 'pw',
    KAFKA_SSL_CA_FILE: '/ca.pem',
    KAFKA_FAIL_FAST: 'true',
  });
  t.same(config.auth.publicRooms, ['lobby', 'public-*']);
  t.equal(config.auth.serviceApiKeys.get('k'.repeat(24)), 'pricing');
  t.same(config.kafkaSecurity.sasl, { mechanism: 'scram-sha-512', username: 'gw', password: 'pw' });
  t.equal(config.kafkaSecurity.failFast, true);
  const options = kafkaConnectionOptions(config.kafkaSecurity, (path) => `contents of ${path}`);
  t.same(options, { ssl: { rejectUnauthorized: true, ca: ['contents of /ca.pem'] }, sasl: { mechanism: 'scram-sha-512', username: 'gw', password: 'pw' } });
  t.notMatch(JSON.stringify(describeKafkaConnection(config.kafkaSecurity)), /pw"/, 'the password is not described');
});

t.test('bad security values are refused, naming the variable and never the secret', async (t) => {
  const bad: Array<[Record<string, string>, string]> = [
    [{ JWT_SECRET: 'short-secret-value' }, 'JWT_SECRET'],
    [{ JWT_SECRET: 's'.repeat(32), JWT_PUBLIC_KEY_FILE: '/k.pem' }, 'JWT_PUBLIC_KEY_FILE'],
    [{ PUBLIC_ROOMS: 'te*m' }, 'PUBLIC_ROOMS'],
    [{ SERVICE_API_KEYS: 'pricing=tooshort-secret' }, 'SERVICE_API_KEYS'],
    [{ SERVICE_API_KEYS: 'no-separator-here-at-all-long' }, 'SERVICE_API_KEYS'],
    [{ KAFKA_SASL_MECHANISM: 'gssapi', KAFKA_SASL_USERNAME: 'u', KAFKA_SASL_PASSWORD: 'p' }, 'KAFKA_SASL_MECHANISM'],
    [{ KAFKA_SASL_MECHANISM: 'plain', KAFKA_SASL_PASSWORD: 'p' }, 'KAFKA_SASL_USERNAME'],
    [{ KAFKA_SASL_MECHANISM: 'plain', KAFKA_SASL_USERNAME: 'u' }, 'KAFKA_SASL_PASSWORD'],
    [{ KAFKA_SSL_CERT_FILE: '/c.pem' }, 'KAFKA_SSL_KEY_FILE'],
    [{ KAFKA_FAIL_FAST: 'maybe' }, 'KAFKA_FAIL_FAST'],
    [{ MAX_STREAMS_PER_IDENTITY: '-1' }, 'MAX_STREAMS_PER_IDENTITY'],
  ];
  for (const [env, variable] of bad) {
    const thrown = configRefusal(env);
    t.ok(thrown instanceof ConfigError, `${variable} refused`);
    t.equal((thrown as ConfigError).variable, variable);
    t.notMatch((thrown as Error).message, /tooshort-secret|short-secret-value/, 'no secret in the message');
  }
});

t.test('which Kafka failures are worth exiting for', async (t) => {
  t.ok(isUnrecoverableKafkaError('Kafka: SASL SCRAM SHA256 authentication failed: Authentication failed'));
  t.ok(isUnrecoverableKafkaError('Kafka: self-signed certificate in certificate chain'));
  t.notOk(isUnrecoverableKafkaError('Kafka: Connection error: connect ECONNREFUSED 127.0.0.1:9'));
  t.notOk(isUnrecoverableKafkaError('Kafka consumer has not joined its group'));
});
