#pragma once
// The daemon: the adapter that carries out core::Supervisor's decisions. The supervisor decides
// (state, delays, exit codes, the cache, the status line); the daemon owns what those decisions
// touch: the sd-event loop, its timers and signals, the identity (app/identity_loader), the
// state files (io::StateStore), the running app::Attempt, the D-Bus service, and sd_notify.
// It feeds the supervisor what happened (with the time) and executes the actions it gets back.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "app/attempt.hpp"
#include "app/bus_service.hpp"
#include "app/identity_loader.hpp"
#include "core/config.hpp"
#include "core/poll_pacer.hpp"
#include "core/supervisor.hpp"
#include "io/event_loop.hpp"
#include "io/state_store.hpp"

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

class Daemon final : public ProvisioningControl {
 public:
  Daemon(core::Config config, Options options);
  ~Daemon() override;
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;
  int run();  // returns the process exit code

  // ProvisioningControl
  const StatusModel& status() const override { return status_; }
  std::uint64_t reprovision() override;
  std::optional<ConnectionInfo> connection_info() const override;

 private:
  void feed(const core::SupervisorEvent& event);
  void feed(const core::Now& now, const core::SupervisorEvent& event);
  void execute(const core::SupervisorAction& action);
  void start_attempt(const core::AttemptPlan& plan);
  void on_attempt_ended(core::Outcome outcome);
  void save(const core::SaveAssignment& save);
  void wait_for_clock(std::int64_t until_unix);
  void publish_status();
  // The identity for config_ (logged when it fails); the fingerprint, or why not.
  Expected<std::string> prepare_identity();
  std::optional<core::Assignment> load_cache();
  void reload();
  core::SupervisorPolicy policy() const;
  void mirror_status();

  core::Config config_;
  Options options_;
  io::EventLoop loop_;
  std::unique_ptr<PreparedIdentity> identity_;
  io::StateStore store_;
  core::Supervisor supervisor_;
  core::PollPacer poll_pacer_;  // DPS's poll limit is per device: it outlives attempts
  std::unique_ptr<Attempt> attempt_;
  io::Timer retry_timer_;
  io::Timer reprovision_timer_;
  io::Timer once_deadline_;
  io::EventSourcePtr clock_wait_;
  io::EventSourcePtr sighup_;
  StatusModel status_;  // the supervisor's status, as the bus shows it
  std::unique_ptr<BusService> bus_;
  bool exiting_ = false;
  int exit_code_ = core::kExitOk;
};

}  // namespace dpsd::app
