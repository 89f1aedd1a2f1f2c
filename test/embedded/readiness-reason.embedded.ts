import t from 'tap';
import { configWith } from '../../src/config.ts';
import { publicReadinessReason } from '../../routes/health.ts';
import { startGateway } from '../helpers/gateway.ts';
import { until } from '../helpers/sse-client.ts';

/**
 * What `/readyz` tells anyone (README, "Readiness"): once tokens or service keys are configured,
 * which part is not ready, never the Kafka client's text with broker addresses; those stay in
 * the service-key-protected `/status`. With neither (development) the details stay.
 */

const SECRET = 'readyz-test-secret-of-at-least-32-chars';
const SERVICE_KEY = 'readyz-service-key-0123456789abcdef';
const UNREACHABLE = '127.0.0.1:1';

type Readiness = { status: string; reason?: string };

/** The bus reason /status shows the operator, once it names the refused connection. */
async function detailedReason(url: string, headers: Record<string, string>): Promise<string> {
  let reason = '';
  await until(async () => {
    // any: the test reads one field of the /status JSON.
    const status: any = await (await fetch(`${url}/status`, { headers })).json();
    reason = status.bus.reason ?? '';
    return /ECONNREFUSED|Connection error/.test(reason);
  }, 20000, () => `/status naming the refused connection (last: ${reason})`);
  return reason;
}

t.test('auth on, Kafka unreachable: the anonymous /readyz says which part is not ready, without the broker address or the client error', async (t) => {
  const gateway = await startGateway(
    t,
    { kafkaBrokers: [UNREACHABLE], auth: { ...configWith().auth, jwtSecret: SECRET, serviceApiKeys: new Map([[SERVICE_KEY, 'ops']]) } },
    { waitReady: false },
  );
  const details = await detailedReason(gateway.url, { 'x-api-key': SERVICE_KEY });
  t.match(details, UNREACHABLE, 'the operator still gets the details in /status');

  const response = await fetch(`${gateway.url}/readyz`);
  t.equal(response.status, 503);
  t.match(response.headers.get('content-type'), /^application\/json/);
  const text = await response.text();
  t.same(JSON.parse(text) as Readiness, { status: 'not ready', reason: 'kafka unavailable' });
  t.notMatch(text, '127.0.0.1', 'no broker address');
  t.notMatch(text, /:\d/, 'no port');
  t.notMatch(text, /ECONNREFUSED|Connection error|retrying/, 'no client error text');
});

t.test('auth off: /readyz keeps the Kafka error, broker included (development)', async (t) => {
  const gateway = await startGateway(t, { kafkaBrokers: [UNREACHABLE] }, { waitReady: false });
  await detailedReason(gateway.url, {});
  const response = await fetch(`${gateway.url}/readyz`);
  t.equal(response.status, 503);
  const body = (await response.json()) as Readiness;
  t.match(body, { status: 'not ready', reason: /^Kafka: / });
  t.match(body.reason, UNREACHABLE);
});

t.test('service keys without tokens: /status needs a key, so /readyz hides the details too', async (t) => {
  const gateway = await startGateway(t, { kafkaBrokers: [UNREACHABLE], auth: { ...configWith().auth, serviceApiKeys: new Map([[SERVICE_KEY, 'ops']]) } }, { waitReady: false });
  await detailedReason(gateway.url, { 'x-api-key': SERVICE_KEY });
  t.same(await (await fetch(`${gateway.url}/readyz`)).json(), { status: 'not ready', reason: 'kafka unavailable' });
});

t.test('every reason the bus gives maps to a short public one; one it does not know, to a generic one', async (t) => {
  const cases: Array<[string, boolean, string]> = [
    ['shutting down', false, 'shutting down'],
    ['closed', false, 'shutting down'],
    ['not started', false, 'starting'],
    ['Kafka: connecting to kafka-0.internal.corp.example:9092', false, 'kafka unavailable'],
    ['Kafka: SASL SCRAM SHA512 authentication failed for user ops; retrying', false, 'kafka unavailable'],
    ['warming up the history: 3 partitions still catching up', false, 'warming up'],
    ['the Kafka consumer has not advanced for 60 s or more on chat-0 although Kafka holds newer records there', false, 'kafka consumer stuck'],
    ['degraded: the Kafka consumer is rejoining its group (4 s: Connection error: connect ECONNREFUSED 10.0.0.5:9092); streams stay open', true, 'kafka consumer rejoining'],
    ['degraded: the Kafka producer is disconnected; publishing answers 503', true, 'kafka producer disconnected'],
    ['degraded: Kafka client error 2 s ago: getaddrinfo ENOTFOUND kafka-0.internal.corp.example', true, 'kafka client error'],
    ['something new at 10.0.0.5:9092', false, 'not ready'],
    ['something new at 10.0.0.5:9092', true, 'kafka trouble'],
  ];
  for (const [reason, ready, expected] of cases) t.equal(publicReadinessReason(reason, ready), expected, reason);
});
