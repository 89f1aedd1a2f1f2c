/** Top self-time functions of a V8 .cpuprofile (what `node --cpu-prof` writes). */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileEntry {
  function: string;
  location: string;
  selfMs: number;
  selfPercent: number;
}

export function summariseProfile(file: string, top = 15): ProfileEntry[] {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfMicros = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, index) => {
    const delta = profile.timeDeltas[index] ?? 0;
    const node = byId.get(id);
    if (!node) return;
    const frame = node.callFrame;
    const url = frame.url.replace(/^file:\/\//, '');
    const location = url ? `${url.includes('node_modules') ? url.slice(url.indexOf('node_modules')) : relative(process.cwd(), url)}:${frame.lineNumber + 1}` : '';
    const key = `${frame.functionName || '(anonymous)'}\t${location}`;
    selfMicros.set(key, (selfMicros.get(key) ?? 0) + delta);
    total += delta;
  });
  return [...selfMicros.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([key, micros]) => {
      const [fn, location] = key.split('\t') as [string, string];
      return { function: fn, location, selfMs: Math.round(micros / 1000), selfPercent: (100 * micros) / Math.max(total, 1) };
    });
}

function locationOf(frame: ProfileNode['callFrame']): string {
  const url = frame.url.replace(/^file:\/\//, '');
  return url ? `${url.includes('node_modules') ? url.slice(url.indexOf('node_modules')) : relative(process.cwd(), url)}:${frame.lineNumber + 1}` : '';
}

/**
 * Inclusive time: for each function, the share of busy samples (not `(idle)`) with it anywhere
 * on the stack — what a call costs with everything it calls, e.g. one hook of a request.
 * `within`: only samples whose stack holds a function of that name (say `routeHandler`, the
 * request path, leaving startup and timers out); percentages are of those samples.
 */
export function summariseInclusive(file: string, top = 40, within?: string): Array<ProfileEntry & { selfPercent: number }> {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const keyOf = (node: ProfileNode): string => `${node.callFrame.functionName || '(anonymous)'}\t${locationOf(node.callFrame)}`;
  const inclusive = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, index) => {
    const leaf = byId.get(id);
    if (leaf === undefined || leaf.callFrame.functionName === '(idle)') return;
    const stack: ProfileNode[] = [];
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) stack.push(byId.get(at)!);
    if (within !== undefined && !stack.some((node) => node.callFrame.functionName === within)) return;
    const delta = profile.timeDeltas[index] ?? 0;
    total += delta;
    for (const key of new Set(stack.map(keyOf))) inclusive.set(key, (inclusive.get(key) ?? 0) + delta);
  });
  return [...inclusive.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([key, micros]) => {
      const [fn, location] = key.split('\t') as [string, string];
      return { function: fn, location, selfMs: Math.round(micros / 1000), selfPercent: (100 * micros) / Math.max(total, 1) };
    });
}

// `npx tsx bench/profile-summary.ts file.cpuprofile [top] [--inclusive [--within=fn]]`
if (import.meta.url === `file://${process.argv[1]}`) {
  const [file, top] = process.argv.slice(2).filter((arg) => !arg.startsWith('--'));
  const within = process.argv.find((arg) => arg.startsWith('--within='))?.slice('--within='.length);
  const entries = process.argv.includes('--inclusive') ? summariseInclusive(file!, Number(top ?? 40), within) : summariseProfile(file!, Number(top ?? 25));
  for (const entry of entries) {
    process.stdout.write(`${entry.selfPercent.toFixed(1).padStart(5)}%  ${String(entry.selfMs).padStart(7)} ms  ${entry.function}  ${entry.location}\n`);
  }
}
