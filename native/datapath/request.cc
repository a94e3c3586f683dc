#include "request.h"

#include <cmath>
#include <cstring>

namespace xgbstream::datapath {

const char* ReasonCode(Reason reason) {
  switch (reason) {
    case Reason::kNullValue: return "null-value";
    case Reason::kUndecodable: return "undecodable";
    case Reason::kEmptyRecordId: return "empty-record-id";
    case Reason::kRecordIdTooLong: return "record-id-too-long";
    case Reason::kWrongFeatureCount: return "wrong-feature-count";
    case Reason::kNonFiniteFeature: return "non-finite-feature";
    case Reason::kMissingFeature: return "missing-feature";
    case Reason::kScoringFailed: return "scoring-failed";
    case Reason::kOutputTooLarge: return "output-too-large";
  }
  return "undecodable";
}

namespace {

constexpr std::uint32_t kRecordIdField = 1;
constexpr std::uint32_t kFeaturesField = 4;

// The wire types of proto3: groups (3, 4) are proto2's, and 6 and 7 do not exist.
constexpr unsigned kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5;

class Reader {
 public:
  Reader(const std::uint8_t* data, std::size_t length) : at_(data), end_(data + length), start_(data) {}

  bool done() const { return at_ >= end_; }
  std::size_t offset() const { return static_cast<std::size_t>(at_ - start_); }
  std::size_t left() const { return static_cast<std::size_t>(end_ - at_); }
  const std::uint8_t* here() const { return at_; }

  // A base-128 varint of at most 10 bytes; false when it runs past the end or is longer.
  bool Varint(std::uint64_t& out) {
    out = 0;
    for (int shift = 0; shift < 70; shift += 7) {
      if (at_ >= end_) return false;
      const std::uint8_t byte = *at_++;
      out |= static_cast<std::uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return true;
    }
    return false;
  }

  bool Skip(std::size_t n) {
    if (n > left()) return false;
    at_ += n;
    return true;
  }

 private:
  const std::uint8_t* at_;
  const std::uint8_t* end_;
  const std::uint8_t* start_;
};

// Well-formed UTF-8 as the WHATWG decoder (and Node's isUtf8) defines it: no overlong forms, no
// surrogates, nothing above U+10FFFF.
bool IsUtf8(const std::uint8_t* s, std::size_t n) {
  std::size_t i = 0;
  while (i < n) {
    const std::uint8_t c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t extra;
    std::uint8_t lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
      extra = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
      extra = 2;
      if (c == 0xe0) lo = 0xa0;
      if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      extra = 3;
      if (c == 0xf0) lo = 0x90;
      if (c == 0xf4) hi = 0x8f;
    } else {
      return false;
    }
    if (n - i <= extra) return false;
    if (s[i + 1] < lo || s[i + 1] > hi) return false;
    for (std::size_t k = 2; k <= extra; ++k) {
      if ((s[i + k] & 0xc0) != 0x80) return false;
    }
    i += extra + 1;
  }
  return true;
}

float LittleEndianFloat(const std::uint8_t* p) {
  std::uint32_t bits = static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
                       static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

Verdict Refuse(Reason reason, std::string message) {
  Verdict v;
  v.reason = reason;
  v.message = std::move(message);
  return v;
}

Verdict Undecodable(const std::string& detail) {
  return Refuse(Reason::kUndecodable, "undecodable PredictRequest: " + detail);
}

}  // namespace

Verdict ReadRequest(const std::uint8_t* value, std::size_t length, bool is_null, const RequestRules& rules,
                    std::vector<float>& features) {
  features.clear();
  if (is_null) return Refuse(Reason::kNullValue, "record has a null value");
  Reader in(value, length);
  std::string_view record_id;
  while (!in.done()) {
    const std::size_t at = in.offset();
    std::uint64_t tag = 0;
    if (!in.Varint(tag) || tag > 0xffffffffu) return Undecodable("truncated or invalid tag at offset " + std::to_string(at));
    const auto field = static_cast<std::uint32_t>(tag >> 3);
    const auto wire = static_cast<unsigned>(tag & 7);
    if (field == 0) return Undecodable("invalid field number 0 at offset " + std::to_string(at));
    std::uint64_t n = 0;
    switch (wire) {
      case kVarint:
        if (field == kRecordIdField || field == kFeaturesField) break;
        if (!in.Varint(n)) return Undecodable("truncated varint at offset " + std::to_string(at));
        continue;
      case kFixed64:
        if (field == kRecordIdField || field == kFeaturesField) break;
        if (!in.Skip(8)) return Undecodable("truncated fixed64 at offset " + std::to_string(at));
        continue;
      case kFixed32:
        if (field == kRecordIdField) break;
        if (in.left() < 4) return Undecodable("truncated fixed32 at offset " + std::to_string(at));
        if (field == kFeaturesField) features.push_back(LittleEndianFloat(in.here()));
        in.Skip(4);
        continue;
      case kLengthDelimited: {
        if (!in.Varint(n) || n > in.left()) {
          return Undecodable("field " + std::to_string(field) + " runs past the end, at offset " + std::to_string(at));
        }
        const std::uint8_t* bytes = in.here();
        const auto size = static_cast<std::size_t>(n);
        if (field == kRecordIdField) {
          if (!IsUtf8(bytes, size)) {
            return Undecodable("field 1 (recordID) is not valid UTF-8, at offset " + std::to_string(in.offset()));
          }
          // proto3: the last value of a singular field wins.
          record_id = std::string_view(reinterpret_cast<const char*>(bytes), size);
        } else if (field == kFeaturesField) {
          if (size % 4 != 0) {
            return Undecodable("packed field 4 (featuresVector) has " + std::to_string(size) +
                               " bytes, not a multiple of 4, at offset " + std::to_string(in.offset()));
          }
          for (std::size_t k = 0; k < size; k += 4) features.push_back(LittleEndianFloat(bytes + k));
        }
        in.Skip(size);
        continue;
      }
      default:
        return Undecodable("invalid wire type " + std::to_string(wire) + " at offset " + std::to_string(at));
    }
    // A known field with a wire type its declaration does not allow.
    return Undecodable("field " + std::to_string(field) + " has wire type " + std::to_string(wire) + ", at offset " +
                       std::to_string(at));
  }

  if (record_id.empty()) return Refuse(Reason::kEmptyRecordId, "recordID is empty");
  if (record_id.size() > rules.max_record_id_bytes) {
    return Refuse(Reason::kRecordIdTooLong, "recordID is " + std::to_string(record_id.size()) + " bytes, more than the " +
                                                std::to_string(rules.max_record_id_bytes) +
                                                " allowed (--max-record-id-bytes)");
  }
  if (features.size() != rules.num_features) {
    return Refuse(Reason::kWrongFeatureCount, "expected " + std::to_string(rules.num_features) + " features, got " +
                                                  std::to_string(features.size()));
  }
  for (std::size_t i = 0; i < features.size(); ++i) {
    const float v = features[i];
    if (std::isnan(v)) {
      // NaN is xgboost's "missing": scored as such unless the operator asked to refuse it.
      if (rules.reject_missing) {
        return Refuse(Reason::kMissingFeature, "feature " + std::to_string(i) + " is NaN (missing)");
      }
    } else if (std::isinf(v)) {
      return Refuse(Reason::kNonFiniteFeature,
                    "feature " + std::to_string(i) + " is " + (v > 0 ? "Infinity" : "-Infinity"));
    }
  }
  Verdict ok;
  ok.ok = true;
  ok.record_id = record_id;
  return ok;
}

}  // namespace xgbstream::datapath
