/**
 * The longest stretches a V8 `.cpuprofile` spent busy without a break (no `(idle)` sample):
 * what held the event loop, with the top self-time functions of each stretch and of all
 * stretches longer than a threshold, grouped by package (node_modules/<name>, or the project's
 * own file).
 *
 *   npx tsx bench/profile-stretches.ts file.cpuprofile [top stretches = 5] [threshold ms = 50]
 *   npx tsx bench/profile-stretches.ts file.cpuprofile [top gaps = 5] 0 loop-gaps.json [from ms] [to ms]
 *     (what ran in the loop's held stretches; only those starting between from and to ms of the profile)
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

/** A stretch the event loop was held (from `bench/loop-gaps.mjs`), on the profile's clock (µs). */
export interface LoopGap {
  startUs: number;
  endUs: number;
}

/**
 * What ran while the event loop was held: for each of the `count` longest `gaps` (and all of
 * them together), the profile's samples inside it by self time, and by inclusive time of the
 * project's own functions (`src/`, `dist/src/`, `plugins/`, `routes/`) and kafkajs's on the
 * stack: which of our calls the time was spent under.
 */
export function insideGaps(file: string, gaps: readonly LoopGap[], count = 5, within?: LoopGap | { fromMs: number; toMs: number }): {
  gaps: number;
  totalMs: number;
  longest: Array<{ atMs: number; durationMs: number; sampledMs: number; self: Array<{ function: string; where: string; ms: number }>; under: Array<{ function: string; where: string; ms: number }> }>;
  all: { self: Array<{ function: string; where: string; ms: number }>; under: Array<{ function: string; where: string; ms: number }> };
} {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile & { nodes: Array<ProfileNode & { children?: number[] }> };
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const own = (url: string): boolean => /\/(dist\/)?(src|plugins|routes)\/|node_modules\/kafkajs\//.test(url);
  // Only the gaps that start inside `within` (µs on the profile's clock, or ms since the profile started).
  const window = within === undefined ? { startUs: -Infinity, endUs: Infinity } : 'fromMs' in within ? { startUs: profile.startTime + within.fromMs * 1000, endUs: profile.startTime + within.toMs * 1000 } : within;
  const sorted = gaps.filter((gap) => gap.startUs >= window.startUs && gap.startUs < window.endUs).sort((a, b) => a.startUs - b.startUs);
  const perGap = sorted.map(() => ({ self: new Map<string, number>(), under: new Map<string, number>(), sampledUs: 0 }));
  const allSelf = new Map<string, number>();
  const allUnder = new Map<string, number>();
  const add = (map: Map<string, number>, key: string, us: number): void => {
    map.set(key, (map.get(key) ?? 0) + us / 1000);
  };
  let t = profile.startTime;
  let g = 0;
  profile.samples.forEach((id, index) => {
    const delta = profile.timeDeltas[index] ?? 0;
    t += delta;
    while (g < sorted.length && sorted[g]!.endUs < t) g++;
    if (g >= sorted.length || t < sorted[g]!.startUs) return;
    const slot = perGap[g]!;
    slot.sampledUs += delta;
    const frame = byId.get(id)?.callFrame;
    const key = `${frame?.functionName || '(anonymous)'}\u0000${where(frame?.url ?? '')}`;
    add(slot.self, key, delta);
    add(allSelf, key, delta);
    const seen = new Set<string>();
    for (let node: number | undefined = id; node !== undefined; node = parent.get(node)) {
      const callFrame = byId.get(node)?.callFrame;
      if (callFrame === undefined || !own(callFrame.url)) continue;
      const under = `${callFrame.functionName || '(anonymous)'}\u0000${where(callFrame.url)}:${callFrame.lineNumber + 1}`;
      if (seen.has(under)) continue;
      seen.add(under);
      add(slot.under, under, delta);
      add(allUnder, under, delta);
    }
  });
  const order = sorted.map((gap, index) => ({ gap, index })).sort((a, b) => b.gap.endUs - b.gap.startUs - (a.gap.endUs - a.gap.startUs));
  return {
    gaps: sorted.length,
    totalMs: Math.round(sorted.reduce((sum, gap) => sum + gap.endUs - gap.startUs, 0) / 1000),
    longest: order.slice(0, count).map(({ gap, index }) => ({
      atMs: Math.round((gap.startUs - profile.startTime) / 1000),
      durationMs: Math.round((gap.endUs - gap.startUs) / 1000),
      sampledMs: Math.round(perGap[index]!.sampledUs / 1000),
      self: topOf(perGap[index]!.self, 8),
      under: topOf(perGap[index]!.under, 12),
    })),
    all: { self: topOf(allSelf, 15), under: topOf(allUnder, 25) },
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [file, count, threshold, gapsFile, fromMs, toMs] = process.argv.slice(2);
  if (gapsFile) {
    const gaps = JSON.parse(readFileSync(gapsFile, 'utf8')) as LoopGap[];
    const within = fromMs === undefined ? undefined : { fromMs: Number(fromMs), toMs: Number(toMs ?? Infinity) };
    process.stdout.write(`${JSON.stringify(insideGaps(file!, gaps, Number(count ?? 5), within), null, 2)}\n`);
    process.exit(0);
  }
  if (!file) {
    process.stderr.write('usage: npx tsx bench/profile-stretches.ts file.cpuprofile [count] [threshold ms]\n');
    process.exit(2);
  }
  process.stdout.write(`${JSON.stringify(longestStretches(file, Number(count ?? 5), Number(threshold ?? 50)), null, 2)}\n`);
}
