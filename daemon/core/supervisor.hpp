#pragma once
// The daemon's policy, as a pure state machine: what dpsd does between registrations. Events in
// (booted, an attempt ended, a timer fired, a caller asked, the config was reloaded), decisions
// out (load the identity, start an attempt with this plan, wait this long, publish the status,
// exit with this code). It owns the status the D-Bus interface shows (State, LastError, the
// cached or new assignment, the attempt times) and the line systemd's STATUS= shows, the two
// backoff schedules, the --once deadline and exit codes, the Reprovision coalescing, and which
// DPS operation the next attempt resumes. No sockets, no files, no clock, no sd-event: the
// caller passes the time with every event and carries the actions out (app/daemon.cpp), as
// app/attempt.cpp does for core::Registration. Whole sequences are unit-tested with a fake clock
// in tests/unit/test_supervisor*.cpp.
//
// Actions that need an answer (LoadIdentity, LoadCache, SaveAssignment) are always the last
// action of a decision: the caller carries them out and feeds the answer back at once
// (IdentityPrepared/IdentityFailed, CacheLoaded, AssignmentSaved/AssignmentNotSaved).
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "core/backoff.hpp"
#include "core/config.hpp"
#include "core/expected.hpp"
#include "core/log_level.hpp"
#include "core/message_ids.hpp"
#include "core/provisioner.hpp"
#include "core/state_record.hpp"
#include "core/supervisor_status.hpp"
#include "core/transport.hpp"

