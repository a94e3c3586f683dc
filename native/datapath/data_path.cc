#include "data_path.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <exception>
#include <utility>

namespace xgbstream::datapath {

namespace {

// Header names: the contract with downstream consumers, as lib/processor/score/output.ts writes them.
constexpr const char* kProvenance = "xgb.provenance";
constexpr const char* kSourceTopic = "xgb.source.topic";
constexpr const char* kSourcePartition = "xgb.source.partition";
constexpr const char* kSourceOffset = "xgb.source.offset";
constexpr const char* kErrorReason = "xgb.error.reason";
constexpr const char* kErrorMessage = "xgb.error.message";
constexpr const char* kErrorOriginalSize = "xgb.error.original-size";
constexpr const char* kErrorTruncated = "xgb.error.truncated";

// lib/processor/score/output.ts's upper estimate of a record's size on the wire, against the limit:
// a record batch header and the record's own framing, and per header its varint lengths.
constexpr std::size_t kRecordOverheadBytes = 61 + 32;
constexpr std::size_t kHeaderOverheadBytes = 10;

// lib/classifier.ts's split: up to this many rows, one in-place call per row is cheaper on
// libxgboost 3.4 than one call for all of them (README, "Small batches").
constexpr std::size_t kRowByRowMaxRows = 4;
// Attempts for a batch prediction before rows are scored one by one to isolate the failure.
constexpr int kPredictAttempts = 3;
// The first record of a batch is waited for this long, so that a stop request is seen as often.
constexpr int kFetchWaitMs = 100;
// With batches awaiting their delivery reports, the loop comes back this often to serve them.
constexpr int kFetchWaitInFlightMs = 5;
// Batches handed to the producer before the loop waits for the oldest to be acknowledged: bounds what
// a crash makes the next owner score again, and the producer's queue.
constexpr std::size_t kMaxBatchesInFlight = 4;
// The longest wait, in a rebalance, for the committed offsets of partitions this instance delivered before.
constexpr int kCommittedTimeoutMs = 10000;
// Log lines, client errors and batch samples kept for JavaScript to collect (every 250 ms); more are
// dropped (log lines counted), never block the loop.
constexpr std::size_t kLogCapacity = 10000;
// End-to-end latencies kept between two collections: 250 ms at 400,000 records/s.
constexpr std::size_t kLatencyCapacity = 100000;

LogField Text(std::string key, std::string value) { return LogField{std::move(key), std::move(value), false}; }
LogField Number(std::string key, long long value) { return LogField{std::move(key), std::to_string(value), true}; }

// The input's headers, copied for an output (which then owns them); a fresh list when it has none.
rd_kafka_headers_t* CopyHeaders(rd_kafka_message_t* m, std::size_t extra) {
  rd_kafka_headers_t* own = nullptr;
  if (rd_kafka_message_headers(m, &own) == RD_KAFKA_RESP_ERR_NO_ERROR && own != nullptr) {
    return rd_kafka_headers_copy(own);
  }
  return rd_kafka_headers_new(extra);
}

void AddHeader(rd_kafka_headers_t* h, const char* name, const std::string& value) {
  Check(rd_kafka_header_add(h, name, -1, value.data(), static_cast<ssize_t>(value.size())), "rd_kafka_header_add");
}

std::size_t RecordBytes(std::size_t key_len, std::size_t value_len, const rd_kafka_headers_t* headers) {
  std::size_t n = kRecordOverheadBytes + key_len + value_len;
  const char* name = nullptr;
  const void* value = nullptr;
  std::size_t size = 0;
  for (std::size_t i = 0; rd_kafka_header_get_all(headers, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i) {
    n += kHeaderOverheadBytes + std::strlen(name) + size;
  }
  return n;
}

// lib/processor/deliver/producer-errors.ts's record errors: this output alone is refused, for good.
bool IsRecordError(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
      return true;
    default:
      return false;
  }
}

std::int64_t WallClockMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

DataPath::DataPath(Options options) : options_(std::move(options)) {
  booster_ = Booster::FromFile(options_.model_path, options_.nthread);
  rules_ = options_.rules;
  rules_.num_features = booster_->NumFeatures();

  Conf pconf(rd_kafka_conf_new());
  Set(pconf.get(), "bootstrap.servers", options_.brokers);
  Set(pconf.get(), "client.id", "xgb-stream");
  // Idempotence makes librdkafka's own retries safe (no duplicates, no reordering); it needs acks=all.
  Set(pconf.get(), "enable.idempotence", "true");
  Set(pconf.get(), "acks", "all");
  // A batch's outputs are handed over at once: a longer linger only adds latency.
  Set(pconf.get(), "linger.ms", "1");
  // A report per output: what stores a batch's offsets, and what replaces a refused output.
  Set(pconf.get(), "delivery.report.only.error", "false");
  Set(pconf.get(), "message.max.bytes", std::to_string(options_.max_output_bytes));
  // For lib's broker health, once a second from each client.
  Set(pconf.get(), "statistics.interval.ms", "1000");
  for (const auto& [key, value] : options_.kafka_properties) Set(pconf.get(), key, value);
  rd_kafka_conf_set_dr_msg_cb(pconf.get(), &DataPath::OnDelivery);
  rd_kafka_conf_set_error_cb(pconf.get(), &DataPath::OnError);
  rd_kafka_conf_set_stats_cb(pconf.get(), &DataPath::OnStats);
  rd_kafka_conf_set_opaque(pconf.get(), this);

  Conf cconf(rd_kafka_conf_new());
  Set(cconf.get(), "bootstrap.servers", options_.brokers);
  Set(cconf.get(), "client.id", "xgb-stream");
  Set(cconf.get(), "group.id", options_.group_id);
  if (!options_.instance_id.empty()) Set(cconf.get(), "group.instance.id", options_.instance_id);
  // Offsets are stored by hand, only after the batch's flush, and auto-commit commits what was stored.
  Set(cconf.get(), "enable.auto.commit", "true");
  Set(cconf.get(), "enable.auto.offset.store", "false");
  Set(cconf.get(), "auto.commit.interval.ms", "1000");
  Set(cconf.get(), "enable.partition.eof", "false");
  Set(cconf.get(), "fetch.wait.max.ms", "100");
  Set(cconf.get(), "auto.offset.reset", "earliest");
  Set(cconf.get(), "statistics.interval.ms", "1000");
  for (const auto& [key, value] : options_.kafka_properties) Set(cconf.get(), key, value);
  rd_kafka_conf_set_rebalance_cb(cconf.get(), &DataPath::OnRebalance);
  rd_kafka_conf_set_offset_commit_cb(cconf.get(), &DataPath::OnCommit);
  rd_kafka_conf_set_error_cb(cconf.get(), &DataPath::OnError);
  rd_kafka_conf_set_stats_cb(cconf.get(), &DataPath::OnStats);
  rd_kafka_conf_set_opaque(cconf.get(), this);

  char error[512];
  // rd_kafka_new takes the configuration only when it succeeds.
  producer_.reset(rd_kafka_new(RD_KAFKA_PRODUCER, pconf.get(), error, sizeof error));
  if (!producer_) throw KafkaError(std::string("making the producer failed: ") + error);
  pconf.release();
  consumer_.reset(rd_kafka_new(RD_KAFKA_CONSUMER, cconf.get(), error, sizeof error));
  if (!consumer_) throw KafkaError(std::string("making the consumer failed: ") + error);
  cconf.release();
  // Rebalances are served by the loop's consume calls; the consumer's errors, statistics and commit
  // results by ServeClients, also while the loop waits on the producer, so that none of them arrives
  // late (an outage's errors served after it ended would start it again).
  queue_.reset(rd_kafka_queue_get_consumer(consumer_.get()));

  suspicious_.reset(rd_kafka_topic_new(producer_.get(), options_.suspicious_topic.c_str(), nullptr));
  regular_.reset(rd_kafka_topic_new(producer_.get(), options_.regular_topic.c_str(), nullptr));
  dead_letter_.reset(rd_kafka_topic_new(producer_.get(), options_.dead_letter_topic.c_str(), nullptr));
  if (!suspicious_ || !regular_ || !dead_letter_) {
    throw KafkaError(std::string("rd_kafka_topic_new failed: ") + rd_kafka_err2str(rd_kafka_last_error()));
  }

  const std::size_t b = options_.batch_size;
  fetched_.resize(b);
  batch_ = std::make_unique<InFlight>();
  verdicts_.resize(b);
  rows_.resize(b * booster_->NumFeatures());
  scores_.resize(b);
  row_failed_.resize(b);
}

DataPath::~DataPath() {
  RequestStop();
  Join();
}

void DataPath::CheckTopics() {
  const rd_kafka_metadata_t* raw = nullptr;
  const rd_kafka_resp_err_t err = rd_kafka_metadata(producer_.get(), 1, nullptr, &raw, options_.connect_timeout_ms);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    throw KafkaError(std::string("could not read the cluster's topics: ") + rd_kafka_err2str(err));
  }
  std::unique_ptr<const rd_kafka_metadata_t, void (*)(const rd_kafka_metadata_t*)> metadata(raw, rd_kafka_metadata_destroy);
  std::string missing;
  std::size_t count = 0;
  for (const std::string* topic : {&options_.input_topic, &options_.suspicious_topic, &options_.regular_topic,
                                   &options_.dead_letter_topic}) {
    bool found = false;
    for (int i = 0; i < metadata->topic_cnt && !found; ++i) {
      found = metadata->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR && *topic == metadata->topics[i].topic;
    }
    if (found) continue;
    missing += (count++ ? ", '" : "'") + *topic + "'";
  }
  if (count > 0) {
    throw KafkaError(std::string(count == 1 ? "topic " : "topics ") + missing + " not found on " + options_.brokers +
                     "; create them");
  }
}

void DataPath::MeasureLag() {
  const auto now = std::chrono::steady_clock::now();
  if (now - lag_measured_ < std::chrono::seconds(1)) return;
  lag_measured_ = now;
  rd_kafka_topic_partition_list_t* raw = nullptr;
  if (rd_kafka_assignment(consumer_.get(), &raw) != RD_KAFKA_RESP_ERR_NO_ERROR || raw == nullptr) return;
  PartitionList positions(raw);
  if (rd_kafka_position(consumer_.get(), positions.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) return;
  std::vector<std::pair<std::int32_t, std::int64_t>> lag;
  for (int i = 0; i < positions->cnt; ++i) {
    const rd_kafka_topic_partition_t& p = positions->elems[i];
    std::int64_t low = 0, high = 0;
    // No position yet (nothing consumed since the assignment): no lag to report.
    if (p.offset < 0) continue;
    if (rd_kafka_get_watermark_offsets(consumer_.get(), p.topic, p.partition, &low, &high) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        high < 0) {
      continue;
    }
    lag.emplace_back(p.partition, std::max<std::int64_t>(0, high - p.offset));
  }
  std::lock_guard<std::mutex> lock(mutex_);
  counters_.lag = std::move(lag);
}

void DataPath::Start() {
  CheckTopics();
  PartitionList topics(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(topics.get(), options_.input_topic.c_str(), RD_KAFKA_PARTITION_UA);
  Check(rd_kafka_subscribe(consumer_.get(), topics.get()), "rd_kafka_subscribe");
  running_.store(true);
  thread_ = std::thread([this] { Run(); });
}

void DataPath::RequestStop() {
  std::int64_t none = 0;
  const std::int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
  stop_requested_ns_.compare_exchange_strong(none, now);
  stop_.store(true);
}

void DataPath::Join() {
  if (thread_.joinable()) thread_.join();
}

std::string DataPath::Failure() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return failure_;
}

Counters DataPath::Snapshot() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return counters_;
}

Collected DataPath::Collect() {
  std::lock_guard<std::mutex> lock(mutex_);
  Collected out = std::move(collected_);
  collected_ = Collected{};
  return out;
}

void DataPath::Log(const char* level, std::string message, std::vector<LogField> fields) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (collected_.log.size() >= kLogCapacity) {
    ++collected_.log_dropped;
    return;
  }
  collected_.log.push_back(LogEntry{level, std::move(message), std::move(fields)});
}

