#include "app/daemon.hpp"

#include <openssl/crypto.h>
#include <signal.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>

#include "io/key_source.hpp"
#include "io/log.hpp"

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
  std::snprintf(buffer, sizeof buffer, "%.3f s", static_cast<double>(delay.count()) / 1000.0);
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

// The relay socket lives in a directory only we can enter.
Status make_private_dir(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Error{"cannot create " + dir.string() + ": " + ec.message()};
  if (::chmod(dir.c_str(), 0700) != 0) {
    return Error{"cannot chmod 0700 " + dir.string() + ": " + std::strerror(errno)};
  }
  return ok_status();
}

}  // namespace

const char* to_string(ProvisioningState state) {
  switch (state) {
    case ProvisioningState::Unprovisioned:
      return "unprovisioned";
    case ProvisioningState::Provisioning:
      return "provisioning";
    case ProvisioningState::Provisioned:
      return "provisioned";
    case ProvisioningState::Retrying:
      return "retrying";
    case ProvisioningState::Failed:
      return "failed";
  }
  return "unprovisioned";
}

Daemon::Daemon(core::Config config, Options options)
    : config_(std::move(config)),
      options_(std::move(options)),
      store_(config_.state_dir, config_.runtime_dir),
      backoff_(config_.retry_initial, config_.retry_max),
      refused_backoff_(config_.retry_refused, config_.retry_refused),
      random_(std::random_device{}()),
      retry_timer_(loop_.get(), [this] { start_attempt(); }) {}

Daemon::~Daemon() = default;

bool Daemon::prepare_identity() {
  auto key = io::load_key(config_.symmetric_key_uri);
  if (!key) {
    io::log_error("symmetric_key: " + key.error());
    return false;
  }
  std::string device_key = key->view();
  if (config_.enrollment == core::Enrollment::Group) {
    auto derived = core::derive_device_key(key->view(), config_.registration_id);
    OPENSSL_cleanse(device_key.data(), device_key.size());
    if (!derived) {
      io::log_error("symmetric_key: cannot derive the device key: " + derived.error());
      return false;
    }
    device_key = std::move(derived.value());
  }
  auto signer = core::make_memory_signer(device_key);
  OPENSSL_cleanse(device_key.data(), device_key.size());
  if (!signer) {
    io::log_error("symmetric_key: " + signer.error());
    return false;
  }
  signer_ = std::move(signer.value());

  core::FingerprintInputs inputs;
  inputs.id_scope = config_.id_scope;
  inputs.registration_id = config_.registration_id;
  inputs.endpoint = config_.endpoint_host + ":" + std::to_string(config_.port());
  inputs.attestation = "symmetric_key";
  inputs.enrollment = enrollment_name(config_.enrollment);
  inputs.key_uri = config_.symmetric_key_uri;
  inputs.key_tag = key_tag(signer_);
  fingerprint_ = core::compute_fingerprint(inputs);

  auto tls = io::make_client_tls_context(config_.trust_bundle);
  if (!tls) {
    io::log_error("tls: " + tls.error());
    return false;
  }
  tls_ = std::move(tls.value());

  if (auto status = make_private_dir(config_.runtime_dir / "private"); !status) {
    io::log_error("paths.runtime_dir: " + status.error());
    return false;
  }
  return true;
}

int Daemon::run() {
  started_ = std::chrono::steady_clock::now();
  // A peer closing the TLS socket must not kill the daemon.
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  sd_event_source* raw = nullptr;
  sd_event_add_signal(loop_.get(), &raw, SIGTERM, nullptr, nullptr);  // default handler: exit 0
  sigterm_.reset(raw);
  sd_event_add_signal(loop_.get(), &raw, SIGINT, nullptr, nullptr);
  sigint_.reset(raw);

  if (!prepare_identity()) return kExitConfig;

  std::string problem;
  auto cached = store_.load(&problem);
  if (!problem.empty()) io::log_warning("ignoring state file: " + problem);
  if (cached && cached->fingerprint == fingerprint_) {
    status_.assignment = cached;
    status_.source = "cache";
    status_.state = ProvisioningState::Provisioned;
    if (auto status = store_.write_env(*cached); !status) io::log_warning(status.error());
    if (options_.once && !options_.force) {
      std::cout << "provisioned (cached): hub=" << cached->assigned_hub
                << " device=" << cached->device_id << " state=" << store_.state_path().string()
                << std::endl;
      return kExitOk;
    }
  } else if (cached) {
    io::log_notice("state file was written for other provisioning inputs; provisioning again");
  }

  if (!(status_.state == ProvisioningState::Provisioned && !options_.once && !options_.force)) {
    start_attempt();
  }
  const int rc = loop_.run();
  if (rc < 0) {
    io::log_error(std::string("event loop failed: ") + std::strerror(-rc));
    return 70;
  }
  return options_.once ? exit_code_ : kExitOk;
}

