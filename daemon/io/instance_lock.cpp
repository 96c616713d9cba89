#include "io/instance_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <system_error>
#include <utility>

#include "core/errno_text.hpp"
#include "io/log.hpp"

namespace dpsd::io {

namespace {

Error errno_error(int err, const std::string& what) {
  const Errc code = (err == EACCES || err == EPERM) ? Errc::PermissionDenied
                    : err == ELOOP                  ? Errc::NotRegularFile
                                                    : Errc::Io;
  return {code, what + ": " + core::errno_text(err)};
}

// The pid the holder wrote, for the message; 0 when the file holds none (yet).
long read_holder_pid(int fd) {
  char buffer[32] = {};
  const ssize_t n = ::pread(fd, buffer, sizeof buffer - 1, 0);
  if (n <= 0) return 0;
  char* end = nullptr;
  const long pid = std::strtol(buffer, &end, 10);
  return pid > 0 ? pid : 0;
}

}  // namespace

Expected<InstanceLock> InstanceLock::acquire(const std::filesystem::path& state_dir) {
  std::error_code ec;
  std::filesystem::create_directories(state_dir, ec);
  const std::filesystem::path path = state_dir / "dpsd.lock";
  // O_NOFOLLOW: whoever can write the state directory must not make us open (and truncate)
  // another file through a symlink. 0640: group dpsd (dpsctl's users) may read the pid.
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0640));
  if (!fd) return errno_error(errno, "lock file " + path.string());
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return errno_error(errno, "lock file " + path.string());
  if (!S_ISREG(st.st_mode)) {
    return Error{Errc::NotRegularFile, "lock file " + path.string() + ": not a regular file"};
  }
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err != EWOULDBLOCK) return errno_error(err, "lock file " + path.string());
    const long pid = read_holder_pid(fd.get());
    const std::string who = pid > 0 ? " (pid " + std::to_string(pid) + ")" : "";
    return Error{Errc::Unsupported, "dpsd is already running" + who + "; use `dpsctl reprovision`"};
  }
  // Ours now: record our pid for the next instance's message. A failure here costs only that.
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd.get(), 0) == 0) {
    [[maybe_unused]] const ssize_t written = ::pwrite(fd.get(), pid.data(), pid.size(), 0);
  }
  return InstanceLock(std::move(fd), path);
}

int report_lock_failure(const Expected<InstanceLock>& lock) {
  if (lock) return 0;
  if (lock.code() == Errc::Unsupported) {
    log_error(lock.error());
    return kExitAlreadyRunning;
  }
  log_warning(lock.error() + "; running without the single-instance lock");
  return 0;
}

}  // namespace dpsd::io
