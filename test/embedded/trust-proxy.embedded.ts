import { readFileSync } from 'node:fs';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { configRefusal } from '../helpers/config.ts';
import type { Teardowns } from '../helpers/fixture.ts';
import { startHaproxy } from '../helpers/haproxy.ts';
import { startGateway, uniqueName } from '../helpers/gateway.ts';
import { toolSkipReason } from '../../scripts/test-tools.ts';
import { freePort } from '../helpers/server-process.ts';

/**
 * TRUST_PROXY (issue 14): only the hops our own proxies add are believed. A client that writes
 * its own X-Forwarded-For must not pick the address the per-IP limits and the logs use.
 */

/** What HAProxy with `option forwardfor` sends on: the client's header, then the address it saw. */
const forwarded = (spoofed: string, seenByProxy: string) => ({ 'x-forwarded-for': `${spoofed}, ${seenByProxy}` });

async function post(url: string, headers: Record<string, string>) {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: '{"user":"ann","text":"hi"}' });
  await response.arrayBuffer();
  return response.status;
}

/** Opens a stream and answers its status; the stream stays open until `t` ends. */
function openStream(t: Teardowns, url: string, headers: Record<string, string>): Promise<{ status: number }> {
  return new Promise((resolve, reject) => {
    const request = http.get(url, { headers: { accept: 'text/event-stream', ...headers } }, (response) => {
      response.resume();
      resolve({ status: response.statusCode ?? 0 });
    });
    t.teardown(() => request.destroy());
    request.on('error', reject);
  });
}

t.test('TRUST_PROXY: a hop count or proxy addresses; `true` (every hop) is refused with the forms to use', async (t) => {
  t.equal(loadConfig({}).trustProxy, false);
  t.equal(loadConfig({ TRUST_PROXY: 'false' }).trustProxy, false);
  t.equal(loadConfig({ TRUST_PROXY: '1' }).trustProxy, 1);
  t.equal(loadConfig({ TRUST_PROXY: '2' }).trustProxy, 2);
  t.same(loadConfig({ TRUST_PROXY: '10.0.0.0/8, 127.0.0.1,::1, fd00::/8,loopback' }).trustProxy, ['10.0.0.0/8', '127.0.0.1', '::1', 'fd00::/8', 'loopback']);
  for (const value of ['true', 'yes', 'on']) {
    const error = configRefusal({ TRUST_PROXY: value });
    t.type(error, ConfigError, value);
    t.match((error as Error).message, /TRUST_PROXY.*every X-Forwarded-For hop.*TRUST_PROXY=1.*CIDR/, `${value}: says why and what to set`);
  }
  for (const value of ['10.0.0.0/33', 'proxy.example', '10.0.0.0/8/1', '11', '1.2.3']) {
    t.type(configRefusal({ TRUST_PROXY: value }), ConfigError, value);
  }
});

t.test('trusting 1 hop: a spoofed X-Forwarded-For does not escape the per-IP publish limit, and is not logged', async (t) => {
  const { url, logs } = await startGateway(t, { ...loadConfig({ TRUST_PROXY: '1', PUBLISH_RATE_PER_IP: '2' }), port: 0, host: '127.0.0.1', logLevel: 'info' });
  const room = uniqueName('room');
  const statuses: number[] = [];
  // A new made-up first hop each time; the address our proxy appended stays the same.
  for (let i = 1; i <= 4; i++) statuses.push(await post(`${url}/rooms/${room}/messages`, forwarded(`203.0.113.${i}`, '198.51.100.9')));
  t.same(statuses, [202, 202, 429, 429], 'one client behind the proxy, one limit');
  t.equal(await post(`${url}/rooms/${room}/messages`, forwarded('203.0.113.1', '198.51.100.10')), 202, 'another client behind the proxy has its own limit');

  const addresses = new Set(logs.map((line) => (line.req as { remoteAddress?: string } | undefined)?.remoteAddress).filter((a) => a !== undefined));
  t.same([...addresses].sort(), ['198.51.100.10', '198.51.100.9'], 'logs name the address the proxy saw, never the spoofed one');
});

t.test('trusting 1 hop: a spoofed X-Forwarded-For does not escape the per-IP stream cap', async (t) => {
  const { url } = await startGateway(t, { trustProxy: 1, maxStreamsPerIp: 1, logLevel: 'silent' });
  const room = uniqueName('room');
  const first = await openStream(t, `${url}/events/${room}`, forwarded('203.0.113.1', '198.51.100.9'));
  t.equal(first.status, 200);
  const second = await openStream(t, `${url}/events/${room}`, forwarded('203.0.113.2', '198.51.100.9'));
  t.equal(second.status, 429, 'the same client behind the proxy, whatever it wrote');
  const other = await openStream(t, `${url}/events/${room}`, forwarded('203.0.113.1', '198.51.100.10'));
  t.equal(other.status, 200, 'another client behind the proxy');
});

