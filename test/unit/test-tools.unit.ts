import t from 'tap';
import { ensureTestTools, type Machine, type TestTool } from '../../scripts/test-tools.ts';
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { freePort } from '../../scripts/ports.ts';

const tools: TestTool[] = [
  { name: 'chromium', path: '/usr/bin/chromium', debianPackage: 'chromium', neededBy: 'browser tests' },
  { name: 'promtool', path: '/usr/bin/promtool', debianPackage: 'prometheus', neededBy: 'rule checks' },
];

/** A pretend machine: `present` paths exist; apt-get install makes its packages' tools appear unless `failInstall`. */
function machine(options: { present: string[]; isRoot: boolean; sudo?: boolean; failUpdate?: boolean; failInstall?: boolean }) {
  const present = new Set(options.present);
  const commands: string[] = [];
  const fake: Machine = {
    exists: (path) => present.has(path),
    isRoot: options.isRoot,
    run(command, args) {
      commands.push([command, ...args].join(' '));
      if (command === '/usr/bin/sudo' && args.join(' ') === '-n true') return { ok: options.sudo === true, output: '' };
      const apt = args.indexOf('/usr/bin/apt-get') === -1 ? args : args.slice(args.indexOf('/usr/bin/apt-get') + 1);
      if (apt[0] === 'update') return { ok: options.failUpdate !== true, output: options.failUpdate ? 'E: could not resolve deb.debian.org' : '' };
      if (apt[0] === 'install' && !options.failInstall) {
        for (const tool of tools) if (apt.includes(tool.debianPackage)) present.add(tool.path);
        return { ok: true, output: '' };
      }
      return { ok: false, output: 'E: unable to locate package' };
    },
    log: () => {},
  };
  return { fake, commands };
}

t.test('nothing missing: nothing run', async (t) => {
  const { fake, commands } = machine({ present: ['/usr/bin/apt-get', '/usr/bin/chromium', '/usr/bin/promtool'], isRoot: false });
  t.same([...ensureTestTools(fake, tools)], []);
  t.same(commands, []);
});

t.test('as root: apt-get update once, then one install of every missing package', async (t) => {
  const { fake, commands } = machine({ present: ['/usr/bin/apt-get'], isRoot: true });
  t.same([...ensureTestTools(fake, tools)], [], 'all installed');
  t.same(commands, ['/usr/bin/apt-get update -qq', '/usr/bin/apt-get install -y -qq chromium prometheus']);
});

t.test('through passwordless sudo when not root', async (t) => {
  const { fake, commands } = machine({ present: ['/usr/bin/apt-get', '/usr/bin/sudo', '/usr/bin/chromium'], isRoot: false, sudo: true });
  t.same([...ensureTestTools(fake, tools)], []);
  t.match(commands, ['/usr/bin/sudo -n true', /^\/usr\/bin\/sudo -n .*apt-get update -qq$/, /^\/usr\/bin\/sudo -n .*apt-get install -y -qq prometheus$/]);
});

t.test('cannot install: every missing tool gets the reason, nothing is run', async (t) => {
  for (const [present, why] of [
    [['/usr/bin/apt-get'], /not root, and no passwordless sudo/],
    [['/usr/bin/apt-get', '/usr/bin/sudo'], /not root, and no passwordless sudo/],
    [[], /no apt-get/],
  ] as const) {
    const { fake, commands } = machine({ present: [...present], isRoot: false });
    const reasons = ensureTestTools(fake, tools);
    t.same([...reasons.keys()], ['chromium', 'promtool']);
    for (const reason of reasons.values()) t.match(reason, why);
    t.match(reasons.get('chromium'), /\/usr\/bin\/chromium is missing.*apt-get install chromium prometheus/);
    t.notOk(commands.some((command) => command.includes('apt-get')), 'no apt-get run');
  }
});

t.test('apt-get failing: the reason carries its message, and install is not tried after a failed update', async (t) => {
  const update = machine({ present: ['/usr/bin/apt-get'], isRoot: true, failUpdate: true });
  t.match(ensureTestTools(update.fake, tools).get('promtool'), /apt-get update failed: E: could not resolve/);
  t.same(update.commands, ['/usr/bin/apt-get update -qq']);
  const install = machine({ present: ['/usr/bin/apt-get'], isRoot: true, failInstall: true });
  t.match(ensureTestTools(install.fake, tools).get('chromium'), /apt-get install chromium failed \(E: unable to locate package\)/);
});

t.test('freePort hands out ports below the kernel\'s ephemeral range, where outgoing connections never take one, free to listen on', async (t) => {
  const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
  const ports = await Promise.all(Array.from({ length: 20 }, () => freePort()));
  t.ok(ports.every((port) => port >= 10000 && port < low!), `all in [10000, ${low}): ${ports.join(' ')}`);
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(ports[0], '127.0.0.1', resolve));
  t.equal((server.address() as AddressInfo).port, ports[0], 'and one can listen there');
  await new Promise((resolve) => server.close(resolve));
});
