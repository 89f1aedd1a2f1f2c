import { readFileSync } from 'node:fs';
import type { Admin, KafkaConfig } from 'kafkajs';
import type { KafkaSecurityConfig } from '../config.ts';

/** The part of kafkajs's client options that secures the connection to the brokers. */
export type KafkaConnectionOptions = Pick<KafkaConfig, 'ssl' | 'sasl'>;

/**
 * Builds kafkajs `ssl` and `sasl` from the configuration: TLS with an optional CA bundle and
 * client certificate (read once, at startup), and SASL PLAIN or SCRAM-SHA-256/512. Without
 * TLS, SASL PLAIN sends the password in clear text: the gateway warns about that.
 */
export function kafkaConnectionOptions(
  security: KafkaSecurityConfig,
  readFile: (path: string) => string = (path) => readFileSync(path, 'utf8'),
): KafkaConnectionOptions {
  const options: KafkaConnectionOptions = {};
  if (security.ssl !== null) {
    const { caFile, certFile, keyFile, rejectUnauthorized } = security.ssl;
    options.ssl = {
      rejectUnauthorized,
      ...(caFile !== null ? { ca: [readFile(caFile)] } : {}),
      ...(certFile !== null ? { cert: readFile(certFile) } : {}),
      ...(keyFile !== null ? { key: readFile(keyFile) } : {}),
    };
  }
  if (security.sasl !== null) {
    const { mechanism, username, password } = security.sasl;
    options.sasl =
      mechanism === 'plain'
        ? { mechanism, username, password }
        : mechanism === 'scram-sha-256'
          ? { mechanism, username, password }
          : { mechanism, username, password };
  }
  return options;
}

/** What the logs may say about the connection: never the password or key material. */
export function describeKafkaConnection(security: KafkaSecurityConfig): Record<string, unknown> {
  return {
    tls: security.ssl === null ? false : { ca: security.ssl.caFile !== null, clientCertificate: security.ssl.certFile !== null, rejectUnauthorized: security.ssl.rejectUnauthorized },
    sasl: security.sasl === null ? false : { mechanism: security.sasl.mechanism, username: security.sasl.username },
  };
}

/**
 * Failures that retrying will not fix: wrong credentials, a mechanism the broker does not
 * offer, missing authorisation, a TLS certificate the gateway rejects. KAFKA_FAIL_FAST turns
 * these into a non-zero exit at startup instead of an endless retry loop.
 */
export function isUnrecoverableKafkaError(reason: string): boolean {
  return /SASL|authenticat|not authorized|AUTHORIZATION_FAILED|unsupported.*mechanism|certificate|self[- ]signed|SSL|TLS|EPROTO/i.test(reason);
}

/**
 * Whether `topic` exists on the cluster, from its own metadata alone. Never from the whole
 * cluster's (`listTopics`): kafkajs fails a metadata answer that has any partition without a
 * leader, so one broker down under someone else's single-replica topic would make every topic
 * look unknowable. Throws kafkajs's error for anything but "unknown topic".
 */
export async function topicExists(admin: Admin, topic: string): Promise<boolean> {
  try {
    await admin.fetchTopicMetadata({ topics: [topic] });
    return true;
  } catch (error) {
    if ((error as { type?: unknown }).type === 'UNKNOWN_TOPIC_OR_PARTITION') return false;
    throw error;
  }
}