t.test('trusting proxy addresses: only a listed peer is believed', async (t) => {
  const trusted = await startGateway(t, { ...loadConfig({ TRUST_PROXY: '127.0.0.0/8', PUBLISH_RATE_PER_IP: '1' }), port: 0, host: '127.0.0.1', logLevel: 'silent' });
  const room = uniqueName('room');
  t.equal(await post(`${trusted.url}/rooms/${room}/messages`, forwarded('203.0.113.1', '198.51.100.9')), 202);
  t.equal(await post(`${trusted.url}/rooms/${room}/messages`, forwarded('203.0.113.2', '198.51.100.9')), 429, 'the hop the listed proxy added is the client');

  // The peer (127.0.0.1) is not a listed proxy: its header is ignored, the socket is the client.
  const untrusted = await startGateway(t, { ...loadConfig({ TRUST_PROXY: '10.0.0.0/8', PUBLISH_RATE_PER_IP: '1' }), port: 0, host: '127.0.0.1', logLevel: 'silent' });
  t.equal(await post(`${untrusted.url}/rooms/${room}/messages`, forwarded('203.0.113.1', '198.51.100.9')), 202);
  t.equal(await post(`${untrusted.url}/rooms/${room}/messages`, forwarded('203.0.113.2', '198.51.100.10')), 429, 'a direct client cannot pose as a proxy');
});

/** A POST from `localAddress` (127.0.0.x: a distinct client on this machine), with a spoofed X-Forwarded-For. */
function postFrom(url: string, localAddress: string, spoofed: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = http.request(url, { method: 'POST', localAddress, headers: { 'content-type': 'application/json', 'x-forwarded-for': spoofed } }, (response) => {
      response.resume();
      response.on('end', () => resolve(response.statusCode ?? 0));
    });
    request.on('error', reject);
    request.end('{"user":"ann","text":"hi"}');
  });
}

t.test(
  'behind the shipped HAProxy config with the compose file\'s TRUST_PROXY: limits apply per client, spoofing does not help',
  { skip: toolSkipReason('haproxy') },
  async (t) => {
    const compose = readFileSync(fileURLToPath(new URL('../../docker-compose.kafka.yml', import.meta.url)), 'utf8');
    const trust = /TRUST_PROXY: "?([^"\n]+)"?/.exec(compose)?.[1];
    t.ok(trust, 'the compose file sets TRUST_PROXY');
    const { url, logs } = await startGateway(t, { ...loadConfig({ TRUST_PROXY: trust!, PUBLISH_RATE_PER_IP: '1' }), port: 0, host: '127.0.0.1', logLevel: 'info' });
    const gatewayAddress = new URL(url).host;

    // The shipped config, with its listen port and replica addresses pointed at this machine.
    const port = await freePort();
    const shipped = readFileSync(fileURLToPath(new URL('../../deploy/haproxy.cfg', import.meta.url)), 'utf8');
    const config = shipped.replace(/^(\s*bind\s+)\S+/m, `$1127.0.0.1:${port}`).replace(/^(\s*server\s+\S+\s+)\S+:3000/gm, `$1${gatewayAddress}`).replace(/^\s*maxconn\s+\d+/m, '  maxconn 1000');
    t.not(config, shipped);
    const { url: lb } = await startHaproxy(t, config, port);

    const room = uniqueName('room');
    const target = `${lb}/rooms/${room}/messages`;
    t.equal(await postFrom(target, '127.0.0.2', '203.0.113.1'), 202);
    t.equal(await postFrom(target, '127.0.0.2', '203.0.113.2'), 429, 'the same client, whatever it claims');
    t.equal(await postFrom(target, '127.0.0.3', '203.0.113.1'), 202, 'another client has its own limit (not HAProxy\'s address shared by all)');
    const addresses = new Set(logs.filter((line) => (line.req as { url?: string } | undefined)?.url?.startsWith('/rooms/')).map((line) => (line.req as { remoteAddress?: string }).remoteAddress));
    t.same([...addresses].sort(), ['127.0.0.2', '127.0.0.3'], 'the logs name the real clients');
  },
);


t.test('TRUST_PROXY refuses ranges that would trust every client, and never crashes on one', async (t) => {
  for (const value of ['0.0.0.0/0', '::/0', '0.0.0.0/1,128.0.0.0/1', '10.0.0.0/7', '::/1']) {
    t.match(configRefusal({ TRUST_PROXY: value }), { variable: 'TRUST_PROXY' }, value);
  }
  t.equal(configRefusal({ TRUST_PROXY: '10.0.0.0/8,127.0.0.1' }), undefined, 'a private /8 and an address are fine');
});
