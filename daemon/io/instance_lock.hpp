#pragma once
// One writer of the state: every dpsd run that may write state.json and iothub.env holds an
// exclusive flock(2) on <state_dir>/dpsd.lock for as long as it runs. A second instance (say
// `dpsd --once --force` beside the service) would otherwise rewrite the files to another hub
// while the running daemon still reports the old one on D-Bus. flock, not a pid file: the kernel
// drops the lock when the holder dies, so a crash never leaves a stale lock behind. The pid
// written into the file is only for the message.
#include <filesystem>
#include <utility>

#include "core/expected.hpp"
#include "io/unique_fd.hpp"

namespace dpsd::io {

// The exit status of a dpsd that finds another instance holding the lock (EX_TEMPFAIL from
// sysexits.h: try again later; it collides with none of dpsd's other exit codes).
constexpr int kExitAlreadyRunning = 75;

class InstanceLock {
 public:
  // Creates `state_dir` (0755) if missing, opens <state_dir>/dpsd.lock without following a
  // symlink (created 0640), and takes the lock without waiting. Errc::Unsupported with
  // "dpsd is already running (pid N); use `dpsctl reprovision`" when another process holds it;
  // Errc::Io, PermissionDenied or NotRegularFile when the file cannot be used.
  static Expected<InstanceLock> acquire(const std::filesystem::path& state_dir);

  std::filesystem::path path() const { return path_; }

 private:
  InstanceLock(UniqueFd fd, std::filesystem::path path)
      : fd_(std::move(fd)), path_(std::move(path)) {}
  UniqueFd fd_;  // the lock lives as long as this descriptor
  std::filesystem::path path_;
};

// The exit status and the log line for a failed acquire(): another instance is fatal
// (kExitAlreadyRunning); a lock file that cannot be created (a read-only state directory) only
// warns, because then no instance can write the state either, and the cached assignment is
// still served. Returns 0 when the run may go on.
int report_lock_failure(const Expected<InstanceLock>& lock);

}  // namespace dpsd::io
