import http from 'node:http';
import net from 'node:net';
import { SseParser, type SseMessage } from '../../src/client/sse-parser.ts';
import type { Teardowns } from './fixture.ts';

export interface TestStream {
  status: number;
  headers: http.IncomingHttpHeaders;
  /**
   * The events received, in order, except `position` (an id without an event; see
   * `lastEventId()`) and `presence` (who is in the room, at times of its own: see `presence`).
   */
  events: SseMessage[];
  /** The `presence` events received (README, "Presence"), in order. */
  presence: SseMessage[];
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

/**
 * Opens an event stream over a real HTTP connection, as a browser's EventSource would; closed
 * (the connection destroyed) when `t` ends if the test has not closed it.
 */
export function openStream(t: Teardowns, url: string, headers: Record<string, string> = {}, localAddress?: string): Promise<TestStream> {
  return new Promise((resolve, reject) => {
    const options = { headers: { accept: 'text/event-stream', ...headers }, ...(localAddress ? { localAddress } : {}) };
    const request = http.get(url, options, (response) => {
      const parser = new SseParser();
      const events: SseMessage[] = [];
      const presence: SseMessage[] = [];
      let raw = '';
      const decoder = new TextDecoder('utf-8', { ignoreBOM: true });
      const waiters = new Set<() => void>();
      // Bytes to the parser, as EventSource decodes them (UTF-8 across chunks, a leading BOM dropped).
      response.on('data', (chunk: Buffer) => {
        raw += decoder.decode(chunk, { stream: true });
        // `position` events carry only an id (the parser keeps it as the last event id): like a
        // page that does not listen for them, the tests see the events that carry something.
        for (const message of parser.feed(chunk)) {
          if (message.event === 'presence') presence.push(message);
          else if (message.event !== 'position') events.push(message);
        }
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
        presence,
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
    t.teardown(() => request.destroy());
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

/**
 * Polls `condition` until it holds (rejects after `timeoutMs`): for state with no event to await.
 * `what` names it in the timeout's message; a function is asked at the timeout (e.g. to say how far it got).
 */
export async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 20000, what: string | (() => string) = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${typeof what === 'function' ? what() : what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** The raw bytes of a stream request (`GET path`, Accept: text/event-stream), for tests that write to sockets. */
export function streamRequest(path: string, version = '1.1'): string {
  return `GET ${path} HTTP/${version}\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`;
}

/** A client connection that has sent `requests` and then reads nothing (the socket stays paused). */
export interface StalledClient {
  socket: net.Socket;
  /** Resolves when the connection has closed. */
  closed: Promise<void>;
}

/**
 * Connects to the server at `url`, writes `requests` (raw HTTP, e.g. `streamRequest(path)`),
 * and stops reading, as a stalled client would: the server's unsent bytes pile up. Destroyed
 * when `t` ends.
 */
export function stalledClient(t: Teardowns, url: string, requests: string): Promise<StalledClient> {
  const port = Number(new URL(url).port);
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => {
      socket.write(requests);
      socket.pause();
      resolve({ socket, closed: new Promise((done) => socket.once('close', () => done())) });
    });
    t.teardown(() => socket.destroy());
    socket.once('error', reject);
  });
}
