import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * Every `test/unit/*.unit.ts` file, in one process. Each file stands alone (it imports `tap`
 * and registers its tests, so `npx tap test/unit/hub.unit.ts` runs one), but unit files take
 * 0.1–1.6 s each while a test process costs 2–3 CPU-seconds to start (Node, the TypeScript
 * loader, tap): run one process per file and the suite spends most of its unit time starting.
 * A new `*.unit.ts` file is picked up here by its name.
 */
const dir = fileURLToPath(new URL('./unit/', import.meta.url));
for (const file of readdirSync(dir).filter((name) => name.endsWith('.unit.ts')).sort()) {
  await import(new URL(`./unit/${file}`, import.meta.url).href);
}
