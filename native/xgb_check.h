// Turns libxgboost's C return codes into C++ exceptions, the way xgboost's own C demo wraps every
// call in a checking macro. Nothing here knows about N-API: the exceptions are thrown on whichever
// thread made the call (the main thread or a libuv worker) and converted to JS Errors later, on the
// main thread, by the binding layer.
#pragma once

#include <xgboost/c_api.h>

#include <stdexcept>
#include <string>

namespace xgbstream {

// A failed libxgboost call. what() names the call and carries XGBGetLastError()'s text.
class XgbError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// xgboost prefixes its message with a timestamp and source location, and dmlc appends a native
// backtrace; neither helps the reader of a JS Error, so keep only the sentence in between.
inline std::string CleanXgbMessage(const char* raw) {
  std::string msg = raw != nullptr ? raw : "";
  const auto trace = msg.find("\nStack trace:");
  if (trace != std::string::npos) msg.erase(trace);
  // "[21:50:12] /build/.../c_api.cc:1105: Opening x failed" -> "Opening x failed"
  if (!msg.empty() && msg[0] == '[') {
    const auto close = msg.find("] ");
    if (close != std::string::npos) {
      const auto colon = msg.find(": ", close + 2);
      if (colon != std::string::npos) msg.erase(0, colon + 2);
    }
  }
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  return msg.empty() ? "unknown xgboost error" : msg;
}

// XGBGetLastError() is thread-local inside libxgboost, so this must run on the thread that made the
// failing call: inside AsyncWorker::Execute for async work, never deferred to OnError.
inline void XgbCheck(int rc, const char* call) {
  if (rc != 0) throw XgbError(std::string(call) + " failed: " + CleanXgbMessage(XGBGetLastError()));
}

}  // namespace xgbstream
