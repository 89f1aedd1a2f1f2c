import t from 'tap';
import { SseParser } from '../../src/client/sse-parser.ts';

/** Feeds `chunks` to a new parser; returns it and every event, in order. */
function parse(chunks: (string | Uint8Array)[]) {
  const parser = new SseParser();
  const events = chunks.flatMap((chunk) => parser.feed(chunk));
  return { parser, events };
}

t.test('a stream starting with a byte-order mark keeps its first event (text and bytes)', async (t) => {
  const stream = '\uFEFFdata: first\n\ndata: second\n\n';
  for (const chunks of [[stream], [new TextEncoder().encode(stream)], [new TextEncoder().encode(stream).subarray(0, 2), new TextEncoder().encode(stream).subarray(2)]]) {
    const { events } = parse(chunks);
    t.same(events.map((event) => event.data), ['first', 'second']);
  }
  // Only one leading BOM is ignored, and only at the very start.
  t.same(parse(['data: a\n\n', '\uFEFFdata: b\n\n']).events.map((event) => event.data), ['a']);
});

t.test('an id with no data sets the last event id where it stands, as EventSource does', async (t) => {
  const { parser, events } = parse(['retry: 1500\n\n: connected\n\nid: join\n\nid: e1\nevent: message\ndata: {"n":1}\n\ndata: no-id\n\nid: later\n\n']);
  t.same(
    events.map((event) => [event.id, event.lastEventId, event.event, event.data]),
    [
      ['e1', 'e1', 'message', '{"n":1}'],
      [undefined, 'e1', 'message', 'no-id'],
    ],
  );
  t.equal(parser.lastEventId, 'later', 'the id-only block after the events wins');
  t.equal(parser.retry, 1500);
  t.equal(parser.comments, 1);
  t.equal(parse(['id: join\n\n']).parser.lastEventId, 'join', 'a stream that had no event yet resumes from where it joined');
  t.equal(parse(['id: a\n\nid: b\0c\n\n']).parser.lastEventId, 'a', 'an id with NUL is ignored');
});

t.test('line endings CRLF, CR and LF, split anywhere between chunks; UTF-8 split mid-character', async (t) => {
  const stream = 'id: 1\r\nevent: message\r\ndata: h\u00e9llo\r\ndata: w\u00f6rld\r\n\r\nid: 2\rdata: x\r\rid: 3\n\n';
  const bytes = new TextEncoder().encode(stream);
  for (let cut = 1; cut < bytes.length; cut++) {
    const { parser, events } = parse([bytes.subarray(0, cut), bytes.subarray(cut)]);
    t.same(events.map((event) => [event.id, event.data]), [['1', 'h\u00e9llo\nw\u00f6rld'], ['2', 'x']], `cut at byte ${cut}`);
    t.equal(parser.lastEventId, '3', `cut at byte ${cut}`);
  }
});
