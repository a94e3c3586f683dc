#include "booster.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>

namespace xgbstream {

DMatrix::DMatrix(const float* data, std::uint64_t rows, std::uint64_t cols) {
  XgbCheck(XGDMatrixCreateFromMat(data, rows, cols, std::numeric_limits<float>::quiet_NaN(), &handle_),
           "XGDMatrixCreateFromMat");
}

DMatrix::~DMatrix() {
  // A destructor cannot throw, and XGDMatrixFree only fails for a null handle, which the
  // constructor never leaves behind; report rather than ignore, in case a future libxgboost differs.
  if (XGDMatrixFree(handle_) != 0) {
    std::fprintf(stderr, "xgb-stream: XGDMatrixFree failed: %s\n",
                 CleanXgbMessage(XGBGetLastError()).c_str());
  }
}

Booster::Booster() { XgbCheck(XGBoosterCreate(nullptr, 0, &handle_), "XGBoosterCreate"); }

Booster::~Booster() {
  // Runs from close() or from the GC finalizer via the last shared_ptr, never from both.
  if (XGBoosterFree(handle_) != 0) {
    std::fprintf(stderr, "xgb-stream: XGBoosterFree failed: %s\n",
                 CleanXgbMessage(XGBGetLastError()).c_str());
  }
}

std::shared_ptr<Booster> Booster::FromFile(const std::string& path, int nthread) {
  std::shared_ptr<Booster> booster(new Booster());
  // xgboost picks the format from the extension: .json is JSON, .ubj is UBJSON, and anything else
  // goes through a stream that sniffs JSON/UBJSON and otherwise reads the legacy binary format.
  XgbCheck(XGBoosterLoadModel(booster->handle_, path.c_str()), "XGBoosterLoadModel");
  booster->Prepare(nthread);
  return booster;
}

std::shared_ptr<Booster> Booster::FromBuffer(const void* data, std::size_t size, int nthread) {
  std::shared_ptr<Booster> booster(new Booster());
  // The buffer is sniffed: '{' followed by '"' is JSON, '{' followed by a letter UBJSON, and
  // anything else the legacy binary format.
  XgbCheck(XGBoosterLoadModelFromBuffer(booster->handle_, data, static_cast<bst_ulong>(size)),
           "XGBoosterLoadModelFromBuffer");
  booster->Prepare(nthread);
  return booster;
}

void Booster::Prepare(int nthread) {
  if (nthread > 0) {
    const std::string value = std::to_string(nthread);
    XgbCheck(XGBoosterSetParam(handle_, "nthread", value.c_str()), "XGBoosterSetParam(nthread)");
  }

  bst_ulong num_features = 0;
  XgbCheck(XGBoosterGetNumFeature(handle_, &num_features), "XGBoosterGetNumFeature");
  num_features_ = num_features;

  // Only tree boosters carry xgboost's thread-safe prediction guarantee. The configuration is
  // compact JSON with sorted keys, written by xgboost itself, so a plain search for the one key we
  // need is reliable; if it is ever not found we fall back to the safe choice and serialise.
  const std::string json = JsonConfig();
  const std::string key = "\"learner_train_param\":{\"booster\":\"";
  const auto at = json.find(key);
  std::string kind;
  if (at != std::string::npos) {
    const auto begin = at + key.size();
    const auto end = json.find('"', begin);
    if (end != std::string::npos) kind = json.substr(begin, end - begin);
  }
  serialise_ = !(kind == "gbtree" || kind == "dart");

  // The first prediction runs Learner::Configure(), guarded by a flag that other threads read
  // without synchronisation. Predicting one all-missing row now, before the booster is shared with
  // any worker thread, leaves it configured so that concurrent predictions never race on it.
  if (num_features_ > 0) {
    const std::vector<float> row(num_features_, std::numeric_limits<float>::quiet_NaN());
    Predict(row.data(), 1, PredictKind::kValue, [](const float*, std::uint64_t) {});
  }
}

std::vector<std::string> Booster::FeatureNames() const {
  bst_ulong length = 0;
  const char** names = nullptr;
  XgbCheck(XGBoosterGetStrFeatureInfo(handle_, "feature_name", &length, &names),
           "XGBoosterGetStrFeatureInfo(feature_name)");
  // The strings live in a per-thread buffer owned by libxgboost: copy them before the next call.
  return std::vector<std::string>(names, names + length);
}

std::string Booster::JsonConfig() const {
  bst_ulong length = 0;
  const char* config = nullptr;
  XgbCheck(XGBoosterSaveJsonConfig(handle_, &length, &config), "XGBoosterSaveJsonConfig");
  // Points into a per-thread buffer owned by libxgboost: copy it before the next call.
  return std::string(config, length);
}

std::optional<std::string> Booster::Attribute(const std::string& key) const {
  const char* value = nullptr;
  int found = 0;
  XgbCheck(XGBoosterGetAttr(handle_, key.c_str(), &value, &found), "XGBoosterGetAttr");
  if (found == 0 || value == nullptr) return std::nullopt;
  return std::string(value);
}

namespace {
// Value type, all trees, NaN as the missing value: what XGBoosterPredict with option_mask 0 gives.
constexpr const char* kInplaceConfig =
    "{\"type\":0,\"training\":false,\"iteration_begin\":0,\"iteration_end\":0,"
    "\"strict_shape\":false,\"missing\":NaN}";
}  // namespace

void Booster::PredictValues(const float* rows, std::uint64_t n_rows, std::uint64_t rows_per_call,
                            float* out) const {
  if (serialise_) {
    // Not a tree booster (gblinear): it has no in-place prediction, and its calls are serialised
    // anyway, so one DMatrix call (Predict takes the lock).
    Predict(rows, n_rows, PredictKind::kValue, [&](const float* values, std::uint64_t length) {
      if (length != n_rows) {
        throw XgbError("model returned " + std::to_string(length) + " values for " + std::to_string(n_rows) +
                       " rows");
      }
      std::copy(values, values + n_rows, out);
    });
    return;
  }
  if (rows_per_call == 0) rows_per_call = n_rows;
  for (std::uint64_t first = 0; first < n_rows; first += rows_per_call) {
    const std::uint64_t n = n_rows - first < rows_per_call ? n_rows - first : rows_per_call;
    // xgboost's __array_interface__ for a row-major float32 matrix at this address.
    char array[160];
    std::snprintf(array, sizeof array,
                  "{\"data\":[%llu,true],\"shape\":[%llu,%llu],\"typestr\":\"<f4\",\"version\":3}",
                  static_cast<unsigned long long>(reinterpret_cast<std::uintptr_t>(rows + first * num_features_)),
                  static_cast<unsigned long long>(n), static_cast<unsigned long long>(num_features_));
    const bst_ulong* shape = nullptr;
    bst_ulong dims = 0;
    const float* values = nullptr;
    XgbCheck(XGBoosterPredictFromDense(handle_, array, kInplaceConfig, nullptr, &shape, &dims, &values),
             "XGBoosterPredictFromDense");
    std::uint64_t length = 1;
    for (bst_ulong d = 0; d < dims; ++d) length *= shape[d];
    if (length != n) {
      throw XgbError("model returned " + std::to_string(length) + " values for " + std::to_string(n) + " rows");
    }
    std::copy(values, values + n, out + first);
  }
}

int Booster::OptionMask(PredictKind kind) {
  // Bits of XGBoosterPredict's option_mask: 4 = feature contributions, 8 = approximate them.
  switch (kind) {
    case PredictKind::kValue:
      return 0;
    case PredictKind::kContributionsExact:
      return 4;
    case PredictKind::kContributionsApprox:
      return 4 | 8;
  }
  return 0;
}

std::string XgboostVersion() {
  int major = 0, minor = 0, patch = 0;
  XGBoostVersion(&major, &minor, &patch);
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

}  // namespace xgbstream
