import { postJson, type TestGateway } from './gateway.ts';
import { messageTexts, until, type TestStream } from './sse-client.ts';

/** Posts `texts` to a room, in order, each acknowledged (202) before the next; throws otherwise. */
export async function post(gateway: TestGateway, room: string, texts: string[]): Promise<void> {
  for (const text of texts) {
    const posted = await postJson(`${gateway.url}/rooms/${room}/messages`, { user: 'seq', text });
    if (posted.status !== 202) throw new Error(`post failed: ${posted.status} ${JSON.stringify(posted.body)}`);
  }
}

/** `prefix` + each number from `from` up to (not including) `to`: `range('m', 0, 3)` = m0, m1, m2. */
export const range = (prefix: string, from: number, to: number): string[] => Array.from({ length: to - from }, (_, i) => `${prefix}${from + i}`);

/** The stream's chat message texts once it has at least `count` of them (fails after 20 s). */
export async function messages(stream: TestStream, count: number): Promise<string[]> {
  await until(() => messageTexts(stream.events).length >= count, 20000, `${count} messages (got ${messageTexts(stream.events).length})`);
  return messageTexts(stream.events);
}
