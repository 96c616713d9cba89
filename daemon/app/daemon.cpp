#include "app/daemon.hpp"

#include <openssl/crypto.h>
#include <signal.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iostream>
#include <string_view>

#include "core/text_sanitize.hpp"
#include "dpsd/version.hpp"
#include "io/config_files.hpp"
#include "io/identity.hpp"
#include "io/key_source.hpp"
#include "io/log.hpp"
#include "io/pkcs11_signer.hpp"
#include "io/private_dir.hpp"

namespace dpsd::app {

using std::chrono::milliseconds;

namespace {

std::uint64_t realtime_usec() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000U +
         static_cast<std::uint64_t>(ts.tv_nsec) / 1000U;
}

const char* enrollment_name(core::Enrollment enrollment) {
  return enrollment == core::Enrollment::Group ? "group" : "individual";
}

std::string seconds_text(milliseconds delay) {
  char buffer[32];
  (void)std::snprintf(buffer, sizeof buffer, "%.3f s", static_cast<double>(delay.count()) / 1000.0);
  return buffer;
}

std::string utc_text(std::int64_t unix_seconds) {
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buffer[32];
  (void)std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

// A tag that changes when the key changes but reveals nothing about it: HMAC of a fixed label
// under the device key, truncated. Lets a rotated key re-provision (fingerprint input).
std::string key_tag(const core::Signer& signer) {
  auto mac = signer("dpsd fingerprint key tag v1");
  if (!mac) return {};
  mac.value().resize(16);
  return core::base64_encode(mac.value());
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

}  // namespace

const std::string& Daemon::key_uri() const {
  return config_.method == core::AttestationMethod::X509 ? config_.identity_pk_uri
                                                         : config_.symmetric_key_uri;
}

const char* Daemon::attestation_name() const {
  return config_.method == core::AttestationMethod::X509 ? "x509" : "symmetric_key";
}

Daemon::Daemon(core::Config config, Options options)
    : config_(std::move(config)),
      options_(std::move(options)),
      store_(config_.state_dir, config_.runtime_dir),
      backoff_(config_.retry_initial, config_.retry_max),
      refused_backoff_(config_.retry_refused, config_.retry_refused),
      random_(std::random_device{}()),
      retry_timer_(loop_.get(), [this] { start_attempt(); }),
      reprovision_timer_(loop_.get(), [this] { start_requested_attempt(); }),
      once_deadline_(loop_.get(), [this] {
        io::log_error("giving up: no assignment within " +
                      std::to_string(options_.once_timeout.count()) + " s (--timeout)");
        // The attempt is abandoned without a state write, as on SIGTERM.
        finish_once(kExitUnreachable);
      }) {
  status_.registration_id = config_.registration_id;
  status_.id_scope = config_.id_scope;
}

Daemon::~Daemon() {
  // Destroy the attempt before anything it refers to; wipe the key copy.
  attempt_.reset();
  OPENSSL_cleanse(device_key_.data(), device_key_.size());
}

bool Daemon::load_symmetric_key() {
  auto key = io::load_key(config_.symmetric_key_uri);
  if (!key) {
    status_.last_error = "symmetric_key: " + key.error();
    io::log_error(status_.last_error);
    return false;
  }
  std::string device_key = key->view();
  if (config_.enrollment == core::Enrollment::Group) {
    auto derived = core::derive_device_key(key->view(), config_.registration_id);
    OPENSSL_cleanse(device_key.data(), device_key.size());
    if (!derived) {
      status_.last_error = "symmetric_key: cannot derive the device key: " + derived.error();
      io::log_error(status_.last_error);
      return false;
    }
    device_key = std::move(derived.value());
  }
  auto signer = core::make_memory_signer(device_key);
  if (!signer) {
    OPENSSL_cleanse(device_key.data(), device_key.size());
    status_.last_error = "symmetric_key: " + signer.error();
    io::log_error(status_.last_error);
    return false;
  }
  signer_ = std::move(signer.value());
  OPENSSL_cleanse(device_key_.data(), device_key_.size());
  device_key_ = std::move(device_key);

  return true;
}

bool Daemon::prepare_identity() {
  identity_ready_ = false;
  // The old SSL_CTX may hold the old identity's token key: free it before that identity goes.
  tls_.reset();
  std::string tag;
  if (config_.method == core::AttestationMethod::X509) {
    auto identity = io::load_identity(config_);
    if (!identity) {
      status_.last_error = identity.error();
      io::log_error(status_.last_error);
      return false;
    }
    // Registration ids are case-insensitive to DPS, and so is its CN check.
    if (!core::same_registration_id(identity->subject_cn(), config_.registration_id)) {
      status_.last_error = "identity_cert: the certificate's subject CN '" +
                           identity->subject_cn() + "' is not the registration id '" +
                           config_.registration_id + "'";
      io::log_error(status_.last_error);
      return false;
    }
    if (auto warning = io::expiry_warning(*identity, std::chrono::system_clock::now())) {
      io::log_warning(*warning);
    }
    // The certificate is public: its hash is the fingerprint's key tag, so a renewed
    // certificate re-provisions.
    tag = identity->certificate_sha256();
    status_.certificate_not_after_usec =
        static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                       identity->not_after().time_since_epoch())
                                       .count());
    identity_ = std::make_unique<io::Identity>(std::move(identity.value()));
    OPENSSL_cleanse(device_key_.data(), device_key_.size());
    device_key_.clear();
  } else if (core::is_pkcs11_uri(config_.symmetric_key_uri)) {
    const auto settings = io::pkcs11_settings(config_);
    if (!settings) {
      status_.last_error = "symmetric_key: a pkcs11: key needs [pkcs11] module";
      io::log_error(status_.last_error);
      return false;
    }
    auto signer = io::make_pkcs11_signer(config_.symmetric_key_uri, *settings);
    if (!signer) {
      status_.last_error = "symmetric_key: " + signer.error();
      io::log_error(status_.last_error);
      return false;
    }
    // The key never leaves the token: GetConnectionInfo cannot hand it out either.
    signer_ = std::move(signer.value());
    OPENSSL_cleanse(device_key_.data(), device_key_.size());
    device_key_.clear();
    tag = key_tag(signer_);
  } else {
    if (!load_symmetric_key()) return false;
    tag = key_tag(signer_);
  }

