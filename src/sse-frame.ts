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

export function serializeEvent({ id, event, data }: SseEvent): string {
  let frame = '';
  if (id !== undefined) frame += `id: ${singleLine(id)}\n`;
  if (event !== undefined) frame += `event: ${singleLine(event)}\n`;
  for (const line of data.split(LINE_BREAK)) frame += `data: ${line}\n`;
  return `${frame}\n`;
}

export function eventFrame(event: SseEvent): Buffer {
  return Buffer.from(serializeEvent(event), 'utf8');
}

/** A comment line: ignored by EventSource, keeps proxies from timing out an idle stream. */
export function commentFrame(text = ''): Buffer {
  const lines = text.split(LINE_BREAK).map((line) => `:${line === '' ? '' : ` ${line}`}\n`);
  return Buffer.from(`${lines.join('')}\n`, 'utf8');
}

export function retryFrame(milliseconds: number): Buffer {
  return Buffer.from(`retry: ${Math.max(0, Math.floor(milliseconds))}\n\n`, 'utf8');
}
