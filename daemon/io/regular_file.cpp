#include "io/regular_file.hpp"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

namespace dpsd::io {

namespace {

// "<what> <reason>", or just "<reason>" when the caller names the file itself.
std::string subject(std::string_view what, std::string_view reason) {
  if (what.empty()) return std::string(reason);
  return std::string(what) + " " + std::string(reason);
}

std::string mode_text(mode_t mode) {
  std::array<char, 8> text{};
  (void)std::snprintf(text.data(), text.size(), "%04o", static_cast<unsigned>(mode & 07777));
  return text.data();
}

bool in_process_groups(gid_t gid) {
  if (gid == ::getegid()) return true;
  const int count = ::getgroups(0, nullptr);
  if (count <= 0) return false;
  std::vector<gid_t> groups(static_cast<std::size_t>(count));
  const int got = ::getgroups(count, groups.data());
  if (got < 0) return false;
  groups.resize(static_cast<std::size_t>(got));
  return std::find(groups.begin(), groups.end(), gid) != groups.end();
}

}  // namespace

const char* file_type_name(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "not a regular file";
}

Expected<OpenedFile> open_regular_file(const std::string& path, std::string_view what,
                                       bool follow_symlinks, int* open_errno) {
  if (open_errno != nullptr) *open_errno = 0;
  // O_NONBLOCK: open() of a FIFO without a writer would block for ever; fstat() rejects it next.
  // O_NOCTTY: a terminal device must never become our controlling terminal.
  int flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
  // O_NOFOLLOW: a symlink could point the daemon at a file its owner never meant for it.
  if (!follow_symlinks) flags |= O_NOFOLLOW;
  OpenedFile file;
  file.fd.reset(::open(path.c_str(), flags));
  if (!file.fd.valid()) {
    const int error = errno;
    if (open_errno != nullptr) *open_errno = error;
    if (error == ELOOP && !follow_symlinks) {
      return Error{
          Errc::NotRegularFile,
          subject(what, "is a symbolic link; refusing to follow it (name the file itself)")};
    }
    const Errc code = error == ENOENT || error == ENOTDIR ? Errc::NotFound
                      : error == EACCES || error == EPERM ? Errc::PermissionDenied
                                                          : Errc::Io;
    if (what.empty()) return Error{code, std::string("cannot open: ") + std::strerror(error)};
    return Error{code, "cannot open " + std::string(what) + ": " + std::strerror(error)};
  }
  if (::fstat(file.fd.get(), &file.st) != 0) {
    return Error{Errc::Io,
                 subject(what, std::string("cannot be examined (fstat): ") + std::strerror(errno))};
  }
  if (!S_ISREG(file.st.st_mode)) {
    return Error{Errc::NotRegularFile,
                 subject(what, std::string("is ") + file_type_name(file.st.st_mode) +
                                   ", not a regular file")};
  }
  return file;
}

Status read_opened_file(OpenedFile& file, std::size_t max_bytes, std::string_view what,
                        std::string& out) {
  // One allocation of the final size; the loop reads straight into it.
  out.clear();
  out.reserve(max_bytes + 1);
  out.resize(max_bytes + 1);
  std::size_t size = 0;
  for (;;) {
    const ssize_t n = ::read(file.fd.get(), out.data() + size, out.size() - size);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      OPENSSL_cleanse(out.data(), out.size());
      out.clear();
      return Error{Errc::Io, subject(what, std::string("cannot be read: ") + std::strerror(error))};
    }
    if (n == 0) break;
    size += static_cast<std::size_t>(n);
    if (size > max_bytes) {
      OPENSSL_cleanse(out.data(), out.size());
      out.clear();
      return Error{Errc::TooLarge,
                   subject(what, "is larger than " + std::to_string(max_bytes) + " bytes")};
    }
  }
  OPENSSL_cleanse(out.data() + size, out.size() - size);
  out.resize(size);
  return ok_status();
}

Expected<std::string> read_regular_file(const std::string& path, std::size_t max_bytes,
                                        std::string_view what, bool follow_symlinks,
                                        int* open_errno) {
  auto file = open_regular_file(path, what, follow_symlinks, open_errno);
  if (!file) return file.failure();
  std::string text;
  if (auto read = read_opened_file(*file, max_bytes, what, text); !read) return read.failure();
  return text;
}

Status read_secret_file(const std::string& path, const std::string& what, bool enforce_private,
                        std::size_t max_bytes, std::string& out, int* open_errno) {
  auto file = open_regular_file(path, what, !enforce_private, open_errno);
  if (!file) return file.failure();
  if (enforce_private) {
    if (auto problem = private_file_problem(file->st, what, path)) {
      return Error{Errc::PermissionDenied, *problem};
    }
  }
  return read_opened_file(*file, max_bytes, what, out);
}

std::optional<std::string> private_file_problem(const struct stat& st, const std::string& what,
                                                const std::string& path) {
  const mode_t mode = st.st_mode;
  const std::string prefix = what + " has mode " + mode_text(mode) + "; ";
  if ((mode & S_IRWXO) != 0) {
    return prefix + "it must not be readable or writable by others (chmod o-rwx " + path + ")";
  }
  if ((mode & (S_IWGRP | S_IXGRP)) != 0) {
    return prefix + "it must not be writable by its group (chmod 640 " + path + ")";
  }
  if ((mode & S_IRGRP) != 0 && !in_process_groups(st.st_gid)) {
    return prefix + "it is readable by group " + std::to_string(st.st_gid) +
           ", which dpsd does not run as; make it readable by dpsd's group only (chgrp) or by "
           "its owner only (chmod 600 " +
           path + ")";
  }
  return std::nullopt;
}

}  // namespace dpsd::io
