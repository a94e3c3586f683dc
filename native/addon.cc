// The JavaScript face of xgbstream::Booster. Argument policy (lengths, finiteness, option values)
// lives in lib/classifier.ts; this layer only guards what JavaScript cannot see or what would be
// memory-unsafe if a caller bypassed the TypeScript API: value types, buffer bounds, closed handles.
#include <napi.h>

#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "booster.h"
#include "exit_deadline.h"
#include "napi_guard.h"

namespace xgbstream {
namespace {

Napi::Float32Array RequireFloat32Array(const Napi::Value& value, const char* what) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw Napi::TypeError::New(value.Env(), std::string(what) + " must be a Float32Array");
  }
  return value.As<Napi::Float32Array>();
}

std::uint64_t RequireRowCount(const Napi::Value& value) {
  if (!value.IsNumber()) throw Napi::TypeError::New(value.Env(), "nRows must be a number");
  const double n = value.As<Napi::Number>().DoubleValue();
  if (!(n >= 1) || n != static_cast<double>(static_cast<std::uint64_t>(n))) {
    throw Napi::RangeError::New(value.Env(), "nRows must be a positive integer");
  }
  return static_cast<std::uint64_t>(n);
}

// How many rows each libxgboost call of a value prediction takes; 0 (or undefined) means all of them.
std::uint64_t RowsPerCall(const Napi::Value& value) {
  if (value.IsUndefined()) return 0;
  if (!value.IsNumber()) throw Napi::TypeError::New(value.Env(), "rowsPerCall must be a number");
  const double n = value.As<Napi::Number>().DoubleValue();
  if (!(n >= 0) || n != static_cast<double>(static_cast<std::uint64_t>(n))) {
    throw Napi::RangeError::New(value.Env(), "rowsPerCall must be a non-negative integer");
  }
  return static_cast<std::uint64_t>(n);
}

// Never read past the end of a JS buffer, whatever the caller passed.
void RequireRows(const Napi::Env& env, const Napi::Float32Array& rows, std::uint64_t n_rows,
                 std::uint64_t n_features) {
  if (n_features == 0 || rows.ElementLength() / n_features < n_rows ||
      rows.ElementLength() != n_rows * n_features) {
    throw Napi::RangeError::New(env, "rows has " + std::to_string(rows.ElementLength()) +
                                         " values, expected " + std::to_string(n_rows) + " x " +
                                         std::to_string(n_features));
  }
}

Napi::Float32Array CopyToFloat32Array(const Napi::Env& env, const float* values, std::size_t n) {
  auto out = Napi::Float32Array::New(env, n);
  if (n > 0) std::memcpy(out.Data(), values, n * sizeof(float));
  return out;
}

// Predicts on the libuv thread pool. The Float32Array is held by a persistent reference for the
// worker's whole life so the garbage collector cannot free the memory Execute() reads, and the
// Booster by a shared_ptr so close() or finalization during the prediction cannot free the handle.
// Execute() touches no N-API value; the result is copied into a fresh Float32Array in OnOK().
class PredictWorker : public Napi::AsyncWorker {
 public:
  PredictWorker(const Napi::Env& env, std::shared_ptr<const Booster> booster,
                const Napi::Float32Array& rows, std::uint64_t n_rows, PredictKind kind,
                std::uint64_t rows_per_call)
      : Napi::AsyncWorker(env, "xgb-stream:predict"),
        deferred_(Napi::Promise::Deferred::New(env)),
        booster_(std::move(booster)),
        rows_ref_(Napi::Persistent(static_cast<Napi::Object>(rows))),
        rows_(rows.Data()),
        n_rows_(n_rows),
        kind_(kind),
        rows_per_call_(rows_per_call) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      if (kind_ == PredictKind::kValue) {
        result_.resize(n_rows_);
        booster_->PredictValues(rows_, n_rows_, rows_per_call_, result_.data());
        return;
      }
      booster_->Predict(rows_, n_rows_, kind_, [this](const float* values, std::uint64_t n) {
        result_.assign(values, values + n);
      });
    } catch (const std::exception& e) {
      // what() already carries XGBGetLastError(), read on this thread where it is valid.
      SetError(e.what());
    }
  }

  void OnOK() override {
    deferred_.Resolve(CopyToFloat32Array(Env(), result_.data(), result_.size()));
  }

  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<const Booster> booster_;
  Napi::ObjectReference rows_ref_;
  const float* rows_;
  std::uint64_t n_rows_;
  PredictKind kind_;
  std::uint64_t rows_per_call_;
  std::vector<float> result_;
};

