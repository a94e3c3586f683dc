// process.exit() joins every thread of libuv's pool before the process ends. A librdkafka call that
// never returns on one of them (seen: a consumer close waiting for a rebalance callback that only the
// event loop, already gone, could have served) keeps a processor that has logged "stopped" alive for
// good, and an orchestrator then sees a hang instead of the exit status. The deadline thread ends the
// process with that status once the grace has passed; an exit that completes first takes the thread
// down with it.
#include "exit_deadline.h"

#include <unistd.h>

#include <cstdlib>
#include <thread>
#include <utility>

namespace xgbstream {

void ArmExitDeadline(int status, std::chrono::milliseconds grace, std::string line) {
  std::thread([status, grace, line = std::move(line)] {
    std::this_thread::sleep_for(grace);
    // write(2) and _Exit only: exit handlers and destructors are what is stuck.
    std::size_t written = 0;
    while (written < line.size()) {
      const ssize_t n = ::write(STDERR_FILENO, line.data() + written, line.size() - written);
      if (n <= 0) break;
      written += static_cast<std::size_t>(n);
    }
    std::_Exit(status);
  }).detach();
}

}  // namespace xgbstream