void Daemon::start_attempt() {
  ++status_.attempts;
  status_.last_attempt_usec = realtime_usec();
  status_.next_attempt_usec = 0;
  if (status_.state != ProvisioningState::Provisioned)
    status_.state = ProvisioningState::Provisioning;
  attempt_started_ = std::chrono::steady_clock::now();
  attempt_ =
      std::make_unique<Attempt>(loop_.get(), tls_.get(), config_, signer_,
                                [this](core::Outcome outcome) { on_outcome(std::move(outcome)); });
  attempt_->start();
}

core::Assignment Daemon::make_assignment(const core::RegistrationState& state) const {
  core::Assignment assignment;
  assignment.status = "assigned";
  assignment.assigned_hub = state.assigned_hub;
  assignment.device_id = state.device_id;
  assignment.registration_id =
      state.registration_id.empty() ? config_.registration_id : state.registration_id;
  assignment.id_scope = config_.id_scope;
  assignment.substatus = state.substatus;
  assignment.payload_json = state.payload_json;
  assignment.provisioned_at_unix = static_cast<std::int64_t>(std::time(nullptr));
  assignment.attestation = "symmetric_key";
  assignment.enrollment = enrollment_name(config_.enrollment);
  assignment.key_uri = config_.symmetric_key_uri;
  assignment.endpoint = config_.endpoint_host + ":" + std::to_string(config_.port());
  assignment.fingerprint = fingerprint_;
  return assignment;
}

void Daemon::on_outcome(core::Outcome outcome) {
  attempt_.reset();  // safe: Attempt delivers outcomes from a deferred source
  const auto took =
      std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - attempt_started_);
  switch (outcome.kind) {
    case core::OutcomeKind::Assigned: {
      core::Assignment assignment = make_assignment(*outcome.registration_state);
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
      status_.source = "dps";
      status_.last_error.clear();
      io::log(io::Level::Notice,
              "provisioned: hub=" + assignment.assigned_hub + " device=" + assignment.device_id +
                  " in " + seconds_text(took),
              {{"DPS_OPERATION_ID", outcome.operation_id},
               {"IOTHUB_HOSTNAME", assignment.assigned_hub}});
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
      if (status_.state != ProvisioningState::Provisioned)
        status_.state = ProvisioningState::Failed;
      io::log(io::Level::Error, outcome.error,
              {{"DPS_OPERATION_ID", outcome.operation_id},
               {"DPS_ERROR_CODE",
                outcome.dps_error_code ? std::to_string(*outcome.dps_error_code) : ""}});
      if (options_.once) return finish_once(kExitRefused);
      schedule_retry(refused_backoff_.next(random_()));
      return;
    }
    case core::OutcomeKind::Transient: {
      status_.last_error = outcome.error;
      if (status_.state != ProvisioningState::Provisioned)
        status_.state = ProvisioningState::Retrying;
      const milliseconds delay = backoff_.next(random_(), outcome.retry_after);
      io::log_warning("provisioning attempt failed: " + outcome.error + "; next attempt in " +
                      seconds_text(delay));
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
}

void Daemon::finish_once(int code) {
  exit_code_ = code;
  loop_.exit(code);
}

int check_config(const std::filesystem::path& config_path) {
  core::ConfigResult result = core::load_config(config_path);
  std::vector<std::string> problems;
  for (const auto& problem : result.problems) problems.push_back(problem.to_string());
  if (result.config) {
    if (auto status = io::check_key_source(result.config->symmetric_key_uri); !status) {
      problems.push_back(config_path.string() +
                         ": provisioning.attestation.symmetric_key: " + status.error());
    }
  }
  for (const auto& problem : problems) std::cerr << problem << "\n";
  if (!problems.empty()) {
    std::cerr << problems.size() << (problems.size() == 1 ? " problem" : " problems")
              << " in the configuration\n";
    return kExitConfig;
  }
  std::cout << "configuration OK: " << config_path.string() << "\n";
  return kExitOk;
}

}  // namespace dpsd::app