void DataPath::InFlight::Reset() {
  sources.clear();
  next_offsets.clear();
  outputs.clear();
  refused.clear();
  pending = 0;
  failed = 0;
  first_error.clear();
  suspicious = 0;
  regular = 0;
  dead.fill(0);
  skipped.fill(0);
}

void DataPath::Fail(const std::string& why) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (failure_.empty()) failure_ = why;
  }
  RequestStop();
}

void DataPath::Run() {
  Log("info", "native data path started",
      {Text("inputTopic", options_.input_topic), Text("groupId", options_.group_id),
       Text("modelVersion", options_.model_version), Number("batchSize", static_cast<long long>(options_.batch_size))});
  try {
    while (!stop_.load()) {
      const std::size_t n = Fetch(in_flight_.empty() ? kFetchWaitMs : kFetchWaitInFlightMs);
      if (!Settle(false)) break;
      MeasureLag();
      if (n == 0) continue;
      ScoreAndSend(n);
    }
  } catch (const std::exception& e) {
    Fail(e.what());
  }
  // The records of a batch cut short by a failure go back to librdkafka unstored: the next owner
  // reads them again (at least once).
  batch_->Reset();
  try {
    // What is handed over is delivered (or the wait ends at --shutdown-timeout-ms) before the commit.
    Settle(true);
    CommitStored("stop");
    // Leaves the group: the revocation it triggers runs OnRebalance on this thread, which commits
    // what is stored (nothing new by now) and unassigns.
    const rd_kafka_resp_err_t closed = rd_kafka_consumer_close(consumer_.get());
    if (closed != RD_KAFKA_RESP_ERR_NO_ERROR) {
      Log("warn", "closing the consumer failed", {Text("error", rd_kafka_err2str(closed))});
    }
    rd_kafka_flush(producer_.get(), 10000);
  } catch (const std::exception& e) {
    Fail(e.what());
  }
  // Topic handles and the queue before their clients.
  suspicious_.reset();
  regular_.reset();
  dead_letter_.reset();
  queue_.reset();
  consumer_.reset();
  producer_.reset();
  const Counters c = Snapshot();
  Log("info", "native data path stopped",
      {Number("records", static_cast<long long>(c.records_in)), Number("batches", static_cast<long long>(c.batches)),
       Number("predictMs", static_cast<long long>(c.predict_ns / 1000000)),
       Number("flushMs", static_cast<long long>(c.flush_ns / 1000000))});
  running_.store(false);
}

