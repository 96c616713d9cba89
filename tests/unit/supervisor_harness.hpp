#pragma once
// A fake world for core::Supervisor: a fake clock, and the daemon's part played in memory. It
// carries the supervisor's actions out the way app/daemon.cpp does (timers armed at a time on
// the fake clock, the identity, the cache and the state file answered from fields the test
// sets) and records what a person or systemd would see (logs, STATUS= publications, READY=1,
// printed lines, the exit code). advance() moves the clock and fires the timers that fall due,
// in order, as sd-event would.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "core/supervisor.hpp"

namespace dpsd::core::testing {

using std::chrono::milliseconds;
using std::chrono::seconds;
using SteadyTime = std::chrono::steady_clock::time_point;

inline constexpr const char* kFingerprint = "sha256:inputs-1";
// 2027-01-15T08:00:00Z: after any build's clock floor the tests set.
inline constexpr std::int64_t kWallStart = 1'800'000'000;

inline Assignment make_cached(std::int64_t provisioned_at_unix,
                              std::string fingerprint = kFingerprint) {
  Assignment assignment;
  assignment.assigned_hub = "hub-a.example";
  assignment.device_id = "dev-1";
  assignment.registration_id = "dev-1";
  assignment.provisioned_at_unix = provisioned_at_unix;
  assignment.fingerprint = std::move(fingerprint);
  return assignment;
}

inline Outcome transient(std::string error, std::optional<milliseconds> retry_after = {},
                         std::string operation_id = {}) {
  Outcome outcome;
  outcome.kind = OutcomeKind::Transient;
  outcome.error = std::move(error);
  outcome.retry_after = retry_after;
  outcome.operation_id = std::move(operation_id);
  return outcome;
}

inline Outcome refused(std::string error, std::int64_t code) {
  Outcome outcome;
  outcome.kind = OutcomeKind::Refused;
  outcome.error = std::move(error);
  outcome.dps_error_code = code;
  return outcome;
}

inline Outcome assigned(std::string hub = "hub-b.example", std::string device = "dev-1") {
  Outcome outcome;
  outcome.kind = OutcomeKind::Assigned;
  RegistrationState state;
  state.assigned_hub = std::move(hub);
  state.device_id = std::move(device);
  state.status = "assigned";
  outcome.registration_state = state;
  return outcome;
}

class SupervisorHarness {
 public:
  explicit SupervisorHarness(SupervisorPolicy policy, std::uint64_t seed = 42)
      : engine_(seed), supervisor_(std::move(policy), [this] { return engine_(); }) {}

  // ---- the world's answers, set by the test -----------------------------------------------------
  Expected<std::string> identity = std::string(kFingerprint);  // LoadIdentity
  std::optional<Assignment> disk;                              // LoadCache
  std::optional<std::string> save_error;                       // SaveAssignment

  // ---- what was observed ------------------------------------------------------------------------
  std::optional<SteadyTime> retry_at;
  std::optional<SteadyTime> reprovision_at;
  std::optional<SteadyTime> deadline_at;
  std::optional<std::int64_t> clock_wait_until;
  std::optional<AttemptPlan> attempt;  // the running attempt's plan
  int attempts_started = 0;
  int identity_loads = 0;
  int publications = 0;
  int readies = 0;
  std::vector<LogEntry> logs;
  std::vector<std::string> printed;
  std::vector<Assignment> env_writes;
  std::optional<int> exit_code;

  Now now{SteadyTime{} + std::chrono::hours(1), std::chrono::system_clock::from_time_t(kWallStart)};

  Supervisor& supervisor() { return supervisor_; }
  const SupervisorStatus& status() const { return supervisor_.status(); }
  std::string line() const { return supervisor_.status_line(); }

  void feed(const SupervisorEvent& event) { run(supervisor_.handle(now, event)); }
  void boot(std::optional<Assignment> cached = std::nullopt) {
    feed(Booted{identity, std::move(cached)});
  }
  // The running attempt ends with `outcome` after `took`.
  void end_attempt(Outcome outcome, milliseconds took = milliseconds(500),
                   Transport transport = Transport::Mqtt) {
    ASSERT_TRUE(attempt.has_value()) << "no attempt is running";
    advance(took);
    attempt.reset();
    feed(AttemptEnded{std::move(outcome), transport});
  }
  std::uint64_t reprovision() {
    feed(ReprovisionRequested{});
    return supervisor_.reprovision_answer(now);
  }

