// Shared by both addons' binding layers: C++ exceptions become JS Errors at the boundary.
#pragma once

#include <napi.h>

#include <exception>

namespace xgbstream {

// Converts any C++ exception escaping a binding into a JS Error, so nothing aborts the process.
template <typename Fn>
auto Guard(const Napi::Env& env, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

}  // namespace xgbstream
