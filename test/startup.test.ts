import t from 'tap';
import { spawnSync } from 'node:child_process';
import { serverArgs, serverEnv, spawnServer } from './helpers/server-process.ts';

/**
 * Settings as the server process reads them at startup (test/unit/config.unit.ts checks the
 * parsing itself, in process): a refused value stops it with a message, a mistyped variable is
 * warned about. Here, not in test/unit: each test starts a Node process.
 */

t.test('the server refuses to start on a bad value and says which', async (t) => {
  const result = spawnSync(process.execPath, serverArgs(), {
    env: { ...serverEnv(), PORT: 'not-a-port' },
    encoding: 'utf8',
    timeout: 90000,
  });
  t.equal(result.status, 1);
  t.match(result.stderr, /PORT must be a whole number/);
});

t.test('a variable one edit away from a known one is reported, also after a load that failed', async (t) => {
  // A process whose first load stopped at a bad value still knows every variable.
  const child = spawnSync(process.execPath, ['--import', 'tsx', '-e', `
    import { loadConfig, likelyMistypedSettings } from './src/config.ts';
    try { loadConfig({ PORT: 'bad' }); } catch {}
    process.stdout.write(JSON.stringify(likelyMistypedSettings({ KAFKA_FAIL_FAS: '1' })));
  `], { encoding: 'utf8', timeout: 90000 });
  t.same(JSON.parse(child.stdout), [{ variable: 'KAFKA_FAIL_FAS', meant: 'KAFKA_FAIL_FAST' }], child.stderr);
});

t.test('the server warns once at startup about a mistyped variable', async (t) => {
  const server = await spawnServer(t, { LOG_LEVEL: 'info', MAX_STREAM: '5', KAFKA_BROKERS: '' });
  const warnings = server.output().split('\n').filter((line) => line.includes('MAX_STREAM"')).map((line) => JSON.parse(line));
  t.equal(warnings.length, 1, 'one warning');
  t.match(warnings[0], { level: 40, variable: 'MAX_STREAM', meant: 'MAX_STREAMS', msg: /did you mean MAX_STREAMS/ });
});
