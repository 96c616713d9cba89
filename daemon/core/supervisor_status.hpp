#pragma once
// What the supervisor (core/supervisor.hpp) shows: the daemon's state as the D-Bus State
// property names it, the last error, the assignment in use and the attempt times, and the words
// built from them (systemd's STATUS= line, the delays and times in log lines). Pure.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "core/state_record.hpp"

namespace dpsd::core {

// The values of the D-Bus State property, one to one.
enum class SupervisorState { Unprovisioned, Provisioning, Provisioned, Retrying, Failed };

struct SupervisorStatus {
  SupervisorState state = SupervisorState::Unprovisioned;
  std::optional<Assignment> assignment;  // the one in use: from DPS or from the cache
  std::string source;                    // "dps" | "cache" | ""
  std::string last_error;
  std::uint32_t attempts = 0;
  std::uint64_t last_attempt_usec = 0;  // CLOCK_REALTIME µs, 0 when none
  std::uint64_t next_attempt_usec = 0;  // 0 when no retry is scheduled
  std::uint64_t provisioned_usec = 0;
  bool operator==(const SupervisorStatus&) const = default;
};

// "Provisioned: hub H, device D (from cache)", "Provisioning (attempt 3)", "Retrying: …",
// "Failed, needs attention: …", "Waiting: …" or "Unprovisioned".
std::string status_line(const SupervisorStatus& status);

// "1.250 s": delays in log lines.
std::string seconds_text(std::chrono::milliseconds delay);
// "2026-11-26T09:00:00Z".
std::string utc_text(std::int64_t unix_seconds);
// µs since the epoch, as the D-Bus *USec properties carry them.
std::uint64_t wall_usec(std::chrono::system_clock::time_point time);

}  // namespace dpsd::core
