// A bound on how long leaving the process may take, free of N-API; addon.cc binds it for JavaScript.
#pragma once

#include <chrono>
#include <string>

namespace xgbstream {

// From now on, the process ends with `status` at the latest `grace` later: `line` is written to
// stderr and the process leaves without running exit handlers. Each call adds its own deadline.
void ArmExitDeadline(int status, std::chrono::milliseconds grace, std::string line);

}  // namespace xgbstream