std::size_t DataPath::Fetch(int wait_ms) {
  rd_kafka_message_t** out = fetched_.data();
  const std::uint64_t revocations = revocations_;
  ssize_t got = rd_kafka_consume_batch_queue(queue_.get(), wait_ms, out, 1);
  if (got <= 0) return 0;
  // rd_kafka_consume_batch_queue waits for a full batch until its timeout; with no wait it takes
  // only what is already fetched.
  if (options_.batch_size > 1) {
    const ssize_t more = rd_kafka_consume_batch_queue(queue_.get(), 0, out + 1, options_.batch_size - 1);
    if (more > 0) got += more;
  }
  for (ssize_t i = 0; i < got; ++i) {
    Message m(out[i]);
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      // Consumer errors arrive as messages; librdkafka recovers from them by itself.
      Log("warn", "consumer error", {Text("error", rd_kafka_message_errstr(m.get())),
                                     Text("code", rd_kafka_err2name(m->err))});
      continue;
    }
    batch_->sources.push_back(std::move(m));
  }
  if (revocations != revocations_) DropRevoked();
  return batch_->sources.size();
}

void DataPath::DropRevoked() {
  // A revocation served by the consume calls above may have come after records of the partitions
  // it took: their new owner reads them from the committed offset, so scoring them here would only
  // write them twice.
  rd_kafka_topic_partition_list_t* raw = nullptr;
  Check(rd_kafka_assignment(consumer_.get(), &raw), "rd_kafka_assignment");
  PartitionList assigned(raw);
  std::size_t dropped = 0;
  std::vector<Message>& sources = batch_->sources;
  auto kept = std::remove_if(sources.begin(), sources.end(), [&](const Message& m) {
    const bool gone = rd_kafka_topic_partition_list_find(assigned.get(), options_.input_topic.c_str(), m->partition) == nullptr;
    dropped += gone ? 1 : 0;
    return gone;
  });
  sources.erase(kept, sources.end());
  if (dropped > 0) Log("info", "dropped records of revoked partitions", {Number("records", static_cast<long long>(dropped))});
}

