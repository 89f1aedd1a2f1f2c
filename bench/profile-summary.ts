/** Top self-time functions of a V8 .cpuprofile (what `node --cpu-prof` writes). */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
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

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const entry of summariseProfile(process.argv[2]!, Number(process.argv[3] ?? 25))) {
    process.stdout.write(`${entry.selfPercent.toFixed(1).padStart(5)}%  ${String(entry.selfMs).padStart(7)} ms  ${entry.function}  ${entry.location}\n`);
  }
}
