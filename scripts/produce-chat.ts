/**
 * A stream of chat messages, straight to the chat topic.
 * npm run produce:chat -- --rate 5 --rooms lobby,random [--count 100]
 */
import { chatMessageRecord } from '../src/channels/contract.ts';
import { runAtRate, startProducer } from './produce-common.ts';

const run = await startProducer({
  name: 'produce:chat',
  description: 'Produces chat messages from a few made-up users, round-robin over the rooms, to the chat topic.',
  keys: { option: 'rooms', default: 'lobby', what: 'rooms' },
  topic: (config) => config.chatTopic,
});
const rooms = run.keys;
const users = ['ada', 'grace', 'linus', 'margaret', 'ken'];
const words = ['kafka', 'stream', 'event', 'browser', 'replica', 'offset', 'partition', 'hello', 'resume', 'fast'];
const topics = { chat: run.config.chatTopic, ticker: run.config.tickerTopic };

await runAtRate('produce:chat', run, async (n) => {
  const text = Array.from({ length: 3 + (n % 5) }, (_, i) => words[(n * 7 + i * 3) % words.length]).join(' ');
  const { record } = chatMessageRecord(topics, rooms[n % rooms.length]!, { user: users[n % users.length]!, text: `#${n} ${text}` });
  await run.producer.send({ topic: record.topic, acks: -1, messages: [{ key: record.key, value: record.value, headers: record.headers }] });
});
