import { importEach } from './helpers/one-process.ts';

/**
 * Every `test/embedded/*.embedded.ts` file, in one process: gateways built in this process
 * (`startGateway`) on the embedded bus, with no broker and no child process, tried over real
 * sockets. A new `*.embedded.ts` file is picked up by its name; a file that needs Kafka, spawns
 * servers or changes process-wide state runs in a process of its own as `test/*.test.ts`.
 */
await importEach(new URL('./embedded/', import.meta.url), '.embedded.ts');
