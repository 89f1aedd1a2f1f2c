/**
 * Server-Sent Events framing (WHATWG HTML, "Server-sent events", event stream format).
 *
 * A frame is built once per event and the same Buffer is written to every subscriber, so
 * everything that makes a frame safe happens here, once: a CR or LF ends a field, so `id`,
 * `event` and comments lose them (and NUL, which makes a browser ignore an `id`), while data
 * is split into one `data:` line per line of text.
 */

const LINE_BREAK = /\r\n|\r|\n/;
const FIELD_BREAKERS = /[\r\n\0]/g;

export interface SseEvent {
  id?: string;
  event?: string;
  data: string;
}

/** A value that can stand in a single-line field: line breaks and NUL removed. */
export function singleLine(value: string): string {
  return value.replace(FIELD_BREAKERS, '');
}

function idLine(id: string): string {
  return `id: ${singleLine(id)}\n`;
}

/** Everything of an event but its id: the part shared by streams whose ids differ. */
export function serializeBody(event: string | undefined, data: string): string {
  const eventLine = event === undefined ? '' : `event: ${singleLine(event)}\n`;
  // The usual case (JSON has no raw line breaks): one data line, no split.
  if (!data.includes('\n') && !data.includes('\r')) return `${eventLine}data: ${data}\n\n`;
  let body = eventLine;
  for (const line of data.split(LINE_BREAK)) body += `data: ${line}\n`;
  return `${body}\n`;
}

export function serializeEvent({ id, event, data }: SseEvent): string {
  return `${id === undefined ? '' : idLine(id)}${serializeBody(event, data)}`;
}

export function eventFrame(event: SseEvent): Buffer {
  return Buffer.from(serializeEvent(event), 'utf8');
}

export function bodyFrame(event: string, data: string): Buffer {
  return Buffer.from(serializeBody(event, data), 'utf8');
}

/** `id:` then a shared body. */
export function withId(id: string, body: Buffer): Buffer {
  const line = Buffer.from(idLine(id), 'utf8');
  return Buffer.concat([line, body], line.length + body.length);
}

/**
 * A stream's position with no channel event: `event: position`, `data: {}` and the `id:`, so
 * a client that has seen nothing yet (or has just taken a replay page) reconnects from the
 * right place. The SSE spec records an `id:` even without data, but common client libraries
 * (the `eventsource` package, eventsource-parser) only take the id of an event they dispatch;
 * browsers fire nothing for it unless a page listens for `position`.
 */
export function positionFrame(id: string): Buffer {
  return Buffer.from(`${idLine(id)}event: position\ndata: {}\n\n`, 'utf8');
}

/** A comment line: ignored by EventSource, keeps proxies from timing out an idle stream. */
export function commentFrame(text = ''): Buffer {
  const lines = text.split(LINE_BREAK).map((line) => `:${line === '' ? '' : ` ${line}`}\n`);
  return Buffer.from(`${lines.join('')}\n`, 'utf8');
}

export function retryFrame(milliseconds: number): Buffer {
  return Buffer.from(`retry: ${Math.max(0, Math.floor(milliseconds))}\n\n`, 'utf8');
}