void DataPath::ScoreAndSend(std::size_t n) {
  const std::size_t nf = booster_->NumFeatures();
  InFlight* batch = batch_.get();
  std::size_t valid = 0;
  for (std::size_t i = 0; i < n; ++i) {
    rd_kafka_message_t* m = batch->sources[i].get();
    verdicts_[i] = ReadRequest(static_cast<const std::uint8_t*>(m->payload), m->len, m->payload == nullptr,
                               rules_, features_);
    if (verdicts_[i].ok) std::copy(features_.begin(), features_.end(), rows_.begin() + (valid++) * nf);
  }
  if (valid > 0) Predict(valid);

  for (std::size_t i = 0; i < n; ++i) {
    const rd_kafka_message_t* m = batch->sources[i].get();
    auto at = std::find_if(batch->next_offsets.begin(), batch->next_offsets.end(),
                           [&](const auto& p) { return p.first == m->partition; });
    if (at == batch->next_offsets.end()) {
      batch->next_offsets.emplace_back(m->partition, m->offset + 1);
    } else {
      at->second = std::max<std::int64_t>(at->second, m->offset + 1);
    }
  }
  // Queued before its first output is produced: the delivery reports point into it.
  in_flight_.push_back(std::move(batch_));
  {
    std::lock_guard<std::mutex> lock(mutex_);
    counters_.in_flight += n;
  }
  if (spare_.empty()) {
    batch_ = std::make_unique<InFlight>();
  } else {
    batch_ = std::move(spare_.back());
    spare_.pop_back();
  }
  try {
    SendOutputs(batch, n);
  } catch (const std::exception& e) {
    // Some outputs may be on their way, the rest never will be: the batch is never stored.
    if (batch->failed++ == 0) batch->first_error = e.what();
    throw;
  }
  if (in_flight_.size() <= kMaxBatchesInFlight) return;
  const auto started = std::chrono::steady_clock::now();
  while (in_flight_.size() > kMaxBatchesInFlight && !stop_.load()) {
    rd_kafka_poll(producer_.get(), 10);
    rd_kafka_poll(consumer_.get(), 0);
    if (!Settle(false)) break;
  }
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - started);
  std::lock_guard<std::mutex> lock(mutex_);
  counters_.flush_ns += static_cast<std::uint64_t>(ns.count());
}

void DataPath::SendOutputs(InFlight* batch, std::size_t n) {
  // Room for a replacement per output: the delivery reports' pointers into it never move.
  batch->outputs.reserve(2 * n);
  const std::int64_t scored_at = WallClockMs();
  std::size_t row = 0;
  for (std::size_t i = 0; i < n; ++i) {
    rd_kafka_message_t* m = batch->sources[i].get();
    const auto source = static_cast<std::uint32_t>(i);
    Verdict& v = verdicts_[i];
    if (v.ok) {
      const std::size_t r = row++;
      if (row_failed_[r]) {
        v.ok = false;
        v.reason = Reason::kScoringFailed;
        v.message = "the prediction of this row failed";
      } else {
        const float score = scores_[r];
        const bool is_suspicious = static_cast<double>(score) >= options_.threshold;
        // The `float` output format: Kafka's FloatSerializer layout, big-endian IEEE-754.
        std::uint32_t bits;
        std::memcpy(&bits, &score, sizeof bits);
        const unsigned char value[4] = {static_cast<unsigned char>(bits >> 24), static_cast<unsigned char>(bits >> 16),
                                        static_cast<unsigned char>(bits >> 8), static_cast<unsigned char>(bits)};
        Headers headers(CopyHeaders(m, 1));
        text_.assign(options_.input_topic);
        text_ += '/';
        text_ += std::to_string(m->partition);
        text_ += '/';
        text_ += std::to_string(m->offset);
        text_ += ' ';
        text_ += options_.model_version;
        AddHeader(headers.get(), kProvenance, text_);
        const std::size_t size = RecordBytes(v.record_id.size(), sizeof value, headers.get());
        if (size <= options_.max_output_bytes) {
          const std::int64_t ts = rd_kafka_message_timestamp(m, nullptr);
          batch->outputs.push_back(OutputRef{batch, source, is_suspicious ? Destination::kSuspicious : Destination::kRegular,
                                             Reason::kOutputTooLarge, ts >= 0 ? ts : scored_at});
          // Keyed by recordID, as lib's scored outputs are.
          Produce(is_suspicious ? suspicious_.get() : regular_.get(), v.record_id.data(), v.record_id.size(), value,
                  sizeof value, headers.release(), batch->outputs.back());
          continue;
        }
        v.ok = false;
        v.reason = Reason::kOutputTooLarge;
        v.message = "the scored output is " + std::to_string(size) + " bytes, more than the " +
                    std::to_string(options_.max_output_bytes) + "-byte limit";
      }
    }
    Log("info", "dead letter", {Text("reason", ReasonCode(v.reason)), Text("error", v.message),
                                Number("partition", m->partition), Number("offset", m->offset)});
    SendDeadLetter(batch, source, v.reason, v.message);
  }
}

