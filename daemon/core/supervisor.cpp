#include "core/supervisor.hpp"

#include <algorithm>

namespace dpsd::core {

using std::chrono::milliseconds;

namespace {

std::int64_t unix_seconds(std::chrono::system_clock::time_point time) {
  return std::chrono::duration_cast<std::chrono::seconds>(time.time_since_epoch()).count();
}

std::uint64_t usec_after(const Now& now, milliseconds delay) {
  return wall_usec(now.wall) + static_cast<std::uint64_t>(delay.count()) * 1000U;
}

}  // namespace

Supervisor::Supervisor(SupervisorPolicy policy, std::function<std::uint64_t()> random)
    : policy_(std::move(policy)),
      random_(std::move(random)),
      backoff_(policy_.retry_initial, policy_.retry_max),
      refused_backoff_(policy_.retry_refused, policy_.retry_refused) {}

SupervisorActions Supervisor::handle(const Now& now, const SupervisorEvent& event) {
  return std::visit([&](const auto& e) { return on(now, e); }, event);
}

std::uint64_t Supervisor::reprovision_answer(const Now& now) const {
  if (reprovision_answer_) return *reprovision_answer_;
  return status_.last_attempt_usec != 0 ? status_.last_attempt_usec : wall_usec(now.wall);
}

// ---- boot and reload ----------------------------------------------------------------------------

SupervisorActions Supervisor::on(const Now& now, const Booted& event) {
  SupervisorActions actions;
  started_ = now.steady;
  if (!event.fingerprint) {
    identity_ready_ = false;
    status_.last_error = event.fingerprint.error();
    if (policy_.once) return {Exit{kExitConfig}};
    // A key or certificate that cannot be used needs a person: the slow schedule, and SIGHUP or
    // Reprovision to try again sooner.
    status_.state = SupervisorState::Failed;
    schedule_retry(now, refused_backoff_.next(random_()), actions);
    publish(actions);
    actions.emplace_back(AnnounceReady{});
    return actions;
  }
  identity_ready_ = true;
  fingerprint_ = event.fingerprint.value();
  if (event.cached) serve(*event.cached, actions);

  if (policy_.once) {
    // --timeout bounds the whole run, whatever DPS says about pacing.
    actions.emplace_back(ArmDeadline{policy_.once_timeout});
    if (status_.state == SupervisorState::Provisioned && !policy_.force) {
      const Assignment& cached = *status_.assignment;
      actions.emplace_back(PrintResult{"provisioned (cached): hub=" + cached.assigned_hub +
                                       " device=" + cached.device_id +
                                       " state=" + policy_.state_path});
      actions.emplace_back(Exit{kExitOk});
      return actions;
    }
    auto start = begin_attempt(now);
    actions.insert(actions.end(), start.begin(), start.end());
    return actions;
  }
  // A cached assignment is served at once; a confirmation with DPS runs behind it when asked for.
  const bool confirm =
      policy_.reprovision_on_start == ReprovisionOnStart::Always ||
      (policy_.reprovision_on_start == ReprovisionOnStart::WhenStale && cache_is_stale(now));
  if (status_.state != SupervisorState::Provisioned || confirm) {
    auto start = begin_attempt(now);
    actions.insert(actions.end(), start.begin(), start.end());
  }
  publish(actions);
  // Ready once the cache (if any) is served: consumers ordered after us can ask at once.
  actions.emplace_back(AnnounceReady{});
  return actions;
}

SupervisorActions Supervisor::on(const Now& now, const Reloaded& event) {
  SupervisorActions actions;
  // The caller ended the running attempt: it referred to the old config.
  attempt_running_ = false;
  policy_ = event.policy;
  backoff_ = Backoff(policy_.retry_initial, policy_.retry_max);
  refused_backoff_ = Backoff(policy_.retry_refused, policy_.retry_refused);
  if (!event.fingerprint) {
    identity_ready_ = false;
    status_.last_error = event.fingerprint.error();
    status_.state = SupervisorState::Failed;
    schedule_retry(now, refused_backoff_.next(random_()), actions);
    return actions;
  }
  identity_ready_ = true;
  const std::string old_fingerprint = std::exchange(fingerprint_, event.fingerprint.value());
  if (fingerprint_ == old_fingerprint && status_.state == SupervisorState::Provisioned) {
    actions.emplace_back(
        LogEntry{LogLevel::Info, "provisioning inputs unchanged; keeping the assignment", {}});
    publish(actions);
    return actions;
  }
  // New inputs: the old assignment belongs to another identity and must not be served.
  status_.assignment.reset();
  status_.source.clear();
  status_.state = SupervisorState::Unprovisioned;
  actions.emplace_back(LoadCache{});
  return actions;
}

SupervisorActions Supervisor::on(const Now& now, const CacheLoaded& event) {
  SupervisorActions actions;
  if (event.cached) serve(*event.cached, actions);
  if (status_.state != SupervisorState::Provisioned) {
    auto start = begin_attempt(now);
    actions.insert(actions.end(), start.begin(), start.end());
  }
  publish(actions);
  return actions;
}

void Supervisor::serve(const Assignment& cached, SupervisorActions& actions) {
  if (cached.fingerprint != fingerprint_) {
    actions.emplace_back(
        LogEntry{LogLevel::Notice,
                 "state file was written for other provisioning inputs (scope, registration id, "
                 "endpoint or key changed); provisioning again",
                 {}});
    return;
  }
  status_.assignment = cached;
  last_transport_ = cached.transport;
  status_.source = "cache";
  status_.state = SupervisorState::Provisioned;
  status_.provisioned_usec = static_cast<std::uint64_t>(cached.provisioned_at_unix) * 1'000'000U;
  actions.emplace_back(WriteEnv{cached});
  actions.emplace_back(LogEntry{
      LogLevel::Info,
      "serving the cached assignment: hub=" + cached.assigned_hub + " device=" + cached.device_id,
      {{"IOTHUB_HOSTNAME", cached.assigned_hub}},
      kMessageServedFromCache});
}

bool Supervisor::cache_is_stale(const Now& now) const {
  if (!status_.assignment) return true;
  const std::chrono::seconds age(unix_seconds(now.wall) - status_.assignment->provisioned_at_unix);
  return age > policy_.stale_after;
}

// ---- starting an attempt ------------------------------------------------------------------------

SupervisorActions Supervisor::begin_attempt(const Now& now) {
  if (attempt_running_ || waiting_for_clock_) return {};  // one registration at a time
  SupervisorActions actions{CancelRetry{}};
  if (!identity_ready_) {
    actions.emplace_back(LoadIdentity{});
    return actions;
  }
  auto start = start_when_clock_is_set(now);
  actions.insert(actions.end(), start.begin(), start.end());
  return actions;
}

SupervisorActions Supervisor::on(const Now& now, const IdentityPrepared& event) {
  identity_ready_ = true;
  fingerprint_ = event.fingerprint;
  return start_when_clock_is_set(now);
}

SupervisorActions Supervisor::on(const Now& now, const IdentityFailed& event) {
  SupervisorActions actions;
  identity_ready_ = false;
  status_.last_error = event.error;
  set_unless_provisioned(SupervisorState::Failed);
  if (policy_.once) return {Exit{kExitConfig}};
  schedule_retry(now, refused_backoff_.next(random_()), actions);
  return actions;
}

SupervisorActions Supervisor::start_when_clock_is_set(const Now& now) {
  SupervisorActions actions;
  const std::int64_t wall = unix_seconds(now.wall);
  if (wall < policy_.clock_floor_unix) {
    // A SAS token signed now would carry an expiry in the past and TLS would find certificates
    // not yet valid: wait for the clock (NTP, RTC) instead.
    status_.last_error = "system clock says " + utc_text(wall) + ", earlier than " +
                         utc_text(policy_.clock_floor_unix) +
                         " (dpsd's build time); waiting for the clock to be set";
    waiting_for_clock_ = true;
    actions.emplace_back(LogEntry{LogLevel::Warning, status_.last_error, {}, kMessageClockNotSet});
    actions.emplace_back(WaitForClock{policy_.clock_floor_unix});
    publish(actions);
    return actions;
  }
  ++status_.attempts;
  status_.last_attempt_usec = wall_usec(now.wall);
  status_.next_attempt_usec = 0;
  set_unless_provisioned(SupervisorState::Provisioning);
  attempt_started_ = now.steady;
  AttemptPlan plan = plan_attempt(now, actions);
  attempt_running_ = true;
  publish(actions);
  actions.emplace_back(StartAttempt{std::move(plan)});
  return actions;
}

AttemptPlan Supervisor::plan_attempt(const Now& now, SupervisorActions& actions) {
  AttemptPlan plan;
  if (pending_operation_) {
    if (pending_operation_->fingerprint != fingerprint_) {
      actions.emplace_back(LogEntry{
          LogLevel::Info,
          "the provisioning inputs changed: not resuming DPS operation " + pending_operation_->id,
          {}});
      pending_operation_.reset();
    } else if (now.steady - pending_operation_->issued > kOperationResumeWindow) {
      actions.emplace_back(LogEntry{
          LogLevel::Info,
          "DPS operation " + pending_operation_->id + " is older than 15 min: registering afresh",
          {}});
      pending_operation_.reset();
    } else {
      plan.resume_operation_id = pending_operation_->id;
    }
  }
  if (policy_.once) {
    // The attempt ends before --timeout does, so that its own reason is what gets reported.
    const milliseconds left = policy_.once_timeout - since_start(now);
    plan.attempt_limit = std::clamp(left, kMinOnceAttempt, plan.attempt_limit);
  }
  if (last_transport_ == "mqtt-ws") plan.preferred = Transport::MqttWs;
  return plan;
}

SupervisorActions Supervisor::on(const Now& now, const RetryDue& /*event*/) {
  return begin_attempt(now);
}

SupervisorActions Supervisor::on(const Now& now, const ClockSet& /*event*/) {
  waiting_for_clock_ = false;
  SupervisorActions actions{
      LogEntry{LogLevel::Notice, "system clock is set now; provisioning", {}}};
  auto start = begin_attempt(now);
  actions.insert(actions.end(), start.begin(), start.end());
  return actions;
}

// ---- Reprovision --------------------------------------------------------------------------------

SupervisorActions Supervisor::on(const Now& now, const ReprovisionRequested& /*event*/) {
  reprovision_answer_.reset();
  // One is running: its outcome is the answer.
  if (attempt_running_) {
    reprovision_answer_ = status_.last_attempt_usec;
    return {};
  }
  // Already scheduled: join it.
  if (reprovision_at_usec_ != 0) {
    reprovision_answer_ = reprovision_at_usec_;
    return {};
  }
  if (last_requested_start_ && now.steady - *last_requested_start_ < kReprovisionInterval) {
    const auto wait = std::chrono::duration_cast<milliseconds>(*last_requested_start_ +
                                                               kReprovisionInterval - now.steady);
    reprovision_at_usec_ = usec_after(now, wait);
    reprovision_answer_ = reprovision_at_usec_;
    return {LogEntry{LogLevel::Notice,
                     "re-provisioning requested; Reprovision is limited to one every " +
                         std::to_string(kReprovisionInterval.count()) + " s, so it runs in " +
                         seconds_text(wait),
                     {}},
            ArmReprovision{wait}};
  }
  return start_requested(now);
}

SupervisorActions Supervisor::on(const Now& now, const ReprovisionDue& /*event*/) {
  return start_requested(now);
}

SupervisorActions Supervisor::start_requested(const Now& now) {
  reprovision_at_usec_ = 0;
  last_requested_start_ = now.steady;
  if (attempt_running_) return {};  // something started one meanwhile: it answers this request too
  SupervisorActions actions{LogEntry{LogLevel::Notice, "re-provisioning on request", {}}};
  backoff_.reset();
  // A caller asks for a fresh registration, not for the old operation's outcome.
  pending_operation_.reset();
  auto start = begin_attempt(now);
  actions.insert(actions.end(), start.begin(), start.end());
  return actions;
}

// ---- helpers ------------------------------------------------------------------------------------

void Supervisor::schedule_retry(const Now& now, milliseconds delay, SupervisorActions& actions) {
  status_.next_attempt_usec = usec_after(now, delay);
  actions.emplace_back(ArmRetry{delay});
  publish(actions);
}

void Supervisor::publish(SupervisorActions& actions) const {
  // --once has no bus and no STATUS=: its result is the exit code and one line.
  if (!policy_.once) actions.emplace_back(PublishStatus{});
}

void Supervisor::set_unless_provisioned(SupervisorState state) {
  // A served assignment stays served while attempts run, retry or fail behind it.
  if (status_.state != SupervisorState::Provisioned) status_.state = state;
}

milliseconds Supervisor::since_start(const Now& now) const {
  return std::chrono::duration_cast<milliseconds>(now.steady - started_);
}

}  // namespace dpsd::core