  // Moves both clocks forward, firing every timer that falls due on the way, earliest first.
  void advance(milliseconds step) {
    const SteadyTime end = now.steady + step;
    for (;;) {
      std::optional<SteadyTime> next;
      for (const auto& at : {retry_at, reprovision_at, deadline_at}) {
        if (at && *at <= end && (!next || *at < *next)) next = at;
      }
      if (!next) break;
      move_to(*next);
      if (retry_at == next) {
        retry_at.reset();
        feed(RetryDue{});
      } else if (deadline_at == next) {
        deadline_at.reset();
        feed(DeadlinePassed{});
      } else {
        reprovision_at.reset();
        feed(ReprovisionDue{});
      }
      if (exit_code) return;  // the loop has ended
    }
    move_to(end);
  }
  // The wall clock is set (NTP): the CLOCK_REALTIME wait fires once it passes the floor.
  void set_wall_clock(std::int64_t unix_seconds) {
    now.wall = std::chrono::system_clock::from_time_t(unix_seconds);
    if (clock_wait_until && unix_seconds >= *clock_wait_until) {
      clock_wait_until.reset();
      feed(ClockSet{});
    }
  }

  milliseconds retry_in() const {
    return retry_at ? std::chrono::duration_cast<milliseconds>(*retry_at - now.steady)
                    : milliseconds(-1);
  }
  bool logged(const std::string& text) const {
    return std::any_of(logs.begin(), logs.end(), [&](const LogEntry& entry) {
      return entry.message.find(text) != std::string::npos;
    });
  }
  std::uint64_t wall_usec_now() const { return wall_usec(now.wall); }

 private:
  void move_to(SteadyTime time) {
    now.wall += std::chrono::duration_cast<std::chrono::system_clock::duration>(time - now.steady);
    now.steady = time;
  }

  void run(const SupervisorActions& actions) {
    for (const auto& action : actions) {
      ASSERT_FALSE(exit_code.has_value()) << "an action after Exit";
      if (std::holds_alternative<LoadIdentity>(action)) {
        ++identity_loads;
        if (identity) {
          feed(IdentityPrepared{identity.value()});
        } else {
          feed(IdentityFailed{identity.error()});
        }
      } else if (std::holds_alternative<LoadCache>(action)) {
        feed(CacheLoaded{disk});
      } else if (const auto* env = std::get_if<WriteEnv>(&action)) {
        env_writes.push_back(env->assignment);
      } else if (const auto* start = std::get_if<StartAttempt>(&action)) {
        ASSERT_FALSE(attempt.has_value()) << "two attempts at once";
        attempt = start->plan;
        ++attempts_started;
      } else if (const auto* save = std::get_if<SaveAssignment>(&action)) {
        if (save_error) {
          feed(AssignmentNotSaved{*save_error});
        } else {
          Assignment written =
              make_cached(std::chrono::duration_cast<seconds>(now.wall.time_since_epoch()).count());
          written.assigned_hub = save->registration_state.assigned_hub;
          written.device_id = save->registration_state.device_id;
          written.transport = transport_name(save->transport);
          disk = written;
          feed(AssignmentSaved{written});
        }
      } else if (const auto* retry = std::get_if<ArmRetry>(&action)) {
        retry_at = now.steady + retry->delay;
      } else if (std::holds_alternative<CancelRetry>(action)) {
        retry_at.reset();
      } else if (const auto* requested = std::get_if<ArmReprovision>(&action)) {
        reprovision_at = now.steady + requested->delay;
      } else if (const auto* deadline = std::get_if<ArmDeadline>(&action)) {
        deadline_at = now.steady + deadline->delay;
      } else if (const auto* clock = std::get_if<WaitForClock>(&action)) {
        clock_wait_until = clock->until_unix;
      } else if (const auto* entry = std::get_if<LogEntry>(&action)) {
        logs.push_back(*entry);
      } else if (std::holds_alternative<PublishStatus>(action)) {
        ++publications;
      } else if (std::holds_alternative<AnnounceReady>(action)) {
        ++readies;
      } else if (const auto* print = std::get_if<PrintResult>(&action)) {
        printed.push_back(print->line);
      } else if (const auto* exit = std::get_if<Exit>(&action)) {
        exit_code = exit->code;
      }
    }
  }

  std::mt19937_64 engine_;
  Supervisor supervisor_;
};

// The policy the daemon builds from the default config, with a short schedule for readability.
inline SupervisorPolicy daemon_policy() {
  SupervisorPolicy policy;
  policy.retry_initial = milliseconds(2000);
  policy.retry_max = milliseconds(300000);
  policy.retry_refused = milliseconds(3600000);
  policy.clock_floor_unix = kWallStart - 86400;
  policy.state_path = "/var/lib/dpsd/state.json";
  return policy;
}

inline SupervisorPolicy once_policy(seconds timeout = seconds(120)) {
  SupervisorPolicy policy = daemon_policy();
  policy.once = true;
  policy.once_timeout = timeout;
  return policy;
}

}  // namespace dpsd::core::testing