void DataPath::SendDeadLetter(InFlight* batch, std::uint32_t source, Reason reason, const std::string& message) {
  // The input's key, value and headers byte for byte, plus its position and the error.
  rd_kafka_message_t* m = batch->sources[source].get();
  Headers headers(CopyHeaders(m, 7));
  AddHeader(headers.get(), kSourceTopic, options_.input_topic);
  AddHeader(headers.get(), kSourcePartition, std::to_string(m->partition));
  AddHeader(headers.get(), kSourceOffset, std::to_string(m->offset));
  AddHeader(headers.get(), kErrorReason, ReasonCode(reason));
  AddHeader(headers.get(), kErrorMessage, message);
  const std::size_t max = options_.max_output_bytes;
  const std::size_t size = RecordBytes(m->key_len, m->len, headers.get());
  std::size_t value_len = m->len;
  if (size > max) {
    // Cut to what fits; the headers say so and how large the value was.
    AddHeader(headers.get(), kErrorOriginalSize, std::to_string(m->len));
    AddHeader(headers.get(), kErrorTruncated, "true");
    const std::size_t fixed = RecordBytes(m->key_len, 0, headers.get());
    if (fixed > max || m->payload == nullptr) {
      Skip(batch, source, reason, "the dead-letter copy is " + std::to_string(size) + " bytes, and " +
                                      std::to_string(fixed) + " even with an empty value, more than the " +
                                      std::to_string(max) + "-byte limit");
      return;
    }
    value_len = max - fixed;
  }
  const std::int64_t ts = rd_kafka_message_timestamp(m, nullptr);
  batch->outputs.push_back(OutputRef{batch, source, Destination::kDeadLetter, reason, ts >= 0 ? ts : WallClockMs()});
  Produce(dead_letter_.get(), m->key, m->key_len, m->payload, value_len, headers.release(), batch->outputs.back());
}

void DataPath::Skip(InFlight* batch, std::uint32_t source, Reason reason, const std::string& why) {
  // No output at all: logged with enough to find the record, and counted. Its offset is stored with
  // its batch's, so that it does not stop the partition.
  const rd_kafka_message_t* m = batch->sources[source].get();
  std::vector<LogField> fields{Text("topic", options_.input_topic), Number("partition", m->partition),
                               Number("offset", m->offset)};
  if (m->key != nullptr) {
    fields.push_back(Text("keyPrefix", std::string(static_cast<const char*>(m->key), std::min<std::size_t>(m->key_len, 64))));
  }
  fields.push_back(Number("keyBytes", static_cast<long long>(m->key_len)));
  fields.push_back(Number("valueBytes", static_cast<long long>(m->payload == nullptr ? 0 : m->len)));
  fields.push_back(Text("reason", ReasonCode(reason)));
  fields.push_back(Text("error", why));
  Log("error", "record skipped: no output fits", std::move(fields));
  batch->skipped[static_cast<std::size_t>(reason)]++;
}

void DataPath::ReplaceRefused(InFlight* batch) {
  std::vector<Refused> refused;
  refused.swap(batch->refused);
  for (const Refused& r : refused) {
    if (r.output->destination == Destination::kDeadLetter) {
      Skip(batch, r.output->source, r.output->reason, r.error + "; the output topics' limit may be below --max-message-bytes");
    } else {
      SendDeadLetter(batch, r.output->source, Reason::kOutputTooLarge, r.error);
    }
  }
}

void DataPath::Predict(std::size_t rows) {
  std::fill(row_failed_.begin(), row_failed_.begin() + rows, false);
  const std::uint64_t per_call = rows <= kRowByRowMaxRows ? 1 : rows;
  const auto started = std::chrono::steady_clock::now();
  std::string error;
  bool done = false;
  for (int attempt = 1; attempt <= kPredictAttempts && !done; ++attempt) {
    try {
      booster_->PredictValues(rows_.data(), rows, per_call, scores_.data());
      done = true;
    } catch (const std::exception& e) {
      error = e.what();
      Log("warn", "batch prediction failed", {Number("attempt", attempt), Number("rows", static_cast<long long>(rows)),
                                              Text("error", error)});
    }
  }
  if (!done) {
    // Only the rows that really fail become dead letters; a row is never routed without a score.
    Log("error", "batch prediction keeps failing; scoring rows one by one",
        {Number("rows", static_cast<long long>(rows)), Text("error", error)});
    const std::size_t nf = booster_->NumFeatures();
    for (std::size_t r = 0; r < rows; ++r) {
      try {
        booster_->PredictValues(rows_.data() + r * nf, 1, 1, scores_.data() + r);
      } catch (const std::exception&) {
        row_failed_[r] = true;
      }
    }
  }
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - started);
  std::lock_guard<std::mutex> lock(mutex_);
  counters_.predict_calls++;
  counters_.predict_ns += static_cast<std::uint64_t>(ns.count());
  // For the batch-size and inference histograms; bounded like the log, should nobody collect them.
  if (collected_.batches.size() < kLogCapacity) {
    collected_.batches.emplace_back(static_cast<std::uint32_t>(rows), static_cast<std::uint64_t>(ns.count()));
  }
}

