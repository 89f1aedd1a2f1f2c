/**
 * What a `/metrics` scrape's default Node.js collectors cost at many open sockets: prom-client's
 * defaults as they come, against the gateway's set (plugins/metrics.ts: the collectors that walk
 * every handle left out, `process_open_fds` read from the size of /proc/self/fd). Opens
 * `SCRAPE_SOCKETS` loopback connections to itself (default 8,000: 16,000 descriptors, under
 * the 20,000 open-file limit), then times 20 scrapes of each, taking turns; prints JSON.
 *
 *   npx tsx bench/scrape-cost.ts
 */
import net from 'node:net';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { HANDLE_WALKING_DEFAULTS, openFileDescriptors } from '../plugins/metrics.ts';

const connections = Number(process.env.SCRAPE_SOCKETS ?? 8000);
const server = net.createServer(() => undefined).listen(0, '127.0.0.1');
await new Promise((resolve) => server.once('listening', resolve));
const { port } = server.address() as net.AddressInfo;
const sockets: net.Socket[] = [];
for (let opened = 0; opened < connections; opened += 200) {
  await Promise.all(
    Array.from({ length: Math.min(200, connections - opened) }, () => new Promise((resolve) => sockets.push(net.connect(port, '127.0.0.1', () => resolve(null))))),
  );
}

const defaults = new Registry();
collectDefaultMetrics({ register: defaults });
const gateways = new Registry();
collectDefaultMetrics({ register: gateways });
for (const name of [...HANDLE_WALKING_DEFAULTS, 'process_open_fds']) gateways.removeSingleMetric(name);

/** Milliseconds of one scrape: its synchronous part (what holds the event loop) and until its text is done. */
async function time(registry: Registry, extra?: () => Promise<unknown>): Promise<{ heldMs: number; totalMs: number }> {
  const started = performance.now();
  const text = registry.metrics();
  const held = extra === undefined ? undefined : extra();
  const heldMs = performance.now() - started;
  await Promise.all([text, held]);
  return { heldMs, totalMs: performance.now() - started };
}

const results: Record<string, Array<{ heldMs: number; totalMs: number }>> = { defaults: [], gateway: [] };
for (let round = 0; round < 20; round++) {
  results.defaults!.push(await time(defaults));
  results.gateway!.push(await time(gateways, openFileDescriptors));
}
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const summary = Object.fromEntries(
  Object.entries(results).map(([name, runs]) => [
    name,
    { heldMsMedian: +median(runs.map((run) => run.heldMs)).toFixed(2), heldMsMax: +Math.max(...runs.map((run) => run.heldMs)).toFixed(2), totalMsMedian: +median(runs.map((run) => run.totalMs)).toFixed(2) },
  ]),
);
process.stdout.write(`${JSON.stringify({ sockets: sockets.length * 2, openFds: await openFileDescriptors(), ...summary }, null, 2)}\n`);
process.exit(0);
