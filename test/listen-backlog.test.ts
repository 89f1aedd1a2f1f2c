import { execFileSync } from 'node:child_process';
import t from 'tap';
import { testsAtATime } from './helpers/one-process.ts';
import { spawnServer } from './helpers/server-process.ts';
import { effectiveListenBacklog, readSomaxconn } from '../src/listen-backlog.ts';
import { ConfigError, loadConfig } from '../src/config.ts';

/**
 * The backlog of the socket listening on `port`, as the kernel holds it: for a listening socket
 * `ss` shows it in the Send-Q column.
 */
function kernelBacklog(port: number): number {
  const out = execFileSync('ss', ['-Hltn', `sport = :${port}`], { encoding: 'utf8' });
  const columns = out.trim().split(/\s+/);
  return Number(columns[2]);
}

const somaxconn = readSomaxconn();
const haveSs = (() => {
  try {
    execFileSync('ss', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

testsAtATime(3);

t.test('LISTEN_BACKLOG reaches the listen socket', { skip: !haveSs || somaxconn === null ? 'needs ss and /proc/sys/net/core/somaxconn' : false }, async (t) => {
  const requested = Math.min(77, somaxconn!);
  const server = await spawnServer(t, { LISTEN_BACKLOG: String(requested) });
  t.equal(kernelBacklog(server.port), requested);
  t.notMatch(server.output(), /capped by the kernel/);
});

t.test('the default backlog is 4096, or the kernel cap below it', { skip: !haveSs || somaxconn === null ? 'needs ss and /proc/sys/net/core/somaxconn' : false }, async (t) => {
  const server = await spawnServer(t, {});
  t.equal(kernelBacklog(server.port), Math.min(4096, somaxconn!));
});

t.test('a backlog above net.core.somaxconn is logged with the value in effect', { skip: !haveSs || somaxconn === null ? 'needs ss and /proc/sys/net/core/somaxconn' : false }, async (t) => {
  const server = await spawnServer(t, { LISTEN_BACKLOG: String(somaxconn! + 1) });
  t.equal(kernelBacklog(server.port), somaxconn);
  const line = server.output().split('\n').find((l) => l.includes('capped by the kernel'));
  t.ok(line, 'a warning says the backlog was capped');
  const logged = JSON.parse(line!) as { requested: number; effective: number; level: number };
  t.same({ requested: logged.requested, effective: logged.effective }, { requested: somaxconn! + 1, effective: somaxconn });
  t.equal(logged.level, 40, 'logged at warn');
});

t.test('effectiveListenBacklog', async (t) => {
  t.same(effectiveListenBacklog(4096, 128), { effective: 128, clipped: true });
  t.same(effectiveListenBacklog(100, 4096), { effective: 100, clipped: false });
  t.same(effectiveListenBacklog(4096, null), { effective: 4096, clipped: false });
});

t.test('LISTEN_BACKLOG must be a positive whole number', async (t) => {
  t.equal(loadConfig({ LISTEN_BACKLOG: '8192' }).listenBacklog, 8192);
  t.throws(() => loadConfig({ LISTEN_BACKLOG: '0' }), ConfigError);
  t.throws(() => loadConfig({ LISTEN_BACKLOG: 'lots' }), ConfigError);
});
