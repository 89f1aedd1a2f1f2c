/**
 * Preloaded into a profiled gateway (`node --import bench/loop-gaps.mjs`, by `npm run bench --
 * --cpu-prof`): records every stretch the event loop did not come round to a 5 ms timer for
 * longer than `LOOP_GAPS_MS` (50) ms, on the clock the V8 CPU profile uses (monotonic µs), and
 * writes them to `$LOOP_GAPS_FILE` at exit. `bench/profile-stretches.ts` then says which code
 * ran inside each of them: what held the loop, as opposed to a busy but turning loop.
 */
import { writeFileSync } from 'node:fs';

const file = process.env.LOOP_GAPS_FILE;
const thresholdUs = Number(process.env.LOOP_GAPS_MS ?? 50) * 1000;
if (file) {
  const nowUs = () => Number(process.hrtime.bigint() / 1000n);
  const gaps = [];
  let last = nowUs();
  setInterval(() => {
    const now = nowUs();
    if (now - last > thresholdUs) gaps.push({ startUs: last, endUs: now });
    last = now;
  }, 5).unref();
  process.on('exit', () => writeFileSync(file, JSON.stringify(gaps)));
}
