/**
 * The consumer path without Kafka: decode, validate, build the frame body, keep in the history,
 * publish to the hub, for records in rooms nobody watches (the ingest scenario's records).
 * Prints JSON: records per second of this process's CPU.
 *   npx tsx bench/dispatch-micro.ts [records]
 */
import { channelRegistry } from '../src/channels/contract.ts';
import { pino } from 'pino';
import type { BusRecord } from '../src/bus/types.ts';
import { CursorCodec } from '../src/connection/cursor.ts';
import { Dispatcher } from '../src/dispatch/dispatcher.ts';
import { chatMessageRecord } from '../src/channels/contract.ts';
import { RecentEvents } from '../src/hub/recent-events.ts';
import { Hub } from '../src/hub/hub.ts';

const total = Number(process.argv[2] ?? 200_000);
const topics = { chat: 'chat', ticker: 'ticker' };
const hub = new Hub();
const history = new RecentEvents({ maxEventsPerChannel: 1000, maxAgeMs: 600_000, maxTotalEvents: 200_000 });
const dispatcher = new Dispatcher(hub, history, new CursorCodec('micro-bench-secret-0123456789', topics), channelRegistry(topics), pino({ level: 'silent' }));
dispatcher.onPartitionsStart(Array.from({ length: 6 }, (_, partition) => ({ topic: 'chat', partition, offset: '0', time: Date.now() })));
const records: BusRecord[] = Array.from({ length: total }, (_, i) => {
  const { record } = chatMessageRecord(topics, `room-${i % 1000}`, { user: 'bench', text: `#S${i}#`.padEnd(64, 'x') });
  return {
    topic: 'chat',
    partition: i % 6,
    offset: String(Math.floor(i / 6)),
    key: Buffer.from(record.key),
    value: Buffer.from(record.value),
    headers: { ...record.headers },
    timestamp: Date.now(),
  };
});
const batch = 500;
const cpu = process.cpuUsage();
for (let i = 0; i < records.length; i += batch) dispatcher.onRecords(records.slice(i, i + batch));
const used = process.cpuUsage(cpu);
const seconds = (used.user + used.system) / 1e6;
process.stdout.write(`${JSON.stringify({ records: total, cpuSeconds: seconds, recordsPerCpuSecond: Math.round(total / seconds) })}\n`);
