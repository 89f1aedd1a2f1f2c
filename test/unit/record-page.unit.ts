import t from 'tap';
import type { BusRecord } from '../../src/bus/types.ts';
import { ArrayRecordPage, PackedRecordPage, packRecords } from '../../src/bus/record-page.ts';

/**
 * A page packed on the range reader's thread and handed over (its buffers transferred) reads
 * back as the records it was made of: keys and values (null ones too), headers of every kind,
 * offsets and timestamps; and a page of records made already reads the same way.
 */

const records: BusRecord[] = [
  { topic: 'chat', partition: 4, offset: '17', timestamp: 1_700_000_000_001, key: Buffer.from('lobby'), value: Buffer.from('{"text":"hé"}'), headers: { 'event-type': Buffer.from('message'), author: 'ann' } },
  { topic: 'chat', partition: 4, offset: '18', timestamp: 1_700_000_000_002, key: null, value: null, headers: {} },
  { topic: 'chat', partition: 4, offset: '9007199254740', timestamp: 1_700_000_000_003, key: Buffer.alloc(0), value: Buffer.from([0, 255, 10]), headers: { gone: undefined, 'ünï': Buffer.alloc(0) } },
  // What kafkajs makes of headers Kafka allows: a repeated name (an array), a null value; and odd names.
  {
    topic: 'chat',
    partition: 4,
    offset: '19',
    timestamp: 1_700_000_000_004,
    key: Buffer.from('k'),
    value: Buffer.from('v'),
    headers: Object.defineProperties({} as BusRecord['headers'], {
      twice: { value: [Buffer.from('a'), Buffer.from('b')], enumerable: true },
      nothing: { value: null, enumerable: true },
      __proto__: { value: Buffer.from('p'), enumerable: true },
      ['n'.repeat(70_000)]: { value: Buffer.from('long name'), enumerable: true },
    }),
  },
];

type Header = BusRecord['headers'][string] | null | Header[];
const plainHeader = (value: Header): unknown => (Array.isArray(value) ? value.map(plainHeader) : Buffer.isBuffer(value) ? ['bytes', ...value] : value);
const plain = (record: BusRecord) => ({
  ...record,
  key: record.key === null ? null : [...record.key],
  value: record.value === null ? null : [...record.value],
  headers: Object.entries(record.headers).map(([name, value]) => [name, plainHeader(value as Header)]),
});

t.test('packed, handed over by structured clone with its buffers transferred, unpacked: the same records', async (t) => {
  const { packed, transfer } = packRecords('chat', 4, records);
  const received = structuredClone(packed, { transfer });
  t.equal(packed.bytes.byteLength, 0, 'the bytes were handed over, not copied');
  const page = new PackedRecordPage(received);
  t.equal(page.length, 4);
  t.same([0, 1, 2, 3].map((index) => page.offsetAt(index)), [17, 18, 9007199254740, 19]);
  t.same([0, 1, 2, 3].map((index) => plain(page.record(index))), records.map(plain));
  t.equal(Object.getPrototypeOf(page.record(3).headers), Object.prototype, 'a header named __proto__ is a header, not a prototype');
  t.ok(Buffer.isBuffer(page.record(0).key) && Buffer.isBuffer(page.record(0).headers['event-type']), 'keys, values and byte headers are Buffers');
  t.equal(page.record(0).headers.author, 'ann', 'text headers stay text');
  const empty = new PackedRecordPage(structuredClone(packRecords('chat', 0, []).packed));
  t.equal(empty.length, 0);
});

t.test('records already made read as a page the same way', async (t) => {
  const page = new ArrayRecordPage(records);
  t.equal(page.length, 4);
  t.equal(page.offsetAt(2), 9007199254740);
  t.equal(page.record(1), records[1]);
});
