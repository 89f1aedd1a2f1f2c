import { loadConfig } from '../../src/config.ts';

/** What loading `env` throws (undefined when it loads): for tests of refused settings. */
export function configRefusal(env: Record<string, string>): unknown {
  try {
    loadConfig(env);
    return undefined;
  } catch (error) {
    return error;
  }
}