  core::FingerprintInputs inputs;
  inputs.id_scope = config_.id_scope;
  inputs.registration_id = config_.registration_id;
  inputs.endpoint = config_.endpoint_host + ":" + std::to_string(config_.port());
  inputs.attestation = attestation_name();
  inputs.enrollment = enrollment_name(config_.enrollment);
  inputs.key_uri = key_uri();
  inputs.key_tag = tag;
  fingerprint_ = core::compute_fingerprint(inputs);

  auto tls = io::make_client_tls_context(config_.trust_bundle);
  if (!tls) {
    status_.last_error = "tls: " + tls.error();
    io::log_error(status_.last_error);
    return false;
  }
  tls_ = std::move(tls.value());
  if (identity_) {
    if (auto status = io::use_client_identity(tls_.get(), *identity_); !status) {
      status_.last_error = "tls: " + status.error();
      io::log_error(status_.last_error);
      return false;
    }
  }

  // The relay socket lives in a directory only we can enter, created without following links.
  if (auto status = io::make_private_dir(config_.runtime_dir / "private"); !status) {
    status_.last_error = "paths.runtime_dir: " + status.error();
    io::log_error(status_.last_error);
    return false;
  }
  identity_ready_ = true;
  return true;
}

int Daemon::run() {
  started_ = std::chrono::steady_clock::now();
  // A peer closing the TLS socket must not kill the daemon.
  (void)::signal(SIGPIPE, SIG_IGN);
  sigset_t mask;
  sigemptyset(&mask);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&mask, sig);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  for (int sig : {SIGTERM, SIGINT}) {
    sd_event_source* raw = nullptr;
    // No handler: sd-event exits the loop with code 0. Whatever runs is abandoned without a
    // state write, so a stop never leaves a half-written file.
    sd_event_add_signal(loop_.get(), &raw, sig, nullptr, nullptr);
    signal_sources_.emplace_back(raw);
  }
  if (!options_.once) {
    sd_event_source* raw = nullptr;
    sd_event_add_signal(
        loop_.get(), &raw, SIGHUP,
        [](sd_event_source*, const signalfd_siginfo*, void* userdata) {
          static_cast<Daemon*>(userdata)->reload();
          return 0;
        },
        this);
    signal_sources_.emplace_back(raw);
    // WATCHDOG=1 from the loop itself, at half of WatchdogSec, when systemd asks for it.
    sd_event_set_watchdog(loop_.get(), 1);
  }

  const bool identity_ok = prepare_identity();
  if (!identity_ok && options_.once) return kExitConfig;

  if (!options_.once && !options_.no_bus) {
    auto bus = BusService::create(loop_.get(), *this);
    if (bus) {
      bus_ = std::move(bus.value());
    } else {
      io::log_warning("D-Bus: " + bus.error() + "; running without the bus interface");
    }
  }

  if (identity_ok) serve_cache();

  if (options_.once) {
    // --timeout bounds the whole run, whatever DPS says about pacing.
    once_deadline_.arm(options_.once_timeout);
    if (status_.state == ProvisioningState::Provisioned && !options_.force) {
      const auto& cached = *status_.assignment;
      std::cout << "provisioned (cached): hub=" << cached.assigned_hub
                << " device=" << cached.device_id << " state=" << store_.state_path().string()
                << std::endl;
      return kExitOk;
    }
    start_attempt();
  } else {
    const bool confirm =
        config_.reprovision_on_start == core::ReprovisionOnStart::Always ||
        (config_.reprovision_on_start == core::ReprovisionOnStart::WhenStale && cache_is_stale());
    if (!identity_ok) {
      status_.state = ProvisioningState::Failed;
      schedule_retry(refused_backoff_.next(random_()));
    } else if (status_.state != ProvisioningState::Provisioned || confirm) {
      start_attempt();
    }
    status_changed();
    // Ready once the bus name is owned and the cache (if any) is served: consumers ordered
    // after us can ask at once.
    sd_notify(0, ("READY=1\nSTATUS=" + core::sanitize_text(status_line())).c_str());
  }

  const int rc = loop_.run();
  if (rc < 0) {
    io::log_error(std::string("event loop failed: ") + std::strerror(-rc));
    return 70;
  }
  if (!options_.once) sd_notify(0, "STOPPING=1");
  return options_.once ? exit_code_ : kExitOk;
}

