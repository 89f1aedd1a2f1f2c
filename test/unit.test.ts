import { importEach } from './helpers/one-process.ts';

/**
 * Every `test/unit/*.unit.ts` file, in one process: pure functions and in-process classes, no
 * network, no broker (`npm run test:unit` runs only these). A new `*.unit.ts` file is picked
 * up by its name.
 */
await importEach(new URL('./unit/', import.meta.url), '.unit.ts');
