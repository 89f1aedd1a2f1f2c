/**
 * The longest stretches a V8 `.cpuprofile` spent busy without a break (no `(idle)` sample):
 * what held the event loop, with the top self-time functions of each stretch and of all
 * stretches longer than a threshold, grouped by package (node_modules/<name>, or the project's
 * own file).
 *
 *   npx tsx bench/profile-stretches.ts file.cpuprofile [top stretches = 5] [threshold ms = 50]
 *
 * A stretch can include time the process was runnable but not scheduled (a shared machine):
 * samples are wall-clock. It ends at the first `(idle)` sample, i.e. when the loop waited for I/O.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
}

export interface Stretch {
  /** ms since the profile started. */
  startMs: number;
  durationMs: number;
  top: Array<{ function: string; where: string; ms: number }>;
}

function where(url: string): string {
  if (url === '') return '(native)';
  const module = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (module) return module[1]!;
  if (url.startsWith('node:')) return url;
  return url.replace(/^file:\/\/.*?\/(src|plugins|routes|dist)\//, '$1/');
}

function topOf(ms: Map<string, number>, n: number): Array<{ function: string; where: string; ms: number }> {
  return [...ms.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([key, value]) => {
      const [fn, at] = key.split('\u0000');
      return { function: fn!, where: at!, ms: Math.round(value) };
    });
}

export function longestStretches(file: string, count = 5, thresholdMs = 50): { stretches: Stretch[]; overThreshold: { stretches: number; totalMs: number; byPackage: Array<{ where: string; ms: number }>; top: Array<{ function: string; where: string; ms: number }> } } {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const runs: Array<{ startUs: number; durationUs: number; self: Map<string, number> }> = [];
  let current: { startUs: number; durationUs: number; self: Map<string, number> } | null = null;
  let t = 0;
  profile.samples.forEach((id, index) => {
    const delta = profile.timeDeltas[index] ?? 0;
    t += delta;
    const frame = byId.get(id)?.callFrame;
    const name = frame?.functionName || '(anonymous)';
    if (name === '(idle)') {
      if (current) runs.push(current);
      current = null;
      return;
    }
    current ??= { startUs: t, durationUs: 0, self: new Map() };
    // A sample's delta is the time since the previous one: it belongs to this stretch.
    current.durationUs += delta;
    const key = `${name}\u0000${where(frame?.url ?? '')}`;
    current.self.set(key, (current.self.get(key) ?? 0) + delta / 1000);
  });
  if (current) runs.push(current);
  runs.sort((a, b) => b.durationUs - a.durationUs);
  const over = runs.filter((run) => run.durationUs / 1000 >= thresholdMs);
  const all = new Map<string, number>();
  const packages = new Map<string, number>();
  for (const run of over) {
    for (const [key, ms] of run.self) {
      all.set(key, (all.get(key) ?? 0) + ms);
      const at = key.split('\u0000')[1]!;
      packages.set(at, (packages.get(at) ?? 0) + ms);
    }
  }
  return {
    stretches: runs.slice(0, count).map((run) => ({ startMs: Math.round(run.startUs / 1000), durationMs: Math.round(run.durationUs / 1000), top: topOf(run.self, 8) })),
    overThreshold: {
      stretches: over.length,
      totalMs: Math.round(over.reduce((sum, run) => sum + run.durationUs, 0) / 1000),
      byPackage: [...packages.entries()].sort((a, b) => b[1] - a[1]).slice(0, 10).map(([at, ms]) => ({ where: at, ms: Math.round(ms) })),
      top: topOf(all, 15),
    },
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [file, count, threshold] = process.argv.slice(2);
  if (!file) {
    process.stderr.write('usage: npx tsx bench/profile-stretches.ts file.cpuprofile [count] [threshold ms]\n');
    process.exit(2);
  }
  process.stdout.write(`${JSON.stringify(longestStretches(file, Number(count ?? 5), Number(threshold ?? 50)), null, 2)}\n`);
}