void DataPath::Produce(rd_kafka_topic_t* topic, const void* key, std::size_t key_len, const void* value,
                       std::size_t value_len, rd_kafka_headers_t* headers, const OutputRef& ref) {
  Headers owned(headers);
  for (;;) {
    const rd_kafka_resp_err_t err = rd_kafka_producev(
        producer_.get(), RD_KAFKA_V_RKT(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(const_cast<void*>(key), key_len), RD_KAFKA_V_VALUE(const_cast<void*>(value), value_len),
        RD_KAFKA_V_HEADERS(owned.get()), RD_KAFKA_V_OPAQUE(const_cast<OutputRef*>(&ref)), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      owned.release();  // the producer owns the headers now
      ref.batch->pending++;
      return;
    }
    if (IsRecordError(err)) {
      // Refused before it left (larger than the producer's message.max.bytes): replaced as a refusal
      // by the broker is, once the batch's reports are in.
      Refuse(ref, err);
      return;
    }
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      throw KafkaError(std::string("producing to ") + rd_kafka_topic_name(topic) + " failed: " + rd_kafka_err2str(err));
    }
    // librdkafka's queue is full: serve its delivery reports and let it send.
    rd_kafka_poll(producer_.get(), 10);
  }
}

void DataPath::Refuse(const OutputRef& ref, rd_kafka_resp_err_t err) {
  const rd_kafka_message_t* m = ref.batch->sources[ref.source].get();
  const char* topic = ref.destination == Destination::kDeadLetter ? options_.dead_letter_topic.c_str()
                      : ref.destination == Destination::kSuspicious ? options_.suspicious_topic.c_str()
                                                                     : options_.regular_topic.c_str();
  Log("warn", "output refused", {Text("topic", topic), Number("sourcePartition", m->partition),
                                 Number("sourceOffset", m->offset), Text("error", rd_kafka_err2str(err)),
                                 Text("code", rd_kafka_err2name(err))});
  ref.batch->refused.push_back(Refused{&ref, std::string("the output was refused: ") + rd_kafka_err2str(err)});
}

void DataPath::ServeClients() {
  rd_kafka_poll(producer_.get(), 0);
  rd_kafka_poll(consumer_.get(), 0);
}

bool DataPath::Settle(bool flush) {
  if (in_flight_.empty()) {
    // Idle too: the producer's statistics and errors would otherwise pile up in its queue.
    ServeClients();
    return true;
  }
  if (flush) {
    if (!WaitForDelivery()) return false;
  } else {
    ServeClients();  // the delivery reports among them
  }
  if (!end_to_end_ms_.empty()) {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<float>& to = collected_.end_to_end_ms;
    const std::size_t room = kLatencyCapacity - std::min(kLatencyCapacity, to.size());
    to.insert(to.end(), end_to_end_ms_.begin(), end_to_end_ms_.begin() + std::min(room, end_to_end_ms_.size()));
    end_to_end_ms_.clear();
  }
  while (!in_flight_.empty()) {
    InFlight* batch = in_flight_.front().get();
    if (batch->failed > 0) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        counters_.delivery_failures += batch->failed;
      }
      // Its offsets, and those of every later batch, are not stored: read again by the next owner.
      Fail("delivery of " + std::to_string(batch->failed) + " output(s) failed: " + batch->first_error);
      return false;
    }
    // After a flush every output has been delivered or reported failed.
    if (batch->pending > 0) break;
    if (!batch->refused.empty()) {
      ReplaceRefused(batch);
      if (batch->pending > 0 || batch->failed > 0) {
        if (!flush) break;
        if (!WaitForDelivery()) return false;
      }
      continue;
    }
    StoreOffsets(*batch);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      counters_.records_in += batch->sources.size();
      counters_.in_flight -= batch->sources.size();
      counters_.suspicious += batch->suspicious;
      counters_.regular += batch->regular;
      for (std::size_t k = 0; k < kReasonCount; ++k) {
        counters_.dead_letters[k] += batch->dead[k];
        counters_.skipped[k] += batch->skipped[k];
      }
      counters_.batches++;
    }
    std::unique_ptr<InFlight> done = std::move(in_flight_.front());
    in_flight_.pop_front();
    done->Reset();
    spare_.push_back(std::move(done));
  }
  return true;
}

