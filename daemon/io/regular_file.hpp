#pragma once
// The one way dpsd opens a file it reads: config files, drop-ins, payload_file, state.json, key,
// certificate, PIN and proxy credential files. A FIFO must never block the daemon before READY
// (signals are blocked then, so SIGTERM could not stop it), a device node or a directory is never
// one of our files, and a wrong path such as /dev/zero must not fill memory. So every open is
// O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_NOCTTY, with O_NOFOLLOW unless the caller allows a symlink, and
// fstat() refuses anything that is not a regular file before a byte is read. An adapter (it
// opens and reads files), so it lives in io: the core stays free of I/O.
#include <sys/stat.h>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "core/expected.hpp"
#include "io/unique_fd.hpp"

namespace dpsd::io {

struct OpenedFile {
  UniqueFd fd;
  struct stat st {};
};

// `what` names the file in messages ("key file /etc/dpsd/keys/device.key"); when empty, messages
// start with the reason ("is a FIFO, not a regular file"), for callers that name the file
// themselves. On an open() failure *open_errno (if given) receives errno (ENOENT: the file does
// not exist, which several callers treat as "not configured"), else 0.
Expected<OpenedFile> open_regular_file(const std::string& path, std::string_view what,
                                       bool follow_symlinks = false, int* open_errno = nullptr);

// Reads the whole file into `out`, at most max_bytes. `out` is sized once (max_bytes + 1) and never
// reallocates, so a caller holding a secret can wipe the one buffer afterwards (and is wiped of
// the unused tail here). Larger files are an error naming the limit.
Status read_opened_file(OpenedFile& file, std::size_t max_bytes, std::string_view what,
                        std::string& out);

// open_regular_file + read_opened_file.
Expected<std::string> read_regular_file(const std::string& path, std::size_t max_bytes,
                                        std::string_view what, bool follow_symlinks = false,
                                        int* open_errno = nullptr);

// The reader of secrets (keys, PINs, proxy credentials). With `enforce_private` (a plain file):
// symlinks refused and private_file_problem's mode rule applied (PermissionDenied). Without it
// (a systemd credential: systemd made and manages that directory) links are followed and the
// mode is systemd's business. Reads into `out` as read_opened_file does: one buffer, wiped on
// failure, so the caller can wrap it in SecretText.
Status read_secret_file(const std::string& path, const std::string& what, bool enforce_private,
                        std::size_t max_bytes, std::string& out, int* open_errno = nullptr);

// "a FIFO", "a directory", "a socket", "a device", "not a regular file".
const char* file_type_name(mode_t mode);

// The mode rule for files that hold a secret (keys, PINs, proxy credentials): nothing for others,
// no group write/execute, and group read only when that group is one dpsd runs with (so a
// 0640 root:dpsd file works). The reason names `what`, its mode and the chmod that fixes it.
std::optional<std::string> private_file_problem(const struct stat& st, const std::string& what,
                                                const std::string& path);

}  // namespace dpsd::io
