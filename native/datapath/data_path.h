// The native data path: one thread that consumes a batch, reads and checks each PredictRequest,
// scores the batch in one prediction and produces each output; while the broker acknowledges them it
// goes on with the next batch, and stores a batch's offsets for auto-commit once every one of its
// outputs is delivered, batches in order (at least once). JavaScript starts it, stops it and reads its
// counters, statistics and log lines; it never sees a record. Free of N-API: addon.cc wraps it.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../booster.h"
#include "kafka.h"
#include "request.h"

namespace xgbstream::datapath {

// Everything the loop needs, checked by lib/ before it gets here.
struct Options {
  std::string brokers;
  std::string group_id;
  std::string instance_id;  // empty: dynamic membership
  std::string input_topic;
  std::string suspicious_topic;
  std::string regular_topic;
  std::string dead_letter_topic;
  std::string model_path;
  int nthread = 1;
  double threshold = 0.5;
  std::string model_version;
  std::size_t batch_size = 500;
  std::size_t max_output_bytes = 1000000;
  // From a stop request, the longest wait for the batch in hand to be delivered.
  std::int64_t shutdown_timeout_ms = 30000;
  // At start, the longest wait for the cluster's metadata.
  int connect_timeout_ms = 30000;
  RequestRules rules;
  // librdkafka properties of -X / --kafka-config, set on both clients after ours.
  std::vector<std::pair<std::string, std::string>> kafka_properties;
};

// Counters since the start; read from any thread.
struct Counters {
  std::uint64_t records_in = 0;
  std::uint64_t suspicious = 0;
  std::uint64_t regular = 0;
  std::array<std::uint64_t, kReasonCount> dead_letters{};
  // Records with no output at all (not even a dead-letter copy fits), by the reason of their dead letter.
  std::array<std::uint64_t, kReasonCount> skipped{};
  std::uint64_t batches = 0;
  std::uint64_t predict_calls = 0;
  std::uint64_t predict_ns = 0;
  // Time spent waiting for the broker's acknowledgements with nothing else to do (a full pipeline, a stop).
  std::uint64_t flush_ns = 0;
  std::uint64_t delivery_failures = 0;
  std::uint64_t commit_failures = 0;
  // Records handed to the producer whose offsets are not stored yet.
  std::uint64_t in_flight = 0;
  std::vector<std::int32_t> assigned_partitions;
  // Per assigned partition with a position: the high watermark minus the position, about once a second.
  std::vector<std::pair<std::int32_t, std::int64_t>> lag;
};

// One log line for lib's logger: a level, a message and named fields.
struct LogField {
  std::string key;
  std::string text;
  bool number = false;
};
struct LogEntry {
  const char* level = "info";
  std::string message;
  std::vector<LogField> fields;
};

// An error event of a client, for lib's broker health to fold or log (a fatal one also ends the loop).
struct ClientError {
  const char* client = "consumer";
  int code = 0;
  std::string reason;
  bool fatal = false;
};

// What JavaScript collects, every POLL_MS, since the last collection.
struct Collected {
  std::vector<LogEntry> log;
  std::uint64_t log_dropped = 0;
  std::vector<ClientError> errors;
  // Per scored batch: its rows and the nanoseconds of its prediction.
  std::vector<std::pair<std::uint32_t, std::uint64_t>> batches;
  // Per delivered output: milliseconds from its input's timestamp to its delivery report.
  std::vector<float> end_to_end_ms;
  // The latest statistics JSON of each client, empty when none came since the last collection.
  std::string producer_stats;
  std::string consumer_stats;
};

class DataPath {
 public:
  // Loads the model and makes the consumer and the producer; throws on a bad model or property.
  explicit DataPath(Options options);
  // Stops and joins the loop if the caller did not.
  ~DataPath();
  DataPath(const DataPath&) = delete;
  DataPath& operator=(const DataPath&) = delete;

  std::uint64_t NumFeatures() const { return booster_->NumFeatures(); }

  // Checks that the four topics exist, subscribes and starts the loop's thread; throws naming the
  // missing topics, or when the cluster does not answer within the connect timeout.
  void Start();
  // Asks the loop to stop after the batch in hand; returns at once.
  void RequestStop();
  // Waits for the loop's thread: it has committed, closed the consumer and destroyed the clients.
  void Join();
  bool Running() const { return running_.load(); }
  // Why the loop ended by itself; empty when it did not fail.
  std::string Failure() const;
  Counters Snapshot() const;
  // Everything queued since the last call (see Collected).
  Collected Collect();

 private:
  void CheckTopics();
  // Refreshes Counters::lag from librdkafka's cached watermarks, at most once a second.
  void MeasureLag();
  void Run();
  struct InFlight;
  // Where an output goes; its dead letters' reason otherwise.
  enum class Destination : std::uint8_t { kSuspicious, kRegular, kDeadLetter };
  // One output handed to the producer: the opaque of its delivery report.
  struct OutputRef {
    InFlight* batch;
    std::uint32_t source;  // index of its input in InFlight::sources
    Destination destination;
    Reason reason;         // a dead letter's
    std::int64_t event_ms; // its input's timestamp (or when it was scored, when the input has none)
  };
  // An output refused for good (too large, invalid), to be replaced once its batch's reports are in.
  struct Refused {
    const OutputRef* output;
    std::string error;
  };
  // One batch from its fetch until its offsets are stored; reused from batch to batch.
  struct InFlight {
    // The input records: a refused output's dead letter copies its input.
    std::vector<Message> sources;
    // Per input partition, the next offset to read.
    std::vector<std::pair<std::int32_t, std::int64_t>> next_offsets;
    // Reserved for two per record (an output and its replacement), so that addresses never move.
    std::vector<OutputRef> outputs;
    std::vector<Refused> refused;
    // Outputs without a delivery report yet.
    std::size_t pending = 0;
    std::size_t failed = 0;
    std::string first_error;
    // Delivered so far.
    std::uint64_t suspicious = 0;
    std::uint64_t regular = 0;
    std::array<std::uint64_t, kReasonCount> dead{};
    std::array<std::uint64_t, kReasonCount> skipped{};
    void Reset();
  };