void Daemon::serve_cache() {
  std::string problem;
  auto cached = store_.load(&problem);
  if (!problem.empty()) io::log_warning("ignoring state file: " + problem);
  if (!cached) return;
  if (cached->fingerprint != fingerprint_) {
    io::log_notice(
        "state file was written for other provisioning inputs (scope, registration id, "
        "endpoint or key changed); provisioning again");
    return;
  }
  status_.assignment = cached;
  last_transport_ = cached->transport;
  status_.source = "cache";
  status_.state = ProvisioningState::Provisioned;
  status_.provisioned_usec = static_cast<std::uint64_t>(cached->provisioned_at_unix) * 1'000'000U;
  if (auto status = store_.write_env(*cached); !status) io::log_warning(status.error());
  io::log_info("serving the cached assignment: hub=" + cached->assigned_hub +
               " device=" + cached->device_id);
}

bool Daemon::cache_is_stale() const {
  if (!status_.assignment) return true;
  const auto age = std::chrono::seconds(static_cast<std::int64_t>(std::time(nullptr)) -
                                        status_.assignment->provisioned_at_unix);
  return age > config_.stale_after;
}

bool Daemon::clock_is_sane() {
  const std::int64_t now = static_cast<std::int64_t>(std::time(nullptr));
  const std::int64_t floor = clock_floor();
  if (now >= floor) return true;
  // A SAS token signed now would carry an expiry in the past and TLS would find certificates
  // not yet valid: wait for the clock (NTP, RTC) instead. A CLOCK_REALTIME timer at the floor
  // fires as soon as the clock is set past it.
  status_.last_error = "system clock says " + utc_text(now) + ", earlier than " + utc_text(floor) +
                       " (dpsd's build time); waiting for the clock to be set";
  if (!clock_wait_) {
    io::log_warning(status_.last_error);
    sd_event_source* raw = nullptr;
    sd_event_add_time(
        loop_.get(), &raw, CLOCK_REALTIME, static_cast<std::uint64_t>(floor) * 1'000'000U, 0,
        [](sd_event_source*, uint64_t, void* userdata) {
          auto* self = static_cast<Daemon*>(userdata);
          self->clock_wait_.reset();
          io::log_notice("system clock is set now; provisioning");
          self->start_attempt();
          return 0;
        },
        this);
    clock_wait_.reset(raw);
  }
  status_changed();
  return false;
}

