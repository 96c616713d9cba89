#include "io/private_dir.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <system_error>

namespace dpsd::io {
namespace {

std::string mode_text(mode_t mode) {
  char text[8];
  (void)std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

// Why openat(O_NOFOLLOW|O_DIRECTORY) failed, in words: a planted symlink gets the message the
// operator needs to recognise it.
std::string open_error(int at_fd, const std::filesystem::path& name, const std::string& shown,
                       int err) {
  struct stat st {};
  if ((err == ELOOP || err == ENOTDIR) &&
      ::fstatat(at_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (S_ISLNK(st.st_mode)) return shown + " is a symlink; refusing to use it";
    if (!S_ISDIR(st.st_mode)) return shown + " is not a directory";
  }
  return "cannot open " + shown + ": " + std::strerror(err);
}

// The checks both callers share, on the opened directory itself.
Status check_owner(int fd, const std::string& shown) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return Error{"cannot stat " + shown + ": " + std::strerror(errno)};
  if (!S_ISDIR(st.st_mode)) return Error{shown + " is not a directory"};
  if (st.st_uid != ::geteuid()) {
    return Error{shown + " is owned by uid " + std::to_string(st.st_uid) + ", not by uid " +
                 std::to_string(::geteuid()) + "; refusing to use it"};
  }
  return ok_status();
}

// "/run/dpsd/private/" and "/run/dpsd/./private" name the same entry as "/run/dpsd/private".
std::filesystem::path clean(const std::filesystem::path& dir) {
  std::filesystem::path out = dir.lexically_normal();
  if (!out.has_filename() && out.has_parent_path()) out = out.parent_path();
  return out;
}

}  // namespace

Status make_private_dir(const std::filesystem::path& dir) {
  const std::filesystem::path path = clean(dir);
  const std::string shown = path.string();
  const std::filesystem::path name = path.filename();
  if (name.empty() || name == "." || name == "..") {
    return Error{"private directory " + shown + ": not a directory name"};
  }
  std::filesystem::path parent = path.parent_path();
  if (parent.empty()) parent = ".";

  // The parent is the runtime directory (systemd's RuntimeDirectory=, or created here when dpsd
  // runs outside systemd); only the last component is ours to guard.
  std::error_code ec;
  std::filesystem::create_directories(parent, ec);
  if (ec) return Error{"cannot create " + parent.string() + ": " + ec.message()};
  UniqueFd parent_fd(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!parent_fd) {
    return Error{open_error(AT_FDCWD, parent, parent.string(), errno)};
  }

  if (::mkdirat(parent_fd.get(), name.c_str(), 0700) != 0 && errno != EEXIST) {
    return Error{"cannot create " + shown + ": " + std::strerror(errno)};
  }
  UniqueFd fd(
      ::openat(parent_fd.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return Error{open_error(parent_fd.get(), name, shown, errno)};
  if (auto status = check_owner(fd.get(), shown); !status) return status;
  // Through the fd: the entry may have been swapped since, but this is the directory we checked.
  if (::fchmod(fd.get(), 0700) != 0) {
    return Error{"cannot chmod 0700 " + shown + ": " + std::strerror(errno)};
  }
  return ok_status();
}

Expected<UniqueFd> open_private_dir(const std::filesystem::path& dir) {
  const std::filesystem::path path = clean(dir);
  const std::string shown = path.string();
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return Error{open_error(AT_FDCWD, path, shown, errno)};
  if (auto status = check_owner(fd.get(), shown); !status) return Error{status.error()};
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0)
    return Error{"cannot stat " + shown + ": " + std::strerror(errno)};
  if ((st.st_mode & 077) != 0) {
    return Error{shown + " has mode " + mode_text(st.st_mode) + "; it must be 0700"};
  }
  return fd;
}

}  // namespace dpsd::io
