// core::Supervisor, part two: what an attempt's end decides (save, retry on which schedule, or
// exit), and the setbacks and the --once deadline in between. Part one is supervisor.cpp.
#include <chrono>
#include <string>

#include "core/supervisor.hpp"

namespace dpsd::core {

using std::chrono::milliseconds;

// ---- an attempt's end ---------------------------------------------------------------------------

SupervisorActions Supervisor::on(const Now& /*now*/, const AttemptSetback& event) {
  // Shown while the attempt waits out a throttle or a conflict itself.
  status_.last_error = event.reason;
  set_unless_provisioned(SupervisorState::Retrying);
  SupervisorActions actions;
  publish(actions);
  return actions;
}

SupervisorActions Supervisor::on(const Now& now, const AttemptEnded& event) {
  SupervisorActions actions;
  attempt_running_ = false;
  const Outcome& outcome = event.outcome;
  remember_operation(now, outcome);
  const auto took = std::chrono::duration_cast<milliseconds>(now.steady - attempt_started_);
  const std::string error_code =
      outcome.dps_error_code ? std::to_string(*outcome.dps_error_code) : "";
  switch (outcome.kind) {
    case OutcomeKind::Assigned:
      saving_operation_id_ = outcome.operation_id;
      saving_took_ = took;
      actions.emplace_back(SaveAssignment{*outcome.registration_state, event.transport});
      return actions;
    case OutcomeKind::Refused:
      status_.last_error = outcome.error;
      // A cached assignment stays in use: DPS refusing a confirmation does not make the hub
      // connection consumers already have any less valid.
      set_unless_provisioned(SupervisorState::Failed);
      actions.emplace_back(
          LogEntry{LogLevel::Error,
                   outcome.error,
                   {{"DPS_OPERATION_ID", outcome.operation_id}, {"DPS_ERROR_CODE", error_code}},
                   kMessageRefused});
      if (policy_.once) {
        actions.emplace_back(Exit{kExitRefused});
        return actions;
      }
      schedule_retry(now, refused_backoff_.next(random_()), actions);
      return actions;
    case OutcomeKind::Transient: {
      status_.last_error = outcome.error;
      set_unless_provisioned(SupervisorState::Retrying);
      // DPS's retry-after wins when it asks for longer, up to [retry] max (core::Backoff).
      const milliseconds delay = backoff_.next(random_(), outcome.retry_after);
      actions.emplace_back(
          LogEntry{LogLevel::Warning,
                   "provisioning attempt failed: " + outcome.error + "; next attempt in " +
                       seconds_text(delay),
                   {{"DPS_OPERATION_ID", outcome.operation_id}, {"DPS_ERROR_CODE", error_code}}});
      if (policy_.once && since_start(now) + delay > policy_.once_timeout) {
        actions.emplace_back(LogEntry{LogLevel::Error,
                                      "giving up: no assignment within " +
                                          std::to_string(policy_.once_timeout.count()) + " s",
                                      {}});
        actions.emplace_back(Exit{kExitUnreachable});
        return actions;
      }
      schedule_retry(now, delay, actions);
      return actions;
    }
  }
  return actions;
}

SupervisorActions Supervisor::on(const Now& now, const AssignmentSaved& event) {
  SupervisorActions actions;
  const Assignment& assignment = event.assignment;
  // Another hub than the one in use: consumers must reconnect, so it has its own MESSAGE_ID.
  const bool moved =
      status_.assignment && status_.assignment->assigned_hub != assignment.assigned_hub;
  backoff_.reset();
  refused_backoff_.reset();
  status_.state = SupervisorState::Provisioned;
  status_.assignment = assignment;
  last_transport_ = assignment.transport;
  status_.source = "dps";
  status_.last_error.clear();
  status_.provisioned_usec = wall_usec(now.wall);
  actions.emplace_back(LogEntry{
      LogLevel::Notice,
      "provisioned: hub=" + assignment.assigned_hub + " device=" + assignment.device_id + " in " +
          seconds_text(saving_took_),
      {{"DPS_OPERATION_ID", saving_operation_id_}, {"IOTHUB_HOSTNAME", assignment.assigned_hub}},
      moved ? kMessageReprovisionedToOtherHub : kMessageProvisioned});
  publish(actions);
  if (policy_.once) {
    actions.emplace_back(PrintResult{
        "provisioned: hub=" + assignment.assigned_hub + " device=" + assignment.device_id + " in " +
        seconds_text(since_start(now)) + " state=" + policy_.state_path});
    actions.emplace_back(Exit{kExitOk});
  }
  return actions;
}

SupervisorActions Supervisor::on(const Now& now, const AssignmentNotSaved& event) {
  // Consumers read the files: until they are written the assignment is not in use, and the
  // registration is retried like any transient failure.
  SupervisorActions actions;
  status_.last_error = "state: " + event.error;
  actions.emplace_back(LogEntry{
      LogLevel::Error, "provisioned, but the state could not be written: " + event.error, {}});
  if (policy_.once) {
    actions.emplace_back(Exit{kExitStateWrite});
    return actions;
  }
  schedule_retry(now, backoff_.next(random_()), actions);
  return actions;
}

SupervisorActions Supervisor::on(const Now& /*now*/, const DeadlinePassed& /*event*/) {
  // The attempt is abandoned without a state write, as on SIGTERM.
  return {LogEntry{LogLevel::Error,
                   "giving up: no assignment within " +
                       std::to_string(policy_.once_timeout.count()) + " s (--timeout)",
                   {}},
          Exit{kExitUnreachable}};
}

void Supervisor::remember_operation(const Now& now, const Outcome& outcome) {
  if (outcome.kind != OutcomeKind::Transient || outcome.operation_id.empty()) {
    pending_operation_.reset();
    return;
  }
  // The same operation keeps the time it was first issued: the resume window is its age.
  if (pending_operation_ && pending_operation_->id == outcome.operation_id) return;
  pending_operation_ = PendingOperation{outcome.operation_id, fingerprint_, now.steady};
}

}  // namespace dpsd::core