  // Waits up to wait_ms for a first record, then takes what else is already fetched, up to the
  // batch size: a batch never waits to fill (at low load it is a record or two, as the Java loop's).
  std::size_t Fetch(int wait_ms);
  // Drops the records of partitions no longer assigned from the batch in hand.
  void DropRevoked();
  // Reads, checks and scores the batch in hand, and hands its outputs to the producer.
  void ScoreAndSend(std::size_t n);
  void SendOutputs(InFlight* batch, std::size_t n);
  // The input's copy with its position and the error, cut to fit the limit; skipped when not even an
  // empty copy fits.
  void SendDeadLetter(InFlight* batch, std::uint32_t source, Reason reason, const std::string& message);
  void Skip(InFlight* batch, std::uint32_t source, Reason reason, const std::string& why);
  // Dead letters for the scored outputs the broker refused; a refused dead letter is skipped.
  void ReplaceRefused(InFlight* batch);
  // An output refused for good: logged, and queued for ReplaceRefused.
  void Refuse(const OutputRef& ref, rd_kafka_resp_err_t err);
  void Predict(std::size_t rows);
  void Produce(rd_kafka_topic_t* topic, const void* key, std::size_t key_len, const void* value, std::size_t value_len,
               rd_kafka_headers_t* headers, const OutputRef& ref);
  // Stores the offsets of the batches whose outputs are all delivered, oldest first, up to the first
  // that is not; with `flush`, after waiting for every output handed over. False (and the loop
  // failed) when an output was not delivered: neither its batch nor any later one is stored.
  bool Settle(bool flush);
  // On an assignment: each partition this instance delivered before starts at the larger of its
  // committed offset and the delivered one (set in `partitions`).
  void ResumeAfterDelivered(rd_kafka_topic_partition_list_t* partitions);
  // Serves both clients' callbacks that are not the consumer's records or rebalances: delivery
  // reports, errors, statistics, commit results.
  void ServeClients();
  // rd_kafka_flush, bounded by --shutdown-timeout-ms once a stop was asked for.
  bool WaitForDelivery();
  void StoreOffsets(const InFlight& batch);
  void CommitStored(const char* when);
  void Fail(const std::string& why);
  void Log(const char* level, std::string message, std::vector<LogField> fields = {});

  static void OnRebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions,
                          void* opaque);
  static void OnDelivery(rd_kafka_t* rk, const rd_kafka_message_t* message, void* opaque);
  static void OnCommit(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* offsets, void* opaque);
  static void OnError(rd_kafka_t* rk, int err, const char* reason, void* opaque);
  static int OnStats(rd_kafka_t* rk, char* json, std::size_t json_len, void* opaque);

  const Options options_;
  std::shared_ptr<Booster> booster_;
  // The options' rules with the model's feature count.
  RequestRules rules_;
  Client producer_;
  Client consumer_;
  Queue queue_;
  Topic suspicious_;
  Topic regular_;
  Topic dead_letter_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  // steady_clock nanoseconds of the first stop request; 0 before it.
  std::atomic<std::int64_t> stop_requested_ns_{0};
  std::atomic<bool> running_{false};

  // The batch in hand, reused from batch to batch; only the loop's thread touches these.
  std::vector<rd_kafka_message_t*> fetched_;
  // The batch being read and scored; handed to in_flight_ with its outputs.
  std::unique_ptr<InFlight> batch_;
  // Batches whose offsets are stored, kept for reuse.
  std::vector<std::unique_ptr<InFlight>> spare_;
  std::vector<Verdict> verdicts_;
  std::vector<float> rows_;
  std::vector<float> scores_;
  std::vector<bool> row_failed_;
  std::vector<float> features_;
  std::string text_;
  // Batches handed to the producer whose offsets are not stored yet, oldest first. Freed only after
  // the producer, whose delivery reports point at their outputs.
  std::deque<std::unique_ptr<InFlight>> in_flight_;
  // Revocations served so far (by the loop's own consume calls).
  std::uint64_t revocations_ = 0;
  std::chrono::steady_clock::time_point lag_measured_{};
  // Per input partition, the next offset after the outputs this instance delivered, since its start.
  std::map<std::int32_t, std::int64_t> delivered_;
  // End-to-end latencies of the outputs delivered since the last Settle, moved into collected_ there.
  std::vector<float> end_to_end_ms_;

  mutable std::mutex mutex_;  // guards what follows, shared with the main thread
  Counters counters_;
  std::string failure_;
  Collected collected_;
};

}  // namespace xgbstream::datapath
