import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** Lowest port handed out here: below it are well-known and registered services' usual ports. */
const LOWEST = 10000;

/**
 * The first port of the kernel's ephemeral range (Linux: /proc/sys/net/ipv4/ip_local_port_range,
 * 32768 by default), where it picks the local port of every outgoing connection and of
 * `listen(0)`.
 */
function ephemeralStart(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) ? low : 32768;
  } catch {
    return 32768;
  }
}

/** Whether a listener can be opened on 127.0.0.1:`port` now (it is closed again before this resolves). */
function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A port the kernel picks for `listen(0)`. */
function kernelPick(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0));
    });
  });
}

/**
 * A TCP port free on 127.0.0.1 right now, for a server about to listen on it. The listener that
 * checked it is closed before this resolves, so another process could take it first; to make
 * that unlikely the port is picked at random below the kernel's ephemeral range, where neither
 * outgoing connections (thousands at once in the tests) nor `listen(0)` ever take one (a 3-node
 * test broker once lost its port to one between the check and the bind: "Address already in
 * use"). The one helper for the tests, the bench, the chaos run and the test broker.
 */
export async function freePort(): Promise<number> {
  const end = ephemeralStart();
  // An ephemeral range reaching down to LOWEST leaves no room below it: the kernel's pick then.
  for (let attempt = 0; end > LOWEST + 1000 && attempt < 50; attempt++) {
    const port = LOWEST + Math.floor(Math.random() * (end - LOWEST));
    if (await canListen(port)) return port;
  }
  return kernelPick();
}
