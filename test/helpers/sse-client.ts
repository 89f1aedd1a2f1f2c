import http from 'node:http';
import { SseParser, type SseMessage } from '../../src/client/sse-parser.ts';

export interface TestStream {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** The events received, in order, except `position` (an id without an event; see `lastEventId()`). */
  events: SseMessage[];
  /** Comment lines received (heartbeats, `:connected`). */
  comments(): number;
  /** What EventSource would send as Last-Event-ID on reconnect. */
  lastEventId(): string;
  /** Everything received, byte for byte, as text (a leading BOM included). */
  text(): string;
  /** Resolves once `count` events have arrived in total (rejects after `timeoutMs`). */
  waitForEvents(count: number, timeoutMs?: number): Promise<SseMessage[]>;
  /** Resolves when the server ends the stream. */
  ended: Promise<void>;
  close(): void;
  /** Stops reading the response, as a stalled client would: the server's unsent bytes grow. */
  pause(): void;
}

/** Opens an event stream over a real HTTP connection, as a browser's EventSource would. */
export function openStream(url: string, headers: Record<string, string> = {}, localAddress?: string): Promise<TestStream> {
  return new Promise((resolve, reject) => {
    const options = { headers: { accept: 'text/event-stream', ...headers }, ...(localAddress ? { localAddress } : {}) };
    const request = http.get(url, options, (response) => {
      const parser = new SseParser();
      const events: SseMessage[] = [];
      let raw = '';
      const decoder = new TextDecoder('utf-8', { ignoreBOM: true });
      const waiters = new Set<() => void>();
      // Bytes to the parser, as EventSource decodes them (UTF-8 across chunks, a leading BOM dropped).
      response.on('data', (chunk: Buffer) => {
        raw += decoder.decode(chunk, { stream: true });
        // `position` events carry only an id (the parser keeps it as the last event id): like a
        // page that does not listen for them, the tests see the events that carry something.
        for (const message of parser.feed(chunk)) if (message.event !== 'position') events.push(message);
        for (const check of [...waiters]) check();
      });
      const ended = new Promise<void>((done) => {
        response.on('close', () => {
          done();
          for (const check of [...waiters]) check();
        });
      });
      let closed = false;
      response.on('close', () => {
        closed = true;
      });
      resolve({
        status: response.statusCode ?? 0,
        headers: response.headers,
        events,
        text: () => raw,
        lastEventId: () => parser.lastEventId,
        comments: () => parser.comments,
        ended,
        close: () => request.destroy(),
        pause: () => response.pause(),
        waitForEvents: (count, timeoutMs = 20000) =>
          new Promise((done, fail) => {
            const timer = setTimeout(() => {
              waiters.delete(check);
              fail(new Error(`timed out waiting for ${count} events; got ${events.length}: ${raw.slice(-500)}`));
            }, timeoutMs);
            function check(): void {
              if (events.length >= count) {
                clearTimeout(timer);
                waiters.delete(check);
                done(events.slice(0, count));
              } else if (closed) {
                clearTimeout(timer);
                waiters.delete(check);
                fail(new Error(`stream ended after ${events.length} of ${count} events`));
              }
            }
            waiters.add(check);
            check();
          }),
      });
    });
    request.on('error', reject);
  });
}

/** The chat messages among `events`. */
export function chatMessages(events: readonly SseMessage[]): SseMessage[] {
  return events.filter((event) => event.event === 'message');
}

/** The `text` of each chat message among `events`, in order. */
export function messageTexts(events: readonly SseMessage[]): string[] {
  return chatMessages(events).map((event) => JSON.parse(event.data).text as string);
}

/** Polls `condition` until it holds (rejects after `timeoutMs`): for state with no event to await. */
export async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 20000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