namespace dpsd::core {

// Exit codes of the process (documented in --help and the README).
enum ExitCode : int {
  kExitOk = 0,
  kExitRefused = 1,      // DPS refused the registration (401, 404, failed, disabled, …)
  kExitConfig = 2,       // invalid command line, configuration or key
  kExitUnreachable = 3,  // --once gave up: DPS not reached or not answering within --timeout
  kExitStateWrite = 4,   // provisioned, but the state file could not be written
};

// The shortest time between two registrations that callers start with Reprovision: 40 calls in
// 8 s made 40 registrations before this existed.
inline constexpr std::chrono::seconds kReprovisionInterval{10};
// How long an accepted operation is worth resuming; after that a fresh register is cheaper than
// asking about something the service may have forgotten.
inline constexpr std::chrono::minutes kOperationResumeWindow{15};
// The shortest attempt --once starts near its deadline, so the attempt (not the deadline) ends
// with its own reason.
inline constexpr std::chrono::milliseconds kMinOnceAttempt{1000};

struct SupervisorPolicy {
  std::chrono::milliseconds retry_initial{2000};
  std::chrono::milliseconds retry_max{300000};
  std::chrono::milliseconds retry_refused{3600000};  // after DPS said no, or the identity failed
  ReprovisionOnStart reprovision_on_start = ReprovisionOnStart::Never;
  std::chrono::milliseconds stale_after{std::chrono::hours(24 * 30)};
  bool once = false;   // --once: an exit code instead of a wait
  bool force = false;  // --once --force: register even when the cache matches
  std::chrono::seconds once_timeout{120};
  // A wall clock earlier than this (seconds since the epoch) is not set yet: a SAS token would
  // expire in the past and certificates would not be valid yet.
  std::int64_t clock_floor_unix = 0;
  std::string state_path;  // for the --once result line only
};

// The time, as the caller's clocks show it when the event happens.
struct Now {
  std::chrono::steady_clock::time_point steady;  // delays, intervals, the --once deadline
  std::chrono::system_clock::time_point wall;    // what the status shows; the cache's age
};

// What the supervisor decides for one attempt beyond the config.
struct AttemptPlan {
  std::string resume_operation_id;                  // poll this operation instead of registering
  std::chrono::milliseconds attempt_limit{600000};  // the attempt ends (transient) after this
  Transport preferred = Transport::Mqtt;            // transport = "auto": what worked last time
};

// ---- events -------------------------------------------------------------------------------------
// The identity (key, certificate, TLS context) is the caller's: these carry its fingerprint of
// the provisioning inputs, or why it could not be prepared (the caller has logged it).
struct Booted {
  Expected<std::string> fingerprint;
  std::optional<Assignment> cached;  // state.json, when the identity is ready and it parsed
};
struct Reloaded {  // SIGHUP: the new config is in place, its identity prepared (or not)
  SupervisorPolicy policy;
  Expected<std::string> fingerprint;
};
struct IdentityPrepared {  // answers LoadIdentity
  std::string fingerprint;
};
struct IdentityFailed {  // answers LoadIdentity
  std::string error;
};
struct CacheLoaded {  // answers LoadCache
  std::optional<Assignment> cached;
};
struct RetryDue {};
struct ClockSet {};
struct ReprovisionRequested {};  // a caller (D-Bus Reprovision)
struct ReprovisionDue {};        // the coalesced Reprovision's timer
struct DeadlinePassed {};        // --once --timeout
struct AttemptSetback {          // the attempt rides out a throttle or a conflict itself
  std::string reason;
};
struct AttemptEnded {
  Outcome outcome;
  Transport transport = Transport::Mqtt;  // of the last channel that came up
};
struct AssignmentSaved {  // answers SaveAssignment
  Assignment assignment;
};
struct AssignmentNotSaved {  // answers SaveAssignment
  std::string error;
};
using SupervisorEvent =
    std::variant<Booted, Reloaded, IdentityPrepared, IdentityFailed, CacheLoaded, RetryDue,
                 ClockSet, ReprovisionRequested, ReprovisionDue, DeadlinePassed, AttemptSetback,
                 AttemptEnded, AssignmentSaved, AssignmentNotSaved>;

// ---- actions ------------------------------------------------------------------------------------
struct LoadIdentity {};  // prepare key, certificate and TLS context; answer with an event
struct LoadCache {};     // read state.json; answer with CacheLoaded
struct WriteEnv {        // the cached assignment is served: rewrite iothub.env from it
  Assignment assignment;
};
struct StartAttempt {
  AttemptPlan plan;
};
struct SaveAssignment {  // write state.json and iothub.env; answer with an event
  RegistrationState registration_state;
  Transport transport = Transport::Mqtt;
};
struct ArmRetry {  // (re)arms the one retry timer: RetryDue when it fires
  std::chrono::milliseconds delay;
};
struct CancelRetry {};
struct ArmReprovision {  // ReprovisionDue when it fires
  std::chrono::milliseconds delay;
};
struct ArmDeadline {  // DeadlinePassed when it fires
  std::chrono::milliseconds delay;
};
struct WaitForClock {  // ClockSet once the wall clock reaches `until` (seconds since the epoch)
  std::int64_t until_unix;
};
struct LogEntry {
  LogLevel level;
  std::string message;
  std::vector<std::pair<std::string, std::string>> fields;  // journal fields, in order
  std::optional<MessageId> id = std::nullopt;  // the events operators search for (catalog)
};
struct PublishStatus {};  // the status changed: D-Bus PropertiesChanged and STATUS=
struct AnnounceReady {};  // READY=1 (with STATUS=)
struct PrintResult {      // --once: the line for stdout
  std::string line;
};
struct Exit {
  int code;
};
using SupervisorAction =
    std::variant<LoadIdentity, LoadCache, WriteEnv, StartAttempt, SaveAssignment, ArmRetry,
                 CancelRetry, ArmReprovision, ArmDeadline, WaitForClock, LogEntry, PublishStatus,
                 AnnounceReady, PrintResult, Exit>;
using SupervisorActions = std::vector<SupervisorAction>;

class Supervisor {
 public:
  // `random` is uniform over the whole uint64 range: the backoff's jitter.
  Supervisor(SupervisorPolicy policy, std::function<std::uint64_t()> random);