class NativeBooster : public Napi::ObjectWrap<NativeBooster> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(
        env, "Booster",
        {
            InstanceMethod<&NativeBooster::NumFeatures>("numFeatures"),
            InstanceMethod<&NativeBooster::FeatureNames>("featureNames"),
            InstanceMethod<&NativeBooster::Attribute>("attribute"),
            InstanceMethod<&NativeBooster::JsonConfig>("jsonConfig"),
            InstanceMethod<&NativeBooster::PredictOne>("predictOne"),
            InstanceMethod<&NativeBooster::Predict>("predict"),
            InstanceMethod<&NativeBooster::PredictAsync>("predictAsync"),
            InstanceMethod<&NativeBooster::Contributions>("contributions"),
            InstanceMethod<&NativeBooster::ContributionsAsync>("contributionsAsync"),
            InstanceMethod<&NativeBooster::Close>("close"),
        });
  }

  // new Booster(source: string | Uint8Array, nthread: number): a model file path or its bytes.
  explicit NativeBooster(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeBooster>(info) {
    const Napi::Env env = info.Env();
    if (!info[1].IsNumber()) throw Napi::TypeError::New(env, "nthread must be a number");
    const int nthread = info[1].As<Napi::Number>().Int32Value();
    if (info[0].IsString()) {
      const std::string path = info[0].As<Napi::String>().Utf8Value();
      booster_ = Guard(env, [&] { return Booster::FromFile(path, nthread); });
    } else if (info[0].IsTypedArray() &&
               info[0].As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array) {
      const auto bytes = info[0].As<Napi::Uint8Array>();
      booster_ = Guard(env, [&] { return Booster::FromBuffer(bytes.Data(), bytes.ByteLength(), nthread); });
    } else {
      throw Napi::TypeError::New(env, "model must be a path or a Uint8Array");
    }
  }

 private:
  const Booster& Open(const Napi::Env& env) const {
    if (!booster_) throw Napi::Error::New(env, "Booster is closed");
    return *booster_;
  }

  Napi::Value NumFeatures(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(Open(info.Env()).NumFeatures()));
  }

  Napi::Value FeatureNames(const Napi::CallbackInfo& info) {
    const Napi::Env env = info.Env();
    const auto names = Guard(env, [&] { return Open(env).FeatureNames(); });
    auto out = Napi::Array::New(env, names.size());
    for (std::size_t i = 0; i < names.size(); ++i) out.Set(static_cast<uint32_t>(i), names[i]);
    return out;
  }

  Napi::Value Attribute(const Napi::CallbackInfo& info) {
    const Napi::Env env = info.Env();
    if (!info[0].IsString()) throw Napi::TypeError::New(env, "attribute key must be a string");
    const std::string key = info[0].As<Napi::String>().Utf8Value();
    const auto value = Guard(env, [&] { return Open(env).Attribute(key); });
    if (!value) return env.Undefined();
    return Napi::String::New(env, *value);
  }

  Napi::Value JsonConfig(const Napi::CallbackInfo& info) {
    const Napi::Env env = info.Env();
    return Napi::String::New(env, Guard(env, [&] { return Open(env).JsonConfig(); }));
  }

  // predictOne(row: Float32Array): number. The single-record path of a stream processor: no result
  // array is allocated.
  Napi::Value PredictOne(const Napi::CallbackInfo& info) {
    const Napi::Env env = info.Env();
    const Booster& booster = Open(env);
    const auto row = RequireFloat32Array(info[0], "row");
    RequireRows(env, row, 1, booster.NumFeatures());
    float score = 0;
    Guard(env, [&] { booster.PredictValues(row.Data(), 1, 1, &score); });
    return Napi::Number::New(env, score);
  }

  // predict(rows: Float32Array, nRows: number, rowsPerCall: number): Float32Array, one value per row,
  // from in-place predictions of rowsPerCall rows each (0: one call).
  Napi::Value Predict(const Napi::CallbackInfo& info) {
    const Napi::Env env = info.Env();
    const Booster& booster = Open(env);
    const auto rows = RequireFloat32Array(info[0], "rows");
    const std::uint64_t n_rows = RequireRowCount(info[1]);
    const std::uint64_t rows_per_call = RowsPerCall(info[2]);
    RequireRows(env, rows, n_rows, booster.NumFeatures());
    auto out = Napi::Float32Array::New(env, n_rows);
    Guard(env, [&] { booster.PredictValues(rows.Data(), n_rows, rows_per_call, out.Data()); });
    return out;
  }

  // contributions(rows, nRows, approximate: boolean): nRows x (numFeatures + 1), bias last.
  Napi::Value Contributions(const Napi::CallbackInfo& info) {
    const bool approximate = info[2].ToBoolean().Value();
    return PredictSync(info, approximate ? PredictKind::kContributionsApprox
                                         : PredictKind::kContributionsExact);
  }

  Napi::Value PredictSync(const Napi::CallbackInfo& info, PredictKind kind) {
    const Napi::Env env = info.Env();
    const Booster& booster = Open(env);
    const auto rows = RequireFloat32Array(info[0], "rows");
    const std::uint64_t n_rows = RequireRowCount(info[1]);
    RequireRows(env, rows, n_rows, booster.NumFeatures());
    Napi::Float32Array out;
    Guard(env, [&] {
      booster.Predict(rows.Data(), n_rows, kind, [&](const float* values, std::uint64_t n) {
        out = CopyToFloat32Array(env, values, n);
      });
    });
    return out;
  }

  // predictAsync(rows: Float32Array, nRows: number, rowsPerCall: number): Promise of what predict()
  // returns.
  Napi::Value PredictAsync(const Napi::CallbackInfo& info) {
    return QueuePredict(info, PredictKind::kValue, RowsPerCall(info[2]));
  }

  // contributionsAsync(rows, nRows, approximate: boolean): Promise of what contributions() returns.
  Napi::Value ContributionsAsync(const Napi::CallbackInfo& info) {
    const bool approximate = info[2].ToBoolean().Value();
    return QueuePredict(info, approximate ? PredictKind::kContributionsApprox
                                          : PredictKind::kContributionsExact, 0);
  }

  Napi::Value QueuePredict(const Napi::CallbackInfo& info, PredictKind kind, std::uint64_t rows_per_call) {
    const Napi::Env env = info.Env();
    Open(env);
    const auto rows = RequireFloat32Array(info[0], "rows");
    const std::uint64_t n_rows = RequireRowCount(info[1]);
    RequireRows(env, rows, n_rows, booster_->NumFeatures());
    auto* worker = new PredictWorker(env, booster_, rows, n_rows, kind, rows_per_call);
    const Napi::Promise promise = worker->Promise();
    worker->Queue();  // the worker deletes itself after OnOK/OnError
    return promise;
  }

  // Drops this object's reference; the handle is freed now, or when the last async prediction
  // still holding it completes. Calling close() twice is harmless.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    booster_.reset();
    return info.Env().Undefined();
  }

  std::shared_ptr<const Booster> booster_;
};