bool DataPath::WaitForDelivery() {
  const auto started = std::chrono::steady_clock::now();
  auto last_logged = started - std::chrono::seconds(1);
  bool delivered = true;
  // Every output delivered or failed; librdkafka gives up on one after message.timeout.ms.
  while (rd_kafka_flush(producer_.get(), 200) == RD_KAFKA_RESP_ERR__TIMED_OUT) {
    rd_kafka_poll(consumer_.get(), 0);
    const std::int64_t asked = stop_requested_ns_.load();
    if (asked == 0) continue;
    const auto waited = std::chrono::steady_clock::now().time_since_epoch() - std::chrono::steady_clock::duration(asked);
    if (std::chrono::duration_cast<std::chrono::milliseconds>(waited).count() < options_.shutdown_timeout_ms) {
      // Once a second.
      if (std::chrono::steady_clock::now() - last_logged >= std::chrono::seconds(1)) {
        last_logged = std::chrono::steady_clock::now();
        Log("warn", "stopping: waiting for outputs to be delivered", {Number("pending", rd_kafka_outq_len(producer_.get()))});
      }
      continue;
    }
    // Their offsets stay unstored: the batch is read again after a restart (at least once).
    rd_kafka_purge(producer_.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    Fail("stopping: outputs were not delivered within --shutdown-timeout-ms; they will be processed again after a restart");
    delivered = false;
    break;
  }
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - started);
  std::lock_guard<std::mutex> lock(mutex_);
  counters_.flush_ns += static_cast<std::uint64_t>(ns.count());
  return delivered;
}

void DataPath::StoreOffsets(const InFlight& batch) {
  PartitionList offsets(rd_kafka_topic_partition_list_new(static_cast<int>(batch.next_offsets.size())));
  for (const auto& [partition, next] : batch.next_offsets) {
    rd_kafka_topic_partition_list_add(offsets.get(), options_.input_topic.c_str(), partition)->offset = next;
    std::int64_t& delivered = delivered_[partition];
    delivered = std::max(delivered, next);
  }
  const rd_kafka_resp_err_t err = rd_kafka_offsets_store(consumer_.get(), offsets.get());
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    // ERR__STATE for a partition no longer assigned: the revocation settles every batch first, so
    // only a lost assignment gets here, and its records are the next owner's to score again.
    Log("warn", "storing offsets failed", {Text("error", rd_kafka_err2str(err))});
  }
}

void DataPath::CommitStored(const char* when) {
  const rd_kafka_resp_err_t err = rd_kafka_commit(consumer_.get(), nullptr, 0);
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR__NO_OFFSET) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    counters_.commit_failures++;
  }
  Log("warn", "committing offsets failed", {Text("when", when), Text("error", rd_kafka_err2str(err))});
}

void DataPath::OnRebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions,
                           void* opaque) {
  auto* self = static_cast<DataPath*>(opaque);
  const bool cooperative = std::strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
  std::string list;
  for (int i = 0; i < partitions->cnt; ++i) list += (i ? "," : "") + std::to_string(partitions->elems[i].partition);
  rd_kafka_error_t* error = nullptr;
  rd_kafka_resp_err_t result = RD_KAFKA_RESP_ERR_NO_ERROR;
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    self->ResumeAfterDelivered(partitions);
    if (cooperative) {
      error = rd_kafka_incremental_assign(rk, partitions);
    } else {
      result = rd_kafka_assign(rk, partitions);
    }
    self->Log("info", "partitions assigned", {Text("partitions", list)});
  } else {
    // Revoked (or a rebalance error): every batch handed to the producer is delivered and stored
    // first, then committed, before the next owner starts from the committed offsets.
    self->revocations_++;
    if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS && !rd_kafka_assignment_lost(rk)) {
      // No exception may cross librdkafka's C frames: a failure ends the loop after this callback.
      try {
        if (self->Settle(true)) self->CommitStored("revoke");
      } catch (const std::exception& e) {
        self->Fail(e.what());
      }
    }
    if (cooperative) {
      error = rd_kafka_incremental_unassign(rk, partitions);
    } else {
      result = rd_kafka_assign(rk, nullptr);
    }
    self->Log("info", "partitions revoked", {Text("partitions", list), Text("event", rd_kafka_err2name(err))});
  }
  if (error != nullptr) {
    self->Log("error", "rebalance failed", {Text("error", rd_kafka_error_string(error))});
    rd_kafka_error_destroy(error);
  } else if (result != RD_KAFKA_RESP_ERR_NO_ERROR) {
    self->Log("error", "rebalance failed", {Text("error", rd_kafka_err2str(result))});
  }
  rd_kafka_topic_partition_list_t* now = nullptr;
  if (rd_kafka_assignment(rk, &now) == RD_KAFKA_RESP_ERR_NO_ERROR && now != nullptr) {
    std::vector<std::int32_t> assigned;
    for (int i = 0; i < now->cnt; ++i) assigned.push_back(now->elems[i].partition);
    rd_kafka_topic_partition_list_destroy(now);
    std::sort(assigned.begin(), assigned.end());
    std::lock_guard<std::mutex> lock(self->mutex_);
    self->counters_.assigned_partitions = std::move(assigned);
  }
}

