// RAII owners of librdkafka handles, and the checks that turn its error returns into exceptions.
#pragma once

#include <librdkafka/rdkafka.h>

#include <memory>
#include <stdexcept>
#include <string>

namespace xgbstream::datapath {

// A librdkafka call that failed; what() names the call and carries librdkafka's text.
class KafkaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ConfDeleter {
  void operator()(rd_kafka_conf_t* c) const { rd_kafka_conf_destroy(c); }
};
struct ClientDeleter {
  void operator()(rd_kafka_t* k) const { rd_kafka_destroy(k); }
};
struct TopicDeleter {
  void operator()(rd_kafka_topic_t* t) const { rd_kafka_topic_destroy(t); }
};
struct QueueDeleter {
  void operator()(rd_kafka_queue_t* q) const { rd_kafka_queue_destroy(q); }
};
struct PartitionListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const { rd_kafka_topic_partition_list_destroy(l); }
};
struct HeadersDeleter {
  void operator()(rd_kafka_headers_t* h) const { rd_kafka_headers_destroy(h); }
};
// A consumed message goes back to librdkafka (which holds its fetch buffer) exactly once.
struct MessageDeleter {
  void operator()(rd_kafka_message_t* m) const { rd_kafka_message_destroy(m); }
};

using Conf = std::unique_ptr<rd_kafka_conf_t, ConfDeleter>;
using Client = std::unique_ptr<rd_kafka_t, ClientDeleter>;
using Topic = std::unique_ptr<rd_kafka_topic_t, TopicDeleter>;
using Queue = std::unique_ptr<rd_kafka_queue_t, QueueDeleter>;
using PartitionList = std::unique_ptr<rd_kafka_topic_partition_list_t, PartitionListDeleter>;
using Headers = std::unique_ptr<rd_kafka_headers_t, HeadersDeleter>;
using Message = std::unique_ptr<rd_kafka_message_t, MessageDeleter>;

// Sets one property; librdkafka checks the name and the value now.
inline void Set(rd_kafka_conf_t* conf, const std::string& name, const std::string& value) {
  char error[512];
  if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), error, sizeof error) != RD_KAFKA_CONF_OK) {
    throw KafkaError("librdkafka property " + name + ": " + error);
  }
}

inline void Check(rd_kafka_resp_err_t err, const char* call) {
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) throw KafkaError(std::string(call) + " failed: " + rd_kafka_err2str(err));
}

}  // namespace xgbstream::datapath