  SupervisorActions handle(const Now& now, const SupervisorEvent& event);

  const SupervisorStatus& status() const { return status_; }
  // The one-line summary systemd shows (STATUS=) and dpsctl prints.
  std::string status_line() const { return core::status_line(status_); }
  // Reprovision's answer after handling ReprovisionRequested: the CLOCK_REALTIME µs at which the
  // requested registration runs (the running one's start, the scheduled one's, or now's).
  std::uint64_t reprovision_answer(const Now& now) const;
  bool attempt_running() const { return attempt_running_; }

 private:
  SupervisorActions on(const Now& now, const Booted& event);
  SupervisorActions on(const Now& now, const Reloaded& event);
  SupervisorActions on(const Now& now, const IdentityPrepared& event);
  SupervisorActions on(const Now& now, const IdentityFailed& event);
  SupervisorActions on(const Now& now, const CacheLoaded& event);
  SupervisorActions on(const Now& now, const RetryDue& event);
  SupervisorActions on(const Now& now, const ClockSet& event);
  SupervisorActions on(const Now& now, const ReprovisionRequested& event);
  SupervisorActions on(const Now& now, const ReprovisionDue& event);
  SupervisorActions on(const Now& now, const DeadlinePassed& event);
  SupervisorActions on(const Now& now, const AttemptSetback& event);
  SupervisorActions on(const Now& now, const AttemptEnded& event);
  SupervisorActions on(const Now& now, const AssignmentSaved& event);
  SupervisorActions on(const Now& now, const AssignmentNotSaved& event);

  // One registration at a time: loads the identity first when it is not ready, waits for a
  // clock that is not set, then starts the attempt.
  SupervisorActions begin_attempt(const Now& now);
  SupervisorActions start_when_clock_is_set(const Now& now);
  SupervisorActions start_requested(const Now& now);
  AttemptPlan plan_attempt(const Now& now, SupervisorActions& actions);
  void remember_operation(const Now& now, const Outcome& outcome);
  void serve(const Assignment& cached, SupervisorActions& actions);
  bool cache_is_stale(const Now& now) const;
  // Sets the status for a retry after `delay` and arms the timer.
  void schedule_retry(const Now& now, std::chrono::milliseconds delay, SupervisorActions& actions);
  void publish(SupervisorActions& actions) const;
  void set_unless_provisioned(SupervisorState state);
  std::chrono::milliseconds since_start(const Now& now) const;

  SupervisorPolicy policy_;
  std::function<std::uint64_t()> random_;
  Backoff backoff_;
  Backoff refused_backoff_;
  SupervisorStatus status_;
  std::string fingerprint_;  // of the prepared identity's provisioning inputs
  bool identity_ready_ = false;
  bool attempt_running_ = false;
  bool waiting_for_clock_ = false;
  std::chrono::steady_clock::time_point started_;  // Booted
  std::chrono::steady_clock::time_point attempt_started_;
  std::string last_transport_;  // what worked last ("mqtt" | "mqtt-ws"), for transport = "auto"
  // The operation an unfinished attempt left running on the service (202 + operationId), for
  // the next attempt to poll instead of registering again (one registration, one bill).
  struct PendingOperation {
    std::string id;
    std::string fingerprint;  // of the inputs it was registered with
    std::chrono::steady_clock::time_point issued;
  };
  std::optional<PendingOperation> pending_operation_;
  // An assignment being saved: what its log line needs.
  std::string saving_operation_id_;
  std::chrono::milliseconds saving_took_{0};
  // Reprovision calls coalesce: one caller-started registration per kReprovisionInterval.
  std::optional<std::chrono::steady_clock::time_point> last_requested_start_;
  std::uint64_t reprovision_at_usec_ = 0;            // when the scheduled one runs; 0 when none
  std::optional<std::uint64_t> reprovision_answer_;  // set when the request joined one
};

}  // namespace dpsd::core