void Daemon::start_attempt() {
  if (attempt_ || clock_wait_) return;  // one registration at a time
  retry_timer_.cancel();
  if (!identity_ready_ && !prepare_identity()) {
    if (status_.state != ProvisioningState::Provisioned) status_.state = ProvisioningState::Failed;
    if (options_.once) return finish_once(kExitConfig);
    schedule_retry(refused_backoff_.next(random_()));
    return;
  }
  if (!clock_is_sane()) return;
  ++status_.attempts;
  status_.last_attempt_usec = realtime_usec();
  status_.next_attempt_usec = 0;
  if (status_.state != ProvisioningState::Provisioned) {
    status_.state = ProvisioningState::Provisioning;
  }
  attempt_started_ = std::chrono::steady_clock::now();
  attempt_ = std::make_unique<Attempt>(
      loop_.get(), tls_.get(), config_, signer_, poll_pacer_, plan_attempt(),
      [this](const std::string& reason) {
        // Shown while the attempt waits out a throttle or a conflict itself.
        status_.last_error = reason;
        if (status_.state != ProvisioningState::Provisioned) {
          status_.state = ProvisioningState::Retrying;
        }
        status_changed();
      },
      [this](core::Outcome outcome) { on_outcome(std::move(outcome)); });
  if (last_transport_ == "mqtt-ws") attempt_->prefer(core::Transport::MqttWs);
  status_changed();
  attempt_->start();
}

AttemptPlan Daemon::plan_attempt() {
  AttemptPlan plan;
  const auto now = std::chrono::steady_clock::now();
  if (pending_operation_) {
    if (pending_operation_->fingerprint != fingerprint_) {
      io::log_info("the provisioning inputs changed: not resuming DPS operation " +
                   pending_operation_->id);
      pending_operation_.reset();
    } else if (now - pending_operation_->issued > kOperationResumeWindow) {
      io::log_info("DPS operation " + pending_operation_->id +
                   " is older than 15 min: registering afresh");
      pending_operation_.reset();
    } else {
      plan.resume_operation_id = pending_operation_->id;
    }
  }
  if (options_.once) {
    // The attempt ends before --timeout does, so that its own reason is what gets reported.
    const auto left =
        std::chrono::duration_cast<milliseconds>(options_.once_timeout - (now - started_));
    plan.attempt_limit = std::clamp(left, milliseconds(1000), plan.attempt_limit);
  }
  return plan;
}

