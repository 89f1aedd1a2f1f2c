/**
 * The system tools some tests drive, and their installation from Debian's packages before a
 * test run (`npm test` calls `ensureTestTools`). Where a tool cannot be installed (not Debian,
 * not root and no passwordless sudo, apt-get failing), the run goes on and the tests that need
 * it skip, naming the tool and the reason; never a failure for a missing tool, never a silent
 * skip. Browsers are never downloaded: the browser tests drive Debian's chromium.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export interface TestTool {
  name: string;
  /** Where the tests look for it. */
  path: string;
  /** The Debian package that installs it. */
  debianPackage: string;
  /** Which tests need it (for the summary). */
  neededBy: string;
}

export const TEST_TOOLS: readonly TestTool[] = [
  { name: 'chromium', path: '/usr/bin/chromium', debianPackage: 'chromium', neededBy: 'the browser tests (test/browser/)' },
  { name: 'haproxy', path: '/usr/sbin/haproxy', debianPackage: 'haproxy', neededBy: 'the tests behind a load balancer' },
  { name: 'promtool', path: '/usr/bin/promtool', debianPackage: 'prometheus', neededBy: 'the Prometheus rule and config checks' },
];

/** The environment variable through which `npm test` tells tests why a tool is missing (JSON: name → reason). */
export const MISSING_TOOLS_ENV = 'TEST_TOOLS_MISSING';

/**
 * Where `npm test` copies the project and compiles it, to run the tests and the servers they
 * spawn as JavaScript: `<this>/run-<pid of npm test>/`, one copy per run, removed when the run
 * ends (scripts/test.ts). The copy holds public/, which the built static plugin finds beside it.
 */
export const TEST_BUILD_DIR = '.test-build';

/**
 * The environment variable through which `npm test` names the project's own root: the tests run
 * in a copy (TEST_BUILD_DIR), and what they write for users to look at (screenshots in
 * test-artifacts/, docs/screenshot.png) belongs in the project, not in the copy.
 */
export const PROJECT_ROOT_ENV = 'TEST_PROJECT_ROOT';

/** The environment variable through which `npm test` names the compiled server's entry point (absent: run the sources). */
export const TEST_SERVER_ENTRY_ENV = 'TEST_SERVER_ENTRY';

/** What `ensureTestTools` needs from the machine (replaced in its tests). */
export interface Machine {
  exists(path: string): boolean;
  isRoot: boolean;
  /** Runs a command (bounded by `timeoutMs`); resolves its exit status and its output's tail. */
  run(command: string, args: string[], timeoutMs: number): { ok: boolean; output: string };
  log(line: string): void;
}

const APT_GET = '/usr/bin/apt-get';
/** apt-get update plus installing chromium can take minutes on a slow mirror; never hang the run. */
const UPDATE_TIMEOUT_MS = 5 * 60_000;
const INSTALL_TIMEOUT_MS = 15 * 60_000;

export function realMachine(): Machine {
  return {
    exists: existsSync,
    isRoot: process.getuid?.() === 0,
    run(command, args, timeoutMs) {
      const result = spawnSync(command, args, {
        timeout: timeoutMs,
        encoding: 'utf8',
        env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const output = `${result.stdout ?? ''}${result.stderr ?? ''}${result.error ? String(result.error) : ''}`.trim();
      return { ok: result.status === 0, output: output.split('\n').slice(-3).join(' | ') };
    },
    log: (line) => process.stderr.write(`${line}\n`),
  };
}

/**
 * Installs the missing tools where it can (apt-get update once, then one apt-get install, as
 * root or through passwordless sudo). Answers the tools still missing, each with the reason.
 */
export function ensureTestTools(machine: Machine, tools: readonly TestTool[] = TEST_TOOLS): Map<string, string> {
  const missing = tools.filter((tool) => !machine.exists(tool.path));
  const reasons = new Map<string, string>();
  if (missing.length === 0) return reasons;
  const packages = [...new Set(missing.map((tool) => tool.debianPackage))];
  const manual = `install it with \`apt-get install ${packages.join(' ')}\` as root`;
  const giveUp = (why: string) => {
    for (const tool of missing) reasons.set(tool.name, `${tool.path} is missing and could not be installed (${why}): ${manual}`);
    return reasons;
  };
  if (!machine.exists(APT_GET)) return giveUp('no apt-get: not a Debian-based system');
  let prefix: string[] = [];
  if (!machine.isRoot) {
    if (!machine.exists('/usr/bin/sudo') || !machine.run('/usr/bin/sudo', ['-n', 'true'], 10_000).ok) {
      return giveUp('not root, and no passwordless sudo');
    }
    prefix = ['/usr/bin/sudo', '-n', '--preserve-env=DEBIAN_FRONTEND'];
  }
  const apt = (args: string[], timeoutMs: number) =>
    prefix.length === 0 ? machine.run(APT_GET, args, timeoutMs) : machine.run(prefix[0]!, [...prefix.slice(1), APT_GET, ...args], timeoutMs);

  machine.log(`installing ${packages.join(', ')} from Debian's packages for ${missing.map((tool) => tool.neededBy).join(', ')}…`);
  const update = apt(['update', '-qq'], UPDATE_TIMEOUT_MS);
  if (!update.ok) return giveUp(`apt-get update failed: ${update.output}`);
  const install = apt(['install', '-y', '-qq', ...packages], INSTALL_TIMEOUT_MS);
  for (const tool of missing) {
    if (machine.exists(tool.path)) continue;
    reasons.set(tool.name, `${tool.path} is missing: apt-get install ${tool.debianPackage} ${install.ok ? 'did not provide it' : `failed (${install.output})`}`);
  }
  return reasons;
}

/**
 * For tests: false when `name` is there, else the reason to skip (what `npm test` found, or
 * how to install it when the tests run without `npm test`).
 */
export function toolSkipReason(name: string): false | string {
  const tool = TEST_TOOLS.find((candidate) => candidate.name === name);
  if (tool === undefined) throw new Error(`unknown test tool ${name}`);
  if (existsSync(tool.path)) return false;
  let reasons: Record<string, string> = {};
  try {
    reasons = JSON.parse(process.env[MISSING_TOOLS_ENV] ?? '{}') as Record<string, string>;
  } catch {
    /* not set by npm test: the default reason below */
  }
  return reasons[name] ?? `${tool.path} is missing: \`npm test\` installs it where it can, or apt-get install ${tool.debianPackage}`;
}