void DataPath::ResumeAfterDelivered(rd_kafka_topic_partition_list_t* partitions) {
  // Partitions this instance held before start after what it delivered, not at a committed offset
  // that fell behind: a broker that restarts may forget the group, and the commits made meanwhile
  // fail. Each starts at the larger of the committed offset and the delivered one (another instance
  // may have delivered more in between), and a delivered offset ahead of the group's is committed.
  PartitionList ours(rd_kafka_topic_partition_list_new(partitions->cnt));
  for (int i = 0; i < partitions->cnt; ++i) {
    if (delivered_.count(partitions->elems[i].partition) > 0) {
      rd_kafka_topic_partition_list_add(ours.get(), partitions->elems[i].topic, partitions->elems[i].partition);
    }
  }
  if (ours->cnt == 0) return;
  const rd_kafka_resp_err_t err = rd_kafka_committed(consumer_.get(), ours.get(), kCommittedTimeoutMs);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    Log("warn", "committed offsets not known; resuming at them", {Text("error", rd_kafka_err2str(err))});
    return;
  }
  PartitionList ahead(rd_kafka_topic_partition_list_new(ours->cnt));
  std::string moved;
  for (int i = 0; i < ours->cnt; ++i) {
    const rd_kafka_topic_partition_t& c = ours->elems[i];
    const std::int64_t delivered = delivered_[c.partition];
    if (c.err != RD_KAFKA_RESP_ERR_NO_ERROR || (c.offset >= 0 && c.offset >= delivered)) continue;
    rd_kafka_topic_partition_list_add(ahead.get(), c.topic, c.partition)->offset = delivered;
    rd_kafka_topic_partition_list_find(partitions, c.topic, c.partition)->offset = delivered;
    moved += (moved.empty() ? "" : ",") + std::to_string(c.partition) + "@" + std::to_string(delivered) + "(committed " +
             std::to_string(c.offset) + ")";
  }
  if (ahead->cnt == 0) return;
  Log("info", "resuming after the delivered outputs, ahead of the committed offsets", {Text("partitions", moved)});
  const rd_kafka_resp_err_t committed = rd_kafka_commit(consumer_.get(), ahead.get(), 1);
  if (committed != RD_KAFKA_RESP_ERR_NO_ERROR) {
    Log("warn", "committing offsets failed", {Text("when", "resume"), Text("error", rd_kafka_err2str(committed))});
  }
}

void DataPath::OnDelivery(rd_kafka_t*, const rd_kafka_message_t* message, void* opaque) {
  // Served on the loop's thread, by the poll and flush calls it makes.
  auto* self = static_cast<DataPath*>(opaque);
  const auto* ref = static_cast<const OutputRef*>(message->_private);
  if (ref == nullptr) return;
  InFlight* batch = ref->batch;
  if (batch->pending > 0) batch->pending--;
  if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    switch (ref->destination) {
      case Destination::kSuspicious: batch->suspicious++; break;
      case Destination::kRegular: batch->regular++; break;
      case Destination::kDeadLetter: batch->dead[static_cast<std::size_t>(ref->reason)]++; break;
    }
    self->end_to_end_ms_.push_back(static_cast<float>(std::max<std::int64_t>(0, WallClockMs() - ref->event_ms)));
    return;
  }
  if (IsRecordError(message->err)) {
    self->Refuse(*ref, message->err);
    return;
  }
  if (batch->failed++ == 0) {
    batch->first_error = std::string(rd_kafka_err2name(message->err)) + " (" + rd_kafka_topic_name(message->rkt) +
                         "): " + rd_kafka_err2str(message->err);
  }
}

void DataPath::OnCommit(rd_kafka_t*, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t*, void* opaque) {
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR__NO_OFFSET) return;
  auto* self = static_cast<DataPath*>(opaque);
  {
    std::lock_guard<std::mutex> lock(self->mutex_);
    self->counters_.commit_failures++;
  }
  self->Log("warn", "offset commit failed", {Text("error", rd_kafka_err2str(err))});
}

void DataPath::OnError(rd_kafka_t* rk, int err, const char* reason, void* opaque) {
  auto* self = static_cast<DataPath*>(opaque);
  const auto code = static_cast<rd_kafka_resp_err_t>(err);
  const char* client = rd_kafka_type(rk) == RD_KAFKA_PRODUCER ? "producer" : "consumer";
  ClientError event{client, err, reason, false};
  if (code == RD_KAFKA_RESP_ERR__FATAL) {
    char detail[512];
    rd_kafka_fatal_error(rk, detail, sizeof detail);
    event.reason = detail;
    event.fatal = true;
    self->Fail(std::string(client) + " fatal error: " + detail);
  }
  // Transport errors and the like: librdkafka reconnects by itself; lib's broker health folds them.
  std::lock_guard<std::mutex> lock(self->mutex_);
  if (self->collected_.errors.size() < kLogCapacity) self->collected_.errors.push_back(std::move(event));
}

int DataPath::OnStats(rd_kafka_t* rk, char* json, std::size_t json_len, void* opaque) {
  auto* self = static_cast<DataPath*>(opaque);
  std::lock_guard<std::mutex> lock(self->mutex_);
  (rd_kafka_type(rk) == RD_KAFKA_PRODUCER ? self->collected_.producer_stats : self->collected_.consumer_stats)
      .assign(json, json_len);
  return 0;  // librdkafka frees the JSON
}

}  // namespace xgbstream::datapath