void Daemon::remember_operation(const core::Outcome& outcome) {
  if (outcome.kind != core::OutcomeKind::Transient || outcome.operation_id.empty()) {
    pending_operation_.reset();
    return;
  }
  // The same operation keeps the time it was first issued: the resume window is its age.
  if (pending_operation_ && pending_operation_->id == outcome.operation_id) return;
  pending_operation_ =
      PendingOperation{outcome.operation_id, fingerprint_, std::chrono::steady_clock::now()};
}

std::uint64_t Daemon::reprovision() {
  // One is running: its outcome is the answer.
  if (attempt_) return status_.last_attempt_usec;
  // Already scheduled: join it.
  if (reprovision_at_usec_ != 0) return reprovision_at_usec_;
  const auto now = std::chrono::steady_clock::now();
  if (last_requested_start_ && now - *last_requested_start_ < kReprovisionInterval) {
    const auto wait = std::chrono::duration_cast<milliseconds>(*last_requested_start_ +
                                                               kReprovisionInterval - now);
    reprovision_at_usec_ = realtime_usec() + static_cast<std::uint64_t>(wait.count()) * 1000U;
    io::log_notice("re-provisioning requested; Reprovision is limited to one every " +
                   std::to_string(kReprovisionInterval.count()) + " s, so it runs in " +
                   seconds_text(wait));
    reprovision_timer_.arm(wait);
    return reprovision_at_usec_;
  }
  start_requested_attempt();
  return status_.last_attempt_usec != 0 ? status_.last_attempt_usec : realtime_usec();
}

void Daemon::start_requested_attempt() {
  reprovision_at_usec_ = 0;
  last_requested_start_ = std::chrono::steady_clock::now();
  if (attempt_) return;  // something started one meanwhile: it answers this request too
  io::log_notice("re-provisioning on request");
  backoff_.reset();
  // A caller asks for a fresh registration, not for the old operation's outcome.
  pending_operation_.reset();
  start_attempt();
}

std::optional<ConnectionInfo> Daemon::connection_info() const {
  if (!status_.assignment) return std::nullopt;
  ConnectionInfo info;
  info.assigned_hub = status_.assignment->assigned_hub;
  info.device_id = status_.assignment->device_id;
  info.auth_type = attestation_name();
  info.symmetric_key = device_key_;  // empty for X.509 and for keys that live in a token
  return info;
}

core::Assignment Daemon::make_assignment(const core::RegistrationState& state) const {
  core::Assignment assignment;
  assignment.status = "assigned";
  assignment.assigned_hub = state.assigned_hub;
  assignment.device_id = state.device_id;
  // Ours, not the reply's: the reply's copy is not validated, and DPS echoes the one we sent.
  assignment.registration_id = config_.registration_id;
  assignment.id_scope = config_.id_scope;
  assignment.substatus = state.substatus;
  assignment.payload_json = state.payload_json;
  assignment.provisioned_at_unix = static_cast<std::int64_t>(std::time(nullptr));
  assignment.attestation = attestation_name();
  assignment.enrollment = enrollment_name(config_.enrollment);
  assignment.key_uri = key_uri();
  assignment.endpoint = config_.endpoint_host + ":" + std::to_string(config_.port());
  assignment.fingerprint = fingerprint_;
  return assignment;
}

