#include "core/supervisor_status.hpp"

#include <cstdio>
#include <ctime>

namespace dpsd::core {

std::string status_line(const SupervisorStatus& status) {
  switch (status.state) {
    case SupervisorState::Provisioned: {
      std::string line = "Provisioned: hub " + status.assignment->assigned_hub + ", device " +
                         status.assignment->device_id +
                         (status.source == "cache" ? " (from cache)" : "");
      if (!status.last_error.empty()) line += "; last confirmation failed: " + status.last_error;
      return line;
    }
    case SupervisorState::Provisioning:
      return "Provisioning (attempt " + std::to_string(status.attempts) + ")";
    case SupervisorState::Retrying:
      return "Retrying: " + status.last_error;
    case SupervisorState::Failed:
      return "Failed, needs attention: " + status.last_error;
    case SupervisorState::Unprovisioned:
      return status.last_error.empty() ? "Unprovisioned" : "Waiting: " + status.last_error;
  }
  return "";
}

std::string seconds_text(std::chrono::milliseconds delay) {
  char buffer[32];
  (void)std::snprintf(buffer, sizeof buffer, "%.3f s", static_cast<double>(delay.count()) / 1000.0);
  return buffer;
}

std::string utc_text(std::int64_t unix_seconds) {
  const auto t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buffer[32];
  (void)std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

std::uint64_t wall_usec(std::chrono::system_clock::time_point time) {
  const auto usec =
      std::chrono::duration_cast<std::chrono::microseconds>(time.time_since_epoch()).count();
  return usec > 0 ? static_cast<std::uint64_t>(usec) : 0;
}

}  // namespace dpsd::core
