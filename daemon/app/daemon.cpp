#include "app/daemon.hpp"

#include <signal.h>
#include <systemd/sd-daemon.h>

#include <cstdlib>
#include <iostream>
#include <random>
#include <system_error>

#include "core/errno_text.hpp"
#include "core/text_sanitize.hpp"
#include "dpsd/version.hpp"
#include "io/config_files.hpp"
#include "io/log.hpp"

namespace dpsd::app {

namespace {

core::Now clock_now() {
  return {std::chrono::steady_clock::now(), std::chrono::system_clock::now()};
}

// The earliest time a set clock can show: this build's time. DPSD_CLOCK_FLOOR (seconds since
// the epoch) raises it, so tests can exercise the wait without changing the system clock.
std::int64_t clock_floor() {
  std::int64_t floor = kBuildTimeUnix;
  if (const char* text = std::getenv("DPSD_CLOCK_FLOOR")) {
    char* end = nullptr;
    const long long value = std::strtoll(text, &end, 10);
    if (end != text && *end == '\0' && value > floor) floor = value;
  }
  return floor;
}

ProvisioningState bus_state(core::SupervisorState state) {
  switch (state) {
    case core::SupervisorState::Provisioning:
      return ProvisioningState::Provisioning;
    case core::SupervisorState::Provisioned:
      return ProvisioningState::Provisioned;
    case core::SupervisorState::Retrying:
      return ProvisioningState::Retrying;
    case core::SupervisorState::Failed:
      return ProvisioningState::Failed;
    case core::SupervisorState::Unprovisioned:
      break;
  }
  return ProvisioningState::Unprovisioned;
}

void log_entry(const core::LogEntry& entry) {
  const auto& f = entry.fields;
  // io::log takes its journal fields as a list literal; the supervisor sends at most two.
  const auto emit = [&entry](std::initializer_list<io::LogField> fields) {
    if (entry.id) {
      io::log(entry.level, *entry.id, entry.message, fields);
    } else {
      io::log(entry.level, entry.message, fields);
    }
  };
  if (f.size() >= 2) {
    emit({{f[0].first, f[0].second}, {f[1].first, f[1].second}});
  } else if (f.size() == 1) {
    emit({{f[0].first, f[0].second}});
  } else {
    emit({});
  }
}

void check(int rc, const char* what) {
  if (rc < 0) throw std::system_error(-rc, std::generic_category(), what);
}

}  // namespace

Daemon::Daemon(core::Config config, Options options)
    : config_(std::move(config)),
      options_(std::move(options)),
      store_(config_.state_dir, config_.runtime_dir),
      supervisor_(
          policy(),
          [engine = std::mt19937_64(std::random_device{}())]() mutable { return engine(); }),
      retry_timer_(loop_.get(), [this] { feed(core::RetryDue{}); }),
      reprovision_timer_(loop_.get(), [this] { feed(core::ReprovisionDue{}); }),
      once_deadline_(loop_.get(), [this] { feed(core::DeadlinePassed{}); }) {
  status_.registration_id = config_.registration_id;
  status_.id_scope = config_.id_scope;
}

// The attempt refers to the identity and the config: it goes first.
Daemon::~Daemon() {
  attempt_.reset();
}

core::SupervisorPolicy Daemon::policy() const {
  return {.retry_initial = config_.retry_initial,
          .retry_max = config_.retry_max,
          .retry_refused = config_.retry_refused,
          .reprovision_on_start = config_.reprovision_on_start,
          .stale_after = config_.stale_after,
          .once = options_.once,
          .force = options_.force,
          .once_timeout = options_.once_timeout,
          .clock_floor_unix = clock_floor(),
          .state_path = store_.state_path().string()};
}

int Daemon::run() {
  // A peer closing the TLS socket must not kill the daemon.
  (void)::signal(SIGPIPE, SIG_IGN);
  // SIGTERM and SIGINT end the loop with 0. Whatever runs is abandoned without a state write, so
  // a stop never leaves a half-written file.
  check(sd_event_set_signal_exit(loop_.get(), 1), "sd_event_set_signal_exit");
  sd_event_source* raw = nullptr;
  check(sd_event_add_signal(
            loop_.get(), &raw, SIGHUP | SD_EVENT_SIGNAL_PROCMASK,
            [](sd_event_source*, const signalfd_siginfo*, void* userdata) {
              auto* self = static_cast<Daemon*>(userdata);
              // --once reads its config once: SIGHUP has nothing to reload.
              if (!self->options_.once) self->reload();
              return 0;
            },
            this),
        "sd_event_add_signal");
  sighup_.reset(raw);
  // WATCHDOG=1 from the loop itself, at half of WatchdogSec, when systemd asks for it.
  if (!options_.once) sd_event_set_watchdog(loop_.get(), 1);

  Expected<std::string> fingerprint = prepare_identity();
  if (!options_.once && !options_.no_bus) {
    auto bus = BusService::create(loop_.get(), *this);
    if (bus) {
      bus_ = std::move(bus.value());
    } else {
      io::log_warning("D-Bus: " + bus.error() + "; running without the bus interface");
    }
  }
  std::optional<core::Assignment> cached;
  if (fingerprint) cached = load_cache();
  feed(core::Booted{std::move(fingerprint), std::move(cached)});
  if (exiting_) return exit_code_;

  const int rc = loop_.run();
  if (rc < 0) {
    io::log_error("event loop failed: " + core::errno_text(rc));
    return 70;
  }
  if (!options_.once) sd_notify(0, "STOPPING=1");
  return options_.once ? exit_code_ : core::kExitOk;
}

void Daemon::feed(const core::SupervisorEvent& event) {
  feed(clock_now(), event);
}

void Daemon::feed(const core::Now& now, const core::SupervisorEvent& event) {
  const core::SupervisorActions actions = supervisor_.handle(now, event);
  mirror_status();
  for (const auto& action : actions) execute(action);
}

void Daemon::execute(const core::SupervisorAction& action) {
  if (std::holds_alternative<core::LoadIdentity>(action)) {
    Expected<std::string> fingerprint = prepare_identity();
    if (fingerprint) return feed(core::IdentityPrepared{std::move(fingerprint.value())});
    return feed(core::IdentityFailed{fingerprint.error()});
  }
  if (std::holds_alternative<core::LoadCache>(action)) return feed(core::CacheLoaded{load_cache()});
  if (const auto* env = std::get_if<core::WriteEnv>(&action)) {
    if (auto status = store_.write_env(env->assignment); !status) io::log_warning(status.error());
  } else if (const auto* start = std::get_if<core::StartAttempt>(&action)) {
    start_attempt(start->plan);
  } else if (const auto* result = std::get_if<core::SaveAssignment>(&action)) {
    save(*result);
  } else if (const auto* retry = std::get_if<core::ArmRetry>(&action)) {
    retry_timer_.arm(retry->delay);
  } else if (std::holds_alternative<core::CancelRetry>(action)) {
    retry_timer_.cancel();
  } else if (const auto* requested = std::get_if<core::ArmReprovision>(&action)) {
    reprovision_timer_.arm(requested->delay);
  } else if (const auto* deadline = std::get_if<core::ArmDeadline>(&action)) {
    once_deadline_.arm(deadline->delay);
  } else if (const auto* clock = std::get_if<core::WaitForClock>(&action)) {
    wait_for_clock(clock->until_unix);
  } else if (const auto* entry = std::get_if<core::LogEntry>(&action)) {
    log_entry(*entry);
  } else if (std::holds_alternative<core::PublishStatus>(action)) {
    publish_status();
  } else if (std::holds_alternative<core::AnnounceReady>(action)) {
    sd_notify(0, ("READY=1\nSTATUS=" + core::sanitize_text(supervisor_.status_line())).c_str());
  } else if (const auto* print = std::get_if<core::PrintResult>(&action)) {
    std::cout << print->line << std::endl;
  } else if (const auto* exit = std::get_if<core::Exit>(&action)) {
    exiting_ = true;
    exit_code_ = exit->code;
    loop_.exit(exit->code);
  }
}

void Daemon::start_attempt(const core::AttemptPlan& plan) {
  attempt_ = std::make_unique<Attempt>(
      loop_.get(), identity_->tls.get(), config_, identity_->signer, poll_pacer_, plan,
      [this](const std::string& reason) { feed(core::AttemptSetback{reason}); },
      [this](core::Outcome outcome) { on_attempt_ended(std::move(outcome)); });
  attempt_->start();
}

void Daemon::on_attempt_ended(core::Outcome outcome) {
  const core::Transport used = attempt_->transport_used();
  attempt_.reset();  // safe: Attempt delivers outcomes from an io::Deferred
  feed(core::AttemptEnded{std::move(outcome), used});
}

void Daemon::save(const core::SaveAssignment& save) {
  core::Assignment assignment =
      assignment_record(config_, *identity_, save.registration_state, save.transport);
  if (auto status = store_.save(assignment); !status) {
    return feed(core::AssignmentNotSaved{status.error()});
  }
  feed(core::AssignmentSaved{std::move(assignment)});
}

void Daemon::wait_for_clock(std::int64_t until_unix) {
  // A CLOCK_REALTIME timer at the floor fires as soon as the clock is set past it.
  sd_event_source* raw = nullptr;
  check(
      sd_event_add_time(
          loop_.get(), &raw, CLOCK_REALTIME, static_cast<std::uint64_t>(until_unix) * 1'000'000U, 0,
          [](sd_event_source*, uint64_t, void* userdata) {
            auto* self = static_cast<Daemon*>(userdata);
            self->clock_wait_.reset();
            self->feed(core::ClockSet{});
            return 0;
          },
          this),
      "sd_event_add_time");
  clock_wait_.reset(raw);
}

void Daemon::publish_status() {
  if (bus_) bus_->status_changed();
  // STATUS= carries text from DPS (errors, hub names): one line, escaped, bounded, or systemd
  // would read "\nWATCHDOG=trigger" in an error message as a second assignment.
  sd_notify(0, ("STATUS=" + core::sanitize_text(supervisor_.status_line())).c_str());
}

Expected<std::string> Daemon::prepare_identity() {
  // The old SSL_CTX may hold the old identity's token key: free it before that identity goes.
  if (identity_) identity_->tls.reset();
  auto prepared = app::prepare_identity(config_);
  if (!prepared) {
    // The old identity stays for GetConnectionInfo; no attempt uses it before one is prepared.
    // Local (key, PIN, certificate), not a DPS refusal: its own MESSAGE_ID.
    io::log(core::LogLevel::Error, core::kMessageIdentityProblem, prepared.error());
    return prepared.failure();
  }
  identity_ = std::make_unique<PreparedIdentity>(std::move(prepared.value()));
  if (identity_->x509) status_.certificate_not_after_usec = identity_->certificate_not_after_usec;
  return identity_->fingerprint;
}

std::optional<core::Assignment> Daemon::load_cache() {
  std::string problem;
  auto cached = store_.load(&problem);
  if (!problem.empty()) io::log_warning("ignoring state file: " + problem);
  return cached;
}

void Daemon::reload() {
  io::log_notice("SIGHUP: reloading " + options_.config_path.string());
  core::ConfigResult loaded = io::load_config(options_.config_path);
  if (!loaded.config) {
    for (const auto& problem : loaded.problems) io::log_error(problem.to_string());
    io::log_error("configuration not reloaded: keeping the running one");
    return;
  }
  // The attempt refers to the old config: end it before replacing what it points at.
  attempt_.reset();
  config_ = std::move(*loaded.config);
  store_ = io::StateStore(config_.state_dir, config_.runtime_dir);
  status_.registration_id = config_.registration_id;
  status_.id_scope = config_.id_scope;
  Expected<std::string> fingerprint = prepare_identity();
  feed(core::Reloaded{policy(), std::move(fingerprint)});
}

std::uint64_t Daemon::reprovision() {
  const core::Now now = clock_now();
  feed(now, core::ReprovisionRequested{});
  return supervisor_.reprovision_answer(now);
}

std::optional<ConnectionInfo> Daemon::connection_info() const {
  if (!status_.assignment) return std::nullopt;
  ConnectionInfo info;
  info.assigned_hub = status_.assignment->assigned_hub;
  info.device_id = status_.assignment->device_id;
  info.auth_type = identity_names(config_).attestation;
  // Empty for X.509 and for keys that live in a token.
  if (identity_) info.symmetric_key = identity_->device_key.view();
  return info;
}

void Daemon::mirror_status() {
  const core::SupervisorStatus& from = supervisor_.status();
  status_ = StatusModel{.state = bus_state(from.state),
                        .assignment = from.assignment,
                        .registration_id = status_.registration_id,
                        .id_scope = status_.id_scope,
                        .source = from.source,
                        .last_error = from.last_error,
                        .attempts = from.attempts,
                        .last_attempt_usec = from.last_attempt_usec,
                        .next_attempt_usec = from.next_attempt_usec,
                        .provisioned_usec = from.provisioned_usec,
                        .certificate_not_after_usec = status_.certificate_not_after_usec};
}

}  // namespace dpsd::app
