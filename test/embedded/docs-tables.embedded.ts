import { readFile } from 'node:fs/promises';
import t from 'tap';
import { README, renderReadme } from '../../scripts/docs-tables.ts';
import { knownSettings, SETTING_DESCRIPTIONS } from '../../src/config.ts';
import { startGateway } from '../helpers/gateway.ts';

t.test("README's configuration and metrics tables are what the code generates", async (t) => {
  const readme = await readFile(README, 'utf8');
  const generated = await renderReadme(readme);
  // On failure: run `npm run docs:tables` and commit README.md.
  t.equal(generated, readme, 'README.md is up to date (npm run docs:tables)');
});

t.test('every metric /metrics exposes is in the README, and every setting read has a description', async (t) => {
  const readme = await readFile(README, 'utf8');
  const gateway = await startGateway(t);
  const exposition = await (await fetch(`${gateway.url}/metrics`)).text();
  const names = [...exposition.matchAll(/^# TYPE (sse_gateway_\w+) /gm)].map((match) => match[1]);
  t.ok(names.length > 20, 'the gateway exposes its metrics');
  for (const name of names) t.match(readme, `\`${name}`, `${name} is documented`);
  for (const { name } of knownSettings()) {
    t.ok(SETTING_DESCRIPTIONS[name], `${name} has a description`);
    t.match(readme, `| \`${name}\` |`, `${name} is in the configuration table`);
  }
});
