#include "io/key_source.hpp"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <vector>

#include "core/config.hpp"

namespace dpsd::io {

namespace {

// DPS keys are 32 or 64 bytes (44 or 88 base64 characters); anything much larger is not a key.
constexpr std::size_t kMaxKeyFileSize = 4096;
constexpr std::size_t kMinKeyBytes = 16;

// Overwrites every byte the string owns, including the spare capacity and the small-string
// buffer a move leaves behind: resize() writes zeros there through conforming code, then the
// cleanse covers the whole range in a way the optimiser cannot drop.
void wipe(std::string& text) {
  text.resize(text.capacity());
  OPENSSL_cleanse(text.data(), text.size());
  text.clear();
}

// A fixed buffer on the stack, wiped on every exit path, so reading never leaves key bytes in
// freed heap memory (a growing std::string would reallocate and abandon copies).
struct ReadBuffer {
  std::array<char, kMaxKeyFileSize + 1> bytes{};
  std::size_t size = 0;
  ReadBuffer() = default;
  ReadBuffer(const ReadBuffer&) = delete;
  ReadBuffer& operator=(const ReadBuffer&) = delete;
  ~ReadBuffer() { OPENSSL_cleanse(bytes.data(), bytes.size()); }
};

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

std::string mode_text(mode_t mode) {
  std::array<char, 8> text{};
  (void)std::snprintf(text.data(), text.size(), "%04o", static_cast<unsigned>(mode & 07777));
  return text.data();
}

const char* type_name(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
  return "not a regular file";
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

// A key file may be read by its owner and, so that a root-owned key can be handed to the
// daemon's group (0640 root:dpsd), by its group when that group is one the daemon itself runs
// with. Anything for others, and group write or execute, is refused.
std::optional<std::string> permission_problem(const struct stat& st, const std::string& what,
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

bool is_base64_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}

// Standard base64 with padding, as the Azure portal shows it. Checked structurally so the key
// is never decoded into another buffer here; the SAS code decodes it when it signs. The reason
// never quotes key characters.
std::optional<std::string> base64_problem(std::string_view text) {
  if (text.size() % 4 != 0) return "is not valid base64 (length is not a multiple of 4)";
  std::size_t padding = 0;
  while (padding < 2 && padding < text.size() && text[text.size() - 1 - padding] == '=') {
    ++padding;
  }
  const std::size_t body = text.size() - padding;
  for (std::size_t i = 0; i < body; ++i) {
    if (!is_base64_char(text[i])) {
      return "is not valid base64 (unexpected character at position " + std::to_string(i + 1) + ")";
    }
  }
  const std::size_t decoded = text.size() / 4 * 3 - padding;
  if (decoded < kMinKeyBytes) {
    return "is too short for a DPS key (" + std::to_string(decoded) + " bytes; at least " +
           std::to_string(kMinKeyBytes) + " expected)";
  }
  return std::nullopt;
}

// `what` names the source in every message: "key file /path" or "credential 'name' (/path)".
Expected<SecretText> read_key(const std::string& path, const std::string& what,
                              bool enforce_private) {
  // O_NOFOLLOW: a symlink could point the daemon at a file its owner never meant as a key.
  // O_NONBLOCK: opening a FIFO must not hang the daemon; fstat() rejects it just after.
  int flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK;
  if (enforce_private) flags |= O_NOFOLLOW;
  Fd fd(::open(path.c_str(), flags));
  if (fd.get() < 0) {
    const int error = errno;
    if (error == ELOOP && enforce_private) {
      return Error{what + " is a symbolic link; refusing to follow it (point symmetric_key at " +
                   "the file itself)"};
    }
    return Error{"cannot open " + what + ": " + std::strerror(error)};
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return Error{"cannot stat " + what + ": " + std::strerror(errno)};
  }
  if (!S_ISREG(st.st_mode)) return Error{what + " is " + type_name(st.st_mode)};
  // systemd manages credential directories and their modes; for plain files we are the
  // last line of defence against a key anyone on the gateway can copy.
  if (enforce_private) {
    if (auto problem = permission_problem(st, what, path)) return Error{*problem};
  }

  ReadBuffer buffer;
  for (;;) {
    const ssize_t n =
        ::read(fd.get(), buffer.bytes.data() + buffer.size, buffer.bytes.size() - buffer.size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error{"cannot read " + what + ": " + std::strerror(errno)};
    }
    if (n == 0) break;
    buffer.size += static_cast<std::size_t>(n);
    if (buffer.size > kMaxKeyFileSize) {
      return Error{what + " is larger than " + std::to_string(kMaxKeyFileSize) +
                   " bytes; it does not look like a key"};
    }
  }

  std::string_view text(buffer.bytes.data(), buffer.size);
  constexpr std::string_view kSpace = " \t\r\n\v\f";
  const auto first = text.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return Error{what + " is empty"};
  text = text.substr(first, text.find_last_not_of(kSpace) - first + 1);
  if (auto problem = base64_problem(text)) return Error{what + " " + *problem};
  return SecretText(std::string(text));
}

Expected<SecretText> load(std::string_view uri) {
  auto parsed = core::parse_key_uri(uri);
  // No "symmetric_key: " prefix here: callers name the setting when they report the error.
  if (!parsed) return Error{parsed.error()};
  if (parsed->kind == core::KeyUri::Kind::File) {
    return read_key(parsed->value, "key file " + parsed->value, true);
  }
  const std::string& name = parsed->value;
  const char* dir = std::getenv("CREDENTIALS_DIRECTORY");
  if (dir == nullptr || *dir == '\0') {
    return Error{"credential '" + name +
                 "' not found: $CREDENTIALS_DIRECTORY is not set (add LoadCredential= or "
                 "SetCredential= to the service)"};
  }
  const std::string path = std::string(dir) + "/" + name;
  return read_key(path, "credential '" + name + "' (" + path + ")", false);
}

}  // namespace

SecretText::SecretText(SecretText&& other) noexcept : text_(std::move(other.text_)) {
  wipe(other.text_);
}

SecretText& SecretText::operator=(SecretText&& other) noexcept {
  if (this != &other) {
    wipe(text_);
    text_ = std::move(other.text_);
    wipe(other.text_);
  }
  return *this;
}

SecretText::~SecretText() {
  wipe(text_);
}

Status check_key_source(std::string_view uri) {
  // Loading is the check: the same code path the daemon uses, and the SecretText wipes the key
  // as soon as this returns.
  auto key = load(uri);
  if (!key) return Error{key.error()};
  return ok_status();
}

Expected<SecretText> load_key(std::string_view uri) {
  return load(uri);
}

}  // namespace dpsd::io
