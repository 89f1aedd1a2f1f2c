import { importEach } from './helpers/one-process.ts';

/**
 * Every `test/kafka/*.kafka.ts` file, in one process: gateways built in this process on the
 * run's shared broker (`requiredKafkaBrokers()`), with no broker of their own and no child
 * process. A new `*.kafka.ts` file is picked up by its name; a Kafka test that starts brokers,
 * spawns servers, changes process-wide state or runs long (a minute or more: it would hold up
 * the others here) runs in a process of its own as `test/*-kafka.test.ts`.
 */
await importEach(new URL('./kafka/', import.meta.url), '.kafka.ts');
