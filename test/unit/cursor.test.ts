import t from 'tap';
import { CursorCodec } from '../../src/cursor.ts';

const topics = { chat: 'chat', ticker: 'ticker' };

t.test('a cursor round-trips, and is the same whichever codec with the same secret writes it', async (t) => {
  const entries = [
    { slot: 0 as const, partition: 3, next: 42 },
    { slot: 1 as const, partition: 0, next: 2 ** 40 },
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
