/*
 * The Kafka floor in C: what the processor's data path would cost per record if it ran natively over
 * librdkafka, without node-rdkafka's per-message objects and calls. It does the processor's Kafka work
 * and nothing else: consume batches of up to BATCH records, produce one output per record (a 4-byte
 * value, the input's key, one header as the `float` output carries), flush, store the batch's offsets
 * (committed by auto-commit), until N outputs are produced. Prints wall time and the CPU of the process.
 *
 * Built and run by scripts/bench-kafka-floor.sh against node-rdkafka's own librdkafka, beside the
 * processor in passthrough mode on the same preloaded topic.
 *
 * usage: bench_kafka_floor BROKERS INPUT_TOPIC OUTPUT_TOPIC GROUP N [BATCH=500]
 */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static void die(const char *what, const char *detail) {
  fprintf(stderr, "bench_kafka_floor: %s: %s\n", what, detail);
  exit(1);
}

static void set(rd_kafka_conf_t *conf, const char *name, const char *value) {
  char err[512];
  if (rd_kafka_conf_set(conf, name, value, err, sizeof err) != RD_KAFKA_CONF_OK) die(name, err);
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double cpu_s(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return (double)u.ru_utime.tv_sec + (double)u.ru_utime.tv_usec / 1e6
       + (double)u.ru_stime.tv_sec + (double)u.ru_stime.tv_usec / 1e6;
}

/* Failed deliveries only, as the processor asks (delivery.report.only.error). */
static long failed = 0;
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk; (void)opaque;
  if (m->err) failed++;
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: bench_kafka_floor BROKERS INPUT_TOPIC OUTPUT_TOPIC GROUP N [BATCH=500]\n");
    return 2;
  }
  const char *brokers = argv[1], *input = argv[2], *output = argv[3], *group = argv[4];
  long n = atol(argv[5]);
  int batch = argc > 6 ? atoi(argv[6]) : 500;
  char err[512];

  rd_kafka_conf_t *pconf = rd_kafka_conf_new();
  set(pconf, "bootstrap.servers", brokers);
  set(pconf, "enable.idempotence", "true");
  set(pconf, "linger.ms", "5");
  set(pconf, "delivery.report.only.error", "true");
  rd_kafka_conf_set_dr_msg_cb(pconf, on_delivery);
  rd_kafka_t *producer = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, err, sizeof err);
  if (!producer) die("producer", err);

  rd_kafka_conf_t *cconf = rd_kafka_conf_new();
  set(cconf, "bootstrap.servers", brokers);
  set(cconf, "group.id", group);
  set(cconf, "auto.offset.reset", "earliest");
  set(cconf, "enable.auto.offset.store", "false");
  rd_kafka_t *consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cconf, err, sizeof err);
  if (!consumer) die("consumer", err);
  rd_kafka_poll_set_consumer(consumer);
  rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, input, RD_KAFKA_PARTITION_UA);
  if (rd_kafka_subscribe(consumer, topics)) die("subscribe", input);
  rd_kafka_topic_partition_list_destroy(topics);
  rd_kafka_queue_t *queue = rd_kafka_queue_get_consumer(consumer);

  rd_kafka_message_t **messages = calloc((size_t)batch, sizeof *messages);
  double start = now_s(), first = 0;
  long produced = 0;
  float score = 0.25f;
  char header[256];
  while (produced < n) {
    ssize_t got = rd_kafka_consume_batch_queue(queue, 100, messages, (size_t)batch);
    if (got <= 0) continue;
    if (first == 0) first = now_s();
    rd_kafka_topic_partition_list_t *offsets = rd_kafka_topic_partition_list_new((int)got);
    for (ssize_t i = 0; i < got; i++) {
      rd_kafka_message_t *m = messages[i];
      if (m->err) {
        rd_kafka_message_destroy(m);
        continue;
      }
      int hlen = snprintf(header, sizeof header, "%s/%d/%lld v1", input, (int)m->partition, (long long)m->offset);
      rd_kafka_headers_t *headers = rd_kafka_headers_new(1);
      rd_kafka_header_add(headers, "xgb.provenance", -1, header, hlen);
      rd_kafka_resp_err_t e;
      while ((e = rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(output), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                    RD_KAFKA_V_VALUE(&score, sizeof score), RD_KAFKA_V_KEY(m->key, m->key_len),
                                    RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rd_kafka_poll(producer, 10);
      }
      if (e) die("produce", rd_kafka_err2str(e));
      rd_kafka_topic_partition_t *at = rd_kafka_topic_partition_list_find(offsets, input, m->partition);
      if (!at) at = rd_kafka_topic_partition_list_add(offsets, input, m->partition);
      at->offset = m->offset + 1;
      produced++;
      rd_kafka_message_destroy(m);
    }
    rd_kafka_flush(producer, 30000);
    rd_kafka_offsets_store(consumer, offsets);
    rd_kafka_topic_partition_list_destroy(offsets);
  }
  double end = now_s(), cpu = cpu_s();
  printf("c-librdkafka: produced=%ld failed=%ld drain_s=%.3f steady_s=%.3f rec_per_s=%.0f cpu_s=%.2f cpu_us_per_rec=%.1f\n",
         produced, failed, end - start, end - first, (double)produced / (end - start), cpu, cpu * 1e6 / (double)produced);
  rd_kafka_queue_destroy(queue);
  rd_kafka_consumer_close(consumer);
  rd_kafka_destroy(consumer);
  rd_kafka_destroy(producer);
  free(messages);
  return failed == 0 ? 0 : 1;
}
