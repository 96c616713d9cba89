#pragma once
// The daemon's supervisor: loads the identity, serves a cached assignment at once, runs
// registration attempts one at a time with backoff between them (forever, politely), records each
// outcome (state file, status model, D-Bus, systemd STATUS=), and never exits because
// provisioning failed. `--once` is the same machine with an exit instead of a wait.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <string>

#include "app/attempt.hpp"
#include "app/bus_service.hpp"
#include "core/backoff.hpp"
#include "core/config.hpp"
#include "core/poll_pacer.hpp"
#include "core/sas_token.hpp"
#include "core/state_record.hpp"
#include "io/event_loop.hpp"
#include "io/identity.hpp"
#include "io/state_store.hpp"
#include "io/tls_context.hpp"

namespace dpsd::app {

struct Options {
  std::filesystem::path config_path = "/etc/dpsd/config.toml";
  bool check_config = false;
  bool once = false;
  bool force = false;
  bool verbose = false;
  bool no_bus = false;
  std::chrono::seconds once_timeout{120};
};

// The shortest time between two registrations that callers start with Reprovision: 40 calls in
// 8 s made 40 registrations before this existed.
inline constexpr std::chrono::seconds kReprovisionInterval{10};
// How long an accepted operation is worth resuming; after that a fresh register is cheaper than
// asking about something the service may have forgotten.
inline constexpr std::chrono::minutes kOperationResumeWindow{15};

// Exit codes (documented in --help and the README).
enum ExitCode : int {
  kExitOk = 0,
  kExitRefused = 1,      // DPS refused the registration (401, 404, failed, disabled, …)
  kExitConfig = 2,       // invalid command line, configuration or key
  kExitUnreachable = 3,  // --once gave up: DPS not reached or not answering within --timeout
  kExitStateWrite = 4,   // provisioned, but the state file could not be written
};

class Daemon final : public ProvisioningControl {
 public:
  Daemon(core::Config config, Options options);
  ~Daemon() override;
  int run();  // returns the process exit code

  // ProvisioningControl
  const StatusModel& status() const override { return status_; }
  std::uint64_t reprovision() override;
  std::optional<ConnectionInfo> connection_info() const override;

 private:
  // Loads key, TLS context and fingerprint for config_; on failure sets LastError and returns
  // false (the daemon then waits for SIGHUP, Reprovision or the slow retry).
  bool prepare_identity();
  bool load_symmetric_key();  // file: or credential:, derived for group enrollments
  const char* attestation_name() const;
  const std::string& key_uri() const;  // the key the fingerprint and the state name
  void serve_cache();
  bool cache_is_stale() const;
  void start_attempt();
  AttemptPlan plan_attempt();
  void remember_operation(const core::Outcome& outcome);
  void start_requested_attempt();
  void notify_status();
  bool clock_is_sane();
  void on_outcome(core::Outcome outcome);
  void schedule_retry(std::chrono::milliseconds delay);
  void finish_once(int code);
  void reload();
  void status_changed();
  std::string status_line() const;
  core::Assignment make_assignment(const core::RegistrationState& state) const;

  core::Config config_;
  Options options_;
  io::EventLoop loop_;
  // X.509 client certificate and key. Declared before tls_ so it is destroyed after it: a key
  // that lives in a PKCS#11 token needs its engine for as long as the SSL_CTX holds it.
  std::unique_ptr<io::Identity> identity_;
  io::SslCtxPtr tls_;
  core::Signer signer_;  // symmetric keys: computes the SAS HMAC
  bool identity_ready_ = false;
  std::string fingerprint_;
  std::string last_transport_;  // what worked last ("mqtt" | "mqtt-ws"), for transport = "auto"
  std::string device_key_;  // base64; for GetConnectionInfo only, wiped when replaced or destroyed
  io::StateStore store_;
  core::Backoff backoff_;
  core::Backoff refused_backoff_;
  std::mt19937_64 random_;
  std::unique_ptr<Attempt> attempt_;
  io::Timer retry_timer_;
  core::PollPacer poll_pacer_;
  // The operation an unfinished attempt left running on the service (202 + operationId), for
  // the next attempt to poll instead of registering again (one registration, one bill).
  struct PendingOperation {
    std::string id;
    std::string fingerprint;  // of the inputs it was registered with
    std::chrono::steady_clock::time_point issued;
  };
  std::optional<PendingOperation> pending_operation_;
  // Reprovision calls coalesce: one caller-started registration per kReprovisionInterval.
  std::optional<std::chrono::steady_clock::time_point> last_requested_start_;
  io::Timer reprovision_timer_;
  std::uint64_t reprovision_at_usec_ = 0;  // when the scheduled one runs; 0 when none
  io::Timer once_deadline_;
  io::EventSourcePtr clock_wait_;
  std::vector<io::EventSourcePtr> signal_sources_;
  StatusModel status_;
  std::unique_ptr<BusService> bus_;
  std::chrono::steady_clock::time_point started_;
  std::chrono::steady_clock::time_point attempt_started_;
  int exit_code_ = kExitOk;
};

// --check-config: prints every problem (file: key: reason) and returns 0 or kExitConfig.
int check_config(const std::filesystem::path& config_path);

}  // namespace dpsd::app
