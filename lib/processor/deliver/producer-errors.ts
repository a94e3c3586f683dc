/**
 * Which producer errors concern one record, which end the producer, and which pass: the table the
 * deliver stage and the README follow. librdkafka has already retried within `message.timeout.ms`
 * before it reports a delivery as failed, so nothing here is ever re-sent as it was.
 */
import { CODES, type LibrdKafkaError } from 'node-rdkafka';

const E = CODES.ERRORS;

/**
 * Errors that concern one record and will not pass on a retry: the record is too large, or the broker
 * finds it invalid. Its input becomes a dead letter (or is skipped); the partition goes on.
 */
const RECORD_ERRORS: ReadonlySet<number> = new Set([
  E.ERR_MSG_SIZE_TOO_LARGE, E.ERR_INVALID_MSG_SIZE, E.ERR_RECORD_LIST_TOO_LARGE, E.ERR_INVALID_RECORD, E.ERR_INVALID_MSG,
]);
/** The transactional producer was fenced: a newer epoch of its transactional.id exists. */
const FENCE_ERRORS: ReadonlySet<number> = new Set([E.ERR_PRODUCER_FENCED, E.ERR__FENCED, E.ERR_INVALID_PRODUCER_EPOCH]);
/** The cluster refuses this client: no retry or new producer cures it. */
const AUTHORIZATION_ERRORS: ReadonlySet<number> = new Set([
  E.ERR_TOPIC_AUTHORIZATION_FAILED, E.ERR_CLUSTER_AUTHORIZATION_FAILED, E.ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
]);

/**
 * node-rdkafka hands a delivery report's error over as its text alone (code -1): librdkafka's own
 * description, or the broker's error message. The texts of the errors above, in both forms.
 */
const RECORD_ERROR_TEXT = /message size too large|record.* too large|batch larger than|invalid message|failed to validate record|corrupt/i;
const FENCE_ERROR_TEXT = /fenced|old epoch|producer epoch/i;
const AUTHORIZATION_ERROR_TEXT = /authori[sz]ation failed/i;

/**
 * How the deliver stage treats a producer error:
 * - `record`: this record alone; it becomes a dead letter;
 * - `fenced`: the transactional producer was fenced (a broker restart that moved the coordinator on, or
 *   another instance with the same transactional.id);
 * - `unauthorized`: the cluster's ACLs refuse this client;
 * - `fatal`: any other error that ends the producer;
 * - `transient`: the rest (the broker unreachable for longer than `message.timeout.ms`, and the like).
 */
export type ProducerErrorClass = 'record' | 'fenced' | 'unauthorized' | 'fatal' | 'transient';

type ErrorLike = Pick<LibrdKafkaError, 'code' | 'message'> & { isFatal?: boolean };

export function classifyProducerError(err: ErrorLike): ProducerErrorClass {
  const textOnly = err.code === -1 || err.code === undefined;
  if (FENCE_ERRORS.has(err.code) || (textOnly && FENCE_ERROR_TEXT.test(err.message))) return 'fenced';
  if (AUTHORIZATION_ERRORS.has(err.code) || (textOnly && AUTHORIZATION_ERROR_TEXT.test(err.message))) return 'unauthorized';
  if (err.isFatal) return FENCE_ERROR_TEXT.test(err.message) ? 'fenced' : 'fatal';
  if (RECORD_ERRORS.has(err.code) || (textOnly && RECORD_ERROR_TEXT.test(err.message))) return 'record';
  return 'transient';
}