void Daemon::on_outcome(core::Outcome outcome) {
  const core::Transport used = attempt_->transport_used();
  attempt_.reset();  // safe: Attempt delivers outcomes from a deferred source
  remember_operation(outcome);
  const auto took =
      std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - attempt_started_);
  const std::string error_code =
      outcome.dps_error_code ? std::to_string(*outcome.dps_error_code) : "";
  switch (outcome.kind) {
    case core::OutcomeKind::Assigned: {
      core::Assignment assignment = make_assignment(*outcome.registration_state);
      assignment.transport = core::transport_name(used);
      if (auto status = store_.save(assignment); !status) {
        status_.last_error = "state: " + status.error();
        io::log_error("provisioned, but the state could not be written: " + status.error());
        if (options_.once) return finish_once(kExitStateWrite);
        schedule_retry(backoff_.next(random_()));
        return;
      }
      backoff_.reset();
      refused_backoff_.reset();
      status_.state = ProvisioningState::Provisioned;
      status_.assignment = assignment;
      last_transport_ = assignment.transport;
      status_.source = "dps";
      status_.last_error.clear();
      status_.provisioned_usec = realtime_usec();
      io::log(core::LogLevel::Notice,
              "provisioned: hub=" + assignment.assigned_hub + " device=" + assignment.device_id +
                  " in " + seconds_text(took),
              {{"DPS_OPERATION_ID", outcome.operation_id},
               {"IOTHUB_HOSTNAME", assignment.assigned_hub}});
      status_changed();
      if (options_.once) {
        const auto total =
            std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - started_);
        std::cout << "provisioned: hub=" << assignment.assigned_hub
                  << " device=" << assignment.device_id << " in " << seconds_text(total)
                  << " state=" << store_.state_path().string() << std::endl;
        return finish_once(kExitOk);
      }
      return;
    }
    case core::OutcomeKind::Refused: {
      status_.last_error = outcome.error;
      // A cached assignment stays in use: DPS refusing a confirmation does not make the hub
      // connection consumers already have any less valid.
      if (status_.state != ProvisioningState::Provisioned) {
        status_.state = ProvisioningState::Failed;
      }
      io::log(core::LogLevel::Error, outcome.error,
              {{"DPS_OPERATION_ID", outcome.operation_id}, {"DPS_ERROR_CODE", error_code}});
      if (options_.once) return finish_once(kExitRefused);
      schedule_retry(refused_backoff_.next(random_()));
      return;
    }
    case core::OutcomeKind::Transient: {
      status_.last_error = outcome.error;
      if (status_.state != ProvisioningState::Provisioned) {
        status_.state = ProvisioningState::Retrying;
      }
      const milliseconds delay = backoff_.next(random_(), outcome.retry_after);
      io::log(core::LogLevel::Warning,
              "provisioning attempt failed: " + outcome.error + "; next attempt in " +
                  seconds_text(delay),
              {{"DPS_OPERATION_ID", outcome.operation_id}, {"DPS_ERROR_CODE", error_code}});
      if (options_.once &&
          std::chrono::steady_clock::now() + delay - started_ > options_.once_timeout) {
        io::log_error("giving up: no assignment within " +
                      std::to_string(options_.once_timeout.count()) + " s");
        return finish_once(kExitUnreachable);
      }
      schedule_retry(delay);
      return;
    }
  }
}

void Daemon::schedule_retry(milliseconds delay) {
  status_.next_attempt_usec = realtime_usec() + static_cast<std::uint64_t>(delay.count()) * 1000U;
  retry_timer_.arm(delay);
  status_changed();
}

void Daemon::finish_once(int code) {
  exit_code_ = code;
  loop_.exit(code);
}

void Daemon::reload() {
  io::log_notice("SIGHUP: reloading " + options_.config_path.string());
  core::ConfigResult loaded = io::load_config(options_.config_path);
  if (!loaded.config) {
    for (const auto& problem : loaded.problems) io::log_error(problem.to_string());
    io::log_error("configuration not reloaded: keeping the running one");
    return;
  }
  const std::string old_fingerprint = fingerprint_;
  // The attempt refers to the old config: end it before replacing what it points at.
  attempt_.reset();
  config_ = std::move(*loaded.config);
  store_ = io::StateStore(config_.state_dir, config_.runtime_dir);
  backoff_ = core::Backoff(config_.retry_initial, config_.retry_max);
  refused_backoff_ = core::Backoff(config_.retry_refused, config_.retry_refused);
  status_.registration_id = config_.registration_id;
  status_.id_scope = config_.id_scope;
  if (!prepare_identity()) {
    status_.state = ProvisioningState::Failed;
    schedule_retry(refused_backoff_.next(random_()));
    return;
  }
  if (fingerprint_ == old_fingerprint && status_.state == ProvisioningState::Provisioned) {
    io::log_info("provisioning inputs unchanged; keeping the assignment");
    status_changed();
    return;
  }
  // New inputs: the old assignment belongs to another identity and must not be served.
  status_.assignment.reset();
  status_.source.clear();
  status_.state = ProvisioningState::Unprovisioned;
  serve_cache();
  if (status_.state != ProvisioningState::Provisioned) start_attempt();
  status_changed();
}