Napi::Value XgboostVersionJs(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), XgboostVersion());
}

// armExitDeadline(status, graceMs, line); the values are checked in lib/exit.ts.
Napi::Value ArmExitDeadlineJs(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsString()) {
    throw Napi::TypeError::New(env, "armExitDeadline(status: number, graceMs: number, line: string)");
  }
  const double grace_ms = info[1].As<Napi::Number>().DoubleValue();
  if (!(grace_ms >= 0)) throw Napi::RangeError::New(env, "graceMs must be a non-negative number");
  Guard(env, [&] {
    ArmExitDeadline(info[0].As<Napi::Number>().Int32Value(),
                    std::chrono::milliseconds(static_cast<std::int64_t>(grace_ms)),
                    info[2].As<Napi::String>().Utf8Value());
  });
  return env.Undefined();
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Booster", NativeBooster::Define(env));
  exports.Set("xgboostVersion", Napi::Function::New<XgboostVersionJs>(env, "xgboostVersion"));
  exports.Set("armExitDeadline", Napi::Function::New<ArmExitDeadlineJs>(env, "armExitDeadline"));
  return exports;
}

}  // namespace xgbstream

// NODE_API_MODULE pastes the function name into an identifier, so it needs an unqualified one.
static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return xgbstream::Init(env, exports); }

NODE_API_MODULE(xgb_stream_native, InitAddon)
