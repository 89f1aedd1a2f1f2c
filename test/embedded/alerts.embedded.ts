import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import t from 'tap';
import { postJson, startGateway } from '../helpers/gateway.ts';
import { parseMetrics } from '../helpers/metrics.ts';

/**
 * The shipped monitoring: deploy/prometheus.yml and its rule file deploy/alerts.yml, checked
 * with promtool (Debian's `prometheus` package) and unit-tested with deploy/alerts.test.yml;
 * and every metric and label the rules use is one /metrics really exposes. PROMTOOL names
 * another promtool binary; without one, the promtool tests are skipped with the reason.
 */
const PROMTOOL = process.env.PROMTOOL ?? 'promtool';
const found = spawnSync(PROMTOOL, ['--version'], { encoding: 'utf8' });
const skip = found.error !== undefined ? `${PROMTOOL} not found (Debian: apt-get install prometheus): the alert rules are not checked by promtool` : false;

function run(...args: string[]): { status: number | null; output: string } {
  const result = spawnSync(PROMTOOL, args, { encoding: 'utf8', timeout: 60000 });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

t.test('promtool accepts the Prometheus config and its rule file', { skip }, async (t) => {
  const config = run('check', 'config', 'deploy/prometheus.yml');
  t.equal(config.status, 0, config.output);
  t.match(config.output, /SUCCESS: 1 rule files found/, 'prometheus.yml loads the rule file');
  const rules = run('check', 'rules', 'deploy/alerts.yml');
  t.equal(rules.status, 0, rules.output);
});

t.test("the rules' unit tests pass: each alert fires for a replica in trouble and only then", { skip }, async (t) => {
  const tests = run('test', 'rules', 'deploy/alerts.test.yml');
  t.equal(tests.status, 0, tests.output);
  // Every alert has a unit test.
  const rules = await readFile('deploy/alerts.yml', 'utf8');
  const unitTests = await readFile('deploy/alerts.test.yml', 'utf8');
  const alerts = [...rules.matchAll(/^\s*- alert: (\w+)/gm)].map((match) => match[1]!);
  t.ok(alerts.length >= 5, `${alerts.length} alerts`);
  for (const alert of ['GatewayReplicaDown', 'GatewayConsumerLagGrowing', 'GatewayPublishFailures', 'GatewaySlowClientCutoffs']) {
    t.ok(alerts.includes(alert), `${alert} is shipped`);
  }
  for (const alert of alerts) t.match(unitTests, `alertname: ${alert}\n`, `${alert} is unit-tested`);
});

t.test('every metric and label the rules use is one /metrics exposes', async (t) => {
  const gateway = await startGateway(t);
  // One publish, so the per-request series (publish_requests_total{status}) exist.
  t.equal((await postJson(`${gateway.url}/rooms/lobby/messages`, { user: 'ann', text: 'hi' })).status, 202);
  const exposition = await (await fetch(`${gateway.url}/metrics`)).text();
  const samples = parseMetrics(exposition);
  const exposed = new Set<string>();
  for (const [, name, type] of exposition.matchAll(/^# TYPE (\w+) (\w+)$/gm)) {
    exposed.add(name!);
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) exposed.add(name! + suffix);
  }

  const rules = await readFile('deploy/alerts.yml', 'utf8');
  // `up` is Prometheus's own per-target series; job and instance are the labels it adds to every scrape.
  const used = [...rules.matchAll(/\b((?:sse_gateway|nodejs|process)_\w+)(?:\{([^}]*)\})?/g)];
  t.ok(used.length >= 8, 'the rules use gateway metrics');
  for (const [, name, selector] of used) {
    t.ok(exposed.has(name!), `${name} is exposed`);
    for (const [, label] of (selector ?? '').matchAll(/(\w+)\s*[=!]~?/g)) {
      if (label === 'job' || label === 'instance') continue;
      t.ok(samples.some((sample) => sample.name === name && label! in sample.labels), `${name} has a ${label} label`);
    }
  }
  // The label values the rules pick must be ones the gateway writes.
  t.ok(samples.some((sample) => sample.name === 'sse_gateway_kafka_client_errors_total' && sample.labels.kind === 'consumer_crash'), 'kind="consumer_crash" exists');
});
