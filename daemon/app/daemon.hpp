#pragma once
// The daemon's supervisor: loads the identity, serves a cached assignment, runs registration
// attempts one at a time with backoff between them, and records each outcome (state file,
// status model). `--once` is the same machine with an exit instead of a wait.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <string>

#include "app/attempt.hpp"
#include "core/backoff.hpp"
#include "core/config.hpp"
#include "core/sas_token.hpp"
#include "core/state_record.hpp"
#include "io/event_loop.hpp"
#include "io/state_store.hpp"
#include "io/tls_context.hpp"

namespace dpsd::app {

struct Options {
  std::filesystem::path config_path = "/etc/dpsd/config.toml";
  bool check_config = false;
  bool once = false;
  bool force = false;
  bool verbose = false;
  std::chrono::seconds once_timeout{120};
};

// Exit codes (documented in --help and the README).
enum ExitCode : int {
  kExitOk = 0,
  kExitRefused = 1,      // DPS refused the registration (401, 404, failed, disabled, …)
  kExitConfig = 2,       // invalid command line, configuration or key
  kExitUnreachable = 3,  // --once gave up: DPS not reached or not answering within --timeout
  kExitStateWrite = 4,   // provisioned, but the state file could not be written
};

enum class ProvisioningState { Unprovisioned, Provisioning, Provisioned, Retrying, Failed };
const char* to_string(ProvisioningState state);

// What the daemon knows right now; the D-Bus object mirrors it.
struct StatusModel {
  ProvisioningState state = ProvisioningState::Unprovisioned;
  std::optional<core::Assignment> assignment;
  std::string source;  // "dps" | "cache" | ""
  std::string last_error;
  std::uint32_t attempts = 0;
  std::uint64_t last_attempt_usec = 0;  // CLOCK_REALTIME
  std::uint64_t next_attempt_usec = 0;
};

class Daemon {
 public:
  Daemon(core::Config config, Options options);
  ~Daemon();
  int run();  // returns the process exit code

 private:
  bool prepare_identity();
  void start_attempt();
  void on_outcome(core::Outcome outcome);
  void schedule_retry(std::chrono::milliseconds delay);
  void finish_once(int code);
  core::Assignment make_assignment(const core::RegistrationState& state) const;

  core::Config config_;
  Options options_;
  io::EventLoop loop_;
  io::SslCtxPtr tls_;
  core::Signer signer_;
  std::string fingerprint_;
  io::StateStore store_;
  core::Backoff backoff_;
  core::Backoff refused_backoff_;
  std::mt19937_64 random_;
  std::unique_ptr<Attempt> attempt_;
  io::Timer retry_timer_;
  io::EventSourcePtr sigterm_;
  io::EventSourcePtr sigint_;
  StatusModel status_;
  std::chrono::steady_clock::time_point started_;
  std::chrono::steady_clock::time_point attempt_started_;
  int exit_code_ = kExitOk;
};

// --check-config: prints every problem (file: key: reason) and returns 0 or kExitConfig.
int check_config(const std::filesystem::path& config_path);

}  // namespace dpsd::app
