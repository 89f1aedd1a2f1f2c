/**
 * An incremental parser for `text/event-stream` (WHATWG HTML, "Interpreting an event stream"),
 * for Node clients, tests and the load tool: feed it chunks as they arrive, get whole events.
 */

export interface SseMessage {
  /** The event's own `id:`, or undefined when it had none. */
  id: string | undefined;
  /** The last id seen on the stream so far, as EventSource keeps it. */
  lastEventId: string;
  event: string;
  data: string;
}

export class SseParser {
  #buffer = '';
  #pendingCR = false;
  #data: string[] = [];
  #event = '';
  #id: string | undefined;
  #lastEventId = '';
  retry: number | undefined;
  comments = 0;

  /** The id a reconnect must send as Last-Event-ID (ids without data count, as in EventSource). */
  get lastEventId(): string {
    return this.#lastEventId;
  }

  /** Returns the events completed by this chunk. */
  feed(chunk: string): SseMessage[] {
    const events: SseMessage[] = [];
    let text = chunk;
    // A CR at the end of the previous chunk may be the first half of a CRLF.
    if (this.#pendingCR && text.startsWith('\n')) text = text.slice(1);
    this.#pendingCR = false;
    this.#buffer += text;
    let start = 0;
    for (let i = 0; i < this.#buffer.length; i++) {
      const char = this.#buffer.charCodeAt(i);
      if (char !== 10 && char !== 13) continue;
      const line = this.#buffer.slice(start, i);
      if (char === 13) {
        if (i + 1 === this.#buffer.length) this.#pendingCR = true;
        else if (this.#buffer.charCodeAt(i + 1) === 10) i++;
      }
      start = i + 1;
      const event = this.#line(line);
      if (event !== undefined) events.push(event);
    }
    this.#buffer = this.#buffer.slice(start);
    return events;
  }

  #line(line: string): SseMessage | undefined {
    if (line === '') return this.#dispatch();
    if (line.startsWith(':')) {
      this.comments += 1;
      return undefined;
    }
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.#data.push(value);
    else if (field === 'event') this.#event = value;
    else if (field === 'id' && !value.includes('\0')) this.#id = value;
    else if (field === 'retry' && /^\d+$/.test(value)) this.retry = Number(value);
    return undefined;
  }

  #dispatch(): SseMessage | undefined {
    // As EventSource does: the id takes effect when the event is dispatched, data or not.
    if (this.#id !== undefined) this.#lastEventId = this.#id;
    const hadData = this.#data.length > 0;
    const message: SseMessage = {
      id: this.#id,
      lastEventId: this.#lastEventId,
      event: this.#event === '' ? 'message' : this.#event,
      data: this.#data.join('\n'),
    };
    this.#data = [];
    this.#event = '';
    this.#id = undefined;
    return hadData ? message : undefined;
  }
}
