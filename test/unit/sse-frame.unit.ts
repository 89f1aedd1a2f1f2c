import t from 'tap';
import { commentFrame, eventFrame, retryFrame, serializeEvent } from '../../src/connection/sse-frame.ts';

/** Parses a frame the way the EventSource spec does, to see what a browser would see. */
function parse(frame: string): Array<Record<string, string>> {
  const events: Array<Record<string, string>> = [];
  let fields: Record<string, string> = {};
  for (const line of frame.split(/\r\n|\r|\n/)) {
    if (line === '') {
      if (Object.keys(fields).length > 0) events.push(fields);
      fields = {};
      continue;
    }
    if (line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const name = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    fields[name] = name === 'data' && fields.data !== undefined ? `${fields.data}\n${value}` : value;
  }
  return events;
}

t.test('a single-line event has id, event and data lines and ends with a blank line', async (t) => {
  t.equal(serializeEvent({ id: '3-17', event: 'message', data: '{"a":1}' }), 'id: 3-17\nevent: message\ndata: {"a":1}\n\n');
});

t.test('multi-line data becomes one data line per line, whatever the line break', async (t) => {
  const frame = serializeEvent({ event: 'message', data: 'one\ntwo\r\nthree\rfour' });
  t.equal(frame, 'event: message\ndata: one\ndata: two\ndata: three\ndata: four\n\n');
  t.same(parse(frame), [{ event: 'message', data: 'one\ntwo\nthree\nfour' }]);
});

t.test('a line break in an id or event name cannot inject a field or an event', async (t) => {
  for (const breaker of ['\n', '\r', '\r\n']) {
    const frame = serializeEvent({
      id: `1${breaker}event: admin${breaker}${breaker}data: pwned`,
      event: `message${breaker}data: injected`,
      data: 'ok',
    });
    const events = parse(frame);
    t.equal(events.length, 1, `one event with ${JSON.stringify(breaker)}`);
    t.equal(events[0]?.data, 'ok');
    t.equal(events[0]?.event, 'messagedata: injected');
    t.notOk(frame.includes('\ndata: pwned'));
  }
});

t.test('NUL is removed from ids (a browser would ignore the id)', async (t) => {
  t.equal(serializeEvent({ id: 'a\0b', data: 'x' }), 'id: ab\ndata: x\n\n');
});

t.test('empty data still makes an event', async (t) => {
  t.same(parse(serializeEvent({ event: 'ping', data: '' })), [{ event: 'ping', data: '' }]);
});

t.test('frames are Buffers; comments and retry are framed', async (t) => {
  t.ok(Buffer.isBuffer(eventFrame({ data: 'x' })));
  t.equal(commentFrame().toString(), ':\n\n');
  t.equal(commentFrame('a\nb').toString(), ': a\n: b\n\n');
  t.equal(retryFrame(2500).toString(), 'retry: 2500\n\n');
});
