// RAII owners of libxgboost handles, free of N-API so that they can be used from libuv worker
// threads and from plain C++ alike. The binding layer (addon.cc) wraps Booster for JavaScript.
#pragma once

#include <xgboost/c_api.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "xgb_check.h"

namespace xgbstream {

// A dense float32 matrix view handed to xgboost for the span of one prediction call. NaN marks a
// missing value, as in xgboost's Python package.
class DMatrix {
 public:
  DMatrix(const float* data, std::uint64_t rows, std::uint64_t cols);
  ~DMatrix();
  DMatrix(const DMatrix&) = delete;
  DMatrix& operator=(const DMatrix&) = delete;

  DMatrixHandle get() const { return handle_; }

 private:
  DMatrixHandle handle_ = nullptr;
};

// What XGBoosterPredict should compute: the transformed prediction (a probability for
// binary:logistic) or per-feature contributions, exact TreeSHAP or Saabas' approximation.
enum class PredictKind { kValue, kContributionsExact, kContributionsApprox };

// Owns one BoosterHandle. Shared (std::shared_ptr) between the JS object and the async predictions
// in flight, so that close() or garbage collection during a prediction only drops a reference and
// XGBoosterFree runs exactly once, when the last user is done.
//
// Thread safety (libxgboost 3.2 to 3.4): since 1.4 every prediction entry point is documented
// thread-safe for tree boosters (gbtree, dart), and the source agrees: XGBoosterPredict writes its
// output into a per-thread, per-booster buffer (LearnerAPIThreadLocalStore), and so does in-place
// prediction (XGBoosterPredictFromDense), which upstream documents as safe and lock free on its own.
// Two things are not safe, and this class handles both: the lazy Configure() on the first prediction (a double-checked flag that is not atomic), which
// the constructor runs eagerly before the booster is shared; and gblinear, whose predictor is not
// covered by the guarantee, so its predictions are serialised with a mutex. Parameters are only set
// before the booster is shared, never during predictions, as xgboost requires.
class Booster {
 public:
  // nthread > 0 sets xgboost's "nthread" parameter; 0 keeps xgboost's default (all cores).
  static std::shared_ptr<Booster> FromFile(const std::string& path, int nthread);
  static std::shared_ptr<Booster> FromBuffer(const void* data, std::size_t size, int nthread);

  ~Booster();
  Booster(const Booster&) = delete;
  Booster& operator=(const Booster&) = delete;

  std::uint64_t NumFeatures() const { return num_features_; }
  std::vector<std::string> FeatureNames() const;
  std::optional<std::string> Attribute(const std::string& key) const;
  // The learner's configuration as xgboost writes it (XGBoosterSaveJsonConfig): objective, booster
  // and parameters, as compact JSON.
  std::string JsonConfig() const;

  // Predicts nRows rows of NumFeatures() floats (row-major) and calls sink(values, length) with
  // xgboost's output while it is still valid: XGBoosterPredict returns a pointer into a
  // per-thread buffer that the next xgboost call on this thread may overwrite. For kValue the
  // output has one value per row (binary and regression models); for contributions it has
  // NumFeatures() + 1 values per row, the bias last.
  template <typename Sink>
  void Predict(const float* rows, std::uint64_t n_rows, PredictKind kind, Sink&& sink) const {
    DMatrix matrix(rows, n_rows, num_features_);
    std::unique_lock<std::mutex> lock(predict_mutex_, std::defer_lock);
    if (serialise_) lock.lock();
    bst_ulong length = 0;
    const float* values = nullptr;
    XgbCheck(XGBoosterPredict(handle_, matrix.get(), OptionMask(kind), 0, 0, &length, &values),
             "XGBoosterPredict");
    sink(values, static_cast<std::uint64_t>(length));
  }

  // Value predictions (PredictKind::kValue) of nRows rows without a DMatrix: in-place prediction
  // (XGBoosterPredictFromDense) reads the rows where they are, in calls of rows_per_call rows (1:
  // row by row; nRows or more: one call), and writes one value per row into out. How a batch is
  // split is the caller's choice: libxgboost's cost per call makes one call for many rows cheapest,
  // but 3.4 scores a single row on a faster path than a call of a few rows (README, "Small batches").
  // Tree boosters only; the others take one DMatrix call, whatever rows_per_call says.
  void PredictValues(const float* rows, std::uint64_t n_rows, std::uint64_t rows_per_call, float* out) const;

 private:
  Booster();
  void Prepare(int nthread);
  static int OptionMask(PredictKind kind);

  BoosterHandle handle_ = nullptr;
  std::uint64_t num_features_ = 0;
  bool serialise_ = true;
  mutable std::mutex predict_mutex_;
};

// "major.minor.patch" of the libxgboost loaded at run time (not the headers built against).
std::string XgboostVersion();

}  // namespace xgbstream
