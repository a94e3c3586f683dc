// The JavaScript face of the native data path (build/Release/xgb_stream_datapath.node). Options are
// checked in lib/processor/native-path.ts; this layer only reads them and guards what JavaScript
// cannot see: a path already started or stopped.
#include <napi.h>

#include <exception>
#include <memory>
#include <string>
#include <utility>

#include "../napi_guard.h"
#include "data_path.h"

namespace xgbstream::datapath {
namespace {

std::string String(const Napi::Object& o, const char* key) {
  const Napi::Value v = o.Get(key);
  if (!v.IsString()) throw Napi::TypeError::New(o.Env(), std::string("options.") + key + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

double Number(const Napi::Object& o, const char* key) {
  const Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("options.") + key + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

Options ReadOptions(const Napi::Object& o) {
  Options options;
  options.brokers = String(o, "brokers");
  options.group_id = String(o, "groupId");
  options.instance_id = String(o, "instanceId");
  options.input_topic = String(o, "inputTopic");
  options.suspicious_topic = String(o, "suspiciousTopic");
  options.regular_topic = String(o, "regularTopic");
  options.dead_letter_topic = String(o, "deadLetterTopic");
  options.model_path = String(o, "modelPath");
  options.nthread = static_cast<int>(Number(o, "nthread"));
  options.threshold = Number(o, "threshold");
  options.model_version = String(o, "modelVersion");
  const double batch = Number(o, "batchSize");
  if (!(batch >= 1)) throw Napi::RangeError::New(o.Env(), "options.batchSize must be at least 1");
  options.batch_size = static_cast<std::size_t>(batch);
  options.max_output_bytes = static_cast<std::size_t>(Number(o, "maxOutputBytes"));
  options.shutdown_timeout_ms = static_cast<std::int64_t>(Number(o, "shutdownTimeoutMs"));
  options.connect_timeout_ms = static_cast<int>(Number(o, "connectTimeoutMs"));
  options.rules.reject_missing = o.Get("rejectMissing").ToBoolean().Value();
  options.rules.max_record_id_bytes = static_cast<std::size_t>(Number(o, "maxRecordIdBytes"));
  const Napi::Value props = o.Get("kafkaProperties");
  if (!props.IsArray()) throw Napi::TypeError::New(o.Env(), "options.kafkaProperties must be an array of [key, value]");
  const auto list = props.As<Napi::Array>();
  for (std::uint32_t i = 0; i < list.Length(); ++i) {
    const Napi::Value pair = list.Get(i);
    if (!pair.IsArray() || pair.As<Napi::Array>().Length() != 2) {
      throw Napi::TypeError::New(o.Env(), "options.kafkaProperties must be an array of [key, value]");
    }
    const auto kv = pair.As<Napi::Array>();
    options.kafka_properties.emplace_back(kv.Get(0u).ToString().Utf8Value(), kv.Get(1u).ToString().Utf8Value());
  }
  return options;
}

// Joins the loop's thread on the libuv pool: it ends after its batch, a commit and the consumer's close.
class JoinWorker : public Napi::AsyncWorker {
 public:
  JoinWorker(Napi::Env env, std::shared_ptr<DataPath> path)
      : Napi::AsyncWorker(env), path_(std::move(path)), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override { path_->Join(); }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  std::shared_ptr<DataPath> path_;
  Napi::Promise::Deferred deferred_;
};

class DataPathWrap : public Napi::ObjectWrap<DataPathWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "DataPath",
                       {InstanceMethod<&DataPathWrap::Start>("start"), InstanceMethod<&DataPathWrap::Stop>("stop"),
                        InstanceMethod<&DataPathWrap::State>("state"), InstanceMethod<&DataPathWrap::Stats>("stats"),
                        InstanceMethod<&DataPathWrap::Collect>("collect"),
                        InstanceMethod<&DataPathWrap::NumFeatures>("numFeatures")});
  }

  explicit DataPathWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DataPathWrap>(info) {
    if (!info[0].IsObject()) throw Napi::TypeError::New(info.Env(), "options must be an object");
    Options options = ReadOptions(info[0].As<Napi::Object>());
    path_ = Guard(info.Env(), [&] { return std::make_shared<DataPath>(std::move(options)); });
  }

 private:
  Napi::Value Start(const Napi::CallbackInfo& info) {
    if (started_) throw Napi::Error::New(info.Env(), "the data path has already been started");
    Guard(info.Env(), [&] { path_->Start(); });
    started_ = true;
    return info.Env().Undefined();
  }

  // Resolves once the loop has finished its batch, committed, closed the consumer and destroyed the clients.
  Napi::Value Stop(const Napi::CallbackInfo& info) {
    path_->RequestStop();
    auto* worker = new JoinWorker(info.Env(), path_);
    Napi::Promise promise = worker->Promise();
    worker->Queue();
    return promise;
  }

  Napi::Value State(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object out = Napi::Object::New(env);
    out.Set("running", Napi::Boolean::New(env, path_->Running()));
    const std::string failure = path_->Failure();
    if (!failure.empty()) out.Set("failure", Napi::String::New(env, failure));
    return out;
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const Counters c = path_->Snapshot();
    Napi::Object out = Napi::Object::New(env);
    out.Set("recordsIn", static_cast<double>(c.records_in));
    out.Set("suspicious", static_cast<double>(c.suspicious));
    out.Set("regular", static_cast<double>(c.regular));
    Napi::Object dead = Napi::Object::New(env);
    for (std::size_t k = 0; k < kReasonCount; ++k) {
      if (c.dead_letters[k] > 0) dead.Set(ReasonCode(static_cast<Reason>(k)), static_cast<double>(c.dead_letters[k]));
    }
    out.Set("deadLetters", dead);
    Napi::Object skipped = Napi::Object::New(env);
    for (std::size_t k = 0; k < kReasonCount; ++k) {
      if (c.skipped[k] > 0) skipped.Set(ReasonCode(static_cast<Reason>(k)), static_cast<double>(c.skipped[k]));
    }
    out.Set("skipped", skipped);
    out.Set("batches", static_cast<double>(c.batches));
    out.Set("predictCalls", static_cast<double>(c.predict_calls));
    out.Set("predictSeconds", static_cast<double>(c.predict_ns) / 1e9);
    out.Set("flushSeconds", static_cast<double>(c.flush_ns) / 1e9);
    out.Set("deliveryFailures", static_cast<double>(c.delivery_failures));
    out.Set("commitFailures", static_cast<double>(c.commit_failures));
    out.Set("inFlight", static_cast<double>(c.in_flight));
    Napi::Array assigned = Napi::Array::New(env, c.assigned_partitions.size());
    for (std::size_t i = 0; i < c.assigned_partitions.size(); ++i) {
      assigned.Set(static_cast<std::uint32_t>(i), Napi::Number::New(env, c.assigned_partitions[i]));
    }
    out.Set("assignedPartitions", assigned);
    Napi::Object lag = Napi::Object::New(env);
    for (const auto& [partition, behind] : c.lag) lag.Set(std::to_string(partition), static_cast<double>(behind));
    out.Set("lag", lag);
    return out;
  }

  // What the loop queued since the last call: log lines, client errors, per-batch samples, end-to-end
  // latencies and the clients' latest statistics.
  Napi::Value Collect(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Collected c = path_->Collect();
    Napi::Array lines = Napi::Array::New(env, c.log.size());
    for (std::size_t i = 0; i < c.log.size(); ++i) {
      Napi::Object line = Napi::Object::New(env);
      line.Set("level", c.log[i].level);
      line.Set("message", c.log[i].message);
      Napi::Object fields = Napi::Object::New(env);
      for (const LogField& f : c.log[i].fields) {
        if (f.number) {
          fields.Set(f.key, Napi::Number::New(env, std::stod(f.text)));
        } else {
          fields.Set(f.key, f.text);
        }
      }
      line.Set("fields", fields);
      lines.Set(static_cast<std::uint32_t>(i), line);
    }
    Napi::Array errors = Napi::Array::New(env, c.errors.size());
    for (std::size_t i = 0; i < c.errors.size(); ++i) {
      Napi::Object e = Napi::Object::New(env);
      e.Set("client", c.errors[i].client);
      e.Set("code", c.errors[i].code);
      e.Set("message", c.errors[i].reason);
      e.Set("fatal", c.errors[i].fatal);
      errors.Set(static_cast<std::uint32_t>(i), e);
    }
    // [rows, predictSeconds] pairs, flattened: one array for any number of batches.
    Napi::Float64Array batches = Napi::Float64Array::New(env, c.batches.size() * 2);
    for (std::size_t i = 0; i < c.batches.size(); ++i) {
      batches[2 * i] = c.batches[i].first;
      batches[2 * i + 1] = static_cast<double>(c.batches[i].second) / 1e9;
    }
    Napi::Float32Array latencies = Napi::Float32Array::New(env, c.end_to_end_ms.size());
    std::copy(c.end_to_end_ms.begin(), c.end_to_end_ms.end(), latencies.Data());
    Napi::Object out = Napi::Object::New(env);
    out.Set("lines", lines);
    out.Set("dropped", static_cast<double>(c.log_dropped));
    out.Set("errors", errors);
    out.Set("batches", batches);
    out.Set("endToEndMs", latencies);
    if (!c.producer_stats.empty()) out.Set("producerStats", c.producer_stats);
    if (!c.consumer_stats.empty()) out.Set("consumerStats", c.consumer_stats);
    return out;
  }

  Napi::Value NumFeatures(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(path_->NumFeatures()));
  }

  // Shared with a JoinWorker in flight, so that garbage collection during a stop cannot free the loop.
  std::shared_ptr<DataPath> path_;
  bool started_ = false;
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("DataPath", DataPathWrap::Define(env));
  exports.Set("librdkafkaVersion", Napi::String::New(env, rd_kafka_version_str()));
  return exports;
}

}  // namespace
}  // namespace xgbstream::datapath

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return xgbstream::datapath::Init(env, exports); }

NODE_API_MODULE(xgb_stream_datapath, InitAddon)