std::string Daemon::status_line() const {
  switch (status_.state) {
    case ProvisioningState::Provisioned: {
      std::string line = "Provisioned: hub " + status_.assignment->assigned_hub + ", device " +
                         status_.assignment->device_id +
                         (status_.source == "cache" ? " (from cache)" : "");
      if (!status_.last_error.empty()) line += "; last confirmation failed: " + status_.last_error;
      return line;
    }
    case ProvisioningState::Provisioning:
      return "Provisioning (attempt " + std::to_string(status_.attempts) + ")";
    case ProvisioningState::Retrying:
      return "Retrying: " + status_.last_error;
    case ProvisioningState::Failed:
      return "Failed, needs attention: " + status_.last_error;
    case ProvisioningState::Unprovisioned:
      return status_.last_error.empty() ? "Unprovisioned" : "Waiting: " + status_.last_error;
  }
  return "";
}

void Daemon::status_changed() {
  if (options_.once) return;
  if (bus_) bus_->status_changed();
  notify_status();
}

void Daemon::notify_status() {
  // STATUS= carries text from DPS (errors, hub names): one line, escaped, bounded, or systemd
  // would read "\nWATCHDOG=trigger" in an error message as a second assignment.
  sd_notify(0, ("STATUS=" + core::sanitize_text(status_line())).c_str());
}

int check_config(const std::filesystem::path& config_path) {
  core::ConfigResult result = io::load_config(config_path);
  std::vector<std::string> problems;
  for (const auto& problem : result.problems) problems.push_back(problem.to_string());
  if (result.config) {
    const core::Config& config = *result.config;
    if (config.method == core::AttestationMethod::X509) {
      if (auto status = io::check_identity(config); !status) {
        problems.push_back(config_path.string() + ": provisioning.attestation." + status.error());
      }
    } else if (core::is_pkcs11_uri(config.symmetric_key_uri)) {
      const auto settings = io::pkcs11_settings(config);
      auto status = settings ? io::check_pkcs11_key(config.symmetric_key_uri, *settings)
                             : Status(Error{"a pkcs11: key needs [pkcs11] module"});
      if (!status) {
        problems.push_back(config_path.string() +
                           ": provisioning.attestation.symmetric_key: " + status.error());
      }
    } else if (auto status = io::check_key_source(config.symmetric_key_uri); !status) {
      problems.push_back(config_path.string() +
                         ": provisioning.attestation.symmetric_key: " + status.error());
    }
  }
  if (result.config) {
    // The trust store is a dependency: an empty or missing bundle fails every handshake with a
    // bare "certificate verify failed", so say which file and what to do.
    if (auto tls = io::make_client_tls_context(result.config->trust_bundle); !tls) {
      problems.push_back(config_path.string() + ": tls.trust_bundle: " + tls.error());
    }
  }
  for (const auto& problem : problems) std::cerr << core::sanitize_text(problem) << "\n";
  if (!problems.empty()) {
    std::cerr << problems.size() << (problems.size() == 1 ? " problem" : " problems")
              << " in the configuration\n";
    return kExitConfig;
  }
  std::cout << "configuration OK: " << config_path.string() << "\n";
  return kExitOk;
}

}  // namespace dpsd::app
