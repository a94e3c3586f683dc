// A PredictRequest read straight from a Kafka value, and the checks lib/processor/score/validate.ts
// makes of it, with the same reason codes and messages, so that a dead letter reads the same whichever
// path wrote it. Free of Kafka and N-API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace xgbstream::datapath {

// The values of a dead letter's xgb.error.reason header that this path can give.
enum class Reason : std::uint8_t {
  kNullValue,
  kUndecodable,
  kEmptyRecordId,
  kRecordIdTooLong,
  kWrongFeatureCount,
  kNonFiniteFeature,
  kMissingFeature,
  kScoringFailed,
  kOutputTooLarge,
};
constexpr std::size_t kReasonCount = 9;

// The reason's code as lib/processor/score/validate.ts spells it.
const char* ReasonCode(Reason reason);

// What a valid request must satisfy (lib's RequestRules).
struct RequestRules {
  std::size_t num_features = 0;
  bool reject_missing = false;
  std::size_t max_record_id_bytes = 4096;
};

// The outcome of reading one value: ok, or the reason and message of its dead letter. record_id
// points into the value, so it lives as long as the consumed message.
struct Verdict {
  bool ok = false;
  Reason reason = Reason::kUndecodable;
  std::string message;
  std::string_view record_id;
};

// Reads PredictRequest {string recordID = 1; repeated float featuresVector = 4;} as a strict proto3
// parser does: packed and unpacked features alike, unknown fields skipped, a wrong wire type, a
// truncated field, a packed length that is not a multiple of 4 or a recordID that is not UTF-8
// refused. On success the features are in `features` (cleared first), which the caller reuses
// from record to record so that a batch allocates nothing per record.
Verdict ReadRequest(const std::uint8_t* value, std::size_t length, bool is_null, const RequestRules& rules,
                    std::vector<float>& features);

}  // namespace xgbstream::datapath
