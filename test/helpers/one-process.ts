import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';

/**
 * Imports every `*<suffix>` file of `folder` (a `file:` URL ending in `/`) into this test
 * process, in name order, so that their tests run one after the other in one process.
 *
 * Why: a test process costs ~3–4 CPU-seconds before its first test on these 2-core machines
 * (Node, tap's runner and module hooks, TypeScript through tsx, the gateway's modules), more
 * than most files then take to run, and the suite is CPU-bound (measured: 18 files of
 * test/embedded/ cost 81 CPU-seconds as 18 processes, 22 in one). Files that share a process
 * must not touch process-wide state (environment, signal handlers, the root test's options)
 * and must clean up through `t.teardown` (the helpers in test/helpers/ do). Each file still
 * stands alone: it imports `tap` and registers its tests, so `npx tap <file>` runs one.
 *
 * `concurrency` (default 1): top-level tests run at a time, as `testsAtATime` says.
 *
 * The process's timeout (tap's `timeout`, which is per process) is multiplied by one for
 * every four files it holds: a file normally takes well under a quarter of it.
 */
export async function importEach(folder: URL, suffix: string, concurrency = 1): Promise<void> {
  // Compiled (`npm test` runs the tests as JavaScript, scripts/test.ts), the files are .js too.
  const compiled = import.meta.url.endsWith('.js') ? suffix.replace(/\.ts$/, '.js') : suffix;
  const files = readdirSync(fileURLToPath(folder)).filter((entry) => entry.endsWith(compiled)).sort();
  const perProcessMs = Number(process.env.TAP_TIMEOUT ?? '30') * 1000;
  t.setTimeout(perProcessMs * Math.max(1, Math.ceil(files.length / 4)));
  testsAtATime(concurrency);
  for (const name of files) await import(new URL(name, folder).href);
}

/**
 * Runs this process's top-level tests `count` at a time (tap's `jobs` on the root test), each
 * test's own subtests still in order. For files whose tests mostly wait (servers starting and
 * draining, a broker, consumer groups, timers) rather than compute, where running them one
 * after the other makes the file, and so the whole run, last longer than its CPU needs. Their
 * top-level tests must not depend on one another's order or state, which is the rule for every
 * test here anyway. Call it before the first `t.test`.
 */
export function testsAtATime(count: number): void {
  t.jobs = count;
}
