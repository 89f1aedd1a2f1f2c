import t from 'tap';
import { createCipheriv, createHmac, hkdfSync } from 'node:crypto';
import { CursorCodec, MAX_CURSOR_ENTRIES, MAX_CURSOR_LENGTH, tooManyPositions } from '../../src/connection/cursor.ts';

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

t.test('every id the codec writes, up to the widest, it reads back; an id it could not read back is never written', async (t) => {
  const codec = new CursorCodec('shared-secret-0123456789', topics);
  // The widest entries: the largest slot and partition the layout allows, offsets near 2^48.
  const widest = Array.from({ length: MAX_CURSOR_ENTRIES }, (_, index) => ({ slot: 2 ** 31 - 1 - (index % 3), partition: 2 ** 21 - 1 - index, next: 2 ** 48 - 1 - index }));
  for (const fresh of [false, true]) {
    const id = codec.encode(widest, fresh);
    t.ok(id.length <= MAX_CURSOR_LENGTH, `${fresh ? 'fresh' : 'event'} id of ${MAX_CURSOR_ENTRIES} widest entries: ${id.length} <= ${MAX_CURSOR_LENGTH} characters`);
    t.same(codec.decode(id), widest, 'read back whole');
  }
  t.throws(() => codec.encode([...widest, { slot: 0, partition: 0, next: 0 }]), RangeError, 'one entry more: refused, not written');
  t.throws(() => codec.encode([{ slot: 0, partition: 2 ** 21, next: 0 }]), RangeError, 'a partition wider than the layout allows for');
  t.throws(() => codec.encode([{ slot: 2 ** 31, partition: 0, next: 0 }]), RangeError, 'a slot wider than the layout allows for');
  t.equal(tooManyPositions(MAX_CURSOR_ENTRIES), null);
  t.match(tooManyPositions(MAX_CURSOR_ENTRIES + 1), /follow 513 Kafka partitions/);
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
  for (const bad of ['', '0-5', '!!!', 'A'.repeat(5000), 'A'.repeat(MAX_CURSOR_LENGTH + 1), id.slice(0, -1), `${id}A`]) t.equal(codec.decode(bad), null, JSON.stringify(bad.slice(0, 12)));
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

t.test('fresh ids stay distinct however many are made (nonces are drawn in blocks)', async (t) => {
  const codec = new CursorCodec('shared-secret-0123456789', topics);
  const entries = [{ slot: 0 as const, partition: 0, next: 1 }];
  const ids = new Set<string>();
  const nonces = new Set<string>();
  // Several blocks of nonces: every id new, every one decoding to the position.
  for (let index = 0; index < 3000; index++) {
    const id = codec.encode(entries, true);
    ids.add(id);
    nonces.add(Buffer.from(id, 'base64url').subarray(1, 9).toString('hex'));
    if (index % 500 === 0) t.same(codec.decode(id), entries);
  }
  t.equal(ids.size, 3000, 'no id repeats');
  t.equal(nonces.size, 3000, 'no nonce repeats');
});

t.test('ids are byte for byte the SIV construction with node:crypto\'s HMAC and AES-CTR, so ids already issued keep resuming', async (t) => {
  const secret = 'shared-secret-0123456789';
  // The construction as written in the codec's docstring, with the library primitives.
  const keys = Buffer.from(hkdfSync('sha256', secret, 'kafka-sse-gateway', `kafka-sse-gateway cursor v2\0chat\0ticker`, 64));
  const reference = (version: number, plaintext: Buffer): string => {
    const tag = createHmac('sha256', keys.subarray(0, 32)).update(Buffer.of(version)).update(plaintext).digest().subarray(0, 12);
    const cipher = createCipheriv('aes-256-ctr', keys.subarray(32), Buffer.concat([tag, Buffer.alloc(4)]));
    return Buffer.concat([Buffer.of(version), cipher.update(plaintext), cipher.final(), tag]).toString('base64url');
  };
  const codec = new CursorCodec(secret, topics);
  // 1 to 40 entries: plaintexts of one to many AES blocks (9 bytes an entry here).
  for (const count of [1, 2, 3, 17, 40]) {
    const entries = Array.from({ length: count }, (_, i) => ({ slot: i % 2, partition: i, next: 1000 * i + 7 }));
    const plaintext = Buffer.concat([Buffer.of(count), ...entries.map((e) => Buffer.concat([Buffer.of(e.slot, e.partition), Buffer.from([0, 0, 0, 0, (e.next >> 8) & 0xff, e.next & 0xff])]))]);
    t.equal(codec.encode(entries), reference(2, plaintext), `${count} entries`);
    const fresh = codec.encode(entries, true);
    const nonce = Buffer.from(fresh, 'base64url');
    t.same(codec.decode(fresh), entries, 'a fresh id decodes');
    t.equal(nonce.length, 1 + 8 + plaintext.length + 12, 'a fresh id carries an 8-byte nonce');
  }
});
