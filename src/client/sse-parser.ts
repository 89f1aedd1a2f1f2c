/**
 * `text/event-stream` parsing for the typed client, tests and the load tool, on
 * `eventsource-parser` (a well-kept parser of the WHATWG "Interpreting an event stream" rules):
 * feed it chunks as they arrive (bytes or text), get whole events back.
 *
 * Two things are added on top, both from the WHATWG HTML spec (server-sent events, §9.2.6):
 * - "One leading U+FEFF BYTE ORDER MARK character must be ignored": eventsource-parser drops a
 *   BOM only when it arrives as three Latin-1 characters, so a stream decoded as UTF-8 text that
 *   starts with one would lose its first field (and, with `data:` first, its first event).
 * - The last event ID is set when a block ends, "data" or not: the gateway sends an `id:` with no
 *   data right after connecting so a client that saw no event still resumes from where it
 *   joined. eventsource-parser 3 reports only blocks with data (its `onId`, in 4.1, needs
 *   Node 22.12), so lines are split here and handed to it one by one, and an id-only block is
 *   noticed at its blank line. With Node 22.12 as the floor, `onId` replaces that.
 */
import { createParser, type EventSourceParser } from 'eventsource-parser';

export interface SseMessage {
  /** The event's own `id:`, or undefined when it had none. */
  id: string | undefined;
  /** The last id seen on the stream so far, as EventSource keeps it. */
  lastEventId: string;
  /** The `event:` name; `message` when the block had none (as EventSource dispatches it). */
  event: string;
  data: string;
}

/**
 * Splits text into lines (CRLF, LF or CR, across chunks) and tells `onLine` each whole line.
 * Lines go to eventsource-parser one by one so that an id-only block (which it does not report)
 * is seen in its place among the events it does report.
 */
class LineSplitter {
  #carry = '';

  constructor(private readonly onLine: (line: string) => void) {}

  feed(text: string): void {
    const lines = (this.#carry + text).split(/\r\n|\r|\n/);
    this.#carry = lines.pop() ?? '';
    // A CR ending the chunk may be the first half of a CRLF: hold it back with its line so
    // that the LF opening the next chunk does not read as an empty line.
    if (text.endsWith('\r') && this.#carry === '') {
      const held = lines.pop();
      if (held !== undefined) this.#carry = `${held}\r`;
    }
    for (const line of lines) this.onLine(line);
  }
}

export class SseParser {
  #parser: EventSourceParser;
  #lines: LineSplitter;
  /** The current block's `id:` and whether it has `data:` (for id-only blocks). */
  #blockId: string | undefined;
  #blockHasData = false;
  #decoder = new TextDecoder();
  #started = false;
  #lastEventId = '';
  #completed: SseMessage[] = [];
  /** The last `retry:` the server sent (ms), if any. */
  retry: number | undefined;
  /** Comment lines received (heartbeats, `: connected`). */
  comments = 0;

  constructor() {
    this.#parser = createParser({
      onEvent: (message) => {
        if (message.id !== undefined) this.#lastEventId = message.id;
        this.#completed.push({ id: message.id, lastEventId: this.#lastEventId, event: message.event ?? 'message', data: message.data });
      },
      onRetry: (retry) => {
        this.retry = retry;
      },
      onComment: () => {
        this.comments += 1;
      },
    });
    this.#lines = new LineSplitter((line) => this.#line(line));
  }

  /** The id a reconnect must send as Last-Event-ID (ids without data count, as in EventSource). */
  get lastEventId(): string {
    return this.#lastEventId;
  }

  /** Returns the events completed by this chunk (bytes are decoded as UTF-8 across chunks). */
  feed(chunk: string | Uint8Array): SseMessage[] {
    let text = typeof chunk === 'string' ? chunk : this.#decoder.decode(chunk, { stream: true });
    if (!this.#started && text !== '') {
      this.#started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    this.#lines.feed(text);
    const completed = this.#completed;
    this.#completed = [];
    return completed;
  }

  #line(line: string): void {
    if (line === '') {
      if (!this.#blockHasData && this.#blockId !== undefined) this.#lastEventId = this.#blockId;
      this.#blockId = undefined;
      this.#blockHasData = false;
    } else {
      // Only the field name is looked at here; the values are eventsource-parser's.
      const colon = line.indexOf(':');
      const field = colon === -1 ? line : line.slice(0, colon);
      if (field === 'data') this.#blockHasData = true;
      else if (field === 'id') {
        const value = colon === -1 ? '' : line.slice(colon + (line.charCodeAt(colon + 1) === 32 ? 2 : 1));
        if (!value.includes('\0')) this.#blockId = value;
      }
    }
    this.#parser.feed(`${line}\n`);
  }
}
