import t from 'tap';
import { CursorCodec } from '../../src/connection/cursor.ts';

const topics = { chat: 'chat', ticker: 'ticker' };

t.test('a cursor round-trips, and is the same whichever codec with the same secret writes it', async (t) => {
  const entries = [
    { slot: 0 as const, partition: 3, next: 42 },
    { slot: 1 as const, partition: 0, next: 2 ** 40 },
    { slot: 0 as const, partition: 200, next: 0 },
  ];
  const a = new CursorCodec('shared-secret-0123456789', topics);
  const b = new CursorCodec('shared-secret-0123456789', topics);
  const id = a.encode(entries);
  t.match(id, /^[A-Za-z0-9_-]+$/, 'safe in a header and a URL');
  t.equal(b.encode(entries), id, 'replica-independent');
  t.same(b.decode(id), entries);
});

t.test('edited, forged, foreign and malformed ids are refused', async (t) => {
  const codec = new CursorCodec('shared-secret-0123456789', topics);
  const id = codec.encode([{ slot: 0, partition: 1, next: 10 }]);
  const raw = Buffer.from(id, 'base64url');
  for (let index = 0; index < raw.length; index++) {
    const edited = Buffer.from(raw);
    edited[index] = edited[index]! ^ 0x01;
    t.equal(codec.decode(edited.toString('base64url')), null, `byte ${index} flipped`);
  }
  t.equal(new CursorCodec('another-secret-0123456789', topics).decode(id), null, 'other secret');
  t.equal(new CursorCodec('shared-secret-0123456789', { chat: 'other', ticker: 'ticker' }).decode(id), null, 'other topics');
  for (const bad of ['', '0-5', '!!!', 'A'.repeat(5000), id.slice(0, -1), `${id}A`]) t.equal(codec.decode(bad), null, JSON.stringify(bad.slice(0, 12)));
});

/** LEB128, as ids before version 2 carried offsets in clear. */
function varint(value: number): Buffer {
  const bytes: number[] = [];
  let rest = value;
  while (rest >= 0x80) {
    bytes.push((rest % 0x80) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  bytes.push(rest);
  return Buffer.from(bytes);
}

t.test('an id reveals no position: offsets are neither readable nor told by its length', async (t) => {
  const codec = new CursorCodec('shared-secret-0123456789', topics);
  const lengths = new Set<number>();
  for (const next of [1, 300, 70_000, 5_000_000, 2 ** 40 + 12345]) {
    const raw = Buffer.from(codec.encode([{ slot: 0, partition: 2, next }]), 'base64url');
    lengths.add(raw.length);
    const fixed = Buffer.alloc(6);
    fixed.writeUIntBE(next, 0, 6);
    t.equal(raw.indexOf(fixed), -1, `offset ${next} not in clear (fixed width)`);
    if (next > 127) t.equal(raw.indexOf(varint(next)), -1, `offset ${next} not in clear (varint)`);
  }
  t.equal(lengths.size, 1, 'every single-partition id has the same length');
  const a = Buffer.from(codec.encode([{ slot: 0, partition: 2, next: 1000 }]), 'base64url');
  const b = Buffer.from(codec.encode([{ slot: 0, partition: 2, next: 1001 }]), 'base64url');
  let same = 0;
  for (let index = 1; index < a.length; index++) if (a[index] === b[index]) same += 1;
  t.ok(same < 4, `neighbouring offsets share no structure (${same} equal bytes by chance)`);
});

t.test('an id of the older signed-but-readable layout is refused (the stream answers it with reset)', async (t) => {
  const codec = new CursorCodec('shared-secret-0123456789', topics);
  // Version 1: [1, count, slot, partition varint, next varint] + 12-byte HMAC tag.
  const v1 = Buffer.concat([Buffer.from([1, 1, 0, 1]), varint(10), Buffer.alloc(12, 7)]).toString('base64url');
  t.equal(codec.decode(v1), null);
});

t.test('offsets beyond 2^48 cannot be encoded', async (t) => {
  const codec = new CursorCodec('shared-secret-0123456789', topics);
  t.throws(() => codec.encode([{ slot: 0, partition: 0, next: 2 ** 48 }]), RangeError);
});

t.test('a fresh id of a position is new every time, and resumes like the deterministic one', async (t) => {
  const codec = new CursorCodec('shared-secret-0123456789', topics);
  const entries = [{ slot: 0 as const, partition: 2, next: 77 }];
  const a = codec.encode(entries, true);
  const b = codec.encode(entries, true);
  t.not(a, b, 'two fresh ids of one position differ: equality tells nothing');
  t.not(a, codec.encode(entries), 'and differ from the deterministic (event) id');
  t.same(codec.decode(a), entries);
  t.same(new CursorCodec('shared-secret-0123456789', topics).decode(b), entries, 'any replica with the secret reads it');
  const raw = Buffer.from(a, 'base64url');
  raw[raw.length - 1] = raw[raw.length - 1]! ^ 1;
  t.equal(codec.decode(raw.toString('base64url')), null, 'and it is authenticated');
});
